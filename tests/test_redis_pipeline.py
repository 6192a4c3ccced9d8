"""The hot path's pipelines (gateway_site.redis_pipeline) against the real Redis: replies and error replies as
redis-py gives them, the database of the URL, one retry when the server closed an idle connection, and a
Redis that is not there or does not answer as redis-py's ConnectionError / TimeoutError (the outage path)."""
import asyncio
import socket
import uuid

import pytest
import redis

from gateway_site import redis_pipeline, shared_cache


def lean(url=None, timeout=2.0):
    return redis_pipeline.Pipelines(url or shared_cache._redis_url(), connect_timeout=0.5, timeout=timeout)


def test_replies_in_order_with_error_replies_as_redis_py_raises_them(db):
    key = "tg:test:lean:" + uuid.uuid4().hex

    async def scenario():
        pipes = lean()
        try:
            return await pipes.execute([("SET", key, b"v", "EX", 30), ("INCRBY", key, 1),
                                        ("EVALSHA", "0" * 40, 0), ("GET", key), ("DEL", key)])
        finally:
            pipes.close()

    ok, not_a_number, noscript, value, deleted = asyncio.run(scenario())
    assert (ok, value, deleted) == (b"OK", b"v", 1)
    assert type(not_a_number) is redis.exceptions.ResponseError and "not an integer" in str(not_a_number)
    assert isinstance(noscript, redis.exceptions.NoScriptError)


def test_commands_reach_the_database_the_url_names(db):
    """The test Redis URL names a database of its own (REDIS_URL=…/N): SELECT on connect."""
    key = "tg:test:lean-db:" + uuid.uuid4().hex

    async def scenario():
        pipes = lean()
        try:
            await pipes.execute([("SET", key, b"here", "EX", 30)])
        finally:
            pipes.close()

    asyncio.run(scenario())
    client = redis.Redis.from_url(shared_cache._redis_url())
    assert client.get(key) == b"here"
    kwargs = client.connection_pool.connection_kwargs
    other = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=(kwargs.get("db", 0) + 1) % 16)
    assert other.get(key) is None
    client.delete(key)


def test_an_idle_connection_the_server_closed_is_replaced_once(db):
    async def scenario():
        pipes = lean()
        try:
            [client_id] = await pipes.execute([("CLIENT", "ID")])
            assert len(pipes.idle) == 1
            assert redis.Redis.from_url(shared_cache._redis_url()).client_kill_filter(_id=client_id) == 1
            pong, new_id = await pipes.execute([("PING",), ("CLIENT", "ID")])
            return pong, new_id != client_id, len(pipes.idle)
        finally:
            pipes.close()

    assert asyncio.run(scenario()) == (b"PONG", True, 1)


def test_a_redis_that_is_not_there_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed again: nothing listens there

    async def scenario():
        await lean(f"redis://127.0.0.1:{port}/0").execute([("PING",)])

    with pytest.raises(redis.exceptions.ConnectionError):
        asyncio.run(scenario())


def test_a_redis_that_does_not_answer_is_a_timeout_and_its_connection_is_dropped():
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)   # accepts, never answers
        port = server.sockets[0].getsockname()[1]
        pipes = lean(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                await pipes.execute([("PING",)])
            return len(pipes.idle)
        finally:
            server.close()

    assert asyncio.run(scenario()) == 0


def test_the_shared_client_uses_them_and_closes_them_with_its_pool(db):
    async def scenario():
        client = shared_cache._async_client_for(asyncio.get_running_loop())
        pipes = client.connection_pool.lean
        assert isinstance(pipes, redis_pipeline.Pipelines)
        assert await shared_cache.execute_pipeline(client, [("PING",), ("ECHO", "x")]) == [b"PONG", b"x"]
        assert len(pipes.idle) == 1
        shared_cache._async_clients.pop(asyncio.get_running_loop())
        await client.connection_pool.disconnect()
        return len(pipes.idle)

    assert asyncio.run(scenario()) == 0


def test_round_trips_past_the_bound_wait_their_turn_then_fail_as_an_unreachable_redis():
    """A Redis that answers slowly is not met with a connection per request: `max_open` round trips at once."""
    async def scenario():
        accepted = []

        async def slow(reader, writer):   # a Redis that reads and never answers
            accepted.append(writer)
            await reader.read(1024)

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pipes = redis_pipeline.Pipelines(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5, timeout=5,
                                         max_open=2, wait_seconds=0.2)
        try:
            first = [asyncio.ensure_future(pipes.execute([("PING",)])) for _ in range(2)]
            await asyncio.sleep(0.1)
            with pytest.raises(redis.exceptions.ConnectionError, match="no Redis pipeline free"):
                await pipes.execute([("PING",)])
            for task in first:
                task.cancel()
            await asyncio.gather(*first, return_exceptions=True)
            return len(accepted)
        finally:
            server.close()

    assert asyncio.run(scenario()) == 2
