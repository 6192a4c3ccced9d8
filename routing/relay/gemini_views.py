"""The native Gemini routes (what Gemini CLI and the `google-genai` SDK call, base URL without /v1beta):
POST /v1beta/models/{model}:generateContent, :streamGenerateContent (`?alt=sse`: SSE; without it Gemini streams
a JSON array), :countTokens; GET /v1beta/models and /v1beta/models/{model}; the same under /v1 (google-genai's
default). The key comes as `x-goog-api-key`, `?key=` or Bearer; answers and errors are in Gemini's shapes;
calls are routed like every other (to Gemini channels natively, to the others through the canonical request)."""
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.redaction import redact
from keys.selectors import allowed_models
from routing.relay import errors, snapshot
from routing.relay import openrouter_views as relay_openrouter
from routing.relay import views as relay
from routing.relay.formats import gemini as gemini_format
from routing.relay.pipeline import RelayCall

GEMINI = "gemini"
GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def _with_model(call: RelayCall, payload: dict, model: str) -> dict:
    """The body with the URL's model in it (`models/x` and `x` both name x): routing and the usage record read
    it there; a native request leaves it out again."""
    payload = {**payload, "model": model.removeprefix("models/")}
    call.payload = payload
    return payload


@relay.relay_route(fmt=GEMINI)
async def generate_content(call, payload, model):
    payload = _with_model(call, payload, model)
    return await relay._relay(call, payload, gemini_format.to_canonical(payload))


@relay.relay_route(fmt=GEMINI)
async def stream_generate_content(call, payload, model):
    payload = _with_model(call, payload, model)
    canonical = gemini_format.to_canonical(payload)
    canonical["stream"] = True
    response = await relay._relay(call, payload, canonical)
    if call.request.GET.get("alt") != "sse":   # Gemini's default stream: one JSON array, element by element
        response.streaming_content = gemini_format.json_array(response.streaming_content)
        response["Content-Type"] = "application/json"
    return response


@relay.relay_route(fmt=GEMINI, record=False)
async def count_tokens(call, payload, model):
    """:countTokens, counted offline by the routed model's tokenizer."""
    await call.plan(gemini_format.to_canonical(gemini_format.count_request(_with_model(call, payload, model))))
    response = relay.json_response({"totalTokens": call.count_prompt_tokens()})
    return relay._headers(call, response)


ACTIONS = {"generateContent": generate_content, "streamGenerateContent": stream_generate_content,
           "countTokens": count_tokens}


def _not_served(request, what: str) -> HttpResponse:
    err = errors.RelayError(404, "invalid_request_error", "unknown_endpoint",
                            f"Tollgate does not serve {what}. Its Gemini API is POST /v1beta/models/MODEL:"
                            f"{{{','.join(GENERATION_METHODS)}}} and GET /v1beta/models[/MODEL], with the base URL "
                            f"{request.build_absolute_uri('/')} and your Tollgate key as the API key.")
    return gemini_format.error_response(err, RelayCall(request, GEMINI).request_id)


@csrf_exempt
async def model_action(request, model: str, method: str):
    """POST /v1beta/models/{model}:{method}."""
    view = ACTIONS.get(method)
    if view is None:
        return _not_served(request, f"`{redact(method)}` for Gemini models")
    return await view(request, model=model)


@csrf_exempt
def unknown_endpoint(request, path=""):
    """Any other /v1beta path: a Gemini-shaped 404 that says what is served."""
    return _not_served(request, f"{request.method} {redact(request.path)}")


def _model_object(m) -> dict:
    return {"name": f"models/{m.public_id}", "baseModelId": m.public_id, "version": "tollgate",
            "displayName": m.public_id, "description": f"{m.public_id} via Tollgate ({m.provider})",
            "inputTokenLimit": m.context_length, "outputTokenLimit": m.context_length,
            "supportedGenerationMethods": GENERATION_METHODS}


def _usable(ctx, snap) -> list:
    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models, key_models=ctx.key_models)
    return [m for m in snap.catalog if (allowed is None or m.public_id in allowed)
            and "embeddings" not in m.output_modalities]


@relay.relay_route("GET", GEMINI, record=False)
async def list_models(call):
    snap = await snapshot.current()
    return relay.json_response({"models": [_model_object(m) for m in _usable(call.ctx, snap)]},
                               request_id=call.request_id)


@relay.relay_route("GET", GEMINI, record=False)
async def get_model(call, model_id: str):
    """GET /v1beta/models/{model}: a model this key may use, by id or alias; a Gemini 404 for any other."""
    snap = await snapshot.current()
    found = snap.resolve(model_id.removeprefix("models/"))
    if found is None or found not in _usable(call.ctx, snap):
        raise errors.model_not_found(redact(model_id))
    return relay.json_response(_model_object(found), request_id=call.request_id)


# google-genai 3 calls the Gemini API under /v1 by default, where /v1/models is OpenAI's: a Gemini client (its
# key in x-goog-api-key or ?key=) gets Gemini's shapes there, any other client OpenAI's.
def _gemini_client(request) -> bool:
    return "HTTP_X_GOOG_API_KEY" in request.META or "key" in request.GET


@csrf_exempt
async def v1_models(request):
    """GET /v1/models (`?detail=full`: OpenRouter's model schema)."""
    if request.GET.get("detail") == "full" and not _gemini_client(request):
        return await relay_openrouter.list_models_full(request)
    return await (list_models if _gemini_client(request) else relay.list_models)(request)


@csrf_exempt
async def v1_model(request, model_id: str):
    """/v1/models/{model}: POST …:generateContent (and the other methods), else GET a model."""
    name, colon, method = model_id.rpartition(":")
    if colon and method.isalpha() and request.method == "POST":
        return await model_action(request, model=name, method=method)
    return await (get_model if _gemini_client(request) else relay.retrieve_model)(request, model_id=model_id)
