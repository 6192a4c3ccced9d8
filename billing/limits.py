"""Budgets, rate limits and holds, shared by every gateway process: one atomic Redis script per request
before forwarding (`reserve`) and one after (`settle`, not awaited by the response).

Scopes: the key, its key group, the route (task tier), the team's monthly cap and the team's balance. Each
budget-like scope holds the request's worst-case cost (prompt estimate + max_tokens, or a default output
allowance) clipped to what is left; a request is refused only when even its minimum (the prompt alone)
does not fit. Rate scopes count requests and tokens per minute and requests in flight.

Redis keeps nothing on disk here: a missing spend or balance counter is rebuilt from PostgreSQL (usage
records, ledger) before the script runs again, so a Redis restart never resets a budget to zero. The
embedded default (no Redis) runs the same algorithm in-process under a lock.

Redis down (shared_cache.outage): the process runs that same in-process twin, from counters rebuilt from
PostgreSQL when the outage starts, so rates and concurrency become per-process limits and budgets are checked
against what the database says is left; on top, each process lets a team spend at most
TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE a minute (`outage_check`). Settles that could not reach Redis are
kept and sent when it is back with its data; when it came back empty they are dropped (the counters they
would move are rebuilt from the database, which holds their usage: the journal is flushed first).
docs/reliability.md says what each outage does.
"""
import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from redis.exceptions import NoScriptError

from gateway_site import shared_cache
from gateway_site.db import db_call

log = logging.getLogger(__name__)


class Metric(StrEnum):
    """What a check counts."""
    REQUESTS = "requests"          # per minute
    TOKENS = "tokens"              # per minute: the estimate is taken, the real count settled
    MONEY = "money"                # micro-units per period, or the team's balance
    CONCURRENCY = "concurrency"    # requests in flight


class Scope(StrEnum):
    """Whose limit a check is."""
    KEY = "key"
    GROUP = "key group"
    ROUTE = "route"
    TEAM = "team"
    BALANCE = "balance"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a money counter is rebuilt from when the cache lost it: the team's usage records since `start`
    (those with `field` = `ident` when a field is given) or, for the balance, the team's ledger."""
    team_id: int
    field: str | None = None
    ident: Any = None              # the field's value: a key or group id, or the route names (route__in)
    start: float | None = None     # unix seconds; None: since the beginning
    end: float | None = None       # when the period ends (the counter's expiry); None: it does not


# --- the table of checks: the one definition the Redis scripts and the in-process twin both follow ---------
@dataclass(frozen=True, slots=True)
class Kind:
    counted: bool          # a count checked against the limit; else money left checked against the minimum
    take: str              # what a reservation adds: "amount" (the check's), "one" (a slot), "hold"
    into: str              # which key it goes into: "key" or "aux"
    ttl: int               # seconds the taken counter lives (the sweep gives back a dead process's holds)
    metric: Metric         # the metric of a check that does not name one
    capped: bool = False   # money left = limit - spent - held (a budget); else available - held (the balance)


KINDS = {
    "rate": Kind(counted=True, take="amount", into="key", ttl=120, metric=Metric.REQUESTS),
    "conc": Kind(counted=True, take="one", into="key", ttl=86400, metric=Metric.CONCURRENCY),
    "budget": Kind(counted=False, take="hold", into="aux", ttl=86400, metric=Metric.MONEY, capped=True),
    "balance": Kind(counted=False, take="hold", into="aux", ttl=86400, metric=Metric.MONEY),
}
# What settling moves by the real spend: counter → (the script's variable, sign). Counters not cached are left
# alone (the next request rebuilds them from the database, real spend included).
SETTLE_MOVES = {"tokens": ("delta", 1), "budget": ("cost", 1), "balance": ("cost", -1)}
# The embedded default has no sweep and is one process: its slots and holds live at most this long.
LOCAL_SLOT_TTL = 900
HOLDS, HOLDS_DATA = "tg:holds", "tg:holds:data"
SWEPT, SWEPT_AT = "tg:holds:swept", "tg:holds:swept-at"   # the sweep's tombstones: record, and when
READ = "tg:read:"   # + a counter's key: how far into each journal file its rebuild read
CREDITS = "tg:credits:"   # + a balance counter's key: the ledger id its rebuild read up to, and entries past it
# + a money counter's key: the moves of settles that found it missing ("file|offset" → "ms|amount", Redis time),
# for the rebuild that sets it: those whose journal line its read did not take in are added (REBUILD_LUA).
PENDING = "tg:pending:"
PENDING_TTL = 300   # a rebuild takes milliseconds; entries older than the rebuild in flight are never added
BALANCE_TTL = 7 * 86400


def _lua_table(values: dict) -> str:
    def lua(v):
        return "true" if v is True else repr(v) if isinstance(v, str) else str(v)
    return "{" + ", ".join(f"{k}={lua(v)}" for k, v in values.items()) + "}"


