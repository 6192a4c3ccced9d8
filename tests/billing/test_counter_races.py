"""Counter drift by design (issue 11): a Redis budget or balance counter counts each request's spend exactly
once, whichever reaches Redis first, its settle or a rebuild of the counter, and whether the request's process
lived to send its settle or died after journaling it (the orphan replay settles it). Real PostgreSQL and
Redis; each interleaving is driven explicitly (no sleeps).
"""
import asyncio
import datetime as dt
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from billing import limits, usage_journal
from billing.models import UsageRecord
from gateway_site import shared_cache
from gateway_site.db import db_call
from tests import factories

BUDGET = 10 ** 12


@pytest.fixture
def books(transactional_db, settings, tmp_path):
    """A key with a daily budget, its two money checks, a journal of this process under tmp_path."""
    key, _ = factories.api_key(budget_limit=BUDGET, budget_period="day")
    factories.credit(key.team, amount=10 ** 9)
    settings.TOLLGATE_JOURNAL_DIR = tmp_path
    now = dt.datetime.now(dt.UTC)
    start = limits.period_start("day", now).timestamp()
    checks = [limits.Check("budget", f"tg:spent:key:{key.id}:{limits.period_tag('day', now)}", BUDGET, 500,
                           aux=f"tg:held:key:{key.id}", scope=limits.Scope.KEY,
                           source=limits.Source(key.team_id, "api_key_id", key.id, start)),
              limits.Check("balance", limits.balance_key(key.team_id), 0, 500, aux=f"tg:held:team:{key.team_id}",
                           scope=limits.Scope.BALANCE, source=limits.Source(key.team_id))]
    journal = usage_journal.Journal(tmp_path)
    limits._batchers.clear()   # settles an earlier test left queued or deferred are not this test's
    limits._deferred.clear()
    yield key, checks, journal
    if journal.fd is not None:
        journal.close()
    limits._batchers.clear()
    limits._deferred.clear()


def _record(key, cost: int) -> dict:
    return {"request_id": "req_" + uuid.uuid4().hex[:24], "team_id": key.team_id, "api_key_id": key.id,
            "key_mask": key.mask, "status_code": 200, "prompt_tokens": 10, "completion_tokens": 5, "cost": cost,
            "created_at": time.time(), "stream": False, "path": "/v1/chat/completions"}


def _counters(checks) -> list[int]:
    client = shared_cache.sync_client()
    return [int(client.get(c.key)) for c in checks]


def _database(checks) -> list[int]:
    return [limits.database_value(c.source, balance=c.scope is limits.Scope.BALANCE) for c in checks]


async def _rebuild(checks) -> None:
    """Rebuild the counters as the relay does: in Django's DB thread (the database is not queried on the loop)."""
    for c in checks:
        await db_call(limits.rebuild)(c)


async def _reserve(checks, request_id: str) -> limits.Reservation:
    hold, _ = await limits.reserve(500, 10, checks, request_id)
    return limits.Reservation(checks, hold, 15, request_id)


async def _settled(loop) -> None:
    """Wait until this loop's settle batcher has sent what it had."""
    batcher = limits._batchers.get(loop)
    while batcher is not None and batcher.task is not None and not batcher.task.done():
        await batcher.task


async def _finish(journal, checks, key, cost: int) -> dict:
    """A request ends as the relay ends it: its usage line journaled, then its settle queued (not sent yet)."""
    res = await _reserve(checks, "req_" + uuid.uuid4().hex[:24])
    record = {**_record(key, cost), "request_id": res.request_id}
    journal.append(record)
    limits.settle_soon(res, cost, 15, journal.position)
    return record


async def _close(journal) -> None:
    """Flush the journal into the database; then each counter must equal it (what ledger_audit checks)."""
    await journal.flush()
    if journal.task is not None:
        journal.task.cancel()
    await _close_clients()


# --- race b: a counter rebuilt while a settle of its own process is queued --------------------------------
def test_a_settle_reaching_redis_between_the_rebuilds_read_and_its_set_is_counted_once(books, monkeypatch):
    """Redis came back empty; a counter is rebuilt while a finished request's settle is queued; the settle
    reaches Redis after the rebuild read the journal but before it set the counter (it finds no counter and
    moves nothing). Before: the rebuild left out the queued settle's record, so its spend was in neither."""
    key, checks, journal = books
    found = {}

    async def a_request_ends(loop):   # before the rebuild: its settle queued, not sent
        found.update(await _finish_after_loss(journal, checks, key, 70))

    async def its_settle_goes_out(loop):
        await _settled(loop)

    after = _rebuilt_after_loss(books, monkeypatch, a_request_ends, its_settle_goes_out)
    assert UsageRecord.objects.filter(request_id=found["request_id"]).exists()
    assert after == _database(checks) and after[0] == 110


