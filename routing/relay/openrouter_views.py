"""OpenRouter's API paths: every relay endpoint again under /api/v1 (so `base_url=".../api/v1"` works as it
does for OpenRouter), OpenAI-shaped bodies answering errors in OpenRouter's shape; Messages and Responses under
/api/v1 keep their own formats (their SDKs read those errors). Also OpenRouter's model schema, for
/api/v1/models and /v1/models?detail=full."""
import inspect
from functools import wraps

from django.conf import settings
from django.views.decorators.csrf import csrf_exempt

from billing import selectors as billing_selectors
from billing.money import MICRO, combined_multiplier
from core.redaction import redact
from gateway_site.db import db_call
from keys.selectors import allowed_models
from routing.relay import errors, snapshot
from routing.relay import views as relay
from routing.relay.formats import openrouter
from routing.relay.pipeline import RelayCall

OPENROUTER = "openrouter"


def _same_view(view):
    """One of views.py's POST relay views (its body, undecorated), behind the OpenRouter format's prologue."""
    return relay.relay_route(fmt=OPENROUTER)(inspect.unwrap(view))


def _same_key_view(view):
    """One of views.py's `key_get` views, behind the OpenRouter format's prologue."""
    body = inspect.unwrap(view)   # body(call, ctx, **url_kwargs)

    async def with_ctx(call, **kwargs):
        return await body(call, call.ctx, **kwargs)

    return relay.relay_route("GET", OPENROUTER, record=False)(wraps(body)(with_ctx))


@relay.relay_route(fmt=OPENROUTER)
async def chat_completions(call, payload):
    return await relay._relay(call, payload, openrouter.to_canonical(payload))


embeddings = _same_view(relay.embeddings)
key_info = _same_key_view(relay.key_info)
generation = _same_key_view(relay.generation)


def _credits(team_id: int) -> dict:
    credited, used = billing_selectors.team_credits(team_id=team_id)
    return {"data": {"total_credits": credited / MICRO, "total_usage": used / MICRO,
                     "currency": settings.TOLLGATE_CURRENCY}}


@relay.relay_route("GET", OPENROUTER, record=False)
async def credits(call):
    """GET /api/v1/credits (OpenRouter's): what the key's team was credited and what its usage cost, its records
    not reconciled yet included (the difference is the balance once they are charged)."""
    return relay.json_response(await db_call(_credits)(call.ctx.team_id), request_id=call.request_id)


def _usable(ctx, snap) -> list:
    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models, key_models=ctx.key_models)
    return [m for m in snap.catalog if allowed is None or m.public_id in allowed]


def _objects(ctx, snap, models) -> list[dict]:
    multiplier = combined_multiplier(snap.policy(ctx.team_id).multiplier_ppm, ctx.group_multiplier_ppm)
    return [openrouter.model_object(m, snap.price_for(m, ctx.team_id), multiplier) for m in models]


async def model_list(call):
    """The models this key may use, in OpenRouter's schema, at the team's own prices (from the snapshot)."""
    snap = await snapshot.current()
    return relay.json_response({"data": _objects(call.ctx, snap, _usable(call.ctx, snap))},
                               request_id=call.request_id)


list_models = relay.relay_route("GET", OPENROUTER, record=False)(model_list)
list_models_full = relay.relay_route("GET", record=False)(model_list)   # /v1/models?detail=full: OpenAI errors


@relay.relay_route("GET", OPENROUTER, record=False)
async def retrieve_model(call, model_id: str):
    """GET /api/v1/models/{id}: a model this key may use, by id or alias; 404 for any other."""
    snap = await snapshot.current()
    model = snap.resolve(model_id)
    if model is None or model not in _usable(call.ctx, snap):
        raise errors.model_not_found(redact(model_id))
    return relay.json_response({"data": _objects(call.ctx, snap, [model])[0]}, request_id=call.request_id)


@csrf_exempt
def unknown_endpoint(request, path=""):
    """Any other /api/v1 path: OpenRouter's error shape, naming what is served."""
    base = request.build_absolute_uri("/api/v1")
    err = errors.RelayError(404, "invalid_request_error", "unknown_endpoint",
                            f"Unknown endpoint {request.method} {redact(request.path)}. Under the base URL {base} "
                            "Tollgate serves /chat/completions, /responses, /messages, /embeddings, /models, /key, "
                            "/credits and /generation.")
    return openrouter.error_response(err, RelayCall(request).request_id)
