"""The relay's routes: /v1/chat/completions (OpenAI format), /v1/messages (Anthropic format), embeddings,
models, key and generation self-service, health, and JSON hints for wrong base URLs."""
import asyncio
import datetime as dt
import logging
import os
import time
from functools import wraps

import aiohttp
import orjson
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from billing import limits, usage_journal
from billing import selectors as billing_selectors
from billing.money import amount
from core.redaction import redact
from gateway_site import shared_cache
from gateway_site.db import db_call
from keys.selectors import allowed_models
from routing import tokens
from routing.adapters.base import Finish, ReasoningDelta, TextDelta, ToolCallDelta, UpstreamFormatError, UsageEvent
from routing.adapters.registry import adapter_for
from routing.adapters.sse import sse_lines
from routing.relay import errors, formats, generations, plugins, snapshot
from routing.relay.formats import anthropic as anthropic_format
from routing.relay.formats.openai import validate_chat, validate_embeddings
from routing.relay.pipeline import RelayCall

JSON = "application/json"
log = logging.getLogger(__name__)


def json_response(data, status=200, request_id=None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status, content_type=JSON)
    if request_id:
        response["X-Request-Id"] = request_id
    return response


def unreadable_body(path: str) -> HttpResponse:
    """A body the server could not read (a malformed chunked encoding): 400 in the route's format (called
    by the ASGI handler, before there is a request)."""
    err = errors.RelayError(400, "invalid_request_error", "invalid_body",
                            "The request body could not be read (a malformed chunked transfer encoding?). Send "
                            "a JSON object with a Content-Length, or well-formed chunks.")
    return formats.of(format_of_path(path)).error_response(err, "req_" + os.urandom(12).hex())


# Path prefixes of the relay routes that answer in a format other than OpenAI's (errors before a request exists).
PATH_FORMATS = (("/v1/messages", "anthropic"), ("/v1/responses", "responses"), ("/v1beta/", "gemini"),
                ("/api/v1/messages", "anthropic"), ("/api/v1/responses", "responses"), ("/api/v1/", "openrouter"))


def format_of_path(path: str) -> str:
    return next((fmt for prefix, fmt in PATH_FORMATS if path.startswith(prefix)), OPENAI)


def base_url(request) -> str:
    return request.build_absolute_uri("/v1")


def method_not_allowed(request, allowed: str, request_id: str, fmt: str = "openai") -> HttpResponse:
    err = errors.RelayError(
        405, "invalid_request_error", "method_not_allowed",
        f"{request.path} takes {allowed}, not {request.method}. This is an API endpoint: point an OpenAI-compatible "
        f"client at the base URL {base_url(request)} with your Tollgate key.")
    response = formats.of(fmt).error_response(err, request_id)
    response["Allow"] = allowed
    return response


OPENAI, ANTHROPIC = "openai", "anthropic"


def internal_error() -> errors.RelayError:
    return errors.RelayError(500, "server_error", "internal_error",
                             "The gateway hit an internal error. Retry; if it persists, open a ticket with the "
                             "request id.")


def error_response(call: RelayCall, err: errors.RelayError) -> HttpResponse:
    response = formats.of(call.fmt).error_response(err, call.request_id)
    if call.route_plan is not None:
        response["X-Tollgate-Route"] = call.route_header()
    for name, value in call.rate_headers.items():
        response[name] = value
    return response


