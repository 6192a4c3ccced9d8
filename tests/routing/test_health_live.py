"""Channel health over real HTTP, with the simulated upstream failing on purpose (faults scripted per key):
the breaker opens and traffic moves with no client-visible error, a half-open trial closes it, a 401 opens
it at once and flags the channel, an admin-disabled channel stays disabled, probes run on a real Celery
worker with a Redis broker."""
import dataclasses
import time
import uuid

import httpx
import pytest

from routing import breaker as br
from routing import probes, tasks
from routing.catalog import bump_version
from routing.models import Channel, ChannelHealthEvent, ChannelProbe
from routing.services import channel_update
from tests import factories
from tests.conftest import make_live_setup, wait_for

COOLDOWN = 1.0


@pytest.fixture(scope="module")
def fast_gateway(gateway_factory):
    """A gateway whose breakers cool down in a second (three failures in a row open them, the default)."""
    return gateway_factory(TOLLGATE_BREAKER_COOLDOWN_SECONDS=str(COOLDOWN))


@pytest.fixture
def settled(transactional_db):
    """A transactional test: the truncate after it first waits until the gateways' background writes of the
    test (usage journal, breaker events) are in the database (tests/conftest.py `drain_gateways`)."""


@pytest.fixture
def live(settled, fast_gateway, simulator):
    return make_live_setup(fast_gateway, simulator)


@pytest.fixture
def sim(simulator):
    """Script faults per upstream key; read which keys the simulator was called with."""
    class Sim:
        def fault(self, key, fault, count=None):
            httpx.post(f"{simulator.url}/_sim/faults", json={"key": key, "fault": fault, "count": count}
                       ).raise_for_status()

        def clear(self, key):
            httpx.delete(f"{simulator.url}/_sim/faults", params={"key": key}).raise_for_status()

        def calls(self, key, marker):
            """How many upstream requests carried `marker` with this key (the log masks keys to 4 chars)."""
            seen = httpx.get(f"{simulator.url}/_sim/requests?limit=500").json()["requests"]
            return sum(1 for r in seen if marker in str(r.get("body"))
                       and r["headers"].get("authorization", "").endswith(key[-4:]))

    yield Sim()
    httpx.delete(f"{simulator.url}/_sim/faults")


def chat(live, marker):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": marker}]},
                      timeout=20)


def served_by(live, sim, key) -> bool:
    marker = f"served-{uuid.uuid4().hex}"
    return chat(live, marker).status_code == 200 and sim.calls(key, marker) == 1


def primary_channel(live, sim, *, disabled=False):
    """A second channel for the live model, tried first (higher priority); the live channel is the backup."""
    key = f"sk-sim-{uuid.uuid4().hex}"
    channel = factories.channel(models=[live.model], base_url=f"{live.simulator.url}/v1", api_key=key,
                                name="primary", priority=10)
    if disabled:
        channel_update(channel=channel, status=Channel.DISABLED)
    else:
        bump_version()
        assert wait_for(lambda: served_by(live, sim, key))   # the gateway's snapshot routes to it
    return channel, key


def events(channel):
    return list(ChannelHealthEvent.objects.filter(channel=channel).order_by("created_at", "pk")
                .values_list("to_state", "source"))


def test_breaker_opens_traffic_moves_then_a_half_open_trial_closes_it(live, sim):
    primary, key = primary_channel(live, sim)
    sim.fault(key, "status:503")
    run = uuid.uuid4().hex
    answers = [chat(live, f"{run}-{i}") for i in range(6)]
    assert [r.status_code for r in answers] == [200] * 6, answers[-1].text   # no client-visible error
    assert sum(sim.calls(key, f"{run}-{i}") for i in range(6)) == 3          # opened after 3 failures
    assert "HTTP 503" in answers[0].headers["x-tollgate-route"]
    assert "circuit open (cooling down)" in answers[5].headers["x-tollgate-route"]

    sim.clear(key)                       # the upstream recovers; after the cool-down one trial goes through
    assert wait_for(lambda: served_by(live, sim, key), timeout=COOLDOWN * 5)
    after = f"after-{uuid.uuid4().hex}"
    assert chat(live, after).status_code == 200 and sim.calls(key, after) == 1   # closed: first choice again
    assert wait_for(lambda: events(primary) == [("open", "traffic"), ("closed", "traffic")])
    opened = ChannelHealthEvent.objects.get(channel=primary, to_state="open")
    assert opened.model_id == live.model.pk and "3 failures in a row" in opened.reason
    assert opened.cooldown_seconds == COOLDOWN
    primary.refresh_from_db()
    assert primary.status == Channel.ENABLED and not primary.needs_attention


def test_a_breaker_opened_in_one_gateway_process_is_honoured_by_another(settled, gateway_factory, simulator, sim):
    one, other = (gateway_factory(TOLLGATE_BREAKER_COOLDOWN_SECONDS="30") for _ in range(2))
    live = make_live_setup(one, simulator)
    live_other = dataclasses.replace(live, base_url=f"{other.url}/v1", server=other)
    primary, key = primary_channel(live, sim)
    assert wait_for(lambda: served_by(live_other, sim, key))
    sim.fault(key, "status:503")
    run = uuid.uuid4().hex
    assert all(chat(live, f"{run}-{i}").status_code == 200 for i in range(3))
    assert sum(sim.calls(key, f"{run}-{i}") for i in range(3)) == 3           # opened in the first process
    # Published to the shared cache at once; the other process reads it on its next sync, which comes at
    # most TOLLGATE_LOCAL_TTL_SECONDS (0.5 s) later and cannot be observed from outside: give it two.
    scope = br.model_scope(primary.pk, live.model.pk)
    assert wait_for(lambda: (entry := br.read_breakers().get(scope)) and entry["state"] == br.OPEN)
    time.sleep(2 * 0.5)
    answers = [chat(live_other, f"{run}-other-{i}") for i in range(3)]
    assert all(r.status_code == 200 for r in answers)
    assert sum(sim.calls(key, f"{run}-other-{i}") for i in range(3)) == 0     # … and skipped in the other
    assert "circuit open" in answers[0].headers["x-tollgate-route"]


