"""Channel health below the relay: the circuit breaker's state machine, the state every process shares in
Redis, the passive-stats buckets, and the records of transitions.

Two breakers guard each attempt: one per channel (credentials, billing, connection errors and timeouts: the
whole account is at fault) and one per channel × model (429/5xx and invalid answers: often one model's
trouble). Either one open skips the candidate. States: closed → open (N consecutive failures, or an error
rate above the threshold over the window with enough requests; credential/billing errors at once) → after a
cool-down that doubles on every trip in a row (capped) one trial request is let through (half-open) → closed
on success, open again (longer) on failure. The breaker never touches `Channel.status`, the admin's choice.

Shared state (Redis, or the in-process store of the embedded default):
  tg:health:breakers       hash, scope → JSON entry of the scope's last published transition
  tg:health:m:<minute>     hash, "<scope>|<field>" → count, per minute (kept 2 h)
  tg:health:h:<hour>       the same per hour (kept 8 days)
where a scope is "c:<channel id>" or "m:<channel id>:<model id>". The relay keeps breakers in memory and
syncs them in the background (routing/relay/health.py); probes (routing/probes.py) and the status page
(routing/selectors.py) read and write the same keys through this module.
"""
import bisect
import json
import logging
import os
import time
from dataclasses import dataclass

from django.conf import settings

from routing.adapters.base import ACCOUNT_STATUSES
from routing.adapters.registry import ACCOUNT_CODES, CHANNEL_CODES

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}   # the Prometheus gauge
DENY, PASS, TRIAL = 0, 1, 2                          # Breaker.admits

BREAKERS_KEY = "tg:health:breakers"
# (bucket length, key prefix, TTL) of the passive stats.
MINUTE_BUCKETS = (60, "tg:health:m:", 2 * 3600)
HOUR_BUCKETS = (3600, "tg:health:h:", 8 * 86400)
LATENCY_BOUNDS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)   # + one overflow bucket
# The same latencies again in fine buckets (about 25% wide, from 1 ms): the percentiles come from these. The
# coarse ones alone put every answer under 50 ms at "25 / 47 ms"; they stay for stats written before.
FINE_BOUNDS_MS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400,
                  500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10_000, 12_000,
                  15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000)
COARSE_FIELDS = len(LATENCY_BOUNDS_MS) + 1
FINE_OFFSET = 3 + COARSE_FIELDS             # index of the first fine bucket in STAT_FIELDS values
STAT_FIELDS = (("ok", "fail", "ms") + tuple(f"b{i}" for i in range(COARSE_FIELDS))
               + tuple(f"f{i}" for i in range(len(FINE_BOUNDS_MS) + 1)))

# Upstream answers that say the channel's own account is unusable open at once and flag it for an admin; the
# statuses and codes (and the ones that move a call to the next channel) are the adapters' (their `classify`).
FATAL_STATUSES = ACCOUNT_STATUSES
FATAL, TRANSPORT, UPSTREAM = "fatal", "transport", "upstream"


