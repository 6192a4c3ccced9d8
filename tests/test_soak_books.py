"""`make soak`'s own accounting (bench/soak_books.py, bench/soak_traffic.py): the comparisons that turn the
client's view, the database and Redis into the SOAK line, and a defect the soak found."""
import asyncio
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from bench import soak_books, soak_traffic
from bench.soak_books import Outcome
from billing import limits
from gateway_site import shared_cache
from tests import factories


def outcome(rid, *, complete=True, status=200):
    return Outcome("chat", status, rid, complete, 10.0)


def test_lost_usage_is_a_complete_answer_without_a_record():
    outcomes = [outcome("req_a"), outcome("req_b"), outcome("req_cut", complete=False),
                outcome(None), outcome("req_a")]
    assert soak_books.lost_usage(outcomes, ["req_a"]) == ["req_b"]     # the cut one is not "seen complete"
    assert soak_books.lost_usage(outcomes, ["req_a", "req_b"]) == []
    assert soak_books.lost_usage([], []) == []


def test_double_charged_counts_a_request_billed_twice_or_an_entry_that_took_too_much():
    entries = {1: -30, 2: -50}
    costs = {1: 30, 2: 50}
    records = [("req_a", 1), ("req_b", 1), ("req_c", 2), ("req_unbilled", None)]
    assert soak_books.double_charged(records, entries, costs) == []
    # One request on two billed records (a replay that slipped past the unique id would look like this).
    assert soak_books.double_charged([*records, ("req_a", 2)], entries, costs) == ["req_a"]
    # An entry posted for more than its records cost: every request on it was charged again.
    assert soak_books.double_charged(records, {1: -60, 2: -50}, costs) == ["req_a", "req_b"]
    # Charging less is no double charge (the audit reports the mismatch).
    assert soak_books.double_charged(records, {1: -10, 2: -50}, costs) == []


def test_leaked_holds_counts_records_orphan_index_entries_and_counters_above_zero():
    assert soak_books.leaked_holds(0, 0, {"tg:held:team:1": 0, "tg:cc:key:1": 0}) == 0
    assert soak_books.leaked_holds(2, 2, {}) == 2
    assert soak_books.leaked_holds(1, 3, {}) == 3          # index entries whose record is gone
    assert soak_books.leaked_holds(0, 0, {"tg:held:team:1": 120, "tg:cc:key:1": 1, "tg:held:key:2": 0}) == 2


def test_the_soak_line_and_its_verdict():
    figures = {"requests": 10, "ok": 7, "lost_usage": 0, "double_charged": 0, "leaked_holds": 0,
               "counter_drift": 0, "gateway_5xx": 1, "p99_ms": 812, "rss_growth_mb": 3.25}
    assert soak_books.soak_line(figures) == ("SOAK requests=10 ok=7 lost_usage=0 double_charged=0 leaked_holds=0 "
                                             "counter_drift=0 gateway_5xx=1 p99_ms=812 rss_growth_mb=3.2")
    assert soak_books.failed(figures) == []     # 5xx and latency are reported, not judged
    assert soak_books.failed({**figures, "leaked_holds": 2, "counter_drift": 1}) == ["leaked_holds", "counter_drift"]


def test_p99_is_the_nearest_rank():
    assert soak_books.p99([]) == 0.0
    assert soak_books.p99([5.0]) == 5.0
    assert soak_books.p99(float(n) for n in range(1, 101)) == 99.0
    assert soak_books.p99([1.0] * 98 + [50.0, 900.0]) == 50.0


def test_what_the_client_counts_as_a_whole_answer():
    done = b'data: {"choices": []}\n\ndata: [DONE]\n\n'
    assert soak_traffic.answer_complete(done, stream=True, path="chat")
    assert not soak_traffic.answer_complete(b'data: {"choices": []}\n\n', stream=True, path="chat")   # cut
    assert not soak_traffic.answer_complete(b'data: {"error": {"message": "x"}}\n\ndata: [DONE]\n\n', stream=True,
                                            path="chat")
    assert soak_traffic.answer_complete(b"event: message_stop\ndata: {}\n\n", stream=True, path="messages")
    assert not soak_traffic.answer_complete(b"event: error\ndata: {}\n\nevent: message_stop\n\n", stream=True,
                                            path="messages")
    assert soak_traffic.answer_complete(b'{"choices": [{"message": {}}]}', stream=False, path="chat")
    assert soak_traffic.answer_complete(b'{"content": []}', stream=False, path="messages")
    assert not soak_traffic.answer_complete(b'{"choices": [', stream=False, path="chat")
    assert soak_traffic.error_shaped(b'{"error": {"message": "x"}}')
    assert soak_traffic.error_shaped(b'{"type": "error", "error": {"type": "api_error"}}')
    assert not soak_traffic.error_shaped(b"Internal Server Error")


def test_the_fuzzer_sends_what_the_issue_names():
    bodies = [body for _, body in soak_traffic.fuzz_bodies()]
    assert any(b"\\u0000" in body for body in bodies) and any(b"\x00" in body for body in bodies)
    assert any(body.count(b"[") > 500 for body in bodies)            # nested past any sane depth
    assert {path for path, _ in soak_traffic.fuzz_bodies()} == {"chat", "messages"}


