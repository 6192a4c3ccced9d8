"""Database work from async code. The relay's ASGI handler sends no request_started/finished signals (they
cost a thread hop per request), so the few DB calls it makes close stale or broken connections themselves."""
from functools import wraps

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections


def db_call(fn):
    """`fn` run off the event loop (Django's one DB thread), after dropping unusable or expired connections.
    A kept connection is health-checked before its first query (CONN_HEALTH_CHECKS for these calls): after a
    PostgreSQL restart the first call reconnects instead of failing on the dead socket."""

    @wraps(fn)
    def run(*args, **kwargs):
        close_old_connections()
        for conn in connections.all(initialized_only=True):
            conn.health_check_enabled = True
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=True)