def test_a_line_journaled_after_the_rebuilds_read_and_settled_before_its_set_is_counted_once(books, monkeypatch):
    """Redis came back empty; a request reserved before ends while a counter is rebuilt: its line is journaled
    after the rebuild read the journal, and its settle reaches Redis before the rebuild set the counter (found
    missing). Before: neither counted it (a soak ended with a key group counter 73 micro-units behind). Now the
    settle keeps its move for the rebuild, which adds it (its read did not take the line in)."""
    key, checks, journal = books
    found = {}

    async def nothing_yet(loop):
        pass

    async def a_request_ends_and_settles(loop):
        found.update(await _finish_after_loss(journal, checks, key, 70))
        await _settled(loop)

    after = _rebuilt_after_loss(books, monkeypatch, nothing_yet, a_request_ends_and_settles)
    assert UsageRecord.objects.filter(request_id=found["request_id"]).exists()
    assert after == _database(checks) and after[0] == 110


def _rebuilt_after_loss(books, monkeypatch, before, during) -> list[int]:
    """One request (40) settled, then Redis restarts empty; `before(loop)` runs, then the counters are rebuilt
    with `during(loop)` run on the loop (once: in the first counter's rebuild, the budget's) between the
    rebuild's journal read and its set. Returns the counters once the journal is flushed."""
    key, checks, journal = books

    async def scenario():
        loop = asyncio.get_running_loop()
        await _rebuild(checks)
        await _finish(journal, checks, key, 40)
        await _settled(loop)
        shared_cache.sync_client().flushdb()                  # Redis restarted empty
        await before(loop)
        read, ran = limits.unflushed_records, []

        def read_then(*args):
            found = read(*args)
            if not ran:   # from the rebuild's thread, on the loop, while the counter is not set yet
                ran.append(asyncio.run_coroutine_threadsafe(during(loop), loop).result(10))
            return found

        monkeypatch.setattr(limits, "unflushed_records", read_then)
        await _rebuild(checks)
        monkeypatch.setattr(limits, "unflushed_records", read)
        assert limits.settles_waiting() == 0
        after = _counters(checks)
        await _close(journal)
        return after

    return asyncio.run(scenario())


async def _finish_after_loss(journal, checks, key, cost: int) -> dict:
    """A request reserved before Redis lost its data ends after: its settle is queued, its hold is gone."""
    record = _record(key, cost)
    journal.append(record)
    res = limits.Reservation(checks, 500, 15, record["request_id"])
    limits.settle_soon(res, cost, 15, journal.position)
    return record


def test_a_settle_reaching_redis_after_the_rebuild_does_not_count_twice(books):
    """The other order: the rebuild read the journal line (and set the counter) before the settle came. The
    settle sees the line within the counter's read marks and leaves the counter alone; a line journaled after
    the rebuild read moves it."""
    key, checks, journal = books

    async def scenario():
        loop = asyncio.get_running_loop()
        await _rebuild(checks)
        shared_cache.sync_client().flushdb()
        await _finish_after_loss(journal, checks, key, 70)    # queued: not in Redis yet
        await _rebuild(checks)                                # counts it from the journal
        await _settled(loop)                                  # then the settle: not counted again
        rebuilt = _counters(checks)
        await _finish(journal, checks, key, 30)               # journaled after the read: its settle counts it
        await _settled(loop)
        after = _counters(checks)
        await _close(journal)
        return rebuilt, after

    rebuilt, after = asyncio.run(scenario())
    assert rebuilt[0] == 70
    assert after == _database(checks) and after[0] == 100


# --- race a: a worker killed between journaling a request and sending its settle ---------------------------
def _dead_journal(tmp_path, records) -> Path:
    """The journal file of a process that died (nobody holds its lock) with these lines."""
    journal = usage_journal.Journal(tmp_path)
    for record in records:
        journal.append(record)
    path = journal.path
    assert journal.fd is not None and path is not None
    os.close(journal.fd)      # the lock goes with the descriptor, as with kill -9
    return path