_LUA_KINDS = f"""
local counted = {_lua_table({k: True for k, v in KINDS.items() if v.counted})}
local capped = {_lua_table({k: True for k, v in KINDS.items() if v.capped})}
local take = {_lua_table({k: v.take for k, v in KINDS.items()})}
local into = {_lua_table({k: v.into for k, v in KINDS.items()})}
local ttl = {_lua_table({k: v.ttl for k, v in KINDS.items()})}
"""
# A reservation's record (HOLDS_DATA[request id] = "hold|held keys|slot keys|money counters"), given back once:
# by its settle, or by the sweep when its process died before settling. The sweep keeps what it gave back as
# a tombstone (SWEPT) for a day, so the replay of the dead process's journal can still count the spend once
# (`settle_replayed`). `release` returns the record, or false when there was none.
_LUA_RELEASE = f"""
local function release(rid)
  local data = redis.call('HGET', '{HOLDS_DATA}', rid)
  if data then
    local hold, held, slots = string.match(data, '^(-?%d+)|([^|]*)|([^|]*)')
    for key in string.gmatch(held, '[^,]+') do redis.call('DECRBY', key, tonumber(hold)) end
    for key in string.gmatch(slots, '[^,]+') do
      if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
    end
    redis.call('HDEL', '{HOLDS_DATA}', rid)
  end
  redis.call('ZREM', '{HOLDS}', rid)
  return data
end
"""
# ARGV: worst, minimum, request id, sweep-at (unix s), then checks of 5: kind, key, limit, amount, aux key.
# Returns {1, hold, per check the count after this request}, {0, refused check, left, rate counts} or
# {2, check whose counter must be rebuilt first}.
RESERVE_LUA = _LUA_KINDS + f"""
local n = #ARGV
local worst, minimum, rid, sweep_at = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local hold = worst
local used_list = {{}}
-- On a refusal: every rate counter as it stands (this request not counted), for the x-ratelimit-* headers.
local function counts()
  local out = {{}}
  for j = 5, n, 5 do
    out[#out + 1] = (ARGV[j] == 'rate') and tonumber(redis.call('GET', ARGV[j+1]) or '0') or 0
  end
  return out
end
for i = 5, n, 5 do
  local kind, key, limit, amount, aux = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3]), ARGV[i+4]
  if counted[kind] then
    local used = tonumber(redis.call('GET', key) or '0')
    if used + amount > limit then return {{0, (i - 5) / 5, used, counts()}} end
    used_list[#used_list + 1] = used + amount
  else
    local base = redis.call('GET', key)
    if not base then return {{2, (i - 5) / 5, 0}} end
    local held = tonumber(redis.call('GET', aux) or '0')
    local left = capped[kind] and (limit - tonumber(base) - held) or (tonumber(base) - held)
    if left < minimum then return {{0, (i - 5) / 5, left, counts()}} end
    if left < hold then hold = left end
    used_list[#used_list + 1] = 0
  end
end
local held_keys, slots, money = {{}}, {{}}, {{}}
for i = 5, n, 5 do
  local kind, key, amount, aux = ARGV[i], ARGV[i+1], tonumber(ARGV[i+3]), ARGV[i+4]
  local target = (into[kind] == 'key') and key or aux
  local by = (take[kind] == 'amount' and amount) or (take[kind] == 'one' and 1) or hold
  redis.call('INCRBY', target, by); redis.call('EXPIRE', target, ttl[kind])
  if take[kind] == 'one' then slots[#slots + 1] = target
  elseif take[kind] == 'hold' then held_keys[#held_keys + 1] = target; money[#money + 1] = kind .. '=' .. key end
end
redis.call('ZADD', '{HOLDS}', sweep_at, rid)
redis.call('HSET', '{HOLDS_DATA}', rid, hold .. '|' .. table.concat(held_keys, ',') .. '|' .. table.concat(slots, ',')
  .. '|' .. table.concat(money, ','))
return {{1, hold, used_list}}
"""
# ARGV: request id, cost, token delta, the journal file and end offset of the request's usage line ('' and 0:
# none), replay ('1': the replay of a dead process's journal), then counter/key pairs to move (SETTLE_MOVES).
#
# A counter moves by a request's spend at most once, and never when its rebuild already counted it: `rebuild`
# records, per counter, how far into each journal file it read (READ..key: file → offset), and a settle whose
# line ends within that was counted by the rebuild (from the journal or the database). A live settle always
# moves (a second one of the same request moves by 0); a replayed one only when it takes the reservation's
# record or tombstone, which a live settle also takes (so the replay of a journal never moves twice).
SETTLE_LUA = _LUA_RELEASE + f"""
local rid, cost, delta, file, pos = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local replay = ARGV[6] == '1'
local data = release(rid)
if not data then
  data = redis.call('HGET', '{SWEPT}', rid)
  if data then redis.call('HDEL', '{SWEPT}', rid); redis.call('ZREM', '{SWEPT_AT}', rid)
  elseif replay then return 0 end
end
-- `0 - cost`, not `-cost`: Lua's -0 reaches Redis as "-0", which INCRBY refuses (a zero-cost settle failed).
local by = {{{", ".join(f"{name}={'0 - ' if sign < 0 else ''}{var}" for name, (var, sign) in SETTLE_MOVES.items())}}}
local function move(name, key)
  if redis.call('EXISTS', key) == 0 then
    -- Missing: a rebuild may be reading the journal now; if its read missed this line, it adds this move.
    if file ~= '' and (name == 'budget' or name == 'balance') then
      local t = redis.call('TIME')
      local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
      redis.call('HSET', '{PENDING}' .. key, file .. '|' .. pos, ms .. '|' .. string.format('%d', by[name]))
      redis.call('EXPIRE', '{PENDING}' .. key, {PENDING_TTL})
    end
    return
  end
  if file ~= '' then
    local upto = redis.call('HGET', '{READ}' .. key, file)
    if upto and pos <= tonumber(upto) then return end
  end
  redis.call('INCRBY', key, by[name])
end
if replay then
  local money = string.match(data, '^[^|]*|[^|]*|[^|]*|?(.*)$')
  for name, key in string.gmatch(money, '(%a+)=([^,]+)') do move(name, key) end
else
  for i = 7, #ARGV, 2 do move(ARGV[i], ARGV[i+1]) end
end
return 1
"""
# Give back the holds and slots of reservations past their sweep time (their process died), keeping their
# records as tombstones for the journal replay; tombstones older than a day go. ARGV: now, max.
SWEEP_LUA = _LUA_RELEASE + f"""
local now = tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', '{HOLDS}', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, rid in ipairs(stale) do
  local data = release(rid)
  if data then redis.call('HSET', '{SWEPT}', rid, data); redis.call('ZADD', '{SWEPT_AT}', now, rid) end
end
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', '{SWEPT_AT}', '-inf', now - 86400, 'LIMIT', 0, 1000)) do
  redis.call('HDEL', '{SWEPT}', rid); redis.call('ZREM', '{SWEPT_AT}', rid)
end
return #stale
"""
# ARGV: value, ttl (s), the last ledger entry id the rebuild read ('': not a balance), when the rebuild began
# (Redis time, ms), then journal file/offset pairs: what the rebuild counted. Sets the counter and its read marks
# together unless the counter exists (another process rebuilt it first), and adds the pending moves of settles
# that found it missing after the rebuild began for a line its read did not take in (a file it did not read is
# newer than its read). A balance's rebuild also adds the entries past its ledger mark whose move
# (CREDIT_LUA) came before this set, and keeps them with the mark: CREDITS..key holds, while the counter
# exists, the mark and exactly the entries past it that are in the counter.
REBUILD_LUA = f"""
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
redis.call('DEL', '{READ}' .. key)
local read = {{}}
for i = 5, #ARGV, 2 do redis.call('HSET', '{READ}' .. key, ARGV[i], ARGV[i+1]); read[ARGV[i]] = tonumber(ARGV[i+1]) end
redis.call('EXPIRE', '{READ}' .. key, ARGV[2])
local pending, since = redis.call('HGETALL', '{PENDING}' .. key), tonumber(ARGV[4])
redis.call('DEL', '{PENDING}' .. key)
for j = 1, #pending, 2 do
  local f, p = string.match(pending[j], '^(.*)|(%d+)$')
  local ms, amount = string.match(pending[j+1], '^(%d+)|(-?%d+)$')
  if tonumber(ms) >= since and (read[f] == nil or tonumber(p) > read[f]) then redis.call('INCRBY', key, amount) end
end
if ARGV[3] ~= '' then
  local credits, mark = '{CREDITS}' .. key, tonumber(ARGV[3])
  local seen = redis.call('HGETALL', credits)
  redis.call('DEL', credits)
  redis.call('HSET', credits, 'mark', ARGV[3])
  for j = 1, #seen, 2 do
    if seen[j] ~= 'mark' and tonumber(seen[j]) > mark then
      redis.call('INCRBY', key, seen[j+1]); redis.call('HSET', credits, seen[j], seen[j+1])
    end
  end
  redis.call('EXPIRE', credits, ARGV[2])
end
return 1
"""
# The move of a committed ledger entry (not usage) into the team's balance counter. KEYS: the counter; ARGV:
# entry id, amount, ttl. Once per entry; not when the counter's rebuild read it (id within its mark); when the
# counter is missing, kept for the rebuild that sets it (its snapshot may predate the entry's commit). A team's
# entries commit in id order (each insert holds the team's balance lock), so "within the mark" is exact.
CREDIT_LUA = f"""
local key, id = KEYS[1], ARGV[1]
local credits = '{CREDITS}' .. key
if redis.call('HEXISTS', credits, id) == 1 then return 0 end
if redis.call('EXISTS', key) == 1 then
  local mark = redis.call('HGET', credits, 'mark')
  if mark and tonumber(id) <= tonumber(mark) then return 0 end
  redis.call('INCRBY', key, ARGV[2])
end
redis.call('HSET', credits, id, ARGV[2])
redis.call('EXPIRE', credits, ARGV[3])
return 1
"""


