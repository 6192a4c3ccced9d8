"""shared_cache's asyncio Redis connection (issue 14: cheaper per command): it packs commands as redis-py
does and bounds a write by the socket timeout with redis-py's own error."""
import asyncio
import socket

import pytest
import redis

from gateway_site import shared_cache


def test_it_packs_a_command_as_redis_py_does():
    ours, theirs = shared_cache._Connection(), redis.asyncio.Connection()
    args = ("SCRIPT EXISTS", "tg:x", b"\x00bytes", 12, -3, 2.5, "é")
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    with pytest.raises(redis.exceptions.DataError):
        ours.pack_command("SET", "tg:x", None)


def test_a_write_redis_does_not_take_times_out_as_redis_py_says():
    """A server that accepts and never reads: the write is cut at the socket timeout, the connection closed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    async def scenario():
        conn = shared_cache._Connection(host="127.0.0.1", port=server.getsockname()[1], socket_timeout=0.2,
                                        health_check_interval=0)
        # Connected by hand: this server takes no handshake (redis-py's connect() would wait for one).
        conn._reader, conn._writer = await asyncio.open_connection("127.0.0.1", server.getsockname()[1])
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis.exceptions.TimeoutError):
            await conn.send_packed_command([b"x" * 64 * 1024 * 1024])
        return loop.time() - started, conn.is_connected

    try:
        took, connected = asyncio.run(scenario())
    finally:
        server.close()
    assert 0.15 < took < 2 and not connected


# --- the bounded pool (issue 14: 1,000 streams opened 1,000 Redis connections and kept them) -------------------
@pytest.fixture
def small_pool(settings, monkeypatch):
    """shared_cache's asyncio client with a pool of 2 that waits 0.3 s for a free connection."""
    settings.TOLLGATE_REDIS_MAX_CONNECTIONS = 2
    settings.TOLLGATE_REDIS_POOL_TIMEOUT_SECONDS = 0.3
    monkeypatch.setattr(shared_cache, "_async_clients", {})
    yield
    outage = shared_cache.outage
    if outage.probe is not None:
        outage.probe.cancel()
    outage.down_since, outage.probe, outage.loop = None, None, None


def _counting_connections(pool) -> list:
    """The pool's new connections, one item each."""
    opened: list = []
    make = pool.make_connection
    pool.make_connection = lambda: opened.append(1) or make()
    return opened


def test_a_burst_shares_the_pools_few_connections(small_pool):
    async def scenario():
        client = shared_cache.async_client()
        pool = client.connection_pool
        opened = _counting_connections(pool)
        await shared_cache.aset("tg:test:pool", b"1")
        values = await asyncio.gather(*(shared_cache.aget("tg:test:pool") for _ in range(200)))
        await client.aclose()
        return values, len(opened)

    values, opened = asyncio.run(scenario())
    assert values == [b"1"] * 200 and opened == 2
    assert shared_cache.outage.down_since is None


def test_a_command_waits_for_a_released_connection(small_pool):
    async def scenario():
        client = shared_cache.async_client()
        pool = client.connection_pool
        opened = _counting_connections(pool)
        held = [await pool.get_connection() for _ in range(2)]
        waiting = asyncio.create_task(client.ping())
        for _ in range(5):
            await asyncio.sleep(0)
        queued = not waiting.done()
        await pool.release(held.pop())
        result = await waiting
        await pool.release(held.pop())
        await client.aclose()
        return queued, result, len(opened)

    queued, result, opened = asyncio.run(scenario())
    assert queued and result is True and opened == 2   # the ping took the released connection, no third one


def test_no_free_connection_in_time_is_an_outage_not_a_hang(small_pool):
    """All connections held past the wait: the command is served in-process and the outage noted."""
    async def scenario():
        client = shared_cache.async_client()
        pool = client.connection_pool
        held = [await pool.get_connection() for _ in range(2)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        value = await shared_cache.aget("tg:test:pool-full")
        took, down = loop.time() - started, shared_cache.outage.down_since is not None
        for conn in held:
            await pool.release(conn)
        assert not pool._slots.locked()   # every slot given back
        await client.aclose()
        return value, took, down

    value, took, down = asyncio.run(scenario())
    assert value is None and down and 0.25 < took < 2
