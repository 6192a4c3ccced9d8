"""Reservations of one event-loop turn share one pipelined round trip (issue 14): each request still gets its
own answer, in the order they asked; a Redis that lost the script gets it loaded and the batch run once; a
request cancelled while waiting leaves the others' answers alone. Real Redis."""
import asyncio
import uuid

import pytest

from billing import limits
from gateway_site import shared_cache


def _rate(key: str, limit: int) -> list[limits.Check]:
    return [limits.Check("rate", key, limit, 1, label="test limit", metric=limits.Metric.REQUESTS,
                         scope=limits.Scope.KEY)]


@pytest.fixture
def batches(db, monkeypatch):
    """The size of each batch sent to Redis."""
    sizes: list[int] = []
    send = limits._reserve_pipelined

    async def counted(client, batch):
        sizes.append(len(batch))
        return await send(client, batch)

    monkeypatch.setattr(limits, "_reserve_pipelined", counted)
    yield sizes
    limits._leases.clear()


async def _epoch_known() -> None:
    """reserve reads Redis's epoch once per process first; read now, the requests reach reserve in one turn."""
    await shared_cache.note_epoch(shared_cache.async_client())


async def _done(key: str) -> int:
    """The counter after the test; its key and the async client go (the client is bound to this loop)."""
    client = shared_cache.async_client()
    count = int(await client.get(key))
    await client.delete(key)
    await client.aclose()
    shared_cache._async_clients.pop(asyncio.get_running_loop(), None)
    return count


def test_one_turns_reservations_go_in_one_round_trip_each_with_its_own_answer(batches):
    key = "tg:test:reserve-batch:" + uuid.uuid4().hex

    async def scenario():
        await _epoch_known()
        asked = [limits.reserve(0, 0, _rate(key, 3), f"req_{i}") for i in range(5)]
        answers = await asyncio.gather(*asked, return_exceptions=True)
        return answers, await _done(key)

    answers, count = asyncio.run(scenario())
    assert batches == [5]
    taken = sorted(a[1] for a in answers if not isinstance(a, Exception))
    refused = [a for a in answers if isinstance(a, Exception)]
    assert taken == [[1], [2], [3]]   # each its own count (the order they reached Redis)
    assert len(refused) == 2 and all(isinstance(a, limits.LimitExceeded) and a.counts == [3] for a in refused)
    assert count == 3


def test_a_batch_meeting_noscript_is_loaded_and_run_once(batches, monkeypatch):
    key = "tg:test:reserve-batch:" + uuid.uuid4().hex
    # The script as no Redis has seen it (a new comment each run), as after a restart: NOSCRIPT first.
    monkeypatch.setattr(limits, "RESERVE_LUA", f"-- {uuid.uuid4().hex}\n{limits.RESERVE_LUA}")

    async def scenario():
        await _epoch_known()
        assert await shared_cache.async_client().script_exists(limits._script(
            shared_cache.async_client(), limits.RESERVE_LUA).sha) == [False]
        answers = await asyncio.gather(*(limits.reserve(0, 0, _rate(key, 10), f"req_{i}") for i in range(3)))
        return answers, await _done(key)

    answers, count = asyncio.run(scenario())
    assert batches == [3]
    assert sorted(used for _, used in answers) == [[1], [2], [3]]
    assert count == 3


def test_a_request_cancelled_while_waiting_leaves_the_others_answers(batches):
    key = "tg:test:reserve-batch:" + uuid.uuid4().hex

    async def scenario():
        await _epoch_known()
        tasks = [asyncio.ensure_future(limits.reserve(0, 0, _rate(key, 10), f"req_{i}")) for i in range(3)]
        while not batches:   # the batch is on its way
            await asyncio.sleep(0)
        tasks[1].cancel()
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        return answers, await _done(key)

    answers, count = asyncio.run(scenario())
    assert batches == [3]
    assert isinstance(answers[1], asyncio.CancelledError)
    assert sorted(answers[0][1] + answers[2][1]) in ([1, 2], [1, 3], [2, 3])
    assert count == 3   # the cancelled request's reservation was taken (its lease's sweep gives it back)