def setting(name: str, default):
    """A health setting, or (until gateway_site/settings.py defines it) the environment variable."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    return default if value in (None, "") else type(default)(value)


def channel_scope(channel_id: int) -> str:
    return f"c:{channel_id}"


def model_scope(channel_id: int, model_id: int) -> str:
    return f"m:{channel_id}:{model_id}"


def parse_scope(scope: str) -> tuple[int, int | None]:
    parts = scope.split(":")
    return int(parts[1]), (int(parts[2]) if len(parts) > 2 else None)


def is_channel_failure(status: int | None, code: str | None) -> bool:
    """An HTTP answer that counts against the channel (the relay moves on to the next channel)."""
    return status is not None and (status == 429 or status >= 500 or status in FATAL_STATUSES
                                   or code in CHANNEL_CODES)


def failure_kind(ok: bool, status: int | None, code: str | None, error_class: str) -> str | None:
    if ok:
        return None
    if status in FATAL_STATUSES or code in ACCOUNT_CODES:
        return FATAL
    if error_class in ("timeout", "connection"):
        return TRANSPORT
    return UPSTREAM


def describe(status: int | None, code: str | None, error_class: str) -> str:
    if status is None:
        return error_class or "failure"
    return f"HTTP {status}" + (f" {code}" if code else "")


@dataclass(frozen=True, slots=True)
class Policy:
    failures: int = 3               # consecutive failures that open a closed breaker
    error_rate: float = 0.5         # … or a failure share above this over the window
    window: int = 60                # seconds
    min_requests: int = 10          # … with at least this many requests in it
    cooldown: float = 5.0           # first cool-down; doubles on every trip in a row
    max_cooldown: float = 300.0
    trial_timeout: float = 30.0     # a half-open trial that never reported frees its slot after this

    @classmethod
    def from_settings(cls) -> "Policy":
        d = cls()
        return cls(failures=setting("TOLLGATE_BREAKER_FAILURES", d.failures),
                   error_rate=setting("TOLLGATE_BREAKER_ERROR_RATE", d.error_rate),
                   window=setting("TOLLGATE_BREAKER_WINDOW_SECONDS", d.window),
                   min_requests=setting("TOLLGATE_BREAKER_MIN_REQUESTS", d.min_requests),
                   cooldown=setting("TOLLGATE_BREAKER_COOLDOWN_SECONDS", d.cooldown),
                   max_cooldown=setting("TOLLGATE_BREAKER_MAX_COOLDOWN_SECONDS", d.max_cooldown))

    def cooldown_after(self, trips: int) -> float:
        return min(self.cooldown * 2 ** max(trips - 1, 0), self.max_cooldown)


@dataclass(slots=True)
class Transition:
    scope: str
    from_state: str
    to_state: str                   # open | closed
    reason: str
    at: float                       # wall clock, shared by every process
    cooldown: float | None = None
    fatal: bool = False
    source: str = "traffic"
    entry: dict | None = None       # what is published for the other processes


class Breaker:
    """One scope's breaker. Not thread-safe: the relay uses it from its event loop only."""

    __slots__ = ("scope", "state", "consecutive", "trips", "until", "changed_at", "trial_at", "reason", "fatal",
                 "_secs", "_oks", "_fails")

    def __init__(self, scope: str, window: int = 60):
        self.scope, self.state, self.reason, self.fatal = scope, CLOSED, "", False
        self.consecutive = self.trips = 0
        self.until = self.changed_at = self.trial_at = 0.0
        self._secs, self._oks, self._fails = [0] * window, [0] * window, [0] * window

    @classmethod
    def from_entry(cls, scope: str, entry: dict | None, policy: Policy) -> "Breaker":
        breaker = cls(scope, policy.window)
        if entry:
            breaker.adopt(entry)
        return breaker

    # --- the verdict -------------------------------------------------------------------------------------
    def admits(self, now: float, policy: Policy) -> int:
        if self.state == CLOSED:
            return PASS
        if self.state == OPEN:
            return DENY if now < self.until else TRIAL
        return DENY if now - self.trial_at < policy.trial_timeout else TRIAL   # half-open, trial in flight

    def start_trial(self, now: float) -> None:
        self.state, self.trial_at = HALF_OPEN, now

    def effective_state(self, now: float) -> str:
        return HALF_OPEN if self.state == OPEN and now >= self.until else self.state

    # --- outcomes ----------------------------------------------------------------------------------------
    def record(self, ok: bool, now: float, policy: Policy, reason: str = "", *, fatal: bool = False,
               source: str = "traffic") -> Transition | None:
        if self.state == OPEN and now < self.until:
            return None                  # a late answer to a request sent before it opened
        if self.state != CLOSED:         # the trial's answer (or a probe once the cool-down is over)
            return self._close(now, source) if ok else self._open(now, policy, reason, fatal, source)
        if fatal:
            return self._open(now, policy, reason, True, source)
        sec = int(now)
        i = sec % len(self._secs)
        if self._secs[i] != sec:
            self._secs[i], self._oks[i], self._fails[i] = sec, 0, 0
        if ok:
            self.consecutive = 0
            self._oks[i] += 1
            return None
        self._fails[i] += 1
        self.consecutive += 1
        if self.consecutive >= policy.failures:
            return self._open(now, policy, f"{self.consecutive} failures in a row, last: {reason}", False, source)
        oldest = sec - len(self._secs)
        fails = sum(f for s, f in zip(self._secs, self._fails) if s > oldest)
        total = fails + sum(o for s, o in zip(self._secs, self._oks) if s > oldest)
        if total >= policy.min_requests and fails > policy.error_rate * total:
            return self._open(now, policy, f"{fails} of {total} failed in {policy.window}s, last: {reason}",
                              False, source)
        return None

    def _reset_counts(self) -> None:
        self.consecutive = 0
        self._secs = [0] * len(self._secs)

    def _open(self, now, policy, reason, fatal, source) -> Transition:
        before = self.effective_state(now)
        if self.state == CLOSED and now - self.changed_at > policy.max_cooldown + policy.window:
            self.trips = 0               # a trip long after the last one starts the cool-downs over
        self.trips += 1
        cooldown = policy.cooldown_after(self.trips)
        self.state, self.until, self.changed_at, self.reason, self.fatal = OPEN, now + cooldown, now, reason, fatal
        self._reset_counts()
        return Transition(self.scope, before, OPEN, reason, now, cooldown, fatal, source, self.entry())

    def _close(self, now, source) -> Transition:
        before = self.effective_state(now)
        self.state, self.changed_at, self.reason, self.fatal = CLOSED, now, "", False
        self._reset_counts()
        return Transition(self.scope, before, CLOSED, "recovered", now, None, False, source, self.entry())

    # --- sharing -------------------------------------------------------------------------------------------
    def entry(self) -> dict:
        return {"state": OPEN if self.state == HALF_OPEN else self.state, "until": self.until,
                "trips": self.trips, "at": self.changed_at, "reason": self.reason, "fatal": self.fatal}

    def adopt(self, entry: dict) -> bool:
        """Take another process's newer transition; True when it changed this breaker."""
        if entry["at"] <= self.changed_at:
            return False
        self.state = OPEN if entry["state"] == OPEN else CLOSED
        self.until, self.trips, self.changed_at = entry["until"], entry["trips"], entry["at"]
        self.reason, self.fatal = entry.get("reason", ""), entry.get("fatal", False)
        self._reset_counts()
        return True


