"""The raw ASGI app: routing, auth, fault injection, the request log and the /_sim control endpoints.

Upstream routes (each provider module builds a `Provider`, listed in PROVIDERS):
  OpenAI     POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models[/ID]   Authorization: Bearer
  Anthropic  POST /v1/messages, POST /v1/messages/count_tokens          x-api-key (or Bearer) + anthropic-version
  Gemini     POST /v1beta/models/MODEL:generateContent, :streamGenerateContent[?alt=sse]   x-goog-api-key or ?key=

Control endpoints (no auth):
  GET    /_sim/health              {"ok": true}
  GET    /_sim/requests?limit=N    the last N requests received, API keys (headers, ?key=) masked to their last 4 chars
  DELETE /_sim/requests            forget them
  GET    /_sim/faults              the scripted faults
  POST   /_sim/faults              {"key": "<api key>" or "*", "fault": "<spec>", "count": N or null}
  DELETE /_sim/faults[?key=K]      clear the scripted faults (of one key)
"""

import asyncio
import itertools
import re
import time
from collections import deque
from dataclasses import asdict
from urllib.parse import parse_qs

import orjson

from . import anthropic_api, faults, gemini_api, openai_api, responses_api
from .core import ApiError, Reply, Request, read_directives

PROVIDERS = (openai_api.PROVIDER, anthropic_api.PROVIDER, gemini_api.PROVIDER, responses_api.PROVIDER)
HISTORY = 200
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})
_QUERY_KEY = re.compile(r"(?<![^&])key=([^&]*?)([^&]{0,4})(?=&|$)")


class Disconnect(Exception):
    """Raised mid-response so that the server drops the connection (the `break` fault).

    ASGI has no abort message; granian logs the traceback, which names this class."""

    def __init__(self):
        super().__init__("simulated 'break' fault: connection dropped on purpose")


class Simulator:
    def __init__(self, providers=PROVIDERS, history=HISTORY):
        self.routes = {route: (p, handler) for p in providers for route, handler in p.routes.items()}
        self.prefix_routes = [(m, prefix, p, handler) for p in providers for m, prefix, handler in p.prefix_routes]
        self.fallback = providers[0]  # renders errors for unknown paths
        self.requests = deque(maxlen=history)  # bounded: the benchmark sends millions
        self.script = faults.Script()
        self._ids = itertools.count(1)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope, receive, send):
        method, path = scope["method"], scope["path"]
        body = await _read_body(receive)
        if path.startswith("/_sim/"):
            status, payload = self._control(method, path, scope["query_string"], body)
            return await _send_body(send, Reply(orjson.dumps(payload), status=status), None)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        req = Request(method, path, scope["query_string"], headers, body)
        req.id = "req_%024x" % next(self._ids)
        self.requests.append((time.time(), req))
        provider, handler = self._route(method, path)
        reply, output = await self._handle(provider, handler, req, receive)
        if reply is None:  # the client left while we stalled
            return
        reply.headers.append((provider.id_header, req.id.encode()))
        if reply.events is None:
            await _send_body(send, reply, output)
        else:
            await _send_stream(send, receive, reply, output, provider, req.options.chunk_delay_ms / 1000)

    def _route(self, method, path):
        hit = self.routes.get((method, path))
        if hit:
            return hit
        for m, prefix, provider, handler in self.prefix_routes:
            if m == method and path.startswith(prefix):
                return provider, handler
        return self.fallback, None

    async def _handle(self, provider, handler, req, receive):
        """(reply, output fault); (None, None) when the client went away during a delay."""
        try:
            if handler is None:
                raise ApiError(404, f"Invalid URL ({req.method} {req.path})")
            req.key = provider.api_key(req)
            if req.body:
                try:
                    req.json = orjson.loads(req.body)
                except orjson.JSONDecodeError:
                    raise ApiError(400, provider.json_error) from None
            try:
                req.options, found = read_directives(
                    req.body, req.headers.get("x-sim-fault"), req.headers.get("x-sim-chunk-delay-ms"))
            except ValueError as e:
                raise ApiError(400, f"Simulator: {e}", code="simulator_error") from None
            found += self.script.take(req.key)
            if not found:
                return handler(req), None
            plan = faults.Plan(found)
            if plan.wait and not await _wait(receive, plan.wait):
                return None, None
            if plan.error:
                raise provider.fault_error(plan.error, req)
            reply = handler(req)
            if plan.output and plan.output.kind == "stream_error" and reply.events is None:
                raise provider.fault_error(plan.output, req)
            return reply, plan.output
        except ApiError as e:
            return provider.error(e, req), None

    def _control(self, method, path, query, body):
        params = parse_qs(query.decode())
        try:
            if (method, path) == ("GET", "/_sim/health"):
                return 200, {"ok": True}
            if path == "/_sim/requests" and method == "GET":
                limit = int(params.get("limit", [HISTORY])[0])
                recent = list(self.requests)[-limit:] if limit > 0 else []
                return 200, {"requests": [_describe(t, r) for t, r in recent]}
            if path == "/_sim/requests" and method == "DELETE":
                self.requests.clear()
                return 200, {"ok": True}
            if path == "/_sim/faults" and method == "GET":
                return 200, {"faults": [asdict(r) for r in self.script.rules]}
            if path == "/_sim/faults" and method == "POST":
                data = orjson.loads(body)
                rule = self.script.add(data["key"], data["fault"], data.get("count"))
                return 200, {"ok": True, "fault": asdict(rule)}
            if path == "/_sim/faults" and method == "DELETE":
                self.script.clear(params.get("key", [None])[0])
                return 200, {"ok": True}
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"error": f"{type(e).__name__}: {e}"}
        return 404, {"error": f"no control endpoint {method} {path}"}


