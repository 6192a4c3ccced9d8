"""ASGI entry point.

Two Django handlers share one process: the relay's paths (/v1/…, health) run through a handler with no
middleware, because every middleware costs on the hot path and the relay needs none of the console's
(sessions, CSRF, messages); everything else runs the full stack. The wrapper also answers ASGI lifespan
events, which Django does not, to start and stop the usage-journal flusher and, in the embedded default, the
periodic work (gateway_site/periodic.py).

The embedded default (no REDIS_URL) keeps the shared cache — limits, holds, key contexts, the catalog
version — in this process, so it serves from exactly one process: a second one (`WORKERS=2 make serve`
without Redis, or a second `make run` on the same database) refuses to start, with a message saying why.
"""
import asyncio
import fcntl
import gc
import os

import django
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

from gateway_site.malloc_trim import burst_trim

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_site.settings")
django.setup(set_prefix=False)

RELAY_PREFIXES = ("/v1/", "/v1beta/", "/api/v1/", "/healthz", "/readyz")   # /api/v1: OpenRouter's base URL
_embedded_lock_fd: int | None = None


def _embedded_lock_path():
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and str(db["NAME"]) != ":memory:":
        return f"{db['NAME']}.gateway.lock"
    return str(settings.TOLLGATE_JOURNAL_DIR / "gateway.lock")


def claim_embedded_process() -> str | None:
    """Without Redis, take the one-gateway-process lock; returns why not when another process holds it."""
    global _embedded_lock_fd
    if settings.REDIS_URL or _embedded_lock_fd is not None:
        return None
    path = _embedded_lock_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return (f"another gateway process already serves this database without Redis ({path} is locked). "
                "The embedded default keeps limits, holds and live-configuration versions in one process: "
                "run one worker (make run), or set REDIS_URL to run several (WORKERS=4 make serve).")
    _embedded_lock_fd = fd
    return None


class BodyTimeout(Exception):
    """The client did not send its whole body within TOLLGATE_BODY_TIMEOUT_SECONDS."""


class BodyDeadline:
    """Reads the body under a deadline: a client that trickles (or stops half-way) gets a 408."""

    async def read_body(self, receive):
        seconds = settings.TOLLGATE_BODY_TIMEOUT_SECONDS
        try:
            async with asyncio.timeout(seconds if seconds > 0 else None):
                return await super().read_body(receive)
        except TimeoutError:
            raise BodyTimeout from None


def body_timeout_response(path: str):
    """The 408 for a body too slow, in the route's format (a relay path) or as plain JSON (the console)."""
    from routing.relay import errors, formats
    from routing.relay.views import format_of_path

    seconds = settings.TOLLGATE_BODY_TIMEOUT_SECONDS
    err = errors.RelayError(408, "invalid_request_error", "request_timeout",
                            f"The request body was not received within {seconds:g} seconds. Send the whole body "
                            "at once (the limit is TOLLGATE_BODY_TIMEOUT_SECONDS).")
    response = formats.of(format_of_path(path)).error_response(err, "req_" + os.urandom(12).hex())
    response["Connection"] = "close"
    return response


class ConsoleASGIHandler(BodyDeadline, ASGIHandler):
    """Django's handler for the console, the management API and static files, with the body deadline."""

    async def handle(self, scope, receive, send):
        try:
            await super().handle(scope, receive, send)
        except BodyTimeout:  # raised before anything was sent
            await self.send_response(body_timeout_response(scope["path"]), send)


class RelayASGIHandler(BodyDeadline, ASGIHandler):
    """Django's ASGI handler minus what the relay does not need and pays for on every request: middleware,
    the per-request ThreadSensitiveContext (a new executor thread per request in asgiref 3.13) and the
    request_started/finished signals with their thread hops (their receivers manage DB connections; the
    relay's few DB calls run through `routing.relay.db.db_call`, which does that itself). Measured with
    `make bench`: CPU per request roughly halved (README, performance)."""

    def load_middleware(self, is_async=False):
        with override_settings(MIDDLEWARE=[]):
            super().load_middleware(is_async=is_async)

    async def __call__(self, scope, receive, send):
        burst_trim.enter()
        try:
            await self.handle(scope, receive, send)
        finally:
            burst_trim.leave()

    async def handle(self, scope, receive, send):
        # Django 5.2's ASGIHandler.handle without the signals and the sync_to_async(response.close) hop.
        try:
            body_file = await self.read_body(receive)
        except BodyTimeout:
            await self.send_response(body_timeout_response(scope["path"]), send)
            return
        except RequestAborted:
            # The client went away, or the server could not read the body (a malformed chunked encoding
            # ends the same way): the answer for the latter, a JSON 400, is harmless for the former.
            from routing.relay.views import unreadable_body
            try:
                await self.send_response(unreadable_body(scope["path"]), send)
            except Exception:  # nobody is listening
                pass
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected during send_response
            return response

        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)),
                 asyncio.create_task(process_request(request, send))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                # exception(), not result(): re-raising the listener's RequestAborted here would put this frame
                # in its traceback, a cycle holding the request, its body and its response (and the tasks) for
                # a full collection: seconds after a burst of 1,000 streams, ~900 of them (README, memory).
                error = task.exception()
                if error is not None and not isinstance(error, RequestAborted):
                    if isinstance(error, AssertionError):
                        body_file.close()
                    raise error
            else:
                task.cancel()  # lets a streaming view see the client go away
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        body_file.close()


def build_application():
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from billing import usage_journal
    from gateway_site import periodic
    from routing import tokens

    tokens.warm()  # the tokenizer's ~0.3 s load, before serving (and before gc.freeze below)
    relay = RelayASGIHandler()
    console = ASGIStaticFilesHandler(ConsoleASGIHandler()) if settings.TOLLGATE_SERVE_STATIC else ConsoleASGIHandler()

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
                    refused = claim_embedded_process()
                    if refused:   # the server prints the message and stops
                        await send({"type": "lifespan.startup.failed", "message": refused})
                        return
                    await usage_journal.start()
                    await periodic.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await periodic.stop()
                    await usage_journal.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raise ValueError(f"unsupported ASGI scope {kind}")

    return application


application = build_application()
# Everything loaded so far lives as long as the process: keep it out of the collector's full passes, which
# otherwise stall every request in flight for ~100 ms every few seconds under load.
gc.collect()
gc.freeze()