def entry_state(entry: dict | None, now: float) -> str:
    if not entry or entry["state"] != OPEN:
        return CLOSED
    return HALF_OPEN if now >= entry["until"] else OPEN


# --- the shared store ------------------------------------------------------------------------------------
class LocalStore:
    """The embedded default (no Redis): one process, so nested dicts are the whole shared store. It takes the
    few Redis hash commands used here, applied at once (it doubles as its own pipeline)."""

    def __init__(self):
        self.data: dict[str, dict[str, bytes | int]] = {}

    def hincrby(self, key, field, n):
        h = self.data.setdefault(key, {})
        h[field] = int(h.get(field, 0)) + n

    def hset(self, key, field, value):
        self.data.setdefault(key, {})[field] = value

    def hdel(self, key, *fields):
        for f in fields:
            self.data.get(key, {}).pop(f, None)

    def hgetall(self, key):
        items = list(self.data.get(key, {}).items())
        return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in items}

    def expire(self, key, ttl):
        pass

    def clear(self):
        self.data.clear()


LOCAL = LocalStore()


def sync_store():
    from gateway_site import shared_cache

    return shared_cache.sync_client() or LOCAL


def queue_stats(pipe, counters: dict[str, list[int]], now: float) -> None:
    """Queue the increments of passive counters (scope → STAT_FIELDS values) into minute and hour buckets."""
    if not counters:
        return
    for period, prefix, ttl in (MINUTE_BUCKETS, HOUR_BUCKETS):
        key = f"{prefix}{int(now // period)}"
        for scope, values in counters.items():
            for name, n in zip(STAT_FIELDS, values):
                if n:
                    pipe.hincrby(key, f"{scope}|{name}", n)
        pipe.expire(key, ttl)


def new_counters() -> list[int]:
    return [0] * len(STAT_FIELDS)


def queue_publish(pipe, transitions: list[Transition]) -> None:
    for t in transitions:
        pipe.hset(BREAKERS_KEY, t.scope, json.dumps(t.entry))


def decode_breakers(raw: dict) -> dict[str, dict]:
    out = {}
    for field, value in (raw or {}).items():
        try:
            out[field.decode() if isinstance(field, bytes) else field] = json.loads(value)
        except (ValueError, TypeError):
            continue
    return out


def read_breakers() -> dict[str, dict]:
    return decode_breakers(sync_store().hgetall(BREAKERS_KEY))


def read_buckets(kind: tuple, count: int, now: float | None = None) -> list[dict[str, list[int]]]:
    """The last `count` buckets (oldest first) of minute or hour stats: each scope → STAT_FIELDS values."""
    period, prefix, _ = kind
    last = int((now or time.time()) // period)
    keys = [f"{prefix}{n}" for n in range(last - count + 1, last + 1)]
    store = sync_store()
    if isinstance(store, LocalStore):
        raws = [store.hgetall(k) for k in keys]
    else:
        pipe = store.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        raws = pipe.execute()
    index = {name: i for i, name in enumerate(STAT_FIELDS)}
    buckets = []
    for raw in raws:
        bucket: dict[str, list[int]] = {}
        for field, value in raw.items():
            scope, _, name = field.decode().rpartition("|")
            if name in index:
                bucket.setdefault(scope, new_counters())[index[name]] += int(value)
        buckets.append(bucket)
    return buckets


def latency_buckets(latency_ms: int) -> tuple[int, int]:
    """The STAT_FIELDS indexes of the coarse and the fine bucket one latency counts in."""
    return (3 + bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms),
            FINE_OFFSET + bisect.bisect_left(FINE_BOUNDS_MS, latency_ms))


