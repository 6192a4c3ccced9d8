"""The upstream pool keeps at most TOLLGATE_UPSTREAM_MAX_IDLE_PER_HOST idle connections per host (a burst of
streams left one idle connection each, for the whole keep-alive timeout: README, memory), and still reuses
its connections on the warm path."""
import asyncio
import types

import aiohttp
import pytest
from aiohttp import web

from routing.relay import upstream


async def _serve(handler):
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


async def _until(condition, seconds=5.0):
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def _burst(cap: int, n: int) -> tuple[int, int]:
    """n requests at once through a pool capped at `cap` idle connections: (idle in the pool, connections the
    server still has open) once all are answered."""
    arrived, all_in = [0], asyncio.Event()

    async def handler(request):   # answers once all n are in, so each held a connection of its own
        arrived[0] += 1
        if arrived[0] == n:
            all_in.set()
        await all_in.wait()
        return web.Response(text="ok")

    runner, url = await _serve(handler)
    connector = upstream.BoundedIdleConnector(limit=0, max_idle_per_host=cap)
    try:
        async with aiohttp.ClientSession(connector=connector) as client:
            async def one():
                async with client.get(url) as resp:
                    return await resp.text()

            assert await asyncio.gather(*(one() for _ in range(n))) == ["ok"] * n
            idle = sum(connector.idle(key) for key in list(connector._conns))
            await _until(lambda: len(runner.server.connections) == idle)   # the others were closed
            return idle, len(runner.server.connections)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("cap, n, idle", [(3, 10, 3), (0, 4, 0), (-1, 4, 4)])   # -1: no bound
def test_a_burst_leaves_at_most_max_idle_connections_open(cap, n, idle):
    assert asyncio.run(_burst(cap, n)) == (idle, idle)


def test_sequential_requests_reuse_one_connection():
    async def run():
        peers = set()

        async def handler(request):
            peers.add(request.transport.get_extra_info("peername"))
            return web.Response(text="ok")

        runner, url = await _serve(handler)
        try:
            connector = upstream.BoundedIdleConnector(limit=0, max_idle_per_host=3)
            async with aiohttp.ClientSession(connector=connector) as client:
                for _ in range(20):
                    async with client.get(url) as resp:
                        assert await resp.text() == "ok"
            assert len(peers) == 1
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_the_session_bounds_its_pool_by_the_setting(settings):
    settings.TOLLGATE_UPSTREAM_MAX_IDLE_PER_HOST = 5

    async def run():
        connector = upstream._connector()
        try:
            return connector
        finally:
            await connector.close()

    connector = asyncio.run(run())
    assert isinstance(connector, upstream.BoundedIdleConnector)
    assert connector.max_idle_per_host == 5


def test_without_aiohttps_internals_the_pool_is_plain(settings, monkeypatch):
    assert upstream.BoundedIdleConnector.idle(types.SimpleNamespace(), "key") == 0   # no _conns: nothing counted
    monkeypatch.delattr(aiohttp.connector.BaseConnector, "_release")

    async def run():
        connector = upstream._connector()
        await connector.close()
        return connector

    connector = asyncio.run(run())
    assert type(connector) is aiohttp.TCPConnector
