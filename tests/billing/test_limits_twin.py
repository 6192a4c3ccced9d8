"""The embedded default's in-process twin of the limit scripts (billing.limits, no Redis) gives the same answers
and leaves the same counters as the Redis scripts, for one sequence of reservations, refusals and settles."""
import asyncio
import uuid

from billing import limits
from billing.limits import Check, Metric, Reservation, Scope
from gateway_site import shared_cache


def _counter(key):
    raw = shared_cache.get(key)
    return None if raw is None else int(raw)


async def _settled(res, cost, tokens):
    limits.settle_soon(res, cost, tokens)
    batcher = limits._batchers.get(asyncio.get_running_loop())
    if batcher is not None and batcher.task is not None:
        await batcher.task           # the Redis settle goes out in a batch a few milliseconds later


async def _scenario(p: str) -> list:
    shared_cache.set(f"{p}:spent", b"0", 3600)
    shared_cache.set(f"{p}:avail", b"500", 3600)
    checks = [
        Check("rate", f"{p}:rpm", 3, 1, scope=Scope.KEY),
        Check("rate", f"{p}:tpm", 150, 30, metric=Metric.TOKENS, scope=Scope.KEY),
        Check("conc", f"{p}:cc", 2, 1, scope=Scope.KEY),
        Check("budget", f"{p}:spent", 1000, 400, aux=f"{p}:held", scope=Scope.KEY),
        Check("balance", f"{p}:avail", 0, 400, aux=f"{p}:held-team", scope=Scope.BALANCE),
    ]
    names = ["rpm", "tpm", "cc", "spent", "held", "avail", "held-team"]
    steps, held = [], []

    async def reserve(n):
        try:
            hold, used = await limits.reserve(400, 100, checks, f"{p}-{n}")
            held.append(Reservation(checks, hold, 30, f"{p}-{n}"))
            steps.append(("reserved", hold, used))
        except limits.LimitExceeded as exc:
            steps.append(("refused", checks.index(exc.check), exc.left, exc.counts))
        steps.append({name: _counter(f"{p}:{name}") for name in names})

    for n in range(3):
        await reserve(n)
    await _settled(held[0], 120, 50)
    steps.append({name: _counter(f"{p}:{name}") for name in names})
    for n in range(3, 5):
        await reserve(n)
    for res in held[1:]:
        await _settled(res, 10, 30)
    steps.append({name: _counter(f"{p}:{name}") for name in names})
    return steps


def test_the_in_process_twin_answers_as_the_redis_scripts_do(settings):
    assert shared_cache.sync_client() is not None
    with_redis = asyncio.run(_scenario(f"tg:test:twin:{uuid.uuid4().hex}"))
    settings.REDIS_URL = ""
    assert shared_cache.sync_client() is None
    embedded = asyncio.run(_scenario(f"tg:test:twin:{uuid.uuid4().hex}"))
    assert embedded == with_redis
    # The sequence itself: the second hold is clipped to the balance left; the third request finds both
    # slots taken; a settle frees a slot and moves the counters by the real spend; the fifth is one request
    # past the minute's three.
    assert with_redis[0] == ("reserved", 400, [1, 30, 1, 0, 0])
    assert with_redis[2] == ("reserved", 100, [2, 60, 2, 0, 0])
    assert with_redis[4] == ("refused", 2, 2, [2, 60, 0, 0, 0])
    assert with_redis[6] == {"rpm": 2, "tpm": 80, "cc": 1, "spent": 120, "held": 100, "avail": 380, "held-team": 100}
    assert with_redis[7] == ("reserved", 280, [3, 110, 2, 0, 0])
    assert with_redis[9] == ("refused", 0, 3, [3, 110, 0, 0, 0])
    assert with_redis[-1] == {"rpm": 3, "tpm": 110, "cc": 0, "spent": 140, "held": 0, "avail": 360, "held-team": 0}
