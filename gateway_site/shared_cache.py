"""The cache shared by every gateway process: Redis when REDIS_URL is set, else one in-process dict.

The hot path uses the async methods (redis.asyncio, no thread hop); services use the sync ones. A thin
layer of its own rather than Django's cache because Django's async cache API runs in a thread.

Redis fails soft (docs/reliability.md): a connection error marks it down for this process (`outage`), and
until a probe reaches it again `async_client()`/`sync_client()` answer None, so every caller runs its
in-process twin against the same dict the embedded default uses (emptied when an outage starts: nothing
stale from an earlier one). Pooled connections are health-checked and a command on a connection the server
closed is retried once on a new one, so the first requests after a restart do not fail.
"""
import asyncio
import logging
import os
import threading
import time
import uuid

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

try:
    import hiredis

    from gateway_site import redis_pipeline
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency; without it redis-py packs
    hiredis = None

log = logging.getLogger(__name__)
# What says "Redis is not there" (refused, reset, timed out, still loading its data, a read-only replica)
# rather than a bug in a command.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
               OSError)
EPOCH_KEY = "tg:epoch"   # a random id set when a Redis starts empty: a new one means its data was lost


class MemoryStore:
    """The embedded default: one process, so a dict with expiry times is the whole shared cache. `lock` makes
    a read-modify-write of several keys atomic (billing.limits' in-process twin of its Redis scripts)."""

    def __init__(self, max_items: int = 200_000):
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self.lock = threading.RLock()
        self.max_items = max_items

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
        with self.lock:   # a counter rebuilt from the database thread while the loop reserves
            if nx and self.get(key) is not None:
                return
            self._bound()
            self._data[key] = (value, time.monotonic() + ttl if ttl else None)

    def _bound(self) -> None:
        """Bounded memory: past `max_items`, expired entries go (entries are otherwise dropped only when read)."""
        if len(self._data) < self.max_items:
            return
        now = time.monotonic()
        with self.lock:
            for key in [k for k, (_, expires) in self._data.items() if expires is not None and expires < now]:
                self._data.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self._data.clear()

    def incrby(self, key, amount: int, ttl=None) -> int:
        """Redis's INCRBY: a missing key counts from 0; the expiry is kept unless `ttl` is given (EXPIRE)."""
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] < time.monotonic():
            item = None
        value = (int(item[0]) if item else 0) + amount
        expires = time.monotonic() + ttl if ttl else (item[1] if item else None)
        if item is None:
            self._bound()
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


