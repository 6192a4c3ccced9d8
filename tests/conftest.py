import os
import signal
import subprocess
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass

import httpx
import hypothesis
import pytest
from django.conf import settings
from django.db import connection

from gateway_site import shared_cache
from routing.catalog import VERSION_KEY, bump_version
from tests import factories, servers
from tests.servers import start_gateway, start_simulator

# The fuzzers (hypothesis, schemathesis) run the same examples every run, so a landing is never refused by
# a new random draw; HYPOTHESIS_PROFILE=explore draws new ones (a bug found that way gets its own test).
hypothesis.settings.register_profile("default", derandomize=True)
hypothesis.settings.register_profile("explore", derandomize=False)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DRAIN_TIMEOUT = 10.0
_marks: dict = {}      # gateway → where its journal and log ended when the current test started


def _flush_retrying_deadlocks():
    """Between transactional tests the tables are truncated (`manage.py flush`) while live gateways may still
    be writing in the background: a usage-journal flush or a breaker event. TRUNCATE and those INSERTs take
    their locks in opposite orders, so PostgreSQL would break the deadlock by aborting one of them, and the
    next test could inherit this one's rows. So the truncate first waits until every gateway's writes of this
    test are in (`drain_gateways`); a deadlock that still happens (a request the test left running) aborts
    the TRUNCATE, which is tried again (an aborted COPY is retried by the gateway itself)."""
    from django.core.management.base import CommandError
    from django.core.management.commands import flush

    handle = flush.Command.handle

    def handle_retrying(self, **options):
        drain_gateways(_marks)
        for attempt in range(5):
            try:
                return handle(self, **options)
            except CommandError as exc:
                if "deadlock" not in str(exc.__cause__ or exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    flush.Command.handle = handle_retrying


_flush_retrying_deadlocks()


def drain_gateways(marks: dict, timeout: float = DRAIN_TIMEOUT) -> bool:
    """Wait until the background writes every running gateway made since `marks` are in the database: the
    usage record of each line appended to its journal, and the ChannelHealthEvent of each breaker transition
    it logged. A record of a team (or an event of a channel) deleted since is dropped by the gateway, so it is
    not waited for. Warns (it does not fail the test) when the writes are not in after `timeout` seconds."""
    test_database = servers.database_url(connection.settings_dict)
    gateways = [g for g in servers.GATEWAYS if g.proc.poll() is None and g.database_url == test_database]
    records = [r for g in gateways for r in g.journaled_since(marks.get(g))]
    transitions = [t for g in gateways for t in g.transitions_since(marks.get(g))]
    if not records and not transitions:
        return True

    from accounts.models import Team
    from billing.models import UsageRecord
    from routing import breaker as br
    from routing.models import Channel, ChannelHealthEvent

    wanted = {r["request_id"]: r["team_id"] for r in records}
    expected = Counter((*br.parse_scope(scope), to_state) for scope, _, to_state in transitions)

    def usage_in():
        missing = set(wanted) - set(UsageRecord.objects.filter(request_id__in=list(wanted))
                                    .values_list("request_id", flat=True))
        teams = set(Team.objects.filter(pk__in={wanted[rid] for rid in missing}).values_list("pk", flat=True))
        return not any(wanted[rid] in teams for rid in missing)

    def events_in():
        channels = set(Channel.objects.filter(pk__in={c for c, _, _ in expected}).values_list("pk", flat=True))
        stored = Counter(ChannelHealthEvent.objects.filter(channel_id__in=channels, source="traffic")
                         .values_list("channel_id", "model_id", "to_state"))
        return all(stored[key] >= count for key, count in expected.items() if key[0] in channels)

    if wait_for(lambda: usage_in() and events_in(), timeout=timeout):
        return True
    warnings.warn(f"live gateways did not finish their background writes within {timeout} s "
                  f"({len(wanted)} journal lines, {len(transitions)} breaker transitions)")
    return False


@pytest.fixture(autouse=True)
def _gateway_marks():
    """Note where each running gateway's journal and log end, so the truncate after this test waits only for
    this test's writes (a gateway started during the test is read from its beginning)."""
    _marks.clear()
    _marks.update({g: g.mark() for g in servers.GATEWAYS if g.proc.poll() is None})
    yield


@pytest.fixture(autouse=True)
def _clean_shared_cache():
    """Each test starts with an empty shared cache (Redis DB of the test run, or the in-process dict)."""
    client = shared_cache.sync_client()
    if client is not None:
        client.flushdb()
    else:
        shared_cache._memory._data.clear()
    yield


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def simulator(log_dir):
    server = start_simulator(log_dir)
    yield server
    server.stop()


@pytest.fixture
def sim_faults(simulator):
    """Script faults per upstream key on the simulator; cleared after the test."""
    def script(key, fault, count=None):
        httpx.post(f"{simulator.url}/_sim/faults", json={"key": key, "fault": fault, "count": count}).raise_for_status()
    yield script
    httpx.delete(f"{simulator.url}/_sim/faults")


@pytest.fixture(scope="session")
def gateway_factory(django_db_setup, log_dir, tmp_path_factory):
    """Start gateway processes against the test database; all are stopped at the end of the session."""
    started = []

    def start(journal_dir=None, workers=1, **extra_env):
        journal = journal_dir or tmp_path_factory.mktemp("journal")
        server = start_gateway(settings_dict=connection.settings_dict, log_dir=log_dir, journal_dir=journal,
                               extra_env=extra_env, workers=workers)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture
def celery_worker(transactional_db, log_dir):
    """A real `celery worker` on the test Redis broker and the test database (as `make worker` runs)."""
    env = dict(os.environ, DATABASE_URL=servers.database_url(connection.settings_dict), CELERY_TASK_ALWAYS_EAGER="0")
    log = open(log_dir / f"celery-{uuid.uuid4().hex[:8]}.log", "wb")
    proc = subprocess.Popen([str(servers.VENV_BIN / "celery"), "-A", "gateway_site", "worker", "--pool", "solo",
                             "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                            cwd=servers.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    log.close()


@pytest.fixture(scope="session")
def gateway(gateway_factory):
    # Flush usage often, so a test's records are in before the next test empties the tables.
    return gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")


@dataclass
class LiveSetup:
    base_url: str          # what a client puts in base_url: http://127.0.0.1:PORT/v1
    server: object
    simulator: object
    team: object
    key: object
    secret: str
    model: object
    channel: object


def make_live_setup(server, simulator, **key_kwargs) -> LiveSetup:
    model = factories.CatalogModelFactory(public_id="openai/gpt-4o-mini", aliases=["gpt-4o-mini"],
                                          upstream_name="gpt-4o-mini", supports_vision=True)
    factories.PriceFactory(model=model)
    channel = factories.channel(models=[model], base_url=f"{simulator.url}/v1")
    key, secret = factories.api_key(**key_kwargs)
    factories.credit(key.team)
    if isinstance(server, _InProcess):   # the relay of this process: in_process_setup forgets its snapshot
        bump_version()
    else:
        wait_for_config(server)
    return LiveSetup(f"{server.url}/v1", server, simulator, key.team, key, secret, model, channel)


def wait_for_config(server) -> None:
    """Publish the catalog's change and wait until `server` serves it (it looks at most once per local TTL,
    0.5 s): a test must not reach the previous test's channels. A gateway on a Redis of its own (the outage
    tests) gets the change published there; one on the embedded default cannot be told from outside."""
    import redis

    bump_version()
    own = getattr(server, "redis_url", os.environ.get("REDIS_URL"))
    if own is None:
        return
    if own == os.environ.get("REDIS_URL"):
        version = shared_cache.get(VERSION_KEY).decode()
    else:
        version = uuid.uuid4().hex
        try:
            redis.Redis.from_url(own, socket_timeout=2).set(VERSION_KEY, version)
        except redis.exceptions.ConnectionError:   # that Redis is stopped (by the test): nothing to wait for
            return
    assert wait_for(lambda: httpx.get(f"{server.url}/readyz", timeout=5).json().get("config_version") == version,
                    timeout=10), f"{server.url} did not load catalog version {version}"


class _InProcess:
    url = "http://testserver"


def in_process_setup(simulator, settings, monkeypatch, tmp_path, **key_kwargs) -> LiveSetup:
    """A live setup for tests that drive the relay views in this process (an ASGI test client, no gateway):
    a private journal whose background flusher stays asleep, and fresh local caches."""
    from billing import usage_journal
    from keys import auth
    from routing.relay import snapshot

    settings.TOLLGATE_JOURNAL_FLUSH_SECONDS = 3600
    monkeypatch.setattr(usage_journal, "journal", usage_journal.Journal(tmp_path / "journal"))
    snapshot.invalidate_local()
    auth._local.clear()
    return make_live_setup(_InProcess(), simulator, **key_kwargs)


async def in_process_cleanup() -> None:
    """After an in-process relay test: stop the journal flusher, close the upstream and Redis clients of the
    test's event loop."""
    import asyncio

    from billing import usage_journal
    from routing.relay import upstream

    journal = usage_journal.journal
    if journal.task is not None:
        journal.task.cancel()
    await upstream.session().close()
    client = shared_cache.async_client()
    if client is not None:
        await client.aclose()
        shared_cache._async_clients.pop(asyncio.get_running_loop(), None)


@pytest.fixture
def live(transactional_db, gateway, simulator):
    """A team with a key, one catalog model with a price, and a platform channel to the simulator. (The
    truncate after the test waits for the gateways' background writes: `drain_gateways`.)"""
    return make_live_setup(gateway, simulator)


def wait_for(predicate, timeout=5.0, interval=0.05):
    """Poll until predicate() is truthy (usage records are flushed in the background, ~0.5 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def pytest_report_header(config):
    return f"database: {settings.DATABASES['default']['ENGINE']}  cache: {settings.REDIS_URL or 'in-process'}"