def relay_route(method: str = "POST", fmt: str = OPENAI, *, record: bool = True):
    """The prologue and the error tail every relay route shares: the method check, the key (and its IP
    rule), the JSON body of a POST, and any RelayError answered in the route's format (recorded as a usage
    record when `record`). The view is `view(call, payload, **url_kwargs)` for a POST, `view(call,
    **url_kwargs)` for a GET; `call.ctx` is the caller's key."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        async def route(request, **kwargs):
            call = RelayCall(request, fmt)
            if request.method != method:
                return method_not_allowed(request, method, call.request_id, call.fmt)
            try:
                await call.authenticate()
                if method == "POST":
                    return await view(call, call.read_json(), **kwargs)
                return await view(call, **kwargs)
            except errors.RelayError as err:
                call.end_failed(err, record=record)
                return error_response(call, err)
            except shared_cache.UNREACHABLE as exc:   # Redis went away under a direct call: fail soft, not a 500
                shared_cache.outage.failed(exc)
                unavailable = errors.service_unavailable("The gateway's cache is unreachable; retry in a few seconds.")
                call.end_failed(unavailable, record=record)
                return error_response(call, unavailable)
            except Exception:  # a bug: a JSON 500 in the route's format, recorded, its holds given back at once
                log.exception("request %s: unexpected error in %s", call.request_id, request.path)
                failure = internal_error()
                call.end_failed(failure, record=record)
                return error_response(call, failure)

        return route

    return decorate


@relay_route(fmt=OPENAI)
async def chat_completions(call, payload):
    return await _relay(call, payload, validate_chat(payload))


@relay_route(fmt=ANTHROPIC)
async def messages(call, payload):
    return await _relay(call, payload, anthropic_format.to_canonical(payload))


async def _relay(call: RelayCall, payload: dict, canonical: dict):
    extras = plugins.parse(payload)   # OpenRouter's plugins, debug, transforms, usage: checked before any hold
    plugins.authorize(extras, call, canonical.get("stream") is True)
    await call.plan(canonical)
    await call.reserve_quota(canonical)
    stream = canonical.get("stream") is True
    call.stream = stream
    if extras is not plugins.NONE:   # the gateway's own fields go no further
        payload, canonical = plugins.forwarded(payload, extras), plugins.forwarded(canonical, extras)
        call.payload = plugins.forwarded(call.payload or {}, extras)
    if stream and plugins.keepalive_seconds(call.fmt) > 0:
        return await _keepalive_relay(call, payload, canonical, extras)
    resp, body = await call.open_upstream(canonical, stream=stream)
    response = _served(call, resp, body, payload, canonical, extras)
    return _stream_extras(call, response, canonical, extras) if stream else response


def _served(call: RelayCall, resp, body, payload: dict, canonical: dict, extras) -> HttpResponse:
    """The answer of the attempt that served: native or translated, whole or streamed."""
    stream = call.stream
    if call.native:
        return _native_stream(call, resp, payload) if stream else _native_response(call)
    if not stream:
        return _complete_response(call, body, canonical if extras.healing else None)
    assert call.channel is not None   # set by the attempt that served
    if call.fmt in (OPENAI, "openrouter") and adapter_for(call.channel.kind).capabilities.passthrough:
        return _passthrough_stream(call, resp, payload)
    return _translated_stream(call, resp, payload)


def _stream_extras(call: RelayCall, response: StreamingHttpResponse, canonical: dict, extras) -> StreamingHttpResponse:
    """Keep-alive comments until the first chunk; the debug echo (debug keys) before everything."""
    content = response.streaming_content
    if plugins.keepalive_seconds(call.fmt) > 0:
        content = plugins.until_first_chunk(content, plugins.keepalive_seconds(call.fmt))
    if extras.echo_upstream_body:
        content = plugins.prepend(plugins.debug_chunk(call, canonical), content)
    response.streaming_content = content
    return response


async def _keepalive_relay(call: RelayCall, payload: dict, canonical: dict, extras) -> StreamingHttpResponse:
    """A stream whose upstream answers within the keep-alive interval is served as ever (an error is its own
    status code, fallback intact). A slower one is committed as a 200 stream then: keep-alive comments while the
    attempts go on (fallback still works), and their failure, if it comes, is an error event in the stream."""
    interval = plugins.keepalive_seconds(call.fmt)
    opening, context = plugins.beside(call.open_upstream(canonical, stream=True))
    try:
        await asyncio.wait({opening}, timeout=interval)
    except asyncio.CancelledError:   # the client went away before anything was sent
        opening.cancel()
        raise
    if opening.done():
        plugins.adopt(context)
        resp, body = opening.result()   # a RelayError is raised here: a plain error response
        return _stream_extras(call, _served(call, resp, body, payload, canonical, extras), canonical, extras)
    return _stream_http(call, _committed_stream(call, (opening, context), payload, canonical, extras, interval))


async def _committed_stream(call: RelayCall, attempts: tuple, payload: dict, canonical: dict, extras,
                            interval: float):
    """The body of a stream committed before its upstream answered (see _keepalive_relay); `attempts`: the task
    trying the candidates and its context."""
    opening, context = attempts
    renderer = formats.of(call.fmt).renderer(call, payload)
    call.journal_stream()   # committed: the upstream has the prompt, so a kill -9 from here on bills it
    try:
        yield plugins.KEEPALIVE   # one interval has passed already (in _keepalive_relay): say so at once
        while not (await asyncio.wait({opening}, timeout=interval))[0]:
            yield plugins.KEEPALIVE
        plugins.adopt(context)
        resp, body = opening.result()
    except errors.RelayError as err:   # no attempt served: its error, in the stream (the status went out)
        call.end_failed(err)
        yield b"".join(renderer.error(err, call.request_id))
        return
    except (asyncio.CancelledError, GeneratorExit):   # the client went away while the attempts went on
        opening.cancel()
        call.client_closed()
        call.end()
        raise
    except Exception:   # a bug: an internal_error event, recorded
        log.exception("request %s: unexpected error opening the stream", call.request_id)
        failure = internal_error()
        call.end_failed(failure)
        yield b"".join(renderer.error(failure, call.request_id))
        return
    response = _stream_extras(call, _served(call, resp, body, payload, canonical, extras), canonical, extras)
    async for chunk in response.streaming_content:
        yield chunk


def _headers(call: RelayCall, response: HttpResponse) -> HttpResponse:
    response["X-Request-Id"] = call.request_id
    for name, value in call.rate_headers.items():
        response[name] = value
    response["X-Tollgate-Route"] = call.route_header()
    response["X-Generation-Id"] = call.response_id   # GET /v1/generation?id= takes it (OpenRouter's header)
    if call.fmt == ANTHROPIC:
        response["request-id"] = call.request_id
    return response


def _complete_response(call: RelayCall, body: bytes, heal_for: dict | None = None) -> HttpResponse:
    """`heal_for`: the request, when it asked for response-healing (a JSON reply that is not JSON is repaired)."""
    call.ttfb_ms = call.latency_ms()
    assert call.channel is not None   # set by the attempt that served
    adapter = adapter_for(call.channel.kind)
    data, usage = call.answer or adapter.from_upstream(body)  # read by the attempt's validator
    call.usage = usage
    choices = data.get("choices") or [{}]
    call.finish_reason = str(choices[0].get("finish_reason") or "")
    healing = plugins.heal(data, heal_for) if heal_for is not None else None
    data = formats.of(call.fmt).complete(call, data, usage)
    call.record()
    response = _headers(call, HttpResponse(orjson.dumps(data), content_type=JSON))
    if healing:
        response["X-Tollgate-Healing"] = healing
    return response


def _native_response(call: RelayCall) -> HttpResponse:
    """The whole answer of a channel that speaks the client's format, as it came (ids and model ours)."""
    call.ttfb_ms = call.latency_ms()
    assert call.native_answer is not None   # kept by the attempt's validator
    body, call.usage, call.finish_reason = call.native_answer
    body = formats.of(call.fmt).with_native_cost(body, call.cost_now(call.usage))
    call.record()
    return _headers(call, HttpResponse(body, content_type=JSON))