@dataclass(slots=True)
class Check:
    kind: str            # rate | conc | budget | balance: how its counter is kept (KINDS)
    key: str
    limit: int
    amount: int
    aux: str = ""
    label: str = ""      # what the client is told: "key group 'production' daily budget"
    metric: Metric | None = None     # None: the kind's (a rate check counts requests unless told tokens)
    scope: Scope | None = None
    source: Source | None = None     # how to rebuild a money counter from the database
    reset: str = ""      # when it resets, for the message

    def __post_init__(self):
        if self.metric is None:
            self.metric = KINDS[self.kind].metric

    @property
    def settle_move(self) -> str | None:
        """The counter settling moves by the real spend (SETTLE_MOVES), if any."""
        if self.metric is Metric.TOKENS:
            return "tokens"
        return self.kind if self.kind in SETTLE_MOVES else None


@dataclass(slots=True)
class Reservation:
    checks: list[Check]
    hold: int
    estimate_tokens: int
    request_id: str = "-"


class LimitsUnavailable(Exception):
    """The limits cannot be checked: Redis is down and the outage allowance is spent, or a counter must be
    rebuilt while PostgreSQL is down. The relay answers 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class LimitExceeded(Exception):
    def __init__(self, check: Check, left: int, counts: list[int] | None = None):
        super().__init__(check.label)
        # counts: per check, the rate counter as it stands (0 for other kinds), for the x-ratelimit-* headers
        self.check, self.left, self.counts = check, left, counts or []


# --- periods ---------------------------------------------------------------------------------------------
def period_start(period: str, now: dt.datetime) -> dt.datetime | None:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None


def period_end(period: str, now: dt.datetime) -> dt.datetime | None:
    start = period_start(period, now)
    if start is None:
        return None
    if period == "day":
        return start + dt.timedelta(days=1)
    if period == "week":
        return start + dt.timedelta(days=7)
    return (start + dt.timedelta(days=32)).replace(day=1)


def period_tag(period: str, now: dt.datetime) -> str:
    start = period_start(period, now)
    return "all" if start is None else f"{period[0]}{start:%Y%m%d}"


# --- the embedded default: the same algorithm in-process, line for line with the scripts above ------------
def _target(c: Check) -> str:
    return c.key if KINDS[c.kind].into == "key" else c.aux


def _local_reserve(worst: int, minimum: int, checks: list[Check]) -> tuple:
    """RESERVE_LUA against the in-process store; the same return values."""
    data = shared_cache.memory_store()

    def counts():
        return [int(data.get(c.key) or 0) if c.kind == "rate" else 0 for c in checks]

    with data.lock:
        hold, used_list = worst, []
        for i, c in enumerate(checks):
            kind = KINDS[c.kind]
            if kind.counted:
                used = int(data.get(c.key) or 0)
                if used + c.amount > c.limit:
                    return 0, i, used, counts()
                used_list.append(used + c.amount)
            else:
                base = data.get(c.key)
                if base is None:
                    return 2, i, 0
                held = int(data.get(c.aux) or 0)
                left = (c.limit - int(base) - held) if kind.capped else (int(base) - held)
                if left < minimum:
                    return 0, i, left, counts()
                hold = min(hold, left)
                used_list.append(0)
        for c in checks:
            kind = KINDS[c.kind]
            by = c.amount if kind.take == "amount" else 1 if kind.take == "one" else hold
            data.incrby(_target(c), by, min(kind.ttl, LOCAL_SLOT_TTL))
        return 1, hold, used_list


def _local_settle(res: Reservation, cost: int, delta: int, moves: list[tuple[str, str]],
                  mark: tuple[str, int] | None = None) -> None:
    """SETTLE_LUA against the in-process store: release the reservation's holds and slots (its record is the
    reservation itself: one process), then move the cached counters by the real spend, except those whose
    rebuild already counted the journal line at `mark`."""
    data = shared_cache.memory_store()
    values = {"cost": cost, "delta": delta}
    with data.lock:
        for c in res.checks:
            kind, target = KINDS[c.kind], _target(c)
            if kind.take == "hold":
                data.incrby(target, -res.hold, LOCAL_SLOT_TTL)
            elif kind.take == "one" and int(data.get(target) or 0) > 0:
                data.incrby(target, -1, LOCAL_SLOT_TTL)
        for name, key in moves:
            var, sign = SETTLE_MOVES[name]
            if data.get(key) is None:   # kept for a rebuild in flight whose read missed the line (REBUILD_LUA)
                if mark is not None and name in MONEY_MOVES:
                    pending = orjson.loads(data.get(PENDING + key) or b"{}")
                    pending[f"{mark[0]}|{mark[1]}"] = [time.monotonic(), sign * values[var]]
                    data.set(PENDING + key, orjson.dumps(pending), PENDING_TTL)
            elif not _locally_counted(data, key, mark):
                data.incrby(key, sign * values[var])


def _locally_counted(data, key: str, mark: tuple[str, int] | None) -> bool:
    read = data.get(READ + key) if mark else None
    return read is not None and mark is not None and mark[1] <= orjson.loads(read).get(mark[0], -1)


# --- rebuilding counters from the database (cold path) --------------------------------------------------
def database_value(source: Source, balance: bool = False) -> int:
    """What a money counter is worth by the database: the team's available balance (balance less unbilled
    usage) or the spend of the source's usage records since its start."""
    from billing.models import UsageRecord

    if balance:
        return balance_read(source.team_id)[0]
    qs = UsageRecord.objects.filter(team_id=source.team_id)
    if source.field:
        qs = qs.filter(**{source.field: source.ident})
    if source.start:
        qs = qs.filter(created_at__gte=dt.datetime.fromtimestamp(source.start, dt.UTC))
    return qs.aggregate(s=Sum("cost"))["s"] or 0