def percentile(values: list[int], q: float) -> int | None:
    """The q-quantile (0..1) of latency (ms) from STAT_FIELDS values, interpolated inside its bucket: the
    fine buckets when they hold counts, else (stats written before they existed) the coarse ones."""
    hist, bounds = values[FINE_OFFSET:], FINE_BOUNDS_MS
    if not sum(hist):
        hist, bounds = values[3:FINE_OFFSET], LATENCY_BOUNDS_MS
    total = sum(hist)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            low = bounds[i - 1] if i else 0
            high = bounds[i] if i < len(bounds) else 2 * bounds[-1]
            return int(low + (high - low) * (rank - seen) / n)
        seen += n
    return None


# --- transitions: published, recorded, flagged -----------------------------------------------------------
def save_transitions(transitions: list[Transition]) -> None:
    """ChannelHealthEvent rows (redacted reasons); credential/billing trips flag the channel for an admin.
    Off the request path: the relay calls it from its background task, probes from Celery."""
    import datetime as dt

    from core.redaction import redact
    from routing.models import Channel, ChannelHealthEvent, Model

    if not transitions:
        return
    scopes = {t.scope: parse_scope(t.scope) for t in transitions}
    channel_ids = set(Channel.objects.filter(pk__in={c for c, _ in scopes.values()}).values_list("pk", flat=True))
    model_ids = set(Model.objects.filter(pk__in={m for _, m in scopes.values() if m}).values_list("pk", flat=True))
    rows = []
    for t in transitions:
        channel_id, model_id = scopes[t.scope]
        if channel_id not in channel_ids:
            continue                     # deleted meanwhile
        reason = redact(t.reason)[:300]
        rows.append(ChannelHealthEvent(
            channel_id=channel_id, model_id=model_id if model_id in model_ids else None,
            created_at=dt.datetime.fromtimestamp(t.at, dt.timezone.utc), from_state=t.from_state,
            to_state=t.to_state, reason=reason, cooldown_seconds=t.cooldown, source=t.source))
        if t.fatal:
            Channel.objects.filter(pk=channel_id).update(needs_attention=True, attention_reason=reason)
    ChannelHealthEvent.objects.bulk_create(rows)


def publish(transitions: list[Transition]) -> None:
    """Publish transitions made outside the relay (probes) and record them."""
    if not transitions:
        return
    store = sync_store()
    if isinstance(store, LocalStore):
        queue_publish(store, transitions)
    else:
        pipe = store.pipeline(transaction=False)
        queue_publish(pipe, transitions)
        pipe.execute()
    save_transitions(transitions)


def apply_probe(channel_id: int, model_id: int | None, *, ok: bool, status: int | None, code: str | None,
                error_class: str, failed_in_a_row: int, policy: Policy | None = None) -> list[Transition]:
    """Feed one probe's outcome to the shared breakers, like live traffic: a success closes a breaker whose
    cool-down is over; a failure re-opens it, and `failures` probes failed in a row open a closed one."""
    policy = policy or Policy.from_settings()
    now = time.time()
    kind = failure_kind(ok, status, code, error_class)
    reason = "" if ok else "probe: " + describe(status, code, error_class)
    remote = read_breakers()
    transitions = []
    targets = [(channel_scope(channel_id), kind in (None, FATAL, TRANSPORT))]
    if model_id:
        targets.append((model_scope(channel_id, model_id), kind in (None, UPSTREAM)))
    for scope, applies in targets:
        if not applies:
            continue
        breaker = Breaker.from_entry(scope, remote.get(scope), policy)
        if ok and breaker.state == CLOSED:
            continue
        if not ok and breaker.state == CLOSED:
            breaker.consecutive = max(failed_in_a_row - 1, 0)
        t = breaker.record(ok, now, policy, reason, fatal=kind == FATAL, source="probe")
        if t:
            transitions.append(t)
    publish(transitions)
    return transitions


def prune_closed(older_than: float = 86400) -> None:
    """Forget breakers closed more than a day ago (their history lives on as ChannelHealthEvent rows)."""
    now = time.time()
    stale = [s for s, e in read_breakers().items() if e["state"] == CLOSED and now - e["at"] > older_than]
    if stale:
        sync_store().hdel(BREAKERS_KEY, *stale)