@pytest.mark.django_db
def test_counter_drift_reads_the_audits_own_report(tmp_path):
    """The parser is fed a real ledger_audit report of a drifted counter, not a string written for it."""
    import datetime as dt

    key, _ = factories.api_key(budget_limit=50_000_000, budget_period="day")
    spent = f"tg:spent:key:{key.id}:{limits.period_tag('day', dt.datetime.now(dt.UTC))}"
    shared_cache.set(spent, b"20", 3600)     # the database has no spend for it
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ledger_audit", "--journal-dir", str(tmp_path), "--settle-window", "0.2", stdout=out)
    assert soak_books.counter_drift(out.getvalue()) == 1
    shared_cache.set(spent, b"0", 3600)
    out = StringIO()
    call_command("ledger_audit", "--journal-dir", str(tmp_path), "--settle-window", "0.2", stdout=out)
    assert soak_books.counter_drift(out.getvalue()) == 0


def test_a_zero_cost_settle_moves_the_balance_counter(db, caplog):
    """Found by the soak: a failed request (cost 0) settled with `INCRBY key -0` from Lua, which Redis refuses,
    so every zero-cost settle of a team with a balance raised in the batcher ("could not settle") and the
    moves after the balance's were skipped (here the tokens-per-minute counter)."""
    client = shared_cache.sync_client()
    assert client is not None, "make test runs with Redis (the embedded default has no Lua scripts)"
    p = f"tg:test:zero:{time.time_ns()}"
    checks = [limits.Check("budget", f"{p}:spent", 1000, 300, aux=f"{p}:held", scope=limits.Scope.KEY),
              limits.Check("balance", f"{p}:avail", 0, 300, aux=f"{p}:held-team", scope=limits.Scope.BALANCE,
                           source=limits.Source(1)),
              limits.Check("rate", f"{p}:tpm", 10_000, 50, metric=limits.Metric.TOKENS, scope=limits.Scope.KEY)]
    client.set(f"{p}:spent", 100)
    client.set(f"{p}:avail", 5000)

    async def scenario():
        for n, cost in ((1, 0), (2, 40)):
            hold, _ = await limits.reserve(300, 50, checks, f"{p}-{n}")
            limits.settle_soon(limits.Reservation(checks, hold, 50, f"{p}-{n}"), cost, 30)
        deadline = time.monotonic() + 5
        while client.hexists(limits.HOLDS_DATA, f"{p}-2") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await shared_cache._async_clients.pop(asyncio.get_running_loop()).aclose()

    asyncio.run(scenario())
    values = {name: client.get(f"{p}:{name}") for name in ("spent", "avail", "held", "held-team", "tpm")}
    # Each request took its estimate of 50 tokens of the minute and used 30: 2 × 30.
    assert values == {"spent": b"140", "avail": b"4960", "held": b"0", "held-team": b"0", "tpm": b"60"}
    assert "could not settle" not in caplog.text
    assert not client.hexists(limits.HOLDS_DATA, f"{p}-1") and not client.hexists(limits.HOLDS_DATA, f"{p}-2")


def test_a_hold_is_leased_while_its_request_lives_and_swept_soon_after_its_process_dies(db, settings):
    """Found by the soak: the holds and slots of a worker killed with -9 stayed 900 s (the sweep window). A
    reservation's sweep time is now a short lease its process renews while the request is in flight."""
    settings.TOLLGATE_HOLD_LEASE_SECONDS = 2
    client = shared_cache.sync_client()
    p = f"tg:test:lease:{time.time_ns()}"
    checks = [limits.Check("conc", f"{p}:cc", 5, 1, scope=limits.Scope.KEY),
              limits.Check("budget", f"{p}:spent", 1000, 300, aux=f"{p}:held", scope=limits.Scope.KEY)]
    client.set(f"{p}:spent", 0)

    async def scenario():
        await limits.reserve(300, 50, checks, f"{p}-live")
        await limits.reserve(300, 50, checks, f"{p}-dead")
        limits._leases.pop(f"{p}-dead")          # what kill -9 does to its renewals
        first = client.zscore(limits.HOLDS, f"{p}-live")
        assert first <= time.time() + 2          # a lease, not the 900 s window
        await asyncio.sleep(3)                   # past the lease: the live one was renewed, the dead one not
        assert client.zscore(limits.HOLDS, f"{p}-live") > first
        assert limits.sweep_stale_holds() == 1
        assert client.hexists(limits.HOLDS_DATA, f"{p}-live") and not client.hexists(limits.HOLDS_DATA, f"{p}-dead")
        assert int(client.get(f"{p}:cc")) == 1 and int(client.get(f"{p}:held")) == 300
        limits.settle_soon(limits.Reservation(checks, 300, 50, f"{p}-live"), 25, 50)
        deadline = time.monotonic() + 5
        while client.hexists(limits.HOLDS_DATA, f"{p}-live") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert f"{p}-live" not in limits._leases
        await shared_cache._async_clients.pop(asyncio.get_running_loop()).aclose()

    asyncio.run(scenario())
    assert client.get(f"{p}:cc") == b"0" and client.get(f"{p}:held") == b"0" and client.get(f"{p}:spent") == b"25"


@pytest.mark.django_db
def test_the_balance_counter_is_read_from_the_database_in_one_statement(django_assert_num_queries):
    """Found by the soak: the balance and the unbilled usage were read apart, so a reconciliation committing
    between the two reads left its records out of both (a counter rebuilt ahead of the money)."""
    from billing.models import TeamBalance
    from tests.billing.factories import UsageRecordFactory

    team = factories.TeamFactory()
    source = limits.Source(team.id)
    UsageRecordFactory(team=team, cost=30)
    assert limits.database_value(source, balance=True) == -30          # no balance row yet
    factories.credit(team)
    balance = TeamBalance.objects.get(team=team).balance
    UsageRecordFactory(team=team, cost=12)
    with django_assert_num_queries(1):
        assert limits.database_value(source, balance=True) == balance - 42
