"""Dependencies fail soft (docs/reliability.md), with real processes: a gateway on a private redis-server that
the test stops and starts again empty, or reaches through a proxy the test cuts (Redis or PostgreSQL away
with its data intact). Requests during an outage get what the design says, never a 500; afterwards the
Redis counters equal the database."""
import datetime as dt
from io import StringIO

import httpx
import pytest
import redis
from django.core.management import call_command
from django.db import connection

from billing import limits
from billing.models import UsageRecord
from gateway_site import shared_cache
from tests.conftest import make_live_setup, wait_for
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


def ready(gateway) -> bool:
    return httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200


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
    assert not ready(gateway)
    log = gateway.log()
    assert "Redis unreachable" in log and "Traceback" not in log

    private_redis.start()   # empty
    assert wait_for(lambda: ready(gateway), timeout=10)
    assert traffic(setup) == [200] * 4
    assert wait_for(recorded(16), timeout=10)
    assert all(r.status_code == 200 for r in UsageRecord.objects.all())
    # Rebuilt after the restart from the database, which had the outage's usage first: no drift, no hold left.
    assert wait_for(lambda: settled(client, setup), timeout=10), counters(client, setup)
    assert "ledger OK" in audit(settings, monkeypatch, private_redis.url, gateway.journal_dir)
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
        assert wait_for(lambda: ready(gateway), timeout=10)
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

        proxy.cut()
        assert traffic(setup) == [200] * 4
        unknown = httpx.post(f"{setup.base_url}/chat/completions", headers={"Authorization": "Bearer sk-tg-nope"},
                             json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                             timeout=20)
        assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "service_unavailable"
        assert UsageRecord.objects.count() <= 4   # the outage's usage is in the journal, not in the database

        proxy.restore()
        assert chat(setup).status_code == 200
        assert wait_for(recorded(9), timeout=15)
    finally:
        if gateway is not None:
            gateway.stop()
        proxy.close()
