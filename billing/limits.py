"""Budgets, rate limits and holds, shared by every gateway process: one atomic Redis script per request
before forwarding (`reserve`) and one after (`settle`, not awaited by the response).

Scopes: the key, its key group, the route (task tier), the team's monthly cap and the team's balance. Each
budget-like scope holds the request's worst-case cost (prompt estimate + max_tokens, or a default output
allowance) clipped to what is left; a request is refused only when even its minimum (the prompt alone)
does not fit. Rate scopes count requests and tokens per minute and requests in flight.

Redis keeps nothing on disk here: a missing spend or balance counter is rebuilt from PostgreSQL (usage
records, ledger) before the script runs again, so a Redis restart never resets a budget to zero. The
embedded default (no Redis) runs the same algorithm in-process under a lock.
"""
import asyncio
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum

from gateway_site import shared_cache

log = logging.getLogger(__name__)
from gateway_site.db import db_call

# Each check: kind, key, limit, amount, aux key. Kinds: rate (counter in a window), conc (in flight),
# budget (spent key + hold aux key, limit), balance (available key + hold aux key, no limit).
# ARGV: worst, minimum, request id, sweep-at (unix s), then checks of 5: kind, key, limit, amount, aux key.
# Kinds: rate (counter in a window), conc (in flight), budget (spent key + hold aux key, limit), balance
# (available key + hold aux key). Each reservation is indexed (tg:holds zset + tg:holds:data hash) so the
# sweep can give back holds and slots of requests whose process died before settling.
RESERVE_LUA = """
local n = #ARGV
local worst, minimum, rid, sweep_at = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local hold = worst
local used_list = {}
-- On a refusal: every rate counter as it stands (this request not counted), for the x-ratelimit-* headers.
local function counts()
  local out = {}
  for j = 5, n, 5 do
    out[#out + 1] = (ARGV[j] == 'rate') and tonumber(redis.call('GET', ARGV[j+1]) or '0') or 0
  end
  return out
end
for i = 5, n, 5 do
  local kind, key, limit, amount, aux = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3]), ARGV[i+4]
  if kind == 'rate' or kind == 'conc' then
    local used = tonumber(redis.call('GET', key) or '0')
    if used + amount > limit then return {0, (i - 5) / 5, used, counts()} end
    used_list[#used_list + 1] = used + amount
  else
    local base = redis.call('GET', key)
    if not base then return {2, (i - 5) / 5, 0} end
    local held = tonumber(redis.call('GET', aux) or '0')
    local left = (kind == 'budget') and (limit - tonumber(base) - held) or (tonumber(base) - held)
    if left < minimum then return {0, (i - 5) / 5, left, counts()} end
    if left < hold then hold = left end
    used_list[#used_list + 1] = 0
  end
end
local held_keys, slots = {}, {}
for i = 5, n, 5 do
  local kind, key, amount, aux = ARGV[i], ARGV[i+1], tonumber(ARGV[i+3]), ARGV[i+4]
  if kind == 'rate' then
    redis.call('INCRBY', key, amount); redis.call('EXPIRE', key, 120)
  elseif kind == 'conc' then
    redis.call('INCRBY', key, 1); redis.call('EXPIRE', key, 86400); slots[#slots + 1] = key
  else
    redis.call('INCRBY', aux, hold); redis.call('EXPIRE', aux, 86400); held_keys[#held_keys + 1] = aux
  end
end
redis.call('ZADD', 'tg:holds', sweep_at, rid)
redis.call('HSET', 'tg:holds:data', rid, hold .. '|' .. table.concat(held_keys, ',') .. '|' .. table.concat(slots, ','))
return {1, hold, used_list}
"""
# ARGV: request id, cost, token delta, then kind/key triples of counters to move by the real spend.
SETTLE_LUA = """
local rid, cost, delta = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function release(data)
  local hold, held, slots = string.match(data, '^(-?%d+)|([^|]*)|(.*)$')
  for key in string.gmatch(held, '[^,]+') do redis.call('DECRBY', key, tonumber(hold)) end
  for key in string.gmatch(slots, '[^,]+') do
    if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
  end
end
local data = redis.call('HGET', 'tg:holds:data', rid)
if data then
  release(data)
  redis.call('HDEL', 'tg:holds:data', rid); redis.call('ZREM', 'tg:holds', rid)
end
for i = 4, #ARGV, 2 do
  local kind, key = ARGV[i], ARGV[i+1]
  if redis.call('EXISTS', key) == 1 then
    if kind == 'tokens' then redis.call('INCRBY', key, delta)
    elseif kind == 'budget' then redis.call('INCRBY', key, cost)
    elseif kind == 'balance' then redis.call('DECRBY', key, cost) end
  end
end
return 1
"""
# Give back the holds and slots of reservations past their sweep time (their process died). ARGV: now, max.
SWEEP_LUA = """
local stale = redis.call('ZRANGEBYSCORE', 'tg:holds', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, rid in ipairs(stale) do
  local data = redis.call('HGET', 'tg:holds:data', rid)
  if data then
    local hold, held, slots = string.match(data, '^(-?%d+)|([^|]*)|(.*)$')
    for key in string.gmatch(held, '[^,]+') do redis.call('DECRBY', key, tonumber(hold)) end
    for key in string.gmatch(slots, '[^,]+') do
      if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
    end
  end
  redis.call('HDEL', 'tg:holds:data', rid); redis.call('ZREM', 'tg:holds', rid)
end
return #stale
"""


