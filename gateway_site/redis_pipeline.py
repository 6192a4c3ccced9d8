"""Pipelined Redis round trips for the relay's hot path, without redis-py's per-command machinery.

Each request reserves and settles its limits through a pipeline (billing.limits). redis-py spends ~35 µs of CPU
per command on retries, response callbacks, health checks and per-reply parsing (`make bench`); here hiredis
packs the whole batch and parses every reply in C, on a few plain asyncio connections of our own. Same
timeouts and the same errors as the redis-py client (`redis.exceptions.*`, so `shared_cache.UNREACHABLE` and
`NoScriptError` mean what they mean there), and the same one retry on a new connection when the server closed
an idle one. Used for redis:// URLs when hiredis is installed; anything else goes through redis-py.
"""
import asyncio
from urllib.parse import unquote, urlsplit

import hiredis
import redis

_ERRORS = {"NOSCRIPT": redis.exceptions.NoScriptError, "READONLY": redis.exceptions.ReadOnlyError,
           "BUSY": redis.exceptions.BusyLoadingError, "LOADING": redis.exceptions.BusyLoadingError}


def reply_error(error: Exception) -> Exception:
    """A Redis error reply as redis-py raises it (NOSCRIPT is NoScriptError, READONLY ReadOnlyError…)."""
    message = str(error)
    code, _, rest = message.partition(" ")
    kind = _ERRORS.get(code)
    if kind is None:
        return redis.exceptions.ResponseError(message)
    return kind(rest)


class _Connection:
    __slots__ = ("reader", "writer", "parser")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.parser = hiredis.Reader(replyError=redis.exceptions.ResponseError)

    async def replies(self, count: int) -> list:
        out: list = []
        parser, reader = self.parser, self.reader
        while len(out) < count:
            reply = parser.gets()
            if reply is False:
                data = await reader.read(65536)
                if not data:
                    raise redis.exceptions.ConnectionError("Connection closed by server.")
                parser.feed(data)
                continue
            out.append(reply_error(reply) if isinstance(reply, redis.exceptions.ResponseError) else reply)
        return out

    def close(self) -> None:
        self.writer.close()


class Pipelines:
    """Connections to one Redis, for one event loop: at most `max_open` round trips at once (one more waits its
    turn up to `wait_seconds`, then fails as an unreachable Redis does: a slow Redis must not be answered with a
    connection per request), at most `max_idle` connections kept between them."""

    def __init__(self, url: str, *, connect_timeout: float, timeout: float, max_idle: int = 8,
                 max_open: int = 32, wait_seconds: float = 2.0):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        path = parts.path.lstrip("/")
        self.db = int(path) if path else 0
        self.connect_timeout, self.timeout, self.max_idle = connect_timeout, timeout or None, max_idle
        self.idle: list[_Connection] = []
        self.max_open, self.wait_seconds = max_open, wait_seconds
        self._turns = asyncio.Semaphore(max_open)

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = _Connection(*await asyncio.open_connection(self.host, self.port))
        except TimeoutError:
            raise redis.exceptions.TimeoutError("Timeout connecting to server") from None
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"Error connecting to {self.host}:{self.port}: {exc}") from None
        setup = []
        if self.password is not None:
            setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        if setup:
            try:
                for reply in await self._round_trip(conn, setup):
                    if isinstance(reply, Exception):
                        raise redis.exceptions.ConnectionError(f"Redis refused the connection setup: {reply}")
            except BaseException:
                conn.close()
                raise
        return conn

    async def _round_trip(self, conn: _Connection, commands) -> list:
        conn.writer.write(b"".join([hiredis.pack_command(command) for command in commands]))
        try:
            async with asyncio.timeout(self.timeout):
                return await conn.replies(len(commands))
        except TimeoutError:
            raise redis.exceptions.TimeoutError("Timeout reading from socket") from None
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"Error while reading from Redis: {exc}") from None

    async def execute(self, commands: list[tuple]) -> list:
        """Every command's reply in order; an error reply is its exception (not raised), as redis-py's
        `execute(raise_on_error=False)`. A connection error or timeout is raised."""
        if self._turns.locked():
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await self._turns.acquire()
            except TimeoutError:
                raise redis.exceptions.ConnectionError(
                    f"no Redis pipeline free within {self.wait_seconds:g} s ({self.max_open} in flight)") from None
        else:
            await self._turns.acquire()   # returns at once
        try:
            return await self._execute(commands)
        finally:
            self._turns.release()

    async def _execute(self, commands: list[tuple]) -> list:
        for retry in (False, True):
            reused = bool(self.idle) and not retry
            conn = self.idle.pop() if reused else await self._connect()
            try:
                replies = await self._round_trip(conn, commands)
            except redis.exceptions.ConnectionError:
                conn.close()
                if reused:   # the server closed it while it was idle (a restart): once more on a new one
                    continue
                raise
            except BaseException:   # a timeout, a cancellation: replies may still come, so the connection goes
                conn.close()
                raise
            if len(self.idle) < self.max_idle:
                self.idle.append(conn)
            else:
                conn.close()
            return replies
        raise AssertionError("unreachable")   # pragma: no cover

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