def _native_stream(call: RelayCall, resp: aiohttp.ClientResponse, payload: dict) -> StreamingHttpResponse:
    """A stream of a channel that speaks the client's format: forwarded event by event as it came (ids and model
    ours), its usage and finish reason read on the way; recorded before the terminal event goes out."""
    assert call.channel is not None and call.model is not None   # set by the attempt that served
    model = call.model.public_id
    adapter = adapter_for(call.channel.kind)
    fmt = formats.of(call.fmt)
    renderer = fmt.renderer(call, payload)   # for an error event only

    async def events():
        done = False
        async for chunk in adapter.native_stream(call.fmt, sse_lines(resp.content), response_id=call.response_id,
                                                 model=model):
            if chunk.usage is not None:
                call.usage = chunk.usage
            if chunk.finish:
                call.finish_reason = chunk.finish
                if chunk.usage is not None:   # the final usage: it says what the call cost (usage.cost)
                    chunk.data = fmt.with_native_cost(chunk.data, call.cost_now(chunk.usage))
            if chunk.done:
                done = True
                call.record()   # durable before the client sees the end of the stream
            if chunk.data:
                if call.ttfb_ms is None:
                    call.ttfb_ms = call.latency_ms()
                call.produced += 1   # about a token an event: the count if the client aborts
                yield chunk.data
        if not done:
            raise UpstreamFormatError("the upstream closed the stream before its last event")

    return _stream_http(call, _guarded(call, resp, renderer, events()))