@dataclass(slots=True)
class Check:
    kind: str            # rate | conc | budget | balance
    key: str
    limit: int
    amount: int
    aux: str = ""
    label: str = ""      # what the client is told: "key group 'production' daily budget"
    scope: tuple = ()    # how to rebuild the counter from the database
    reset: str = ""      # when it resets, for the message


@dataclass(slots=True)
class Reservation:
    checks: list[Check]
    hold: int
    estimate_tokens: int
    request_id: str = "-"


class LimitExceeded(Exception):
    def __init__(self, check: Check, left: int, counts: list[int] | None = None):
        super().__init__(check.label)
        # counts: per check, the rate counter as it stands (0 for other kinds), for the x-ratelimit-* headers
        self.check, self.left, self.counts = check, left, counts or []


class NeedsRebuild(Exception):
    def __init__(self, check: Check):
        self.check = check


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


# --- the embedded default: the same algorithm in-process -----------------------------------------------
_lock = threading.Lock()


def _local_reserve(worst: int, minimum: int, checks: list[Check]) -> tuple:
    data = shared_cache._memory

    def counts():
        return [int(data.get(c.key) or 0) if c.kind == "rate" else 0 for c in checks]

    with _lock:
        hold, used_list = worst, []
        for i, c in enumerate(checks):
            if c.kind in ("rate", "conc"):
                used = int(data.get(c.key) or 0)
                if used + c.amount > c.limit:
                    return 0, i, used, counts()
                used_list.append(used + c.amount)
            else:
                base = data.get(c.key)
                if base is None:
                    return 2, i, 0
                held = int(data.get(c.aux) or 0)
                left = (c.limit - int(base) - held) if c.kind == "budget" else (int(base) - held)
                if left < minimum:
                    return 0, i, left, counts()
                hold = min(hold, left)
                used_list.append(0)
        for c in checks:
            if c.kind in ("rate", "conc"):
                data.set(c.key, str(int(data.get(c.key) or 0) + (c.amount if c.kind == "rate" else 1)).encode(),
                         120 if c.kind == "rate" else 900)
            else:
                data.set(c.aux, str(int(data.get(c.aux) or 0) + hold).encode(), 900)
        return 1, hold, used_list


def _local_settle(hold: int, cost: int, delta: int, triples: list[tuple[str, str, str]]) -> None:
    data = shared_cache._memory
    with _lock:
        for kind, key, aux in triples:
            if kind == "conc":
                data.set(key, str(max(int(data.get(key) or 0) - 1, 0)).encode(), 900)
            elif kind == "tokens" and data.get(key) is not None:
                data.set(key, str(int(data.get(key)) + delta).encode(), 120)
            elif kind in ("budget", "balance"):
                if data.get(key) is not None:
                    sign = 1 if kind == "budget" else -1
                    data.set(key, str(int(data.get(key)) + sign * cost).encode(), 40 * 86400)
                data.set(aux, str(int(data.get(aux) or 0) - hold).encode(), 900)


# --- rebuilding counters from the database (cold path) --------------------------------------------------
def rebuild(check: Check) -> None:
    from billing.models import TeamBalance, UsageRecord

    kind, *rest = check.scope
    if kind == "balance":
        (team_id,) = rest
        balance = TeamBalance.objects.filter(team_id=team_id).values_list("balance", flat=True).first() or 0
        unbilled = UsageRecord.objects.filter(team_id=team_id, billed_at=None).aggregate(s=Sum("cost"))["s"] or 0
        value, ttl = balance - unbilled, 7 * 86400
    else:
        field_name, ident, team_id, start_ts, end_ts = rest
        qs = UsageRecord.objects.filter(team_id=team_id)
        if field_name:
            qs = qs.filter(**{field_name: ident})
        if start_ts:
            qs = qs.filter(created_at__gte=dt.datetime.fromtimestamp(start_ts, dt.UTC))
        value = qs.aggregate(s=Sum("cost"))["s"] or 0
        ttl = int(end_ts - time.time()) + 86400 if end_ts else 40 * 86400
    client = shared_cache.sync_client()
    if client is not None:
        client.set(check.key, value, ex=ttl, nx=True)
    elif shared_cache._memory.get(check.key) is None:
        shared_cache._memory.set(check.key, str(value).encode(), ttl)


