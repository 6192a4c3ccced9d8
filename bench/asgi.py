"""`make bench` only: the production ASGI application, with the bare relay's path in front of it.

/bare/… runs through the same middleware-free handler as the relay's paths (gateway_site.asgi.RelayASGIHandler),
so the bare relay and Tollgate differ only by what Tollgate does; everything else, lifespan included, is the
production application unchanged.
"""
import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from gateway_site.asgi import RelayASGIHandler  # noqa: E402  (after the settings module is chosen)
from gateway_site.asgi import application as production  # noqa: E402

BENCH_PREFIXES = ("/bare/",)
_bare = RelayASGIHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(BENCH_PREFIXES):
        return await _bare(scope, receive, send)
    return await production(scope, receive, send)


gc.collect()
gc.freeze()
