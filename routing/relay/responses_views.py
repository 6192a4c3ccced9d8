"""The OpenAI Responses API: POST /v1/responses (routed like every relay call: `relay_route` and the shared
relay), GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST /v1/responses/input_tokens.

Stored responses live in the shared cache (Redis in production, the in-process store in the embedded default),
never in the database: a response with `store` not false is kept, with the input it answered, for
STORE_TTL_SECONDS, under its id and its team (another team's id is a 404). `previous_response_id` is resolved
here — the stored input and output become the head of this request's input — so every channel, translated or
native, sees the whole conversation."""

import orjson
from django.conf import settings
from django.views.decorators.csrf import csrf_exempt

from core.redaction import redact
from gateway_site import shared_cache
from routing.adapters import openai as openai_adapter
from routing.relay import errors, views
from routing.relay.formats import checks
from routing.relay.formats import responses as responses_format

RESPONSES = "responses"
STORE_TTL_SECONDS = getattr(settings, "TOLLGATE_RESPONSES_TTL_SECONDS", 30 * 86400)   # OpenAI keeps 30 days
_FINAL = (b'"type":"response.completed"', b'"type":"response.incomplete"')


def _key(response_id: str) -> str:
    return "tg:responses:" + response_id


async def _load(team_id: int, response_id: str) -> dict | None:
    raw = await shared_cache.aget(_key(response_id))
    if raw is None:
        return None
    stored = orjson.loads(raw)
    return stored if stored.get("team_id") == team_id else None


async def _save(team_id: int, response: dict, items: list) -> None:
    await shared_cache.aset(_key(response["id"]), orjson.dumps({"team_id": team_id, "response": response,
                                                                "input": items}), ttl=int(STORE_TTL_SECONDS))


def not_found(response_id: str, param: str | None = None) -> errors.RelayError:
    shown = redact(response_id[:80])
    return errors.RelayError(404, "invalid_request_error", "not_found",
                             f"No response with id '{shown}' for this key's team (stored responses expire after "
                             f"{int(STORE_TTL_SECONDS) // 86400} days; `store: false` keeps none).", param=param)


async def _with_history(call, payload: dict) -> None:
    """`previous_response_id`: the stored conversation (its input and output items) goes before this input."""
    previous = checks.optional(payload, "previous_response_id", (str,), "a string")
    if previous is None:
        return
    stored = await _load(call.ctx.team_id, previous)
    if stored is None:
        raise not_found(previous, "previous_response_id")
    if payload.get("input") is not None:
        checks.of_type("input", payload["input"], (str, list), "a string or an array of input items")
    own = responses_format.input_items(payload) if payload.get("input") not in (None, "") else []
    payload["input"] = stored["input"] + stored["response"]["output"] + own


def _is_final(chunk: bytes) -> bool:
    return any(kind in chunk for kind in _FINAL)


def _final_response(chunk: bytes) -> dict | None:
    """The Response object of a stream's last event (completed or incomplete), if `chunk` holds it."""
    for event in chunk.split(b"\n\n"):
        if _is_final(event):
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    return orjson.loads(line[5:]).get("response")
    return None


def _native_patch(call, previous: str | None):
    """What a native answer lacks, put into its bytes: the previous response it continues (the upstream got the
    whole conversation instead of our id) and, in the final usage, `usage.cost` (what the ledger will charge)."""
    named = b'"previous_response_id":' + orjson.dumps(previous) if previous else None

    def patch(chunk: bytes, final: bool) -> bytes:
        if named is not None:
            chunk = chunk.replace(b'"previous_response_id":null', named)
        if final and b'"usage":{"' in chunk and b'"cost":' not in chunk:
            cost = call.cost_now(call.usage)
            if cost is not None:
                chunk = chunk.replace(b'"usage":{', b'"usage":{"cost":' + orjson.dumps(cost) + b",", 1)
        return chunk

    return patch


async def _finishing(stream, patch, save):
    """The stream as it goes out (`patch`ed, when native); its final response is stored (`save`, unless None)
    before the client sees that event."""
    try:
        async for chunk in stream:
            final = _is_final(chunk)
            if patch is not None:
                chunk = patch(chunk, final)
            if save is not None and final:
                response = _final_response(chunk)
                if response is not None:
                    await save(response)
            yield chunk
    finally:
        await stream.aclose()


@views.relay_route(fmt=RESPONSES)
async def create(call, payload):
    """POST /v1/responses."""
    await _with_history(call, payload)
    canonical = responses_format.to_canonical(payload)
    call.forced_tool = responses_format.forced_hosted_tool(payload)   # only native channels can run it
    try:
        response = await views._relay(call, payload, canonical)
    except errors.RelayError:
        if not openai_adapter.refused_natively():
            raise
        # An OpenAI-compatible channel without /responses (remembered now): the same call, translated.
        call.release_holds()
        response = await views._relay(call, payload, canonical)
    patch = _native_patch(call, payload.get("previous_response_id")) if call.native else None
    save = None
    if payload.get("store") is not False and response.status_code == 200:
        items, team_id = responses_format.input_items(payload), call.ctx.team_id

        async def save(stored: dict) -> None:
            await _save(team_id, stored, items)
    if response.streaming:
        if patch is not None or save is not None:
            response.streaming_content = _finishing(response.streaming_content, patch, save)
        return response
    if patch is not None:
        response.content = patch(response.content, True)
    if save is not None:
        await save(orjson.loads(response.content))
    return response


@views.relay_route(fmt=RESPONSES, record=False)
async def input_tokens(call, payload):
    """POST /v1/responses/input_tokens (`client.responses.input_tokens.count`): the request's input tokens,
    counted offline by the gateway's tokenizer for a model this key may use."""
    await _with_history(call, payload)
    await call.plan(responses_format.to_canonical(payload))
    return views.json_response({"object": "response.input_tokens", "input_tokens": call.count_prompt_tokens()},
                               request_id=call.request_id)


@views.relay_route("GET", fmt=RESPONSES, record=False)
async def _retrieve(call, response_id: str):
    stored = await _load(call.ctx.team_id, response_id)
    if stored is None:
        raise not_found(response_id)
    return views.json_response(stored["response"], request_id=call.request_id)


@views.relay_route("DELETE", fmt=RESPONSES, record=False)
async def _delete(call, response_id: str):
    if await _load(call.ctx.team_id, response_id) is None:
        raise not_found(response_id)
    client = shared_cache.async_client()
    if client is not None:
        await client.delete(_key(response_id))
    else:
        shared_cache.memory_store().delete(_key(response_id))
    return views.json_response({"id": response_id, "object": "response.deleted", "deleted": True},
                               request_id=call.request_id)


@csrf_exempt
async def response_detail(request, response_id: str):
    """GET /v1/responses/{id} (the stored response) and DELETE (forget it)."""
    if request.method == "DELETE":
        return await _delete(request, response_id=response_id)
    return await _retrieve(request, response_id=response_id)


@views.relay_route("GET", fmt=RESPONSES, record=False)
async def input_items(call, response_id: str):
    """GET /v1/responses/{id}/input_items: the input the stored response answered (oldest first)."""
    stored = await _load(call.ctx.team_id, response_id)
    if stored is None:
        raise not_found(response_id)
    data = [{"id": item.get("id") or f"item_{i}", **item} for i, item in enumerate(stored["input"])]
    if call.request.GET.get("order") != "asc":
        data.reverse()   # OpenAI lists newest first unless order=asc
    return views.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None, "has_more": False},
                               request_id=call.request_id)
