"""The raw ASGI relay: the bare relay without Django's request and response objects.

A plain ASGI callable: read the body from `receive`, forward it to BENCH_UPSTREAM_URL with the relay's aiohttp
session (routing.relay.upstream), hand the answer back through `send` (streamed as it comes when the upstream
streams). Measured next to the bare relay, it shows what Django's own layer costs per request. Routed only by
bench.asgi (/raw/…).
"""
from bench.bare_relay import HEADERS, UPSTREAM
from routing.relay.upstream import session


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def raw_chat_completions(scope, receive, send):
    body = await _read_body(receive)
    if body is None:
        return
    resp = await session().post(UPSTREAM, data=body, headers=HEADERS)
    try:
        content_type = resp.headers.get("Content-Type", "application/json").encode("latin-1")
        if not content_type.startswith(b"text/event-stream"):
            data = await resp.read()
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")]})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        resp.release()
