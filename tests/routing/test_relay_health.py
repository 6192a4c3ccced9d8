"""Channel health from live traffic, over real HTTP: a stream that broke mid-way is a failure (passive stats
and breaker), and the status page's latency figures are the measured ones (a slow simulated upstream shows).
Its own gateway: the breakers these tests open stay in that process."""

import httpx
import pytest

from routing import breaker as br
from routing import selectors
from routing.catalog import bump_version
from routing.models import ChannelHealthEvent
from tests import factories
from tests.conftest import make_live_setup, wait_for


@pytest.fixture(scope="module")
def health_gateway(gateway_factory):
    return gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")


@pytest.fixture
def live(transactional_db, health_gateway, simulator):
    # The truncate after the test waits for the gateway's background writes (usage, breaker events) to be in
    # the database (tests/conftest.py `drain_gateways`).
    return make_live_setup(health_gateway, simulator)


def bearer(live):
    return {"Authorization": f"Bearer {live.secret}"}


def passive(channel, model) -> list[int]:
    """This hour's passive counters of a channel × model, as the status page reads them."""
    stats = selectors.health_stats()
    return stats["passive"]["1h"].get(br.model_scope(channel.pk, model.pk), br.new_counters())


def test_a_stream_that_broke_mid_way_counts_as_a_failure(live):
    for _ in range(3):
        with httpx.stream("POST", f"{live.base_url}/chat/completions", headers=bearer(live), timeout=20,
                          json={"model": live.model.public_id, "stream": True, "messages": [
                              {"role": "user", "content": "[[sim:fault=break:3]] [[sim:tokens=20]] go"}]}) as resp:
            assert resp.status_code == 200
            text = resp.read().decode()
        assert '"finish_reason":"error"' in text and text.rstrip().endswith("data: [DONE]")
    counters = wait_for(lambda: (c := passive(live.channel, live.model))[1] >= 3 and c, timeout=5)
    assert counters, passive(live.channel, live.model)
    assert (counters[0], counters[1]) == (0, 3)           # no success counted for a broken stream
    opened = wait_for(lambda: ChannelHealthEvent.objects.filter(channel=live.channel, to_state="open").first())
    assert opened is not None and opened.model_id == live.model.pk
    assert "3 failures in a row" in opened.reason and "stream_broken" in opened.reason

    # A stream that finishes is a success.
    with httpx.stream("POST", f"{live.base_url}/chat/completions", headers=bearer(live), timeout=20,
                      json={"model": live.model.public_id, "stream": True,
                            "messages": [{"role": "user", "content": "[[sim:tokens=5]] fine"}]}) as resp:
        resp.read()
    assert wait_for(lambda: passive(live.channel, live.model)[0] == 1, timeout=5)


def latency(model) -> dict:
    (row,) = [m for m in selectors.model_health() if m["model"] == model.public_id]
    return row["latency_ms"]["1h"]


def test_status_latency_figures_are_measured(live):
    slow = factories.CatalogModelFactory(public_id="test/slow-upstream", upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=slow)
    slow_channel = factories.channel(models=[slow], base_url=f"{live.simulator.url}/v1", name="slow")
    bump_version()
    assert wait_for(lambda: httpx.post(f"{live.base_url}/chat/completions", headers=bearer(live), timeout=20, json={
        "model": slow.public_id, "messages": [{"role": "user", "content": "warm"}]}).status_code == 200)
    for model, content in ((slow, "[[sim:fault=delay:230]] slow"), (live.model, "fast")):
        for _ in range(6):
            resp = httpx.post(f"{live.base_url}/chat/completions", headers=bearer(live), timeout=20,
                              json={"model": model.public_id, "messages": [{"role": "user", "content": content}]})
            assert resp.status_code == 200, resp.text
    assert wait_for(lambda: passive(slow_channel, slow)[0] >= 7 and passive(live.channel, live.model)[0] >= 6)
    slow_figures, fast_figures = latency(slow), latency(live.model)
    # Six of seven answers took 230 ms and a little more: the median says so (the coarse buckets said 162 ms
    # for anything from 100 to 250 ms).
    assert 200 <= slow_figures["p50"] <= 300, slow_figures
    assert slow_figures["p50"] <= slow_figures["p95"] < 400, slow_figures
    assert fast_figures["p50"] < slow_figures["p50"] - 80, (fast_figures, slow_figures)
    assert (fast_figures["p50"], fast_figures["p95"]) != (25, 47)