def test_a_401_opens_the_channel_at_once_and_flags_it_for_an_admin(live, sim):
    primary, key = primary_channel(live, sim)
    sim.fault(key, "status:401")
    run = uuid.uuid4().hex
    first, second = chat(live, f"{run}-1"), chat(live, f"{run}-2")
    assert first.status_code == second.status_code == 200
    assert "HTTP 401" in first.headers["x-tollgate-route"]
    assert sim.calls(key, f"{run}-1") == 1 and sim.calls(key, f"{run}-2") == 0
    assert "circuit open" in second.headers["x-tollgate-route"]
    flagged = wait_for(lambda: Channel.objects.filter(pk=primary.pk, needs_attention=True).first())
    assert flagged and "HTTP 401" in flagged.attention_reason and key not in flagged.attention_reason
    assert flagged.status == Channel.ENABLED          # flagged, not disabled: the admin decides
    event = wait_for(lambda: ChannelHealthEvent.objects.filter(channel=primary).first())
    assert event.model_id is None and event.to_state == "open"   # the channel's own breaker
    assert br.entry_state(br.read_breakers()[br.channel_scope(primary.pk)], time.time()) == br.OPEN


def test_an_admin_disabled_channel_is_never_re_enabled(live, sim, settings):
    settings.TOLLGATE_BREAKER_COOLDOWN_SECONDS = 0.2
    disabled, key = primary_channel(live, sim, disabled=True)
    assert disabled not in probes.channels_to_probe()
    tasks.probe_channel(disabled.pk)                      # queued before it was disabled: skipped
    assert not ChannelProbe.objects.filter(channel=disabled).exists()
    # "Test now" still works on it, and feeds its breaker: open on a 401 …
    sim.fault(key, "status:401", count=1)
    failed = probes.channel_probe_now(disabled)
    assert (failed.ok, failed.status_code, failed.error_class) == (False, 401, "http_401")
    assert br.read_breakers()[br.channel_scope(disabled.pk)]["state"] == br.OPEN
    scope = br.channel_scope(disabled.pk)     # the cool-down (0.2 s) has to pass
    assert wait_for(lambda: br.entry_state(br.read_breakers()[scope], time.time()) == br.HALF_OPEN, timeout=2)
    # … closed again by a successful probe after the cool-down: the channel itself stays disabled.
    assert probes.channel_probe_now(disabled).ok
    assert br.read_breakers()[br.channel_scope(disabled.pk)]["state"] == br.CLOSED
    assert events(disabled) == [("open", "probe"), ("closed", "probe")]
    disabled.refresh_from_db()
    assert disabled.status == Channel.DISABLED and disabled.needs_attention
    run = uuid.uuid4().hex
    assert all(chat(live, f"{run}-{i}").status_code == 200 for i in range(3))
    assert sum(sim.calls(key, f"{run}-{i}") for i in range(3)) == 0   # the gateway never routes to it




def test_probe_task_runs_on_a_real_celery_worker(celery_worker, simulator, sim, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://") and not settings.CELERY_TASK_ALWAYS_EAGER
    model = factories.CatalogModelFactory(public_id="test/probed", upstream_name="gpt-4o-mini")
    other = factories.CatalogModelFactory(public_id="test/probed-other", upstream_name="gpt-4o-mini")
    healthy = factories.channel(models=[other, model], base_url=f"{simulator.url}/v1", name="healthy",
                                api_key=f"sk-sim-{uuid.uuid4().hex}")
    channel_update(channel=healthy, test_model=model)
    bad_key = f"sk-sim-{uuid.uuid4().hex}"
    broken = factories.channel(models=[model], base_url=f"{simulator.url}/v1", api_key=bad_key, name="broken")
    sim.fault(bad_key, "status:401")

    tasks.probe_channels.delay()         # through the broker: beat → worker → one task per channel
    done = wait_for(lambda: ChannelProbe.objects.filter(channel__in=[healthy, broken]).count() == 2, timeout=60)
    assert done, celery_worker.poll()
    ok = ChannelProbe.objects.get(channel=healthy)
    assert ok.ok and ok.model == model and ok.status_code == 200 and not ok.manual
    assert ok.latency_ms is not None and ok.ttfb_ms is not None and ok.ttfb_ms <= ok.latency_ms
    bad = ChannelProbe.objects.get(channel=broken)
    assert (bad.ok, bad.status_code, bad.error_class) == (False, 401, "http_401")
    assert bad.error_text and bad_key not in bad.error_text
    assert wait_for(lambda: Channel.objects.get(pk=broken.pk).needs_attention)
    assert br.read_breakers()[br.channel_scope(broken.pk)]["state"] == br.OPEN
