"""The bare relay: what Django + granian + the relay's aiohttp session cost with no gateway feature at all.

No auth, no model lookup, no usage record: forward the body to BENCH_UPSTREAM_URL and hand back the answer
(streamed as it comes when the upstream streams). Routed only by bench.urls (bench.settings), never by
the production URLconf.
"""
import os

from django.http import HttpResponse, StreamingHttpResponse

from routing.relay.upstream import session

UPSTREAM = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9100/v1/chat/completions")
HEADERS = {"Authorization": "Bearer " + os.environ.get("BENCH_UPSTREAM_KEY", "sk-sim-bench"),
           "Content-Type": "application/json"}


async def bare_chat_completions(request):
    resp = await session().post(UPSTREAM, data=request.body, headers=HEADERS)
    content_type = resp.headers.get("Content-Type", "application/json")
    if not content_type.startswith("text/event-stream"):
        body = await resp.read()
        resp.release()
        return HttpResponse(body, status=resp.status, content_type=content_type)

    async def chunks():
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        finally:
            resp.release()

    return StreamingHttpResponse(chunks(), status=resp.status, content_type=content_type)