def _stream_http(call: RelayCall, events) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return _headers(call, response)


def _broken(call: RelayCall, exc: Exception) -> errors.RelayError:
    """A stream that broke after bytes went out: failed, and billed for what it produced."""
    err = exc if isinstance(exc, errors.RelayError) else \
        errors.upstream_unavailable(f"the stream broke ({type(exc).__name__})")
    call.fail(err)
    call.bill_partial()
    call.record()
    return err


STREAM_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError, errors.RelayError)


def _translated_stream(call: RelayCall, resp: aiohttp.ClientResponse, payload: dict) -> StreamingHttpResponse:
    """Any upstream format → canonical events → the client's format."""
    assert call.channel is not None   # set by the attempt that served
    adapter = adapter_for(call.channel.kind)
    renderer = formats.of(call.fmt).renderer(call, payload)

    async def events():
        async for event in adapter.stream_events(sse_lines(resp.content)):
            if isinstance(event, UsageEvent):
                call.usage = event.usage
            elif isinstance(event, Finish):
                call.finish_reason = event.reason or ""
            elif isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta)):
                call.produced += tokens.text_tokens(getattr(event, "text", "") or getattr(event, "arguments", ""))
            out = renderer.render(event)
            if out:
                if call.ttfb_ms is None:
                    call.ttfb_ms = call.latency_ms()
                yield b"".join(out)
        call.record()  # durable before the client sees the end of the stream
        yield b"".join(renderer.finish())

    return _stream_http(call, _guarded(call, resp, renderer, events()))


def _passthrough_stream(call: RelayCall, resp: aiohttp.ClientResponse, payload: dict) -> StreamingHttpResponse:
    """OpenAI client, OpenAI-compatible upstream: forward chunks byte for byte (ids and model rewritten)."""
    assert call.channel is not None and call.model is not None   # set by the attempt that served
    adapter = adapter_for(call.channel.kind)
    our_id = b'"id":"' + call.response_id.encode() + b'"'
    our_model = b'"model":' + orjson.dumps(call.model.public_id)
    renderer = formats.of(call.fmt).renderer(call, payload)   # for an error event only
    wants_usage = renderer.include_usage   # the format's say: asked for (OpenAI's), always (OpenRouter's)

    async def events():
        upstream_id = upstream_model = None
        finished = False
        async for line in sse_lines(resp.content):
            if line == b"data: [DONE]":
                finished = True
                call.record()  # durable before the client sees the end of the stream
                yield b"data: [DONE]\n\n"
                continue
            out, usage = adapter.passthrough(line)
            if out is None:
                continue
            if upstream_id is None and out.startswith(b"data: {"):
                first = orjson.loads(out[6:])
                upstream_id = b'"id":' + orjson.dumps(first.get("id", ""))
                upstream_model = b'"model":' + orjson.dumps(first.get("model", ""))
                del first   # not held by this generator for the stream's life (~1 KB a stream, tracemalloc)
            if usage is not None:
                call.usage = usage
                if not wants_usage and b'"choices":[]' in out:
                    continue  # the client did not ask for the usage chunk
                out = _with_cost(out, call.cost_now(usage))
            if not wants_usage:
                out = out.replace(b',"usage":null', b"")
            if upstream_id is not None and upstream_model is not None:   # none until a JSON-object chunk came
                out = out.replace(upstream_id, our_id, 1).replace(upstream_model, our_model, 1)
            if call.ttfb_ms is None:
                call.ttfb_ms = call.latency_ms()
            if b'"content":"' in out or b'"arguments":"' in out:
                call.produced += 1  # OpenAI streams about one token a chunk: the count if the client aborts
            if b'"finish_reason":"' in out:
                call.finish_reason = _passthrough_finish(out)
            yield out + b"\n\n"
        if not finished:
            raise aiohttp.ClientPayloadError("the upstream closed the stream before [DONE]")

    return _stream_http(call, _guarded(call, resp, renderer, events()))


