"""Database work from async code. The relay's ASGI handler sends no request_started/finished signals (they
cost a thread hop per request), so the few DB calls it makes close stale or broken connections themselves."""
from functools import wraps

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def db_call(fn):
    """`fn` run off the event loop (Django's one DB thread), after dropping unusable or expired connections."""

    @wraps(fn)
    def run(*args, **kwargs):
        close_old_connections()
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=True)
