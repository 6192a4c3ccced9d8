"""Channel health on the hot path: the circuit breaker's verdict (`allow`) and every attempt's outcome
(`report`). Both are in-process and cheap (no await, no ORM, no Redis); the state machine is routing/breaker.py.

Shared state moves in a background task of this process (started by the first call): every
TOLLGATE_LOCAL_TTL_SECONDS, and at once after a transition, one pipelined Redis round trip adds the passive
counters gathered since the last one, publishes this process's transitions and reads back every process's,
so a breaker opened anywhere is honoured everywhere within about a second. Transitions are then recorded as
ChannelHealthEvent rows from a thread. A half-open breaker lets one trial through per process.
"""
import asyncio
import logging
import time
from collections import deque
from contextvars import ContextVar
from typing import NamedTuple

from django.conf import settings

from gateway_site import shared_cache
from gateway_site.db import db_call
from routing import breaker as br

log = logging.getLogger(__name__)

_policy: br.Policy | None = None
_breakers: dict[str, br.Breaker] = {}      # scope → breaker, every scope that saw traffic
_tripped: dict[str, br.Breaker] = {}       # the ones not closed: all `allow` ever looks at
_counters: dict[str, list[int]] = {}       # passive stats since the last sync, scope → STAT_FIELDS values
_outbox: list[br.Transition] = []          # transitions to publish and record
_task: asyncio.Task | None = None           # the sync loop
_wake: asyncio.Event | None = None          # set: sync now (a transition is waiting)
# Upstream time of the current call's attempts (ms), for the gateway-overhead metric.
_upstream_ms: ContextVar[list | None] = ContextVar("tollgate_upstream_ms", default=None)


def policy() -> br.Policy:
    global _policy
    if _policy is None:
        _policy = br.Policy.from_settings()
    return _policy


def allow(channel_id: int, model_id: int) -> bool:
    """May this channel (for this model) take a request now? False while its breaker is open."""
    _ensure_sync()
    if not _tripped:
        return True
    now = time.time()
    pair = [b for b in (_tripped.get(br.channel_scope(channel_id)), _tripped.get(br.model_scope(channel_id, model_id)))
            if b is not None]
    if not pair:
        return True
    verdicts = [b.admits(now, policy()) for b in pair]
    if br.DENY in verdicts:
        return False
    for b, verdict in zip(pair, verdicts):
        if verdict == br.TRIAL:
            b.start_trial(now)
    return True


def note_upstream_ms(latency_ms: int) -> None:
    """Count time the current call waited on an upstream (the gateway-overhead metric)."""
    spent = _upstream_ms.get()
    if spent is None:
        _upstream_ms.set([latency_ms])
    else:
        spent.append(latency_ms)


def report(channel_id: int, model_id: int, *, ok: bool, status: int | None, code: str | None,
           error_class: str, latency_ms: int, track_time: bool = True) -> None:
    """One attempt's outcome. `ok` means the channel answered (a client error in the request still counts
    as the channel working); failures are timeouts, connection errors, 429/5xx, invalid answers, streams
    that broke mid-way, and the channel's own credential or balance errors (401/402/403). `track_time`:
    False when the call's upstream time was already noted (a stream, reported once it ended)."""
    now = time.time()
    if track_time:
        note_upstream_ms(latency_ms)
    kind = br.failure_kind(ok, status, code, error_class)
    reason = "" if ok else br.describe(status, code, error_class)
    bucket, fine = br.latency_buckets(latency_ms)
    p = policy()
    # The channel's breaker takes its account's faults, the pair's the rest; successes go to both.
    for scope, applies in ((br.channel_scope(channel_id), kind in (None, br.FATAL, br.TRANSPORT)),
                           (br.model_scope(channel_id, model_id), kind in (None, br.UPSTREAM))):
        counters = _counters.get(scope)
        if counters is None:
            counters = _counters[scope] = br.new_counters()
        counters[0 if ok else 1] += 1
        counters[2] += latency_ms
        counters[bucket] += 1
        counters[fine] += 1
        if not applies:
            continue
        breaker = _breakers.get(scope)
        if breaker is None:
            breaker = _breakers[scope] = br.Breaker(scope, p.window)
        transition = breaker.record(ok, now, p, reason, fatal=kind == br.FATAL)
        if transition is not None:
            _note(breaker, transition)
    _ensure_sync()
    if _outbox and _wake is not None:
        _wake.set()


