"""The cache shared by every gateway process: Redis when REDIS_URL is set, else one in-process dict.

The hot path uses the async methods (redis.asyncio, no thread hop); services use the sync ones. A thin
layer of its own rather than Django's cache because Django's async cache API runs in a thread.
"""
import asyncio
import threading
import time

import redis
import redis.asyncio as aredis
from django.conf import settings


class MemoryStore:
    """The embedded default: one process, so a dict with expiry times is the whole shared cache. `lock` makes
    a read-modify-write of several keys atomic (billing.limits' in-process twin of its Redis scripts)."""

    def __init__(self):
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self.lock = threading.RLock()

    def get(self, key):
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires < time.monotonic():
            self._data.pop(key, None)
            return None
        return value

    def set(self, key, value, ttl=None, nx=False):
        if nx and self.get(key) is not None:
            return
        self._data[key] = (value, time.monotonic() + ttl if ttl else None)

    def incrby(self, key, amount: int, ttl=None) -> int:
        """Redis's INCRBY: a missing key counts from 0; the expiry is kept unless `ttl` is given (EXPIRE)."""
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] < time.monotonic():
            item = None
        value = (int(item[0]) if item else 0) + amount
        expires = time.monotonic() + ttl if ttl else (item[1] if item else None)
        self._data[key] = (str(value).encode(), expires)
        return value

    def delete(self, *keys):
        for key in keys:
            self._data.pop(key, None)


_memory = MemoryStore()
_sync_client = None
_async_clients: dict[asyncio.AbstractEventLoop, aredis.Redis] = {}


def _redis_url():
    return settings.REDIS_URL


def sync_client() -> redis.Redis | None:
    global _sync_client
    if not _redis_url():
        return None
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(_redis_url())
    return _sync_client


def async_client() -> aredis.Redis | None:
    if not _redis_url():
        return None
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # redis-py's default cap raises under a burst; a blocking pool costs a Condition per call on the hot
        # path (`make bench`). A plain pool with a high cap: one connection per request in flight.
        pool = aredis.ConnectionPool.from_url(_redis_url(), max_connections=10_000)
        client = _async_clients[loop] = aredis.Redis(connection_pool=pool)
    return client


def memory_store() -> MemoryStore:
    """The in-process store the embedded default (no REDIS_URL) keeps everything in."""
    return _memory


async def aget(key: str) -> bytes | None:
    client = async_client()
    return await client.get(key) if client else _memory.get(key)


async def aset(key: str, value: bytes, ttl: int | None = None) -> None:
    client = async_client()
    if client:
        await client.set(key, value, ex=ttl)
    else:
        _memory.set(key, value, ttl)


def get(key: str) -> bytes | None:
    client = sync_client()
    return client.get(key) if client else _memory.get(key)


def set(key: str, value: bytes, ttl: int | None = None, *, nx: bool = False) -> None:  # noqa: A001 - the cache verb
    """`nx`: only when the key is not there yet (a counter rebuilt while another process already did)."""
    client = sync_client()
    if client:
        client.set(key, value, ex=ttl, nx=nx)
    else:
        _memory.set(key, value, ttl, nx=nx)


def incr_existing(key: str, amount: int) -> None:
    """Move a counter by `amount` if it is cached (a missing one is rebuilt by whoever needs it next)."""
    client = sync_client()
    if client:
        if client.exists(key):
            client.incrby(key, amount)
        return
    with _memory.lock:
        if _memory.get(key) is not None:
            _memory.incrby(key, amount)


def delete(*keys: str) -> None:
    client = sync_client()
    if client:
        client.delete(*keys)
    else:
        _memory.delete(*keys)


def ping() -> bool:
    client = sync_client()
    return bool(client.ping()) if client else True


class LocalTTL:
    """A per-process map whose entries live a fraction of a second: the first layer in front of the cache."""

    def __init__(self, ttl: float, max_items: int = 100_000):
        self.ttl, self.max_items = ttl, max_items
        self._data: dict = {}

    def get(self, key):
        item = self._data.get(key)
        if item is not None and item[1] > time.monotonic():
            return item[0]
        return None

    def put(self, key, value):
        if len(self._data) >= self.max_items:
            self._data.clear()  # bounded memory; a refill costs one cache round trip per key
        self._data[key] = (value, time.monotonic() + self.ttl)

    def clear(self):
        self._data.clear()
