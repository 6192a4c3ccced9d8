"""The circuit breaker's state machine (routing/breaker.py) and the relay's in-process hooks, without servers."""
import asyncio
import time

import pytest

from routing import breaker as br
from routing.relay import health

POLICY = br.Policy(failures=3, error_rate=0.5, window=60, min_requests=10, cooldown=5, max_cooldown=300)


def fail(b, now, **kw):
    return b.record(False, now, POLICY, "HTTP 503", **kw)


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count():
    b = br.Breaker("m:1:2")
    assert fail(b, 100) is None and fail(b, 100.1) is None
    assert b.record(True, 100.2, POLICY) is None
    assert fail(b, 100.3) is None and fail(b, 100.4) is None
    t = fail(b, 100.5)
    assert (t.from_state, t.to_state, t.cooldown) == (br.CLOSED, br.OPEN, 5)
    assert b.admits(101, POLICY) == br.DENY


def test_opens_on_error_rate_over_the_window_with_enough_requests():
    b = br.Breaker("m:1:2")
    now = 1000.0
    for i in range(10):           # ok, fail, ok, fail …: 5 of 10 is not above the threshold
        assert b.record(i % 2 == 0, now + i, POLICY, "HTTP 500") is None
    assert b.record(True, now + 10, POLICY) is None
    assert fail(b, now + 11) is None          # 6 of 12
    t = fail(b, now + 12)                     # two in a row only, but 7 of 13 is above 50%
    assert t.to_state == br.OPEN and "7 of 13 failed" in t.reason


def test_old_failures_leave_the_window():
    b = br.Breaker("m:1:2")
    for i in range(9):
        b.record(i % 3 == 0, 1000 + i, POLICY, "x")  # 6 failures of 9 (never 3 in a row)
    b.record(True, 1100, POLICY)
    assert fail(b, 1101) is None                    # the old ones left the window: 1 of 2, too few requests


def test_half_open_lets_one_trial_through_then_closes_on_success():
    b = br.Breaker("c:1")
    fail(b, 0, fatal=True)
    assert b.state == br.OPEN and b.fatal
    assert b.admits(4.9, POLICY) == br.DENY
    assert b.admits(5.0, POLICY) == br.TRIAL
    b.start_trial(5.0)
    assert b.admits(5.1, POLICY) == br.DENY                     # one trial at a time
    assert b.admits(5.0 + POLICY.trial_timeout, POLICY) == br.TRIAL  # a trial that never reported
    t = b.record(True, 5.2, POLICY)
    assert (t.from_state, t.to_state) == (br.HALF_OPEN, br.CLOSED) and b.admits(5.3, POLICY) == br.PASS


def test_cool_down_grows_on_repeated_trips_and_is_capped():
    b = br.Breaker("m:1:2")
    now, cooldowns = 0.0, []
    for _ in range(9):
        t = fail(b, now, fatal=True) if b.state == br.CLOSED else fail(b, now)
        cooldowns.append(t.cooldown)
        now = b.until                                   # the trial fails again
    assert cooldowns == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    b.record(True, now, POLICY)                         # recovers …
    t = fail(b, now + 1000, fatal=True)                 # … and trips again long after: cool-downs start over
    assert t.cooldown == 5


def test_late_answers_while_open_change_nothing():
    b = br.Breaker("m:1:2")
    fail(b, 0, fatal=True)
    assert b.record(True, 1, POLICY) is None and fail(b, 2) is None
    assert b.state == br.OPEN and b.until == 5


def test_adopts_only_newer_transitions_from_other_processes():
    mine, theirs = br.Breaker("m:1:2"), br.Breaker("m:1:2")
    t = fail(theirs, 10, fatal=True)
    assert mine.adopt(t.entry) and mine.state == br.OPEN and mine.until == 15
    assert not mine.adopt(t.entry)
    closed = theirs.record(True, 16, POLICY)
    assert mine.adopt(closed.entry) and mine.state == br.CLOSED
    assert br.entry_state(t.entry, 14) == br.OPEN and br.entry_state(t.entry, 15) == br.HALF_OPEN


@pytest.mark.parametrize("status,code,error_class,kind", [
    (401, "invalid_api_key", "http_401", br.FATAL), (403, None, "http_403", br.FATAL),
    (402, None, "http_402", br.FATAL), (429, "insufficient_quota", "http_429", br.FATAL),
    (400, "API_KEY_INVALID", "http_400", br.FATAL), (None, None, "timeout", br.TRANSPORT),
    (None, None, "connection", br.TRANSPORT), (503, None, "http_503", br.UPSTREAM),
    (429, "rate_limit_exceeded", "http_429", br.UPSTREAM), (200, None, "invalid_response", br.UPSTREAM),
])
def test_failure_kinds(status, code, error_class, kind):
    assert br.failure_kind(False, status, code, error_class) == kind


def test_percentile_interpolates_inside_buckets():
    values = br.new_counters()
    values[3 + 1] = 50      # 50..100 ms
    values[3 + 3] = 50      # 250..500 ms
    assert 50 <= br.percentile(values, 0.5) <= 100
    assert 250 <= br.percentile(values, 0.95) <= 500
    assert br.percentile(br.new_counters(), 0.5) is None


@pytest.fixture
def fresh_health(settings):
    settings.TOLLGATE_BREAKER_COOLDOWN_SECONDS = 60
    health.reset()
    yield health
    health.reset()


def test_relay_hooks_route_faults_to_the_right_breaker(fresh_health):
    for _ in range(3):
        health.report(7, 1, ok=False, status=503, code=None, error_class="http_503", latency_ms=5)
    assert not health.allow(7, 1)        # the pair opened …
    assert health.allow(7, 2)            # … the channel's other models still serve
    health.report(7, 2, ok=False, status=401, code="invalid_api_key", error_class="http_401", latency_ms=5)
    assert not health.allow(7, 2) and not health.allow(7, 3)   # a credential error closes the whole channel
    assert health.allow(8, 1)
    assert [t.to_state for t in health._outbox] == [br.OPEN, br.OPEN]


def test_report_and_allow_never_wait(fresh_health):
    """Off an event loop nothing is scheduled; on one a background task syncs after the call returned."""
    health.report(9, 1, ok=True, status=200, code=None, error_class="", latency_ms=12)
    assert health._counters["c:9"][:3] == [1, 0, 12] and health._task is None

    async def call():
        health.report(9, 1, ok=True, status=200, code=None, error_class="", latency_ms=3)
        assert health._counters["c:9"][:3] == [2, 0, 15]     # not flushed yet: nothing was awaited

        def shared():
            buckets = br.read_buckets(br.MINUTE_BUCKETS, 2)   # (the minute may have just turned)
            return [sum(b.get("c:9", [0] * 3)[i] for b in buckets) for i in range(3)]

        deadline = time.monotonic() + 5                      # the background task's sync lands
        while shared() != [2, 0, 15] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return dict(health._counters), shared()

    counters, shared = asyncio.run(call())
    assert counters == {} and shared == [2, 0, 15]