def take_upstream_ms() -> int | None:
    """Time the current call spent waiting on upstreams (all its attempts), or None; then starts over."""
    spent = _upstream_ms.get()
    if spent is None:
        return None
    _upstream_ms.set(None)
    return sum(spent)


def _note(breaker: br.Breaker, transition: br.Transition) -> None:
    if breaker.state == br.CLOSED:
        _tripped.pop(breaker.scope, None)
    else:
        _tripped[breaker.scope] = breaker
    _outbox.append(transition)
    log.warning("circuit %s %s → %s%s: %s", breaker.scope, transition.from_state, transition.to_state,
                f" for {transition.cooldown:g}s" if transition.cooldown else "", transition.reason)


def _ensure_sync() -> None:
    """Start the sync loop on this event loop if it is not running (off an event loop: nothing to share)."""
    global _task, _wake
    loop = asyncio._get_running_loop()
    if loop is not None and (_task is None or _task.done() or _task.get_loop() is not loop):
        _wake = asyncio.Event()
        _task = loop.create_task(_sync_forever())


async def _sync_forever() -> None:
    wake = _wake
    assert wake is not None   # set by the caller that started this task
    while True:
        wake.clear()
        await sync_once()
        try:
            await asyncio.wait_for(wake.wait(), settings.TOLLGATE_LOCAL_TTL_SECONDS)
        except asyncio.TimeoutError:
            pass


async def sync_once() -> None:
    global _counters, _outbox
    counters, _counters = _counters, {}
    transitions, _outbox = _outbox, []
    try:
        _merge(await _exchange(counters, transitions, time.time()))
    except shared_cache.UNREACHABLE as exc:  # Redis away: this process keeps its own verdicts (logged once)
        shared_cache.outage.failed(exc)
    except Exception:  # anything else: this process keeps its own verdicts; the counts are lost
        log.warning("could not sync channel health", exc_info=True)
    if transitions:
        try:
            await db_call(br.save_transitions)(transitions)
        except Exception:
            log.warning("could not record breaker transitions", exc_info=True)


async def _exchange(counters, transitions, now) -> dict[str, dict]:
    client = shared_cache.async_client()
    if client is None:
        _speed_new.clear()   # one process: its own samples are all there is
        br.queue_stats(br.LOCAL, counters, now)
        br.queue_publish(br.LOCAL, transitions)
        return br.decode_breakers(br.LOCAL.hgetall(br.BREAKERS_KEY))
    pipe = client.pipeline(transaction=False)
    br.queue_stats(pipe, counters, now)
    br.queue_publish(pipe, transitions)
    wanted = _queue_speeds(pipe)
    pipe.hgetall(br.BREAKERS_KEY)
    results = await pipe.execute()
    _adopt_speeds(wanted, results[-1 - len(wanted):-1])
    return br.decode_breakers(results[-1])


def _merge(remote: dict[str, dict]) -> None:
    """Adopt transitions other processes (and probes) published after this process's own."""
    p = policy()
    for scope, entry in remote.items():
        breaker = _breakers.get(scope)
        if breaker is None:
            if entry.get("state") != br.OPEN:
                continue
            breaker = _breakers[scope] = br.Breaker(scope, p.window)
        if breaker.adopt(entry):
            if breaker.state == br.CLOSED:
                _tripped.pop(scope, None)
            else:
                _tripped[scope] = breaker


def reset() -> None:
    """Forget every breaker and counter of this process (tests)."""
    global _policy, _task
    if _task is not None and not _task.done():
        _task.cancel()
    for state in (_breakers, _tripped, _counters, _outbox, _speeds, _speed_cache, _speed_new, _speed_wanted):
        state.clear()
    _policy, _task = None, None


# --- measured speed per channel × model (OpenRouter's provider sort / preferred_* thresholds) -------------
SPEED_SAMPLES = 200   # the latest answers of each channel × model that the percentiles describe


