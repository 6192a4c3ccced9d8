import time
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.db import connection

from gateway_site import shared_cache
from routing.catalog import bump_version
from tests import factories
from tests.servers import start_gateway, start_simulator


def _flush_retrying_deadlocks():
    """Between transactional tests the tables are truncated while live gateways may still be flushing their
    usage journals: TRUNCATE and a journal COPY take their locks in opposite orders, and PostgreSQL breaks the
    deadlock by aborting one of them. The aborted TRUNCATE is simply tried again (the aborted COPY is retried
    by the gateway itself), so no test inherits another's rows."""
    from django.core.management.base import CommandError
    from django.core.management.commands import flush

    handle = flush.Command.handle

    def handle_retrying(self, **options):
        for attempt in range(5):
            try:
                return handle(self, **options)
            except CommandError as exc:
                if "deadlock" not in str(exc.__cause__ or exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    flush.Command.handle = handle_retrying


_flush_retrying_deadlocks()


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


@pytest.fixture(scope="session")
def gateway_factory(django_db_setup, log_dir, tmp_path_factory):
    """Start gateway processes against the test database; all are stopped at the end of the session."""
    started = []

    def start(journal_dir=None, **extra_env):
        journal = journal_dir or tmp_path_factory.mktemp("journal")
        server = start_gateway(settings_dict=connection.settings_dict, log_dir=log_dir, journal_dir=journal,
                               extra_env=extra_env)
        server.journal_dir = journal
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


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
    bump_version()
    return LiveSetup(f"{server.url}/v1", server, simulator, key.team, key, secret, model, channel)


@pytest.fixture
def live(transactional_db, gateway, simulator):
    """A team with a key, one catalog model with a price, and a platform channel to the simulator."""
    yield make_live_setup(gateway, simulator)
    # Let the gateway's journal flush land before the tables are truncated (a flush racing TRUNCATE can
    # deadlock and leave the next test with this one's rows).
    time.sleep(0.3)


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