async def _guarded(call: RelayCall, resp: aiohttp.ClientResponse, renderer, events):
    """The end every stream shares: a broken upstream ends the stream with an error in the client's format
    (bytes already went out, so no retry); a client that went away is billed for what it got; the upstream
    connection is released and the call recorded, whatever happened."""
    deadline = call.started + settings.TOLLGATE_STREAM_DEADLINE_SECONDS
    call.journal_stream()   # billed even if this process is killed before the stream ends
    try:
        async for chunk in events:
            yield chunk
            if time.perf_counter() > deadline:
                raise errors.stream_deadline(settings.TOLLGATE_STREAM_DEADLINE_SECONDS)
    except STREAM_FAILURES as exc:
        call.stream_ended(False, "stream_broken")
        yield b"".join(renderer.error(_broken(call, exc), call.request_id))
    except Exception:  # a bug: the stream ends with an internal_error event, recorded (finally) as failed
        log.exception("request %s: unexpected error in the stream", call.request_id)
        call.stream_ended(False, "internal_error")
        err = internal_error()
        call.fail(err)
        yield b"".join(renderer.error(err, call.request_id))
    except (asyncio.CancelledError, GeneratorExit):  # the client went away (cancel or aclose)
        call.client_closed()
        raise
    finally:
        call.stream_ended(True)   # no-op when it broke
        try:
            await events.aclose()
            resp.release()
        finally:
            call.end()


@relay_route()
async def embeddings(call, payload):
    """POST /v1/embeddings, for models served by channels with an embeddings API."""
    if payload.get("input") is None:
        raise errors.missing_field("input")
    validate_embeddings(payload)
    await call.plan({"model": payload.get("model"), "messages": []}, output="embeddings")
    await call.reserve_quota({"messages": [{"role": "user", "content": str(payload["input"])}],
                              "max_tokens": 1})
    _, body = await call.open_upstream(payload, stream=False, embeddings=True)
    data, call.usage = call.answer or adapter_for(call.channel.kind).embeddings_from_upstream(body)
    data["model"] = call.model.public_id
    call.ttfb_ms = call.latency_ms()
    call.record()
    return _headers(call, HttpResponse(orjson.dumps(data), content_type=JSON))


@relay_route(fmt=ANTHROPIC, record=False)
async def count_tokens(call, payload):
    """Anthropic's /v1/messages/count_tokens, counted offline by the routed model's tokenizer."""
    await call.plan(anthropic_format.to_canonical({"max_tokens": 1, **payload}))
    response = json_response({"input_tokens": call.count_prompt_tokens()})
    return _headers(call, response)