def balance_read(team_id: int) -> tuple[int, int]:
    """(the team's available balance, the last ledger entry id that value includes), from one statement."""
    from billing.models import LedgerEntry, TeamBalance, UsageRecord

    # One statement, so one snapshot: read apart, a reconciliation committing between the two reads (the
    # balance before it, the unbilled usage after it) counted its records as neither (found by make soak); a
    # credit committing between the balance and the mark would be skipped by its move (CREDIT_LUA).
    pending = (UsageRecord.objects.filter(team_id=OuterRef("team_id"), billed_at=None).order_by()
               .values("team_id").annotate(s=Sum("cost")).values("s"))
    last = LedgerEntry.objects.filter(team_id=OuterRef("team_id")).order_by("-id").values("id")[:1]
    row = (TeamBalance.objects.filter(team_id=team_id)
           .annotate(unbilled=Coalesce(Subquery(pending), 0), mark=Coalesce(Subquery(last), 0))
           .values_list("balance", "unbilled", "mark").first())
    if row is None:   # no balance row yet: no ledger entry (the row is made first) nor reconciliation either
        return -(UsageRecord.objects.filter(team_id=team_id, billed_at=None).aggregate(s=Sum("cost"))["s"] or 0), 0
    return row[0] - row[1], row[2]


JOURNAL_TAIL_BYTES = 256 << 10   # unflushed lines are the end of a journal file: a flush takes them in order