def setting(name: str, default: float) -> float:
    """A number from the settings, else from the environment (the outage knobs of docs/reliability.md)."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


def _connection_options(retry_class) -> dict:
    """Timeouts (a hung Redis is an outage, not a hung request), a PING before reusing a connection idle
    longer than the interval, and one retry on a new connection when the server closed the pooled one."""
    return {
        "socket_connect_timeout": setting("TOLLGATE_REDIS_CONNECT_TIMEOUT_SECONDS", 0.5),
        "socket_timeout": setting("TOLLGATE_REDIS_TIMEOUT_SECONDS", 2.0),
        "health_check_interval": setting("TOLLGATE_REDIS_HEALTH_CHECK_SECONDS", 10),
        "retry": retry_class(NoBackoff(), 1),
        "retry_on_error": [redis.exceptions.ConnectionError],
    }


class Outage:
    """This process's view of Redis. `failed` (a connection error) marks it down; while down, callers get no
    client and run in-process. In a process with an event loop (the gateway) a background task pings every
    PROBE_SECONDS until Redis answers, then runs the recovery hooks (`on_recovery`) before any caller gets
    a client again; a process without one (console, Celery) tries again after the interval."""

    PROBE_SECONDS = 0.5

    def __init__(self):
        self.down_since: float | None = None     # time.time() of the first failure of the current outage
        self.retry_at = 0.0
        self.count = 0                           # outages since the process started
        self.fallbacks = 0                       # calls served in-process because Redis was down
        self.loop: asyncio.AbstractEventLoop | None = None   # the gateway's loop, where the probe runs
        self.probe: asyncio.Task | None = None
        self.hooks: list = []

    def _probing(self) -> bool:
        """Whether the gateway's loop ends outages in this process (the probe runs there)."""
        return self.loop is not None and not self.loop.is_closed()

    def sync_down(self) -> bool:
        if self.down_since is None:
            return False
        return self._probing() or time.monotonic() < self.retry_at

    def failed(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since, self.count = time.time(), self.count + 1
            _memory.clear()   # the in-process twin starts from nothing: counters are rebuilt from the database
            log.error("Redis unreachable (%s: %s): serving with this process's own limits until it is back "
                      "(docs/reliability.md)", type(exc).__name__, exc)
        self.retry_at = time.monotonic() + self.PROBE_SECONDS
        self.start_probe()

    def start_probe(self) -> None:
        """From any thread: make sure the probe runs on the gateway's loop (none: a sync-only process)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            if self.probe is None or self.probe.done():
                self.probe = loop.create_task(self._probe())
        else:
            loop.call_soon_threadsafe(self.start_probe)

    def served_locally(self) -> None:
        self.fallbacks += 1

    def recovered(self) -> None:
        """A sync call reached Redis again: ends the outage in a process without a loop (the gateway's probe
        ends it there, after its recovery hooks)."""
        if self.down_since is not None and not self._probing():
            self._up()

    def _up(self) -> None:
        log.warning("Redis is reachable again after %.1f s of outage", time.time() - self.down_since)
        self.down_since = None

    async def _probe(self) -> None:
        while self.down_since is not None:
            await asyncio.sleep(self.PROBE_SECONDS)
            client = _async_client_for(asyncio.get_running_loop())
            try:
                await client.ping()
                for hook in self.hooks:
                    await hook(client)
            except UNREACHABLE:
                continue
            except Exception:  # a hook's bug must not keep this process off Redis for good
                log.exception("Redis recovery hook failed")
            self._up()

    def on_recovery(self, hook) -> None:
        """`await hook(client)` once Redis answers again, before any caller gets a client."""
        if hook not in self.hooks:
            self.hooks.append(hook)


outage = Outage()


def redis_configured() -> bool:
    """REDIS_URL is set (Redis may still be down: see `outage`); False is the embedded default."""
    return bool(_redis_url())


def sync_client() -> redis.Redis | None:
    """None: the embedded default, or Redis is down for this process (use the in-process twin)."""
    global _sync_client
    if not _redis_url() or outage.sync_down():
        return None
    if _sync_client is None:
        pool = redis.ConnectionPool.from_url(_redis_url(), **_connection_options(Retry))
        _sync_client = redis.Redis(connection_pool=pool)
    return _sync_client


class _Connection(aredis.Connection):
    """redis-py's asyncio connection for redis:// URLs, cheaper per command on the hot path (`make bench`):
    hiredis packs the command (C, as redis-py's sync client does, instead of an isinstance check and a join
    per argument), and a write is bounded by asyncio.timeout instead of asyncio.wait_for, which on Python 3.11
    runs every write as a Task of its own. Same timeouts, same errors."""

    def pack_command(self, *args):
        if hiredis is None:
            return super().pack_command(*args)
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis.exceptions.DataError(str(exc)) from None

    async def send_packed_command(self, command, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        self.socket_timeout = None   # redis-py writes straight away then; the timeout around it bounds the write
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class _BoundedPool(aredis.ConnectionPool):
    """At most `max_connections` connections (TOLLGATE_REDIS_MAX_CONNECTIONS): a command past them waits for
    one to be released, in turn, up to `wait_seconds` (TOLLGATE_REDIS_POOL_TIMEOUT_SECONDS), then fails as an
    unreachable Redis does (the outage path), never hangs. An unbounded pool opened one connection per command
    in flight and kept them all (1,000 streams: 1,000 connections, ~19 MB for good); redis-py's blocking pool
    takes a Condition and a timeout on every call, where a free connection costs here one semaphore acquire
    that does not wait."""

    def __init__(self, *, wait_seconds: float, lean: "redis_pipeline.Pipelines | None" = None, **kwargs):
        super().__init__(**kwargs)
        self.wait_seconds = wait_seconds
        self._slots = asyncio.Semaphore(self.max_connections)   # one per connection handed out
        self.lean = lean   # the hot path's pipelines (execute_pipeline), closed with the pool

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()   # returns at once
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise redis.exceptions.ConnectionError(
                f"no Redis connection free within {self.wait_seconds:g} s "
                f"({self.max_connections} in use: TOLLGATE_REDIS_MAX_CONNECTIONS)") from None

    async def get_connection(self, *args, **kwargs):
        # redis-py's get_connection minus its metrics hooks, so that a slot is given back exactly once
        await self._take_slot()
        try:
            async with self._lock:
                connection = self.get_available_connection()
        except BaseException:
            self._slots.release()
            raise
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection) -> None:
        try:
            await super().release(connection)
        finally:
            self._slots.release()

    async def disconnect(self, inuse_connections: bool = True) -> None:
        if self.lean is not None:
            self.lean.close()
        await super().disconnect(inuse_connections)


def _async_client_for(loop) -> aredis.Redis:
    client = _async_clients.get(loop)
    if client is None:
        url = _redis_url()
        options = _connection_options(AsyncRetry)
        faster: dict = {}
        if url.startswith("redis://") and hiredis is not None:
            faster["connection_class"] = _Connection
            faster["lean"] = redis_pipeline.Pipelines(
                url, connect_timeout=options["socket_connect_timeout"], timeout=options["socket_timeout"],
                max_open=int(setting("TOLLGATE_REDIS_MAX_CONNECTIONS", 64)) // 2,
                wait_seconds=setting("TOLLGATE_REDIS_POOL_TIMEOUT_SECONDS", 2.0))
        pool = _BoundedPool.from_url(url, max_connections=setting("TOLLGATE_REDIS_MAX_CONNECTIONS", 64),
                                     wait_seconds=setting("TOLLGATE_REDIS_POOL_TIMEOUT_SECONDS", 2.0),
                                     **faster, **options)
        client = _async_clients[loop] = aredis.Redis(connection_pool=pool)
        outage.loop = loop
    return client


async def execute_pipeline(client: aredis.Redis, commands: list[tuple]) -> list:
    """Every command's reply in one round trip, an error reply as its exception (not raised); a connection
    error or timeout is raised. The hot path's pipelines (billing.limits): hiredis on connections of their own
    where the client has them (redis_pipeline), else redis-py's pipeline."""
    lean = getattr(client.connection_pool, "lean", None)
    if lean is not None:
        return await lean.execute(commands)
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return await pipe.execute(raise_on_error=False)


def async_client() -> aredis.Redis | None:
    """None: the embedded default, or Redis is down for this process (use the in-process twin) until the
    probe reached it again."""
    if not _redis_url():
        return None
    loop = asyncio.get_running_loop()
    if outage.down_since is not None:
        if outage.loop is None or outage.loop.is_closed():
            outage.loop = loop
        outage.start_probe()
        return None
    return _async_client_for(loop)


_known_epoch: bytes | None = None


async def data_lost(client) -> bool:
    """Whether Redis lost its data since this process last looked (restarted empty): reads its epoch key,
    setting a new one when there is none."""
    global _known_epoch
    epoch = await client.get(EPOCH_KEY)
    if epoch is None:
        await client.set(EPOCH_KEY, uuid.uuid4().hex.encode(), nx=True)
        epoch = await client.get(EPOCH_KEY)
    lost = _known_epoch is not None and epoch != _known_epoch
    _known_epoch = epoch
    return lost


def known_epoch() -> bytes | None:
    return _known_epoch


async def note_epoch(client) -> None:
    """Remember the epoch of the Redis this process uses, once (what `data_lost` compares with)."""
    if _known_epoch is None:
        await data_lost(client)


def memory_store() -> MemoryStore:
    """The in-process store the embedded default (no REDIS_URL) keeps everything in."""
    return _memory


async def aget(key: str) -> bytes | None:
    client = async_client()
    if client is not None:
        try:
            return await client.get(key)
        except UNREACHABLE as exc:
            outage.failed(exc)
    if _redis_url():
        outage.served_locally()
    return _memory.get(key)


async def aset(key: str, value: bytes, ttl: int | None = None) -> None:
    client = async_client()
    if client is not None:
        try:
            await client.set(key, value, ex=ttl)
            return
        except UNREACHABLE as exc:
            outage.failed(exc)
    _memory.set(key, value, ttl)


async def aset_many(items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
    """`aset` of several keys in one pipelined round trip."""
    client = async_client()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=ttl)
            await pipe.execute()
            return
        except UNREACHABLE as exc:
            outage.failed(exc)
    for key, value in items:
        _memory.set(key, value, ttl)


async def aexpire(key: str, ttl: int) -> None:
    """Keep a cached entry `ttl` seconds longer (an entry refreshed on use)."""
    client = async_client()
    if client is not None:
        try:
            await client.expire(key, ttl)
            return
        except UNREACHABLE as exc:
            outage.failed(exc)
    with _memory.lock:
        value = _memory.get(key)
        if value is not None:
            _memory.set(key, value, ttl)


def _sync(command, local):
    """Run `command(client)` on Redis, or `local()` on the in-process store when there is none or it is
    unreachable (the outage is noted)."""
    client = sync_client()
    if client is not None:
        try:
            result = command(client)
        except UNREACHABLE as exc:
            outage.failed(exc)
        else:
            outage.recovered()
            return result
    if _redis_url():
        outage.served_locally()
    return local()


def get(key: str) -> bytes | None:
    return _sync(lambda c: c.get(key), lambda: _memory.get(key))


def set(key: str, value: bytes, ttl: int | None = None, *, nx: bool = False) -> None:  # noqa: A001 - the cache verb
    """`nx`: only when the key is not there yet (a counter rebuilt while another process already did)."""
    _sync(lambda c: c.set(key, value, ex=ttl, nx=nx), lambda: _memory.set(key, value, ttl, nx=nx))


def delete(*keys: str) -> None:
    _sync(lambda c: c.delete(*keys), lambda: _memory.delete(*keys))


def ping() -> bool:
    """Whether the shared cache answers (readiness): False while Redis is down, even though callers are served
    in-process meanwhile."""
    if not _redis_url():
        return True
    client = sync_client()
    if client is None:
        return False
    try:
        result = bool(client.ping())
    except UNREACHABLE as exc:
        outage.failed(exc)
        return False
    outage.recovered()
    return result


def state() -> dict:
    """What the metrics and readiness say about the shared cache in this process."""
    return {"configured": bool(_redis_url()), "down": outage.down_since is not None,
            "down_seconds": time.time() - outage.down_since if outage.down_since else 0.0,
            "outages": outage.count, "fallbacks": outage.fallbacks}


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