def _key_report(ctx, monthly_cap: int | None) -> dict:
    """The key's spend and its effective limits: of the key's, its group's and the team's budgets the one
    with the least left (`limit_source` names it), and the tightest request rate."""
    now = dt.datetime.now(dt.UTC)
    sums, budgets = billing_selectors.relay_key_spend(ctx=ctx, monthly_cap=monthly_cap, now=now)
    report = []
    for source, budget, period, spent in budgets:
        end = limits.period_end(period, now)
        report.append({"source": source, "limit": amount(budget), "limit_remaining": amount(max(budget - spent, 0)),
                       "limit_reset": period if end else None, "limit_reset_at": end.isoformat() if end else None})
    tightest = min(zip(budgets, report), key=lambda pair: pair[0][1] - pair[0][3], default=(None, {}))[1]
    rates = [(rpm, source) for source, (_, _, rpm, _, _) in (("key", ctx.key_limits), ("key group", ctx.group_limits))
             if rpm]
    rpm, rpm_source = min(rates) if rates else (None, None)
    return {"data": {
        "label": f"{ctx.name} ({ctx.mask})", "limit": tightest.get("limit"),
        "limit_remaining": tightest.get("limit_remaining"), "limit_reset": tightest.get("limit_reset"),
        "limit_reset_at": tightest.get("limit_reset_at"), "limit_source": tightest.get("source"),
        "limits": report,
        "usage": amount(sums["usage"] or 0), "usage_daily": amount(sums["daily"] or 0),
        "usage_weekly": amount(sums["weekly"] or 0), "usage_monthly": amount(sums["monthly"] or 0),
        "rate_limit": {"requests": rpm, "interval": "1m"} if rpm else None, "rate_limit_source": rpm_source,
        "is_free_tier": False,   # OpenRouter's: a key that never bought credits; every Tollgate key is paid
        "expires_at": dt.datetime.fromtimestamp(ctx.expires_at, dt.UTC).isoformat() if ctx.expires_at else None,
        "currency": settings.TOLLGATE_CURRENCY,
    }}


def key_get(view):
    """A GET endpoint that needs only the caller's key: `view(call, ctx, **url_kwargs)`."""

    @wraps(view)
    async def with_ctx(call, **kwargs):
        return await view(call, call.ctx, **kwargs)

    return relay_route("GET", record=False)(with_ctx)


@key_get
async def key_info(call, ctx):
    """GET /v1/key (OpenRouter-style): the calling key's limits and spend."""
    snap = await snapshot.current()
    return json_response(await db_call(_key_report)(ctx, snap.policy(ctx.team_id).monthly_cap),
                         request_id=call.request_id)


def _with_cost(chunk: bytes, cost: float | None) -> bytes:
    """The upstream's usage chunk with OpenRouter's `usage.cost` added (the one chunk of a stream re-encoded)."""
    if cost is None:
        return chunk
    try:
        data = orjson.loads(chunk[6:])
    except orjson.JSONDecodeError:
        return chunk
    if not isinstance(data, dict) or not isinstance(data.get("usage"), dict):
        return chunk
    data["usage"]["cost"] = cost
    return b"data: " + orjson.dumps(data)


def _passthrough_finish(chunk: bytes) -> str:
    """The finish_reason of a passed-through chunk (the chunk that carries one is parsed, no other)."""
    try:
        choices = orjson.loads(chunk[6:]).get("choices") or [{}]
    except orjson.JSONDecodeError:
        return ""
    return str(choices[0].get("finish_reason") or "")


ID_PREFIXES = tuple({"req_", *(module.ID_PREFIX for module in formats.FORMATS.values())})
_RECORD_FIELDS = ("request_id", "team_id", "requested_model", "served_model", "status_code", "prompt_tokens",
                  "completion_tokens", "cached_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
                  "reasoning_tokens", "usage_clamped", "cost", "stream", "ttfb_ms", "latency_ms", "finish_reason",
                  "created_at", "http_referer", "app_title")


def _summary_of(snap, team_id: int, fields: dict, channel_id: int | None) -> dict:
    """The generation of a usage record's fields, with the served model's provider and the channel's kind as
    the relay sees them."""
    served = fields.get("served_model")
    model = snap.resolve(served) if served else None
    channel = next((c for c in (snap.channels_for(model, team_id) if model else ()) if c.id == channel_id), None)
    data = generations.summary(fields, provider_name=generations.provider_name(channel, model),
                               channel_kind=channel.kind if channel else None)
    data.pop("_team")
    return data


def _generation(snap, team_id: int, hex_id: str) -> dict | None:
    """A generation from its usage record (older than the summaries generations.recall keeps)."""
    record = billing_selectors.generation_record(team_id=team_id, request_id="req_" + hex_id)
    if record is None:
        return None
    return _summary_of(snap, team_id, {name: getattr(record, name, "") for name in _RECORD_FIELDS},
                       record.channel_id)


