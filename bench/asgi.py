"""`make bench` only: the production ASGI application, with the bench's relays in front of it.

/bare/… (the bare Django relay, bench.urls) runs through the same middleware-free handler as the relay's paths
(gateway_site.asgi.RelayASGIHandler), so the bare relay and Tollgate differ only by what Tollgate does; /raw/…
is the raw ASGI relay (bench/raw_relay.py), no Django at all. Everything else, lifespan included, is the
production application unchanged.
"""
import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from bench.raw_relay import raw_chat_completions  # noqa: E402  (after the settings module is chosen)
from gateway_site.asgi import RelayASGIHandler  # noqa: E402
from gateway_site.asgi import application as production  # noqa: E402

_bare = RelayASGIHandler()


async def application(scope, receive, send):
    if scope["type"] == "http":
        path = scope["path"]
        if path.startswith("/bare/"):
            return await _bare(scope, receive, send)
        if path == "/raw/v1/chat/completions":
            return await raw_chat_completions(scope, receive, send)
    return await production(scope, receive, send)


gc.collect()
gc.freeze()
