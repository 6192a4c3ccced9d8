"""OpenAI-format inbound routes: /v1/chat/completions, /v1/models, plus health and base-URL hints."""
import asyncio

import aiohttp
import orjson
from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway_site import shared_cache
from keys.selectors import allowed_models
from routing.adapters.registry import adapter_for
from routing.relay import errors, snapshot
from routing.relay.pipeline import RelayCall
from support.redaction import redact

JSON = "application/json"


def json_response(data, status=200, request_id=None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status, content_type=JSON)
    if request_id:
        response["X-Request-Id"] = request_id
    return response


def base_url(request) -> str:
    return request.build_absolute_uri("/v1")


def method_not_allowed(request, allowed: str, request_id: str) -> HttpResponse:
    err = errors.RelayError(
        405, "invalid_request_error", "method_not_allowed",
        f"{request.path} takes {allowed}, not {request.method}. This is an API endpoint: point an OpenAI-compatible "
        f"client at the base URL {base_url(request)} with your Tollgate key.")
    response = errors.openai_response(err, request_id)
    response["Allow"] = allowed
    return response


@csrf_exempt
async def chat_completions(request):
    call = RelayCall(request)
    if request.method != "POST":
        return method_not_allowed(request, "POST", call.request_id)
    try:
        await call.authenticate()
        payload = call.read_json()
        await call.resolve_model(payload.get("model"))
        _validate_chat(payload)
        stream = payload.get("stream") is True
        call.stream = stream
        resp, body = await call.open_upstream(stream=stream)
        if stream:
            return _stream_response(call, resp, payload)
        return _complete_response(call, body)
    except errors.RelayError as err:
        call.fail(err)
        call.record()
        return errors.openai_response(err, call.request_id)


def _validate_chat(payload: dict) -> None:
    messages = payload.get("messages")
    if messages is None:
        raise errors.missing_field("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_value("messages", "expected a non-empty array of message objects.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.invalid_value(f"messages[{i}]", "each message needs a string `role`.")
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise errors.invalid_value("stream", "expected true or false.")


def _complete_response(call: RelayCall, body: bytes) -> HttpResponse:
    adapter = adapter_for(call.channel.kind)
    call.ttfb_ms = call.latency_ms()
    try:
        data, usage = adapter.from_upstream(body)
    except (ValueError, orjson.JSONDecodeError):
        err = errors.upstream_unavailable("the upstream answer was not valid JSON")
        call.fail(err)
        call.record()
        return errors.openai_response(err, call.request_id)
    call.usage = usage
    data["id"] = "chatcmpl-" + call.hex_id
    data["model"] = call.model.public_id
    call.record()
    response = HttpResponse(orjson.dumps(data), content_type=JSON)
    response["X-Request-Id"] = call.request_id
    return response


def _stream_response(call: RelayCall, resp: aiohttp.ClientResponse, payload: dict) -> StreamingHttpResponse:
    adapter = adapter_for(call.channel.kind)
    wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    our_id = b'"id":"chatcmpl-' + call.hex_id.encode() + b'"'
    our_model = b'"model":' + orjson.dumps(call.model.public_id)

    async def events():
        upstream_id = upstream_model = None
        finished = False
        try:
            async for raw in resp.content:
                line = raw.rstrip(b"\r\n")
                if not line:
                    continue
                if line == b"data: [DONE]":
                    finished = True
                    call.record()  # durable before the client sees the end of the stream
                    yield b"data: [DONE]\n\n"
                    continue
                out, usage = adapter.stream_events(line)
                if out is None:
                    continue
                if upstream_id is None and out.startswith(b"data: {"):
                    first = orjson.loads(out[6:])
                    upstream_id = b'"id":' + orjson.dumps(first.get("id", ""))
                    upstream_model = b'"model":' + orjson.dumps(first.get("model", ""))
                if usage is not None:
                    call.usage = usage
                    if not wants_usage and b'"choices":[]' in out:
                        continue  # the client did not ask for the usage chunk
                if not wants_usage:
                    out = out.replace(b',"usage":null', b"")
                out = out.replace(upstream_id, our_id, 1).replace(upstream_model, our_model, 1)
                if call.ttfb_ms is None:
                    call.ttfb_ms = call.latency_ms()
                yield out + b"\n\n"
            if not finished:
                raise aiohttp.ClientPayloadError("the upstream closed the stream before [DONE]")
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError) as exc:
            # Bytes already reached the client: end the stream with an error chunk, keep the usage so far.
            err = errors.upstream_unavailable(f"the stream broke ({type(exc).__name__})")
            call.fail(err)
            chunk = {"id": "chatcmpl-" + call.hex_id, "object": "chat.completion.chunk", "model": call.model.public_id,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                     "error": {"message": err.message, "type": err.type, "code": err.code,
                               "request_id": call.request_id}}
            call.record()
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            call.status, call.error_code = 499, "client_closed_request"
            raise
        finally:
            resp.release()
            call.record()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["X-Request-Id"] = call.request_id
    return response


async def list_models(request):
    call = RelayCall(request)
    if request.method != "GET":
        return method_not_allowed(request, "GET", call.request_id)
    try:
        ctx = await call.authenticate()
    except errors.RelayError as err:
        return errors.openai_response(err, call.request_id)
    snap = await snapshot.current()
    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models, key_models=ctx.key_models)
    data = [{"id": m.public_id, "object": "model", "created": m.created, "owned_by": m.provider}
            for m in snap.catalog if allowed is None or m.public_id in allowed]
    return json_response({"object": "list", "data": data}, request_id=call.request_id)


@csrf_exempt
def unknown_endpoint(request, path=""):
    """Any path the relay does not serve: a JSON error that names the right base URL."""
    request_id = RelayCall(request).request_id
    full = request.path
    right = base_url(request)
    if full.startswith("/v1/v1/"):
        hint = f"Your base URL ends in /v1 and the client added another /v1. Set the base URL to {right}."
    elif not full.startswith(("/v1/", "/v1beta/")):
        hint = f"API paths start with /v1. Set your client's base URL to {right} (including /v1)."
    else:
        hint = (f"Tollgate serves /v1/chat/completions, /v1/models and /v1/messages under the base URL {right}.")
    err = errors.RelayError(404, "invalid_request_error", "unknown_endpoint",
                            f"Unknown endpoint {request.method} {redact(full)}. {hint}")
    return errors.openai_response(err, request_id)


async def healthz(request):
    return json_response({"status": "ok"})


def _check_db() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True


async def readyz(request):
    checks = {}
    for name, check in (("database", _check_db), ("cache", shared_cache.ping)):
        try:
            checks[name] = bool(await sync_to_async(check)())
        except Exception as exc:  # readiness reports, it does not raise
            checks[name] = False
            checks[f"{name}_error"] = type(exc).__name__
    ok = checks["database"] and checks["cache"]
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)