def _journaled_generation(snap, team_id: int, hex_id: str) -> dict | None:
    """A generation from its record in a journal of this machine's workers: a call another worker finished a
    moment ago, whose summary has not reached the shared cache nor its record PostgreSQL."""
    record = generations.journaled(usage_journal.journal.directory, hex_id)
    if record is None or record.get("team_id") != team_id:
        return None
    return _summary_of(snap, team_id, record, record.get("channel_id"))


@key_get
async def generation(call, ctx):
    """GET /v1/generation?id= — one request's generation, by request id, any format's response id or the
    X-Generation-Id header's value; team-scoped. A recent call answers from its kept summary (its usage
    record may not have reached the database yet), any other from its usage record; one another worker
    finished a moment ago, before its summary reached the shared cache, from that worker's journal."""
    ident = call.request.GET.get("id", "")
    if not ident:
        raise errors.missing_field("id")
    # Any format's response id (chatcmpl-…, gen-…, msg_…, resp_…, a Gemini responseId) embeds the request id's hex.
    hex_id = next((ident.removeprefix(prefix) for prefix in ID_PREFIXES if ident.startswith(prefix)), ident)
    data = await generations.recall(ctx.team_id, hex_id)
    if data is None:
        snap = await snapshot.current()
        data = await db_call(_generation)(snap, ctx.team_id, hex_id) or \
            await asyncio.to_thread(_journaled_generation, snap, ctx.team_id, hex_id)
    if data is None:
        raise errors.RelayError(404, "invalid_request_error", "not_found",
                                f"No generation `{redact(ident)}` for this key's team.", param="id")
    return json_response({"data": data}, request_id=call.request_id)


def _model_object(m) -> dict:
    return {"id": m.public_id, "object": "model", "created": m.created, "owned_by": m.provider}


@key_get
async def list_models(call, ctx):
    snap = await snapshot.current()
    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models, key_models=ctx.key_models)
    data = [_model_object(m) for m in snap.catalog if allowed is None or m.public_id in allowed]
    return json_response({"object": "list", "data": data}, request_id=call.request_id)


@key_get
async def retrieve_model(call, ctx, model_id: str):
    """GET /v1/models/{id} (the OpenAI SDK's models.retrieve): a model this key may use, by id, catalog alias or
    the team's own alias; 404 model_not_found for any other, so a key learns nothing of models it may not use."""
    snap = await snapshot.current()
    model, _ = snap.resolve_for(ctx.team_id, model_id)
    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models, key_models=ctx.key_models)
    if model is None or (allowed is not None and model.public_id not in allowed):
        raise errors.model_not_found(redact(model_id))
    return json_response(_model_object(model), request_id=call.request_id)


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
        hint = (f"Tollgate serves /v1/chat/completions, /v1/responses, /v1/messages, /v1/embeddings and /v1/models "
                f"under the base URL {right}, and native Gemini under /v1beta/models.")
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
    checks: dict[str, bool | str] = {}
    for name, check in (("database", _check_db), ("cache", shared_cache.ping)):
        try:
            checks[name] = bool(await db_call(check)())
        except Exception as exc:  # readiness reports, it does not raise
            checks[name] = False
            checks[f"{name}_error"] = type(exc).__name__
    # One dependency down is "degraded", still ready: the relay keeps serving (docs/reliability.md), and a load
    # balancer that pulled every instance would turn a fail-soft outage into a total one.
    up = [checks["database"], checks["cache"]]
    status = "ok" if all(up) else "degraded" if any(up) else "unavailable"
    body = {"status": status, "checks": checks, "config_version": await _config_version()}
    return json_response(body, status=503 if status == "unavailable" else 200)


async def _config_version() -> str | None:
    """The catalog and routing version this process serves (routing.catalog.bump_version): a change has
    reached it once this is the shared version."""
    try:
        version = (await snapshot.current(now=True)).version
    except Exception:   # readiness reports, it does not raise (a failed reload keeps the last snapshot)
        return None
    return version.decode() if version else None