class Speed(NamedTuple):
    latency: dict       # percentile ("p50", "p75", "p90", "p99") → time to first byte, seconds
    throughput: dict    # percentile → output tokens per second
    samples: int


_speeds: dict[tuple[int, int], deque] = {}          # (channel, model) → (ttfb s, tokens/s) of recent answers
_speed_cache: dict[tuple[int, int], Speed] = {}     # percentiles, computed on first use after a change
# Shared through Redis by the sync loop, so every gateway process sorts by every process's measurements: the
# samples taken here since the last sync, and the pairs a request's preferences asked about (their lists are
# read back, for SPEED_INTEREST_SECONDS after the last question).
_speed_new: dict[tuple[int, int], list] = {}
_speed_wanted: dict[tuple[int, int], float] = {}
SPEED_INTEREST_SECONDS = 300
SPEED_TTL_SECONDS = 3600


def _speed_key(pair: tuple[int, int]) -> str:
    return f"tg:speed:{pair[0]}:{pair[1]}"


def _queue_speeds(pipe) -> list[tuple[int, int]]:
    """Push this process's new samples, and read back the shared ones of the pairs in demand."""
    global _speed_new
    new, _speed_new = _speed_new, {}
    for pair, samples in new.items():
        key = _speed_key(pair)
        pipe.rpush(key, *(b"%.4f %s" % (t, b"-" if r is None else b"%.3f" % r) for t, r in samples))
        pipe.ltrim(key, -SPEED_SAMPLES, -1)
        pipe.expire(key, SPEED_TTL_SECONDS)
    now = time.monotonic()
    for pair in [p for p, asked in _speed_wanted.items() if now - asked > SPEED_INTEREST_SECONDS]:
        del _speed_wanted[pair]
    wanted = list(_speed_wanted)
    for pair in wanted:
        pipe.lrange(_speed_key(pair), 0, -1)
    return wanted


def _adopt_speeds(wanted: list[tuple[int, int]], lists: list) -> None:
    for pair, raw in zip(wanted, lists):
        samples = []
        for item in raw or ():
            try:
                ttfb, rate = item.split(b" ")
                samples.append((float(ttfb), None if rate == b"-" else float(rate)))
            except ValueError:
                continue
        if samples:
            _speeds[pair] = deque(samples + _speed_new.get(pair, []), maxlen=SPEED_SAMPLES)
            _speed_cache.pop(pair, None)


def observe_speed(channel_id: int, model_id: int, *, ttfb_ms: int | None, latency_ms: int, tokens: int,
                  stream: bool) -> None:
    """One served answer: time to first byte, and output tokens per second of generation (a stream's after its
    first byte; a whole answer's over its whole time)."""
    ttfb = (ttfb_ms if ttfb_ms is not None else latency_ms) / 1000
    generating = (latency_ms - (ttfb_ms or 0)) / 1000 if stream else latency_ms / 1000
    rate = tokens / max(generating, 0.001) if tokens > 0 else None
    pair = (channel_id, model_id)
    samples = _speeds.get(pair)
    if samples is None:
        samples = _speeds[pair] = deque(maxlen=SPEED_SAMPLES)
    samples.append((ttfb, rate))
    new = _speed_new.setdefault(pair, [])
    if len(new) < SPEED_SAMPLES:   # the sync loop takes them (without Redis: drops them)
        new.append((ttfb, rate))
    _speed_cache.pop(pair, None)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {f"p{q}": values[min(len(values) - 1, (len(values) * q) // 100)] for q in (50, 75, 90, 99)}


def speed(channel_id: int, model_id: int) -> Speed | None:
    """Latency and throughput percentiles this process measured for a channel × model; None before any."""
    pair = (channel_id, model_id)
    _speed_wanted[pair] = time.monotonic()
    found = _speed_cache.get(pair)
    if found is None:
        samples = _speeds.get(pair)
        if not samples:
            return None
        found = _speed_cache[pair] = Speed(_percentiles([t for t, _ in samples]),
                                           _percentiles([r for _, r in samples if r is not None]), len(samples))
    return found