_scripts: dict = {}


def _script(client, source: str):
    """A registered script per client: EVALSHA, so the script's text is not sent with every request."""
    key = (id(client), source)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(source)
    return script


async def reserve(worst: int, minimum: int, checks: list[Check], request_id: str = "-") -> tuple[int, list[int]]:
    """Atomically check every limit and take the holds; returns the hold and, per check, the count after
    this request (rate and concurrency checks). Raises LimitExceeded (with the rate counts as they stand)."""
    for _ in range(len(checks) + 1):
        client = shared_cache.async_client()
        if client is not None:
            args = [worst, minimum, request_id, int(time.time() + settings.TOLLGATE_HOLD_SWEEP_SECONDS)]
            for c in checks:
                args += [c.kind, c.key, c.limit, c.amount, c.aux or "-"]
            result = await _script(client, RESERVE_LUA)(args=args)
        else:
            result = _local_reserve(worst, minimum, checks)
        status, value, extra = result[:3]
        if status == 1:
            return int(value), [int(u) for u in extra]
        if status == 0:
            raise LimitExceeded(checks[int(value)], int(extra), [int(u) for u in result[3]])
        await db_call(rebuild)(checks[int(value)])
    raise RuntimeError("limit counters could not be rebuilt")


def settle_args(res: Reservation, cost: int, tokens_used: int) -> tuple[int, int, int, list]:
    triples = []
    for c in res.checks:
        if c.kind == "conc":
            triples.append(("conc", c.key, "-"))
        elif c.kind == "rate" and c.label.endswith("tokens per minute"):
            triples.append(("tokens", c.key, "-"))
        elif c.kind in ("budget", "balance"):
            triples.append((c.kind, c.key, c.aux))
    return res.hold, cost, tokens_used - res.estimate_tokens, triples


def _settle_redis_args(res: Reservation, cost: int, delta: int, triples) -> list:
    return [res.request_id, cost, delta] + [x for kind, key, _ in triples if kind != "conc" for x in (kind, key)]


def settle_soon(res: Reservation, cost: int, tokens_used: int) -> None:
    """Release the reservation's holds and slots (unless the sweep already did) and count the real spend, off
    the response path: the settles of the last few milliseconds go to Redis together in one pipelined round
    trip instead of one each (`make bench`). Must be called from the event loop."""
    hold, cost, delta, triples = settle_args(res, cost, tokens_used)
    client = shared_cache.async_client()
    if client is None:
        _local_settle(hold, cost, delta, triples)
        return
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _SettleBatcher(client)
    batcher.add(_settle_redis_args(res, cost, delta, triples))


class _SettleBatcher:
    WAIT = 0.002

    def __init__(self, client):
        self.client, self.pending, self.task = client, [], None

    def add(self, args: list) -> None:
        self.pending.append(args)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.WAIT)
        script = _script(self.client, SETTLE_LUA)
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                pipe = self.client.pipeline(transaction=False)
                for args in batch:
                    await script(args=args, client=pipe)
                await pipe.execute()
            except Exception:  # Redis away: holds come back through the sweep, spend is rebuilt from usage
                log.warning("could not settle %d requests' limits", len(batch), exc_info=True)


_batchers: dict = {}


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
    return int(client.zcount("tg:holds", "-inf", int(time.time()))) if client is not None else 0


def balance_changed(team_id: int, amount: int) -> None:
    """A non-usage ledger entry moved a team's balance: move the available counter by the same amount
    (if it is not cached, the next request rebuilds it from the ledger)."""
    key = balance_key(team_id)
    client = shared_cache.sync_client()
    if client is not None:
        if client.exists(key):
            client.incrby(key, amount)
    elif shared_cache._memory.get(key) is not None:
        with _lock:
            shared_cache._memory.set(key, str(int(shared_cache._memory.get(key)) + amount).encode(), 7 * 86400)


def balance_key(team_id: int) -> str:
    return f"tg:avail:{team_id}"


async def spent(checks: list[Check], rule) -> int | None:
    """What a route has spent this period (for its soft limit), from the counter its budget check uses."""
    for c in checks:
        if c.kind == "budget" and c.key.startswith("tg:spent:route:") and f":{rule.name}:" in c.key:
            client = shared_cache.async_client()
            raw = await client.get(c.key) if client else shared_cache._memory.get(c.key)
            return int(raw) if raw is not None else None
    return None
