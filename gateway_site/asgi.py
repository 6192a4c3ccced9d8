"""ASGI entry point.

Two Django handlers share one process: the relay's paths (/v1/…, health) run through a handler with no
middleware, because every middleware costs on the hot path and the relay needs none of the console's
(sessions, CSRF, messages); everything else runs the full stack. The wrapper also answers ASGI lifespan
events, which Django does not, to start and stop the usage-journal flusher.
"""
import os

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_site.settings")
django.setup(set_prefix=False)

RELAY_PREFIXES = ("/v1/", "/v1beta/", "/healthz", "/readyz", "/bare/")


class RelayASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        with override_settings(MIDDLEWARE=[]):
            super().load_middleware(is_async=is_async)


def build_application():
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from billing import usage_journal

    relay = RelayASGIHandler()
    console = ASGIStaticFilesHandler(ASGIHandler()) if settings.TOLLGATE_SERVE_STATIC else ASGIHandler()

    async def application(scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith(RELAY_PREFIXES) or path == "/v1":
                return await relay(scope, receive, send)
            return await console(scope, receive, send)
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await usage_journal.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await usage_journal.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raise ValueError(f"unsupported ASGI scope {kind}")

    return application


application = build_application()
