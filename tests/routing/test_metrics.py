"""GET /metrics: Prometheus text that prometheus_client's own parser reads, whose request counters match the
requests a fresh gateway process served, optionally behind a bearer token."""
import time
import uuid

import httpx
import pytest
from django.db.models import Sum
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from routing import breaker as br
from tests.conftest import make_live_setup, wait_for

# Until gateway_site/urls.py routes /metrics, the in-process scrapes route through this module.


def samples(text: str) -> dict[str, list]:
    """Sample name → [(labels, value)], through prometheus_client's parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found, name, **labels):
    return sum(v for found_labels, v in found.get(name, [])
               if all(found_labels.get(k) == w for k, w in labels.items()))


def scrape(**headers) -> tuple[int, str]:
    response = Client().get("/metrics", headers=headers)
    return response.status_code, response.content.decode()


def chat(live, model="openai/gpt-4o-mini"):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": uuid.uuid4().hex}]}, timeout=20)


def check_counts(found, live, ok: int, unknown: int):
    endpoint = "/v1/chat/completions"
    channel = str(live.channel.pk)
    assert total(found, "tollgate_requests_total") == ok + unknown
    assert total(found, "tollgate_requests_total", endpoint=endpoint, route="direct", model="openai/gpt-4o-mini",
                 channel=channel, status="200") == ok
    assert total(found, "tollgate_requests_total", model="-", channel="-", status="404") == unknown
    assert total(found, "tollgate_request_duration_seconds_count", endpoint=endpoint) == ok + unknown
    assert total(found, "tollgate_upstream_duration_seconds_count", channel=channel) == ok
    assert total(found, "tollgate_gateway_overhead_seconds_count", endpoint=endpoint) == ok
    records = wait_for(lambda: UsageRecord.objects.filter(team=live.team).count() == ok + unknown and
                       UsageRecord.objects.filter(team=live.team).aggregate(
                           p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost")))
    assert records["p"] and total(found, "tollgate_tokens_total", kind="prompt") == records["p"]
    assert total(found, "tollgate_tokens_total", kind="completion") == records["c"]
    assert total(found, "tollgate_cost_micro_total") == records["cost"]
    assert total(found, "tollgate_breaker_state", channel=channel, model="*") == 0
    assert "tollgate_usage_unreconciled" in found


def test_counters_of_a_fresh_multiprocess_gateway_match_the_requests(transactional_db, gateway_factory,
                                                                     simulator, tmp_path, monkeypatch):
    """The gateway writes its counters to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, as
    with several granian workers); any process's /metrics sums them — here the test process's."""
    server = gateway_factory(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    live = make_live_setup(server, simulator)
    answers = [chat(live) for _ in range(5)] + [chat(live, "no/such-model") for _ in range(2)]
    assert [r.status_code for r in answers] == [200] * 5 + [404] * 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    status, text = scrape()
    assert status == 200
    check_counts(samples(text), live, ok=5, unknown=2)


def test_gateway_serves_metrics_over_http(transactional_db, gateway_factory, simulator):
    server = gateway_factory(TOLLGATE_METRICS_TOKEN="scrape-token-0001")
    live = make_live_setup(server, simulator)
    assert all(chat(live).status_code == 200 for _ in range(4))
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-token-0001"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    check_counts(samples(response.text), live, ok=4, unknown=0)


@pytest.mark.django_db
def test_token_and_breaker_states(settings):
    settings.TOLLGATE_METRICS_TOKEN = "scrape-token-0002"
    assert scrape()[0] == 401
    assert scrape(Authorization="Bearer wrong")[0] == 401
    t = br.Breaker(br.model_scope(41, 7)).record(False, time.time(), br.Policy(), "HTTP 503", fatal=True)
    br.queue_publish(br.sync_store(), [t])
    status, text = scrape(Authorization="Bearer scrape-token-0002")
    assert status == 200
    assert total(samples(text), "tollgate_breaker_state", channel="41", model="7") == br.STATE_VALUES[br.OPEN]


@pytest.mark.django_db
def test_paths_with_client_chosen_parts_count_under_one_label_and_clamped_usage_is_counted():
    from types import SimpleNamespace

    from routing.adapters.base import Usage
    from routing.relay import metrics

    assert metrics.endpoint_label("/v1beta/models/made-up-name-1:generateContent") == \
        "/v1beta/models/{model}:generateContent"
    assert metrics.endpoint_label("/v1/models/openai/gpt-4o:streamGenerateContent") == \
        "/v1/models/{model}:streamGenerateContent"
    assert metrics.endpoint_label("/v1/responses/resp_0123") == "/v1/responses/{id}"
    assert metrics.endpoint_label("/v1/chat/completions") == "/v1/chat/completions"
    model = SimpleNamespace(public_id=f"test/clamped-{uuid.uuid4().hex[:6]}")
    call = SimpleNamespace(request=SimpleNamespace(path="/v1beta/models/x:generateContent"), model=model,
                           channel=None, route_plan=None, stream=False, latency_ms=lambda: 5, status=200,
                           ttfb_ms=None, usage=Usage(prompt_tokens=10, completion_tokens=3, cache_write_1h_tokens=2))
    metrics.observe(call, 7, clamped=True)
    found = samples(metrics.prom.generate_latest(metrics.REGISTRY).decode())
    assert total(found, "tollgate_usage_clamped_total", model=model.public_id) == 1
    assert total(found, "tollgate_tokens_total", model=model.public_id, kind="cache_write") == 2
    assert total(found, "tollgate_requests_total", model=model.public_id,
                 endpoint="/v1beta/models/{model}:generateContent") == 1


@pytest.mark.django_db
def test_without_a_token_metrics_are_for_this_host_and_operators_only(settings):
    settings.TOLLGATE_METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200                          # a scraper on the same host
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 401   # anyone else
    from accounts import roles
    from tests import factories

    operator = Client(REMOTE_ADDR="203.0.113.9")
    operator.force_login(factories.StaffRoleFactory(role=roles.OPERATOR).user)
    assert operator.get("/metrics").status_code == 200