def test_the_replay_of_a_dead_workers_journal_settles_what_its_settle_never_sent(books, tmp_path):
    key, checks, _ = books
    client = shared_cache.sync_client()

    async def reserve_three():
        await _rebuild(checks)
        reservations = [await _reserve(checks, f"req_dead_{n}_{uuid.uuid4().hex[:8]}") for n in range(3)]
        # The first one's settle did reach Redis before the kill.
        first = reservations[0]
        limits.settle_soon(first, 11, 15)
        await _settled(asyncio.get_running_loop())
        await _close_clients()
        return reservations

    reservations = asyncio.run(reserve_three())
    before = _counters(checks)
    records = [{**_record(key, cost), "request_id": r.request_id} for r, cost in zip(reservations, (11, 22, 33))]
    path = _dead_journal(tmp_path / "dead", records)
    backup = tmp_path / path.name
    shutil.copy(path, backup)
    # The second one's lease ran out before the replay: the sweep gave its holds back, keeping a tombstone.
    client.zadd(limits.HOLDS, {reservations[1].request_id: 1})
    assert limits.sweep_stale_holds() == 1

    assert usage_journal.replay_orphans(tmp_path / "dead") == 3
    assert _counters(checks) == [before[0] + 55, before[1] - 55]     # the two whose settle never came
    assert _counters(checks) == _database(checks)
    assert client.hlen(limits.HOLDS_DATA) == 0 and client.hlen(limits.SWEPT) == 0
    assert int(client.get(checks[0].aux)) == 0 and int(client.get(checks[1].aux)) == 0

    # A crash between the insert and the unlink: the file replayed again moves nothing.
    shutil.copy(backup, path)
    assert usage_journal.replay_orphans(tmp_path / "dead") == 3
    assert _counters(checks) == _database(checks)


def test_a_replay_while_redis_is_down_keeps_the_file_until_it_can_settle(books, tmp_path, monkeypatch):
    key, checks, _ = books

    async def reserve():
        await _rebuild(checks)
        res = await _reserve(checks, "req_" + uuid.uuid4().hex[:24])
        await _close_clients()
        return res

    res = asyncio.run(reserve())
    path = _dead_journal(tmp_path / "dead", [{**_record(key, 9), "request_id": res.request_id}])
    monkeypatch.setattr(shared_cache, "sync_client", lambda: None)   # Redis marked down in this process
    assert usage_journal.replay_orphans(tmp_path / "dead") == 0
    assert path.exists() and UsageRecord.objects.filter(request_id=res.request_id).exists()
    monkeypatch.undo()
    assert usage_journal.replay_orphans(tmp_path / "dead") == 1
    assert not path.exists() and _counters(checks) == _database(checks)


async def _close_clients() -> None:
    await sync_to_async(connections.close_all, thread_sensitive=True)()   # the DB thread's connection
    client = shared_cache.async_client()
    if client is not None:
        await client.aclose()
        shared_cache._async_clients.pop(asyncio.get_running_loop(), None)


# --- streams a dead process left open ---------------------------------------------------------------------
def test_a_stream_left_open_is_recorded_from_its_last_progress_mark(books, tmp_path):
    key, checks, _ = books
    journal = usage_journal.Journal(tmp_path / "dead")
    cut, whole = _record(key, 0), _record(key, 0)
    progress = {"completion_tokens": 0, "cost": 10}

    def lost(record):
        return lambda: {**record, "status_code": 499, "error_code": "worker_lost", **progress}

    journal.open_stream(cut["request_id"], lost(cut))
    journal.open_stream(whole["request_id"], lost(whole))
    progress.update(completion_tokens=40, cost=90)
    journal.mark_progress()
    journal.append({**whole, "cost": 120, "completion_tokens": 50})     # this one ended
    assert list(journal.streams) == [cut["request_id"]]
    assert journal.fd is not None
    os.close(journal.fd)
    assert usage_journal.replay_orphans(tmp_path / "dead") == 2
    stored = {r.request_id: r for r in UsageRecord.objects.filter(team=key.team)}
    assert (stored[cut["request_id"]].status_code, stored[cut["request_id"]].error_code) == (499, "worker_lost")
    assert (stored[cut["request_id"]].completion_tokens, stored[cut["request_id"]].cost) == (40, 90)
    assert (stored[whole["request_id"]].status_code, stored[whole["request_id"]].cost) == (200, 120)