def create_app(**kwargs) -> Simulator:
    return Simulator(**kwargs)


app = create_app()


# --- ASGI helpers ---------------------------------------------------------------------------------

async def _read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    return body


async def _wait(receive, seconds) -> bool:
    """Sleep, cut short if the client disconnects; True if it is still there."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
        return False
    except TimeoutError:
        return True


async def _start(send, reply, length=None):
    headers = [(b"content-type", reply.content_type), *reply.headers]
    if length is None:
        headers.append((b"cache-control", b"no-cache"))
    else:
        headers.append((b"content-length", b"%d" % length))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})


def _corrupt(data: bytes) -> bytes:
    return data.replace(b'"', b"'", 2)  # JSON with single quotes, as a sloppy upstream would send


async def _send_body(send, reply, fault):
    body, kind = reply.body, fault and fault.kind
    if kind == "break":  # promise the whole body, deliver half, hang up
        await _start(send, reply, len(body))
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        raise Disconnect
    if kind == "empty":
        body = b""
    elif kind == "truncate":
        body = body[: len(body) // 2]
    elif kind == "invalid_json":
        body = _corrupt(body)
    await _start(send, reply, len(body))
    await send({"type": "http.response.body", "body": body})


async def _send_stream(send, receive, reply, fault, provider, delay):
    frames, kind = reply.events, fault and fault.kind
    if kind == "empty":
        frames = []
    elif kind == "truncate":
        size, cut = sum(map(len, frames)) // 2, []
        for frame in frames:
            if size <= 0:
                break
            cut.append(frame[:size])
            size -= len(frame)
        frames = cut
    elif kind == "invalid_json":
        i = min(1, len(frames) - 1)
        frames[i] = _corrupt(frames[i])
    elif kind in ("break", "stream_error"):
        frames = frames[: fault.arg] + ([provider.stream_error()] if kind == "stream_error" else [])
    await _start(send, reply)
    gone = asyncio.ensure_future(receive())  # resolves on http.disconnect: stop producing then
    try:
        for i, frame in enumerate(frames):
            if i and delay:
                await asyncio.sleep(delay)
            if gone.done():
                return
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if kind == "break":
            raise Disconnect
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()


def _describe(t, req) -> dict:
    try:
        body = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError:
        body = req.body.decode("utf-8", "replace")
    headers = {k: "***" + v[-4:] if k in _SECRET_HEADERS else v for k, v in req.headers.items()}
    query = _QUERY_KEY.sub(r"key=***\2", req.query.decode("latin-1"))
    return {"time": t, "method": req.method, "path": req.path, "query": query, "headers": headers, "body": body}