def _read_lines(path: Path, whole: bool) -> tuple[list[dict], int, bool] | None:
    """(the usage records of a journal file's complete lines, the offset where the last one ends, whether the
    start was cut off) of its tail, or of all of it. Open-stream lines are not records yet (usage_journal)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            begin = 0 if whole else max(0, size - JOURNAL_TAIL_BYTES)
            fh.seek(begin)
            data = fh.read(size - begin)
    except OSError:
        return None
    end = data.rfind(b"\n") + 1    # a line still being written is not read (its settle moves the counter)
    lines = data[:end].split(b"\n")
    records = []
    for line in lines[1 if begin else 0:]:   # the first may be cut by the seek
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("request_id"), str) and not record.get("_open"):
            records.append(record)
    return records, begin + end, begin > 0


def _stored(ids) -> set[str]:
    from billing.models import UsageRecord

    ids, stored = list(ids), set()
    for start in range(0, len(ids), 1000):
        stored.update(UsageRecord.objects.filter(request_id__in=ids[start:start + 1000])
                      .values_list("request_id", flat=True))
    return stored


def unflushed_records(directory=None) -> tuple[list[dict], dict[str, int]]:
    """The usage journal's records not in the database yet, of every process writing to this host's journal
    directory, and how far into each file they were read (file → offset). Called inside the rebuild's
    snapshot, after its database read: a line flushed in between is in the database read or here, not both."""
    directory = Path(directory or settings.TOLLGATE_JOURNAL_DIR)
    records, marks = [], {}
    for path in sorted(directory.glob("usage-*.jsonl")) if directory.exists() else ():
        read = _read_lines(path, whole=False)
        if read is None:
            continue
        lines, marks[path.stem], cut = read
        stored = _stored(r["request_id"] for r in lines)
        if cut and lines and lines[0]["request_id"] not in stored:   # unflushed lines before the tail
            read = _read_lines(path, whole=True)
            if read is None:
                continue
            lines, marks[path.stem], _ = read
            stored = _stored(r["request_id"] for r in lines)
        records += [r for r in lines if r["request_id"] not in stored]
    return records, marks


def _journal_spend(source: Source, records: list[dict]) -> int:
    """The spend of `records` that counts towards `source` (the same filter as database_value's)."""
    from keys.models import ApiKey

    keys = None
    if source.field == "api_key__group_id":
        keys = set(ApiKey.objects.filter(group_id=source.ident).values_list("pk", flat=True))
    total = 0
    for r in records:
        if r.get("team_id") != source.team_id or not isinstance(r.get("cost"), int):
            continue
        if source.start and not (isinstance(r.get("created_at"), (int, float)) and r["created_at"] >= source.start):
            continue
        if source.field == "api_key_id" and r.get("api_key_id") != source.ident:
            continue
        if keys is not None and r.get("api_key_id") not in keys:
            continue
        if source.field == "route__in" and r.get("route") not in source.ident:
            continue
        total += r["cost"]
    return total


def counted_value(check: Check) -> tuple[int, dict[str, int], int | None]:
    """What a money counter is worth: the database plus the journal's records not in it yet (their settle may
    have found no counter to move), read in one snapshot; how far into each journal file that read went; and,
    for a balance, the last ledger entry id it read (None otherwise).

    Every record is counted once, by the rebuild or by its settle: a settle whose journal line ends within the
    read marks does not move the rebuilt counter (SETTLE_LUA). So a settle queued or in flight while a counter
    is rebuilt, in this process or another on this host, counts whatever reaches Redis first."""
    from django.db import connection, transaction

    source = check.source
    if source is None:
        raise ValueError(f"{check.key} has no source to rebuild it from")
    balance = check.scope is Scope.BALANCE
    outer = connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and not outer:
            # One snapshot for the sum and for which journal lines are stored: read apart, a line flushed
            # between the two reads would be counted by neither.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        value, ledger = balance_read(source.team_id) if balance else (database_value(source), None)
        records, marks = unflushed_records()
        pending = _journal_spend(source, records)
    return (value - pending if balance else value + pending), marks, ledger


def rebuild(check: Check) -> None:
    """Set a missing money counter (counted_value), with its read marks, unless another process did first."""
    since, local_since = _redis_now_ms(), time.monotonic()   # before the read: settles after it may be missed
    value, marks, ledger = counted_value(check)
    source = check.source
    assert source is not None   # counted_value raised otherwise
    if check.scope is Scope.BALANCE:
        ttl = BALANCE_TTL
    else:
        ttl = int(source.end - time.time()) + 86400 if source.end else 40 * 86400
    client = shared_cache.sync_client()
    if client is not None:
        try:
            client.eval(REBUILD_LUA, 1, check.key, value, ttl, "" if ledger is None else ledger,
                        0 if since is None else since, *(x for item in marks.items() for x in item))
            return
        except shared_cache.UNREACHABLE as exc:
            shared_cache.outage.failed(exc)
    data = shared_cache.memory_store()
    with data.lock:   # the in-process twin of REBUILD_LUA
        if data.get(check.key) is None:
            data.set(check.key, str(value).encode(), ttl)
            data.set(READ + check.key, orjson.dumps(marks), ttl)
            _local_pending_added(data, check.key, marks, local_since)
            if ledger is not None:
                _local_credits_rebased(data, check.key, ledger, ttl)


def _redis_now_ms() -> int | None:
    client = shared_cache.sync_client()
    if client is None:
        return None
    try:
        seconds, micros = client.time()
    except shared_cache.UNREACHABLE as exc:
        shared_cache.outage.failed(exc)
        return None
    return seconds * 1000 + micros // 1000


def _local_pending_added(data, key: str, marks: dict[str, int], since: float) -> None:
    """REBUILD_LUA's pending moves in-process: those of settles after `since` whose line the read missed."""
    pending = orjson.loads(data.get(PENDING + key) or b"{}")
    data.delete(PENDING + key)
    for line, (at, amount) in pending.items():
        file, pos = line.rsplit("|", 1)
        if at >= since and (file not in marks or int(pos) > marks[file]):
            data.incrby(key, amount)


def _local_credits_rebased(data, key: str, ledger: int, ttl: int) -> None:
    """REBUILD_LUA's balance part in-process: add the entries past the mark that came first, keep them."""
    seen = orjson.loads(data.get(CREDITS + key) or b"{}")
    kept = {i: amount for i, amount in seen.items() if i != "mark" and int(i) > ledger}
    for amount in kept.values():
        data.incrby(key, amount)
    data.set(CREDITS + key, orjson.dumps({"mark": ledger, **kept}), ttl)


_scripts: dict = {}


def _script(client, source: str):
    """A registered script per client: EVALSHA, so the script's text is not sent with every request."""
    key = (id(client), source)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(source)
    return script


async def _run_pipelined(client, script, batch: list[list], sets: Sequence[tuple[str, bytes, int]] = ()) -> None:
    """The script once per args in one pipelined round trip, after `sets` (key, value, ttl). EVALSHA straight
    away: redis-py's pipelined script call asks SCRIPT EXISTS first, a second round trip per batch (`make
    bench`). A Redis that lost its scripts (restarted) answers NOSCRIPT to each, so ran none: the script is loaded
    and the batch sent again (the sets were written). Any other error reply is raised."""
    for retry in (False, True):
        commands = [("SET", key, value, "EX", ttl) for key, value, ttl in sets]
        commands += [("EVALSHA", script.sha, 0, *args) for args in batch]
        failed = [reply for reply in await shared_cache.execute_pipeline(client, commands)
                  if isinstance(reply, Exception)]
        if not failed:
            return
        if retry or not isinstance(failed[0], NoScriptError):
            raise failed[0]
        sets = ()
        await client.script_load(script.script)


def outage_allowance() -> int:
    """Micro-units a team may spend per minute in one process while Redis is down (on top of its budgets)."""
    return int(shared_cache.setting("TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE", 1_000_000))


def outage_check(checks: list[Check], worst: int) -> Check | None:
    """The extra check a reservation takes while Redis is down: the team's spend in this process this minute,
    against the outage allowance (its counter starts at 0 in the in-process store)."""
    team = next((c.source.team_id for c in checks if c.scope is Scope.BALANCE and c.source), None)
    if team is None:
        return None
    minute = int(time.time() // 60)
    check = Check("budget", f"tg:outage:{team}:{minute}", outage_allowance(), worst, aux=f"tg:outage-held:{team}",
                  label="spending allowed while the limit store is down", metric=Metric.MONEY, scope=Scope.TEAM)
    shared_cache.memory_store().set(check.key, b"0", 120, nx=True)
    return check


# Reservations taken in-process while Redis was down (request id → the outage check they took): they are
# settled in-process, wherever Redis is by then.
_local_reservations: dict[str, list[Check]] = {}


class OutageCollector:
    """Prometheus, read at scrape time (this process): whether Redis is reachable, the outages seen, the calls
    served in-process because it was not, and the settles waiting for it. The relay registers it."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = shared_cache.state()
        yield GaugeMetricFamily("tollgate_cache_up", "1 when this process reaches Redis (or runs without one), "
                                "0 during an outage", value=0 if state["down"] else 1)
        yield GaugeMetricFamily("tollgate_cache_down_seconds", "How long the current Redis outage has lasted",
                                value=state["down_seconds"])
        yield CounterMetricFamily("tollgate_cache_outages", "Redis outages this process has seen",
                                  value=state["outages"])
        yield CounterMetricFamily("tollgate_cache_fallbacks", "Cache reads and limit checks served in-process "
                                  "because Redis was down", value=state["fallbacks"])
        yield GaugeMetricFamily("tollgate_settles_deferred", "Settles waiting for Redis to come back",
                                value=len(_deferred))


async def reserve(worst: int, minimum: int, checks: list[Check], request_id: str = "-") -> tuple[int, list[int]]:
    """Atomically check every limit and take the holds; returns the hold and, per check, the count after
    this request (rate and concurrency checks). Raises LimitExceeded (with the rate counts as they stand), or
    LimitsUnavailable when they cannot be checked."""
    for _ in range(len(checks) + 2):
        client = shared_cache.async_client()
        extra: list[Check] = []
        if client is not None:
            args = [worst, minimum, request_id, round(time.time() + hold_lease(), 3)]
            for c in checks:
                args += [c.kind, c.key, c.limit, c.amount, c.aux or "-"]
            try:
                if shared_cache.known_epoch() is None:
                    await shared_cache.note_epoch(client)
                result = await _reserve_soon(client, args)
            except shared_cache.UNREACHABLE as exc:
                shared_cache.outage.failed(exc)
                continue
        else:
            if shared_cache.redis_configured():
                shared_cache.outage.served_locally()
                extra = [c for c in (outage_check(checks, worst),) if c is not None]
            result = _local_reserve(worst, minimum, checks + extra)
        status, value, more = result[:3]
        if status == 1:
            if extra:
                _local_reservations[request_id] = extra
            elif client is not None:
                _lease(request_id)
            return int(value), [int(u) for u in more][:len(checks)]
        if status == 0:
            if int(value) >= len(checks):
                retry = 60 - int(time.time()) % 60
                raise LimitsUnavailable(
                    f"The gateway's limit store is unreachable, and while it is each gateway process lets a team "
                    f"spend at most {outage_allowance()} micro-units a minute; that is used up. Retry after "
                    f"{retry} s.", retry)
            raise LimitExceeded(checks[int(value)], int(more), [int(u) for u in result[3]][:len(checks)])
        try:
            await db_call(rebuild)(checks[int(value)])
        except (OperationalError, InterfaceError) as exc:
            log.warning("request %s: cannot rebuild limit counter %s: %s", request_id, checks[int(value)].key, exc)
            raise LimitsUnavailable("The gateway cannot check this key's budgets right now (its database is "
                                    "unreachable). Retry in a few seconds.", 5) from None
    raise RuntimeError("limit counters could not be rebuilt")


# Reservations asked for in one event-loop turn, by (loop, client): sent together on the next turn.
_reserving: dict[tuple, list[tuple[list, asyncio.Future]]] = {}
_reserve_tasks: set[asyncio.Task] = set()


def _reserve_soon(client, args: list) -> asyncio.Future:
    """RESERVE_LUA's answer for `args`. The reservations of the requests that reach this in the same
    event-loop turn share one pipelined round trip (c=16: ~4 a turn, `make bench`); sent by a task of their
    own, so a request that is cancelled meanwhile cancels only its own wait."""
    loop = asyncio.get_running_loop()
    queue = _reserving.get((loop, client))
    if queue is None:
        queue = _reserving[(loop, client)] = []
        task = loop.create_task(_send_reserves(loop, client))   # its first step runs on the next turn
        _reserve_tasks.add(task)   # the loop keeps only a weak reference
        task.add_done_callback(_reserve_tasks.discard)
    future = loop.create_future()
    queue.append((args, future))
    return future


async def _send_reserves(loop, client) -> None:
    batch = _reserving.pop((loop, client))
    try:
        results = await _reserve_pipelined(client, [args for args, _ in batch])
    except asyncio.CancelledError:
        for _, future in batch:
            future.cancel()
        raise
    except Exception as exc:   # Redis unreachable: each request's reserve handles it
        results = [exc] * len(batch)
    for (_, future), result in zip(batch, results):
        if future.done():   # its request was cancelled
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


async def _reserve_pipelined(client, batch: list[list]) -> list:
    """RESERVE_LUA once per args, one round trip; each answer or its own error. A Redis without the script
    (restarted) answers NOSCRIPT and ran nothing: the script is loaded and those sent again."""
    script = _script(client, RESERVE_LUA)
    results: list = [None] * len(batch)
    todo = list(range(len(batch)))
    for retry in (False, True):
        answers = await shared_cache.execute_pipeline(client, [("EVALSHA", script.sha, 0, *batch[i]) for i in todo])
        missing = [i for i, answer in zip(todo, answers) if isinstance(answer, NoScriptError)]
        for i, answer in zip(todo, answers):
            results[i] = answer
        if not missing or retry:
            break
        await client.script_load(script.script)
        todo = missing
    return results


def settle_soon(res: Reservation, cost: int, tokens_used: int, mark: tuple[str, int] | None = None) -> None:
    """Release the reservation's holds and slots (unless the sweep already did) and count the real spend, off
    the response path: the settles of the last few milliseconds go to Redis together in one pipelined round
    trip instead of one each (`make bench`). Must be called from the event loop. `mark`: the journal file and
    end offset of the request's usage line (already written), so a counter rebuilt from a read that took the
    line in is not moved twice (SETTLE_LUA).

    A reservation taken in-process (Redis was down) is settled in-process; its spend is also kept for Redis
    (`_deferred`) while Redis is still down, or moves the Redis counters at once when it is back. A settle of a
    Redis reservation that cannot reach Redis waits in `_deferred` for the recovery."""
    _leases.pop(res.request_id, None)
    delta = tokens_used - res.estimate_tokens
    moves = [(move, c.key) for c in res.checks if (move := c.settle_move) is not None]
    head = [res.request_id, cost, delta, *(mark or ("", 0)), 0]
    args = [*head, *(x for move in moves for x in move)]
    extra = _local_reservations.pop(res.request_id, None)
    configured = shared_cache.redis_configured()
    if extra is not None or not configured:
        extra_moves = [(m, c.key) for c in extra or () if (m := c.settle_move) is not None]
        _local_settle(Reservation(res.checks + (extra or []), res.hold, res.estimate_tokens, res.request_id),
                      cost, delta, moves + extra_moves, mark)
    client = shared_cache.async_client()
    if client is None:
        if extra is None and configured:
            _defer([args])
        elif extra is not None:   # its spend, for the Redis counters (it took no tokens there)
            _defer([[*head, *(x for move in moves if move[0] in MONEY_MOVES for x in move)]])
        return
    _batcher(client).add(args)


def _batcher(client) -> "_SettleBatcher":
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _SettleBatcher(client)
    return batcher


def cache_soon(key: str, value: bytes, ttl: int,
               written: Callable[[], object] | None = None) -> asyncio.Task | None:
    """`shared_cache.aset` off the response path, in the next settle pipeline (the settles and writes of a few
    milliseconds share one round trip and one task, `make bench`); returns the task that sends it. Must be
    called from the event loop. Without Redis, or while it is down, the value goes to the in-process store.
    `written()` is called once the value is in Redis or in the in-process store (at once when it went there)."""
    client = shared_cache.async_client()
    if client is None:
        shared_cache.memory_store().set(key, value, ttl)
        if written is not None:
            written()
        return None
    batcher = _batcher(client)
    batcher.sets.append((key, value, ttl))
    if written is not None:
        batcher.written.append(written)
    return batcher.start()


def _call_each(callbacks: list[Callable[[], object]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:   # a caller's bug must not stop the settles
            log.warning("a cache write's callback failed", exc_info=True)


# Settles that could not be sent (Redis down): those of Redis reservations, and the spend of reservations
# settled in-process. Sent on recovery, whether Redis kept its data or not (SETTLE_LUA moves a counter only by
# what its rebuild did not count). Bounded: past the cap the oldest go (their holds come back through the sweep).
_deferred: list[list] = []
MAX_DEFERRED = 100_000
MONEY_MOVES = ("budget", "balance")


def _defer(batch: list[list]) -> None:
    _deferred.extend(batch)
    if len(_deferred) > MAX_DEFERRED:
        dropped = len(_deferred) - MAX_DEFERRED
        del _deferred[:dropped]
        log.error("dropped %d deferred settles (more than %d waiting for Redis)", dropped, MAX_DEFERRED)


def deferred_count() -> int:
    return len(_deferred)


def settles_waiting() -> int:
    """Settles of this process not in Redis yet (deferred, or queued to be sent)."""
    return len(_deferred) + sum(len(b.pending) + b.sending for b in list(_batchers.values()))


async def _send(client, batch: list[list]) -> None:
    script = _script(client, SETTLE_LUA)
    for start in range(0, len(batch), 500):
        try:
            pipe = client.pipeline(transaction=False)
            for args in batch[start:start + 500]:
                await script(args=args, client=pipe)
            await pipe.execute()
        except shared_cache.UNREACHABLE:
            _defer(batch[start:])   # down again: the probe goes on and sends them next time
            raise


async def _recover(client) -> None:
    """Before this process uses Redis again: its usage of the outage goes to the database (so a counter
    rebuilt from now on counts it), then the settles Redis missed are sent. If Redis lost its data, their holds
    are gone (releasing them is a no-op) and each counter moves only by what its rebuild did not count."""
    from billing import usage_journal

    try:
        await usage_journal.journal.flush()
    except Exception:  # the database may be away too: a rebuilt counter reads the journal anyway
        log.warning("could not flush the usage journal before using Redis again", exc_info=True)
    lost = await shared_cache.data_lost(client)
    # Until this returns, requests still run in-process and may add to it: loop until it is empty (the
    # outage ends right after the last await here).
    while _deferred:
        batch, _deferred[:] = list(_deferred), []
        await _send(client, batch)
        log.warning("sent %d settles held back by the Redis outage%s", len(batch),
                    " (Redis lost its data: each counter moved by what its rebuild did not count)" if lost else "")


shared_cache.outage.on_recovery(_recover)


class _SettleBatcher:
    WAIT = 0.002

    def __init__(self, client):
        self.client, self.pending, self.task = client, [], None
        self.sets: list[tuple[str, bytes, int]] = []   # cache_soon's writes, sent with the settles
        self.written: list[Callable[[], object]] = []   # called once the round trip with those writes is over
        self.sending = 0   # settles of the pipeline on its way to Redis

    def add(self, args: list) -> None:
        self.pending.append(args)
        self.start()

    def start(self) -> asyncio.Task:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())
        return self.task

    def _keep_locally(self, sets: list[tuple[str, bytes, int]]) -> None:
        for key, value, ttl in sets:
            shared_cache.memory_store().set(key, value, ttl)

    async def _flush(self) -> None:
        await asyncio.sleep(self.WAIT)
        script = _script(self.client, SETTLE_LUA)
        while self.pending or self.sets:
            batch, self.pending = self.pending, []
            sets, self.sets = self.sets, []
            written, self.written = self.written, []
            if shared_cache.async_client() is None:   # went down meanwhile
                _defer(batch)
                self._keep_locally(sets)
                _call_each(written)
                continue
            self.sending = len(batch)
            try:
                await _run_pipelined(self.client, script, batch, sets)
            except shared_cache.UNREACHABLE as exc:
                shared_cache.outage.failed(exc)
                _defer(batch)
                self._keep_locally(sets)
                log.warning("Redis down: %d settles deferred until it is back", len(batch))
            except Exception:  # a bug: holds come back through the sweep, spend is rebuilt from usage
                log.warning("could not settle %d requests' limits", len(batch), exc_info=True)
            finally:
                self.sending = 0
                _call_each(written)


_batchers: dict = {}


# --- leases: the holds of a process that died go back within a lease and a sweep, not the sweep window -------
# A Redis reservation's sweep time is a short lease, renewed every third of it while its request is in flight
# in this process. kill -9 stops the renewals, so the sweep (every minute) gives its holds and slots back.
# A request that never settles (a bug) stops being renewed after TOLLGATE_HOLD_SWEEP_SECONDS.
_leases: dict[str, float] = {}      # request id → when its Redis reservation was taken
_lease_tasks: dict = {}             # event loop → its renewal task


def hold_lease() -> float:
    return min(getattr(settings, "TOLLGATE_HOLD_LEASE_SECONDS", 30), settings.TOLLGATE_HOLD_SWEEP_SECONDS)


def _lease(request_id: str) -> None:
    _leases[request_id] = time.time()
    loop = asyncio.get_running_loop()
    task = _lease_tasks.get(loop)
    if task is None or task.done():
        _lease_tasks[loop] = loop.create_task(_renew_leases())


async def _renew_leases() -> None:
    while _leases:
        await asyncio.sleep(max(hold_lease() / 3, 0.05))
        now = time.time()
        for rid in [rid for rid, taken in _leases.items() if taken < now - settings.TOLLGATE_HOLD_SWEEP_SECONDS]:
            _leases.pop(rid, None)
        _mark_progress()
        client = shared_cache.async_client()
        if client is None or not _leases:
            continue
        try:   # XX: a hold the sweep or its settle already gave back is not taken again
            await client.zadd(HOLDS, {rid: round(now + hold_lease(), 3) for rid in list(_leases)}, xx=True)
        except shared_cache.UNREACHABLE as exc:
            shared_cache.outage.failed(exc)
        except Exception:
            log.warning("could not renew the leases of %d holds", len(_leases), exc_info=True)


def _mark_progress() -> None:
    """The journal's progress marks of open streams ride on the lease renewal (no timer of their own)."""
    from billing import usage_journal

    try:
        usage_journal.journal.mark_progress()
    except Exception:  # a stream killed now is billed from its previous mark instead
        log.warning("could not journal the progress of open streams", exc_info=True)


def settle_replayed(records: list[tuple[str, int, tuple[str, int] | None]]) -> int:
    """Settle in Redis the usage records replayed from a dead process's journal whose settle never reached
    it: (request id, cost, journal mark or None). Only a record whose reservation record or tombstone is still
    there moves its counters (SETTLE_LUA, replay), so replaying a journal again moves nothing. Returns the
    records that moved. Raises shared_cache.UNREACHABLE: the replay keeps the file and tries again."""
    client = shared_cache.sync_client()
    if client is None:
        if shared_cache.redis_configured():
            raise ConnectionError("Redis is down: the replayed records are settled when it is back")
        return 0   # the embedded default: the counters died with the process and are rebuilt
    moved, script = 0, _script(client, SETTLE_LUA)
    for start in range(0, len(records), 500):
        pipe = client.pipeline(transaction=False)
        for rid, cost, mark in records[start:start + 500]:
            script(args=[rid, cost, 0, *(mark or ("", 0)), 1], client=pipe)
        moved += sum(int(r) for r in pipe.execute())
    return moved


def sweep_stale_holds(batch: int = 500) -> int:
    """Give back holds of requests whose gateway process died before settling (older than the window)."""
    client = shared_cache.sync_client()
    if client is None:
        return 0  # the embedded default is one process: its holds die with it
    total = 0
    while True:
        swept = int(client.eval(SWEEP_LUA, 0, int(time.time()), batch))
        total += swept
        if swept < batch:
            return total


def stale_hold_count() -> int:
    client = shared_cache.sync_client()
    return int(client.zcount(HOLDS, "-inf", int(time.time()))) if client is not None else 0


def balance_changed(team_id: int, amount: int, entry_id: int) -> None:
    """A non-usage ledger entry committed and moved a team's balance: move the available counter by the same
    amount, unless its rebuild read the entry; when it is missing, the rebuild that sets it counts the entry
    (CREDIT_LUA)."""
    key = balance_key(team_id)
    client = shared_cache.sync_client()
    if client is not None:
        try:
            client.eval(CREDIT_LUA, 1, key, entry_id, amount, BALANCE_TTL)
            return
        except shared_cache.UNREACHABLE as exc:
            shared_cache.outage.failed(exc)
    data = shared_cache.memory_store()
    with data.lock:   # the in-process twin of CREDIT_LUA
        seen = orjson.loads(data.get(CREDITS + key) or b"{}")
        if str(entry_id) in seen:
            return
        if data.get(key) is not None:
            if entry_id <= seen.get("mark", 0):
                return
            data.incrby(key, amount)
        data.set(CREDITS + key, orjson.dumps({**seen, str(entry_id): amount}), BALANCE_TTL)


def balance_key(team_id: int) -> str:
    return f"tg:avail:{team_id}"


def route_budget(checks: list[Check]) -> Check | None:
    """The route's budget check, whose counter a soft limit is read from."""
    return next((c for c in checks if c.scope is Scope.ROUTE and c.metric is Metric.MONEY), None)


async def spent(checks: list[Check], rule=None) -> int | None:
    """What a route has spent this period (for its soft limit), from the counter its budget check uses."""
    check = route_budget(checks)
    if check is None:
        return None
    raw = await shared_cache.aget(check.key)
    return int(raw) if raw is not None else None


def route_names(name: str) -> list[str]:
    """The values a route's usage records carry ("auto → route:" was written before headers were ASCII)."""
    return [f"route:{name}", f"auto -> route:{name}", f"auto \u2192 route:{name}"]
