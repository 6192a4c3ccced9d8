"""Dependencies fail soft (docs/reliability.md), with real processes: a gateway on a private redis-server that
the test stops and starts again empty, or reaches through a proxy the test cuts (Redis or PostgreSQL away
with its data intact). Requests during an outage get what the design says, never a 500; afterwards the
Redis counters equal the database."""
import asyncio
import dataclasses
import datetime as dt
import fcntl
import os
import time
from io import StringIO

import httpx
import orjson
import prometheus_client
import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connection

from billing import limits
from billing.models import UsageRecord
from gateway_site import shared_cache
from keys import auth
from keys.secrets import hash_secret
from routing.relay import metrics, pipeline  # noqa: F401 - pipeline registers the outage metrics
from tests import factories
from tests.billing.factories import UsageRecordFactory
from tests.conftest import make_live_setup, wait_for
from tests.factories import TeamFactory
from tests.servers import RedisServer, TcpProxy, database_url, start_gateway

BUDGET = 50_000_000


@pytest.fixture
def private_redis(log_dir):
    server = RedisServer(log_dir)
    yield server
    server.stop()


def chat(setup, *, stream=False, path="chat", content="Hello"):
    headers = {"Authorization": f"Bearer {setup.secret}"}
    body = {"model": "openai/gpt-4o-mini", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": content}]}
    url = f"{setup.base_url}/messages" if path == "messages" else f"{setup.base_url}/chat/completions"
    return httpx.post(url, json=body, headers=headers, timeout=20)


def traffic(setup) -> list[int]:
    """One of each: chat, chat streaming, messages, messages streaming."""
    return [chat(setup, stream=s, path=p).status_code for p in ("chat", "messages") for s in (False, True)]


def back(gateway) -> bool:
    """The gateway's probe reached Redis again (and ran its recovery)."""
    return "Redis is reachable again" in gateway.log()


def recorded(request_count: int):
    return lambda: UsageRecord.objects.count() >= request_count


def counters(client: redis.Redis, setup) -> dict[str, tuple[int, int]]:
    """Redis value and database value of the team's balance counter and its key's daily budget counter."""
    tag = limits.period_tag("day", dt.datetime.now(dt.UTC))
    start = limits.period_start("day", dt.datetime.now(dt.UTC)).timestamp()
    team = setup.team.id
    out = {}
    for key, source, balance in (
            (limits.balance_key(team), limits.Source(team), True),
            (f"tg:spent:key:{setup.key.id}:{tag}", limits.Source(team, "api_key_id", setup.key.id, start), False)):
        raw = client.get(key)
        out[key] = (int(raw) if raw is not None else None, limits.database_value(source, balance=balance))
    return out


def settled(client, setup):
    """Every counter cached and equal to the database, no hold left."""
    values = counters(client, setup)
    held = int(client.get(f"tg:held:team:{setup.team.id}") or 0)
    return all(r == d for r, d in values.values()) and held == 0 and client.zcard(limits.HOLDS_DATA) == 0


def audit(settings, monkeypatch, redis_url: str, journal_dir) -> str:
    """ledger_audit against the gateway's Redis and journal."""
    settings.REDIS_URL = redis_url
    monkeypatch.setattr(shared_cache, "_sync_client", None)
    out = StringIO()
    call_command("ledger_audit", "--settle-window", "3", "--journal-dir", str(journal_dir), stdout=out)
    return out.getvalue()


def test_redis_stopped_then_restarted_empty(transactional_db, simulator, gateway_factory, private_redis,
                                           settings, monkeypatch):
    gateway = gateway_factory(REDIS_URL=private_redis.url, TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")
    setup = make_live_setup(gateway, simulator, budget_limit=BUDGET, budget_period="day")
    assert traffic(setup) == [200] * 4
    client = redis.Redis.from_url(private_redis.url)
    assert wait_for(lambda: settled(client, setup), timeout=10), counters(client, setup)

    private_redis.stop()
    # Served from this process's own limits, budgets rebuilt from PostgreSQL: no 500, nothing refused.
    assert traffic(setup) + traffic(setup) == [200] * 8
    log = gateway.log()
    assert "Redis unreachable" in log and "unexpected error" not in log and "recording the call raised" not in log

    private_redis.start()   # empty
    assert wait_for(lambda: back(gateway), timeout=10)
    assert traffic(setup) == [200] * 4
    assert wait_for(recorded(16), timeout=10)
    assert all(r.status_code == 200 for r in UsageRecord.objects.all())
    # Rebuilt after the restart from the database, which had the outage's usage first: no drift, no hold left.
    assert wait_for(lambda: settled(client, setup), timeout=10), counters(client, setup)
    assert "ledger OK" in audit(settings, monkeypatch, private_redis.url, gateway.journal_dir)
    gateway.stop()


def test_two_gateways_through_an_empty_redis_restart(transactional_db, simulator, gateway_factory, private_redis,
                                                    settings, monkeypatch, tmp_path):
    """Two processes on one journal directory, traffic to both through the outage and the empty restart:
    whichever rebuilds a counter first counts the other's outage spend once."""
    env = {"REDIS_URL": private_redis.url, "TOLLGATE_JOURNAL_FLUSH_SECONDS": "0.1"}
    gateways = [gateway_factory(journal_dir=tmp_path / "journal", **env) for _ in range(2)]
    setups = [make_live_setup(gateways[0], simulator, budget_limit=BUDGET, budget_period="day")]
    setups.append(dataclasses.replace(setups[0], base_url=f"{gateways[1].url}/v1", server=gateways[1]))
    client = redis.Redis.from_url(private_redis.url)

    def both():
        return [code for setup in setups for code in traffic(setup)]

    assert both() == [200] * 8
    private_redis.stop()
    assert both() == [200] * 8
    private_redis.start()
    statuses = []
    while not all(back(g) for g in gateways) and len(statuses) < 200:   # traffic while they come back
        statuses += both()
    assert all(back(g) for g in gateways) and set(statuses) <= {200}
    statuses += both()
    assert wait_for(recorded(16 + len(statuses)), timeout=15)
    assert wait_for(lambda: settled(client, setups[0]), timeout=10), counters(client, setups[0])
    assert "ledger OK" in audit(settings, monkeypatch, private_redis.url, tmp_path / "journal")
    for gateway in gateways:
        gateway.stop()


def test_redis_unreachable_with_its_data_kept(transactional_db, simulator, gateway_factory, private_redis,
                                             settings, monkeypatch):
    """Redis cut away (its data intact): the spend settled in-process during the outage is added to the Redis
    counters when it is back, so they still equal the database."""
    proxy = TcpProxy(("127.0.0.1", private_redis.port))
    try:
        gateway = gateway_factory(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")
        setup = make_live_setup(gateway, simulator, budget_limit=BUDGET, budget_period="day")
        client = redis.Redis.from_url(private_redis.url)
        assert traffic(setup) == [200] * 4
        assert wait_for(lambda: settled(client, setup), timeout=10), counters(client, setup)
        before = counters(client, setup)

        proxy.cut()
        assert traffic(setup) == [200] * 4
        assert wait_for(recorded(8), timeout=10)
        assert counters(client, setup) != before    # the database moved; Redis could not
        proxy.restore()
        assert wait_for(lambda: back(gateway), timeout=10)
        assert wait_for(recorded(8), timeout=10)
        assert wait_for(lambda: settled(client, setup), timeout=10), counters(client, setup)
        assert "settles held back by the Redis outage" in gateway.log()
        assert "ledger OK" in audit(settings, monkeypatch, private_redis.url, gateway.journal_dir)
        gateway.stop()
    finally:
        proxy.close()


def test_the_outage_allowance_is_a_503_in_the_callers_format(transactional_db, simulator, gateway_factory,
                                                             private_redis):
    gateway = gateway_factory(REDIS_URL=private_redis.url, TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1",
                              TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE="1")
    setup = make_live_setup(gateway, simulator)
    long = "Hello there. " * 100    # its prompt alone costs more than the 1 micro-unit allowed in the outage
    assert chat(setup, content=long).status_code == 200
    private_redis.stop()
    refused = chat(setup, content=long)
    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]["code"] == "service_unavailable"
    assert "limit store is unreachable" in refused.json()["error"]["message"]
    anthropic = chat(setup, path="messages", content=long)
    assert anthropic.status_code == 503
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"]
    assert wait_for(lambda: set(UsageRecord.objects.values_list("status_code", flat=True)) == {200, 503})
    gateway.stop()


def test_postgresql_cut_away_and_back(transactional_db, simulator, log_dir, tmp_path):
    """A known key keeps working while the database is away (usage waits in the journal), an unknown one is
    a 503 (not a 401, not a 500); back, the journal reaches the database and the next request is served."""
    proxy = TcpProxy((connection.settings_dict.get("HOST") or "127.0.0.1",
                      int(connection.settings_dict.get("PORT") or 5432)))
    gateway = None
    try:
        url = database_url({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": proxy.port})
        gateway = start_gateway(settings_dict=None, log_dir=log_dir, journal_dir=tmp_path / "journal",
                                extra_env={"DATABASE_URL": url, "TOLLGATE_JOURNAL_FLUSH_SECONDS": "0.1"})
        setup = make_live_setup(gateway, simulator)
        assert traffic(setup) == [200] * 4

        _, secret = factories.api_key(team=setup.team)
        shared_cache.delete(auth.cache_key(hash_secret(secret)))   # a key the cache does not know yet
        uncached = dataclasses.replace(setup, secret=secret)

        proxy.cut()
        assert traffic(setup) == [200] * 4
        for bad in (chat(uncached), chat(uncached, path="messages")):
            assert bad.status_code == 503 and bad.headers["Retry-After"] == "5"   # not a 401, not a 500
        assert chat(uncached).json()["error"]["code"] == "service_unavailable"
        assert chat(uncached, path="messages").json()["type"] == "error"
        assert UsageRecord.objects.count() <= 4   # the outage's usage is in the journal, not in the database

        proxy.restore()
        assert chat(uncached).status_code == 200   # its look-up reconnects (the old connection is dead)
        assert chat(setup).status_code == 200
        assert wait_for(recorded(10), timeout=15)
    finally:
        if gateway is not None:
            gateway.stop()
        proxy.close()


# --- the fallback in-process, the shared cache reached through a proxy the test cuts ----------------------
@pytest.fixture
def cut_redis(settings, monkeypatch):
    """The test Redis through a TcpProxy: `proxy.cut()` is an outage with the data intact."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy((url.hostname, url.port or 6379))
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}{url.path}"
    monkeypatch.setattr(shared_cache, "_sync_client", None)
    monkeypatch.setattr(shared_cache, "_async_clients", {})
    monkeypatch.setattr(shared_cache, "_known_epoch", None)   # the Redis db was emptied since another test
    direct = redis.Redis(host=url.hostname, port=url.port or 6379, db=int(url.path.strip("/") or 0))
    yield proxy, direct
    proxy.close()
    outage = shared_cache.outage
    if outage.probe is not None:
        outage.probe.cancel()
    outage.down_since, outage.probe, outage.loop = None, None, None
    limits._deferred.clear(), limits._local_reservations.clear()
    limits._batchers.clear()


def _checks(p: str) -> list[limits.Check]:
    return [limits.Check("rate", f"{p}:rpm", 2, 1, scope=limits.Scope.KEY),
            limits.Check("budget", f"{p}:spent", 1000, 300, aux=f"{p}:held", scope=limits.Scope.KEY),
            limits.Check("balance", f"{p}:avail", 0, 300, aux=f"{p}:held-team", scope=limits.Scope.BALANCE,
                         source=limits.Source(1))]


async def _outage_scenario(proxy, direct, p: str, *, empty_restart: bool) -> dict:
    checks = _checks(p)
    for name, value in (("spent", 100), ("avail", 5000)):
        direct.set(f"{p}:{name}", value)
    first = limits.Reservation(checks, (await limits.reserve(300, 50, checks, f"{p}-1"))[0], 30, f"{p}-1")

    proxy.cut()
    assert await shared_cache.aget(f"{p}:anything") is None      # the outage is noticed, not raised
    assert shared_cache.outage.down_since is not None
    limits.settle_soon(first, 40, 30)                              # cannot reach Redis: deferred
    assert limits.deferred_count() == 1
    # In-process, from counters the database would give (set here as a rebuild would): per-process rate
    # limit, the budget checked, the spend remembered for Redis.
    memory = shared_cache.memory_store()
    memory.set(f"{p}:spent", b"140", 3600)
    memory.set(f"{p}:avail", b"4960", 3600)
    local = []
    for n in (2, 3):
        hold, _ = await limits.reserve(300, 50, checks, f"{p}-{n}")
        local.append(limits.Reservation(checks, hold, 30, f"{p}-{n}"))
    with pytest.raises(limits.LimitExceeded) as refused:           # rpm 2 per process
        await limits.reserve(300, 50, checks, f"{p}-4")
    assert refused.value.check.key == f"{p}:rpm"
    for res in local:
        limits.settle_soon(res, 25, 30)
    assert int(memory.get(f"{p}:spent")) == 190 and int(memory.get(f"{p}:held")) == 0

    if empty_restart:
        direct.flushdb()
    proxy.restore()
    deadline = time.monotonic() + 10
    while shared_cache.outage.down_since is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert shared_cache.outage.down_since is None
    loop = asyncio.get_running_loop()
    await shared_cache._async_clients.pop(loop).aclose()
    return {name: direct.get(f"{p}:{name}") for name in ("spent", "avail", "held", "held-team")}


def test_a_cut_redis_is_caught_up_on_recovery(cut_redis, settings):
    proxy, direct = cut_redis
    settings.TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE = 10_000
    after = asyncio.run(_outage_scenario(proxy, direct, f"tg:test:cut:{time.time_ns()}", empty_restart=False))
    # 100 + 40 (the deferred settle) + 2 × 25 (settled in-process); holds all given back.
    assert after == {"spent": b"190", "avail": b"4910", "held": b"0", "held-team": b"0"}
    assert limits.deferred_count() == 0


def test_redis_back_empty_drops_what_it_would_have_moved(cut_redis, settings):
    proxy, direct = cut_redis
    settings.TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE = 10_000
    after = asyncio.run(_outage_scenario(proxy, direct, f"tg:test:empty:{time.time_ns()}", empty_restart=True))
    # Nothing recreated: the counters are rebuilt from the database by the next request.
    assert after == {"spent": None, "avail": None, "held": None, "held-team": None}
    assert limits.deferred_count() == 0


def test_the_outage_allowance_refuses_with_limits_unavailable(db, cut_redis, settings):
    proxy, _ = cut_redis
    settings.TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE = 100
    p = f"tg:test:allowance:{time.time_ns()}"
    checks = _checks(p)

    async def scenario():
        proxy.cut()
        await shared_cache.aget(p)
        memory = shared_cache.memory_store()
        memory.set(f"{p}:spent", b"0", 3600)
        memory.set(f"{p}:avail", b"5000", 3600)
        hold, _ = await limits.reserve(300, 50, checks, f"{p}-1")    # 100 allowed: the hold is clipped to it
        assert hold == 100
        with pytest.raises(limits.LimitsUnavailable) as exc:          # held: nothing left this minute
            await limits.reserve(300, 50, checks, f"{p}-2")
        assert 0 < exc.value.retry_after <= 60
        limits.settle_soon(limits.Reservation(checks, hold, 30, f"{p}-1"), 30, 30)
        hold, _ = await limits.reserve(300, 50, checks, f"{p}-3")    # 70 left after the real cost
        assert hold == 70

    asyncio.run(scenario())
    scraped = prometheus_client.generate_latest(metrics.REGISTRY).decode()   # the outage shows in /metrics
    assert "tollgate_cache_up 0.0" in scraped and "tollgate_cache_outages_total" in scraped


# --- ledger_audit: what only settles with time must have settled within its window ------------------------
def _audit(*args) -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("ledger_audit", *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def _journal_line(path, team_id: int, request_id: str) -> None:
    record = {"request_id": request_id, "team_id": team_id, "cost": 5, "created_at": time.time()}
    with open(path, "ab") as fh:
        fh.write(orjson.dumps(record) + b"\n")


@pytest.mark.django_db
def test_audit_fails_on_a_journal_file_left_unreplayed(tmp_path):
    team = TeamFactory()
    orphan = tmp_path / "usage-999999-deadbeef.jsonl"      # nobody holds its lock: its process is gone
    _journal_line(orphan, team.id, "req_orphan")
    ok, report = _audit("--journal-dir", str(tmp_path), "--settle-window", "0")
    assert ok, report                                       # just written: the replay has time yet
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    ok, report = _audit("--journal-dir", str(tmp_path), "--settle-window", "0")
    assert not ok and "usage-999999-deadbeef.jsonl of a stopped process (1 record(s)) not replayed" in report


@pytest.mark.django_db
def test_audit_fails_on_journal_lines_a_live_process_never_flushed(tmp_path):
    team = TeamFactory()
    live = tmp_path / "usage-1-cafe.jsonl"
    _journal_line(live, team.id, "req_flushed")
    _journal_line(live, team.id, "req_stuck")
    _journal_line(live, 10 ** 9, "req_of_a_deleted_team")    # the flush drops those: not waited for
    UsageRecordFactory(team=team, request_id="req_flushed")
    with open(live, "ab") as fh:   # a stream still open: its record comes when it ends, not waited for
        fh.write(orjson.dumps({"request_id": "req_open", "team_id": team.id, "cost": 5, "_open": 1}) + b"\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)                             # a live process owns it
    try:
        ok, report = _audit("--journal-dir", str(tmp_path), "--settle-window", "0.3")
        assert not ok and "1 usage record(s) in usage-1-cafe.jsonl still not in the database" in report
        UsageRecordFactory(team=team, request_id="req_stuck")
        ok, report = _audit("--journal-dir", str(tmp_path), "--settle-window", "0.3")
        assert ok, report
    finally:
        os.close(fd)


@pytest.mark.django_db
def test_audit_fails_on_a_redis_counter_that_drifted_from_the_database(tmp_path):
    key, _ = factories.api_key(budget_limit=BUDGET, budget_period="day")
    for cost in (120, 80):
        UsageRecordFactory(team=key.team, api_key=key, cost=cost)
    now = dt.datetime.now(dt.UTC)
    spent = f"tg:spent:key:{key.id}:{limits.period_tag('day', now)}"
    shared_cache.set(spent, b"200", 3600)
    shared_cache.set(f"tg:spent:team:{key.team_id}:{limits.period_tag('month', now)}", b"200", 3600)
    shared_cache.set(limits.balance_key(key.team_id), b"-200", 3600)     # no credit, 200 unbilled
    shared_cache.set(f"tg:spent:key:{key.id}:d20000101", b"7", 3600)    # an ended period: not compared
    args = ("--journal-dir", str(tmp_path), "--settle-window", "0.3")
    ok, report = _audit(*args)
    assert ok, report
    shared_cache.set(spent, b"220", 3600)       # 20 micro-units off, and it stays so
    ok, report = _audit(*args)
    assert not ok and f"counter {spent}: Redis 220 != database 200" in report
    assert "balance" not in report and "d20000101" not in report


# --- PostgreSQL restarted under a kept connection --------------------------------------------------------
def test_a_db_call_after_the_server_dropped_its_connection_reconnects(transactional_db):
    """What a PostgreSQL restart does to the gateway's kept connection: the next db_call must not fail on it."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from gateway_site.db import db_call

    def backend_pid():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    first = asyncio.run(db_call(backend_pid)())      # db_call's one thread keeps its connection (CONN_MAX_AGE)
    try:
        with connection.cursor() as cursor:           # this thread's own connection ends that one
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        assert wait_for(lambda: not _backend_alive(first))
        second = asyncio.run(db_call(backend_pid)())  # a new connection, not an OperationalError
        assert second != first
    finally:
        asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


@pytest.mark.django_db
def test_a_rebuilt_counter_counts_unflushed_journal_lines_once(settings, tmp_path):
    """Another process's spend may still be in its journal when a counter is rebuilt (its settle found no
    counter, e.g. Redis came back empty): counted once, with how far the rebuild read each file."""
    key, _ = factories.api_key(budget_limit=BUDGET, budget_period="day")
    settings.TOLLGATE_JOURNAL_DIR = tmp_path
    UsageRecordFactory(team=key.team, api_key=key, cost=100, request_id="req_stored")
    other = tmp_path / "usage-4242-beef.jsonl"
    for request_id, team_id, cost in (("req_stored", key.team_id, 100), ("req_unflushed", key.team_id, 7),
                                      ("req_other_team", key.team_id + 1000, 50)):
        with open(other, "ab") as fh:
            fh.write(orjson.dumps({"request_id": request_id, "team_id": team_id, "api_key_id": key.id,
                                   "cost": cost, "created_at": time.time()}) + b"\n")
    now = dt.datetime.now(dt.UTC)
    start = limits.period_start("day", now).timestamp()
    checks = [limits.Check("budget", f"tg:spent:key:{key.id}:{limits.period_tag('day', now)}", BUDGET, 1,
                           scope=limits.Scope.KEY, source=limits.Source(key.team_id, "api_key_id", key.id, start)),
              limits.Check("balance", limits.balance_key(key.team_id), 0, 1, scope=limits.Scope.BALANCE,
                           source=limits.Source(key.team_id))]
    balance = limits.database_value(checks[1].source, balance=True)

    for c in checks:
        limits.rebuild(c)
    assert [int(shared_cache.get(c.key)) for c in checks] == [107, balance - 7]
    size = other.stat().st_size
    assert all(shared_cache.sync_client().hgetall(limits.READ + c.key) == {other.stem.encode(): str(size).encode()}
               for c in checks)
