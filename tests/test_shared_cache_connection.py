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
