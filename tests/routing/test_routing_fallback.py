"""Routing over real HTTP: routes, fallback lists, capability skips, retries across channels and models."""
import collections
import uuid

import httpx

from billing.models import UsageRecord
from routing.relay.router import order_channels
from routing.relay.snapshot import ChannelEntry
from routing.services import routing_rule_upsert
from tests import factories
from tests.conftest import wait_for, wait_for_config


def model_with_channel(simulator, public_id, *, key=None, **caps):
    model = factories.CatalogModelFactory(public_id=public_id, upstream_name="gpt-4o-mini", **caps)
    factories.PriceFactory(model=model)
    key = key or f"sk-sim-{public_id.replace('/', '-')}"
    factories.channel(models=[model], base_url=f"{simulator.url}/v1", api_key=key, name=public_id)
    return model, key


def chat(live, model, content="hello", **extra):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": content}], **extra}, timeout=20)


def ready(live):
    wait_for_config(live.server)   # the gateway serves what the test just configured


def test_primary_503_backup_serves(live, simulator, sim_faults):
    primary, primary_key = model_with_channel(simulator, "test/primary")
    backup, _ = model_with_channel(simulator, "test/backup")
    routing_rule_upsert(team=live.team, name="batch", default_model=primary, backup_models=[backup.public_id])
    ready(live)
    sim_faults(primary_key, "status:503")
    resp = chat(live, "route:batch")
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/backup"
    route = resp.headers["x-tollgate-route"]
    assert "route=route:batch" in route and "model=test/backup" in route and "attempts=2" in route
    assert "test/primary via platform channel #" in route and "HTTP 503" in route
    assert "test/primary" not in resp.json()["choices"][0]["message"]["content"]
    request_id = resp.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record.served_model == "test/backup" and record.route == "route:batch"
    assert any("HTTP 503" in a for a in record.attempts)


def test_backup_without_tools_is_skipped(live, simulator, sim_faults):
    primary, primary_key = model_with_channel(simulator, "test/tools-primary")
    no_tools, no_tools_key = model_with_channel(simulator, "test/no-tools", supports_tools=False)
    third, _ = model_with_channel(simulator, "test/tools-third")
    routing_rule_upsert(team=live.team, name="tools", default_model=primary,
                        backup_models=[no_tools.public_id, third.public_id])
    ready(live)
    sim_faults(primary_key, "status:500")
    marker = uuid.uuid4().hex
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    resp = chat(live, "route:tools", f"find {marker}", tools=tools)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "test/tools-third"
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert "test/no-tools: no tool calling" in resp.headers["x-tollgate-route"]
    seen = httpx.get(f"{simulator.url}/_sim/requests?limit=50").json()
    seen = seen.get("requests", seen) if isinstance(seen, dict) else seen
    keys_used = [r["headers"].get("authorization", "") for r in seen if marker in str(r.get("body"))]
    assert not any(k.endswith(no_tools_key[-4:]) for k in keys_used)   # the no-tools model was never called


def test_context_length_error_moves_to_long_context_backup(live, simulator, sim_faults):
    short, short_key = model_with_channel(simulator, "test/short", context_length=128_000)
    long_model, _ = model_with_channel(simulator, "test/long", context_length=1_000_000)
    routing_rule_upsert(team=live.team, name="long-review", default_model=short,
                        backup_models=[long_model.public_id])
    ready(live)
    sim_faults(short_key, "context_length")   # only the short model's upstream says the prompt is too long
    resp = chat(live, "route:long-review", "review this")
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/long"
    assert "test/short via platform channel #" in resp.headers["x-tollgate-route"]
    assert "context_length_exceeded" in resp.headers["x-tollgate-route"]
    # When every model says so, the upstream's own 400 comes back (after both were tried).
    resp = chat(live, "route:long-review", "[[sim:fault=context_length]] review this")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
    assert "test/long via" in resp.headers["x-tollgate-route"]


def test_context_length_skip_before_calling(live, simulator):
    tiny, _ = model_with_channel(simulator, "test/tiny", context_length=2_000)
    big, _ = model_with_channel(simulator, "test/big", context_length=1_000_000)
    routing_rule_upsert(team=live.team, name="long-review", default_model=tiny, backup_models=[big.public_id])
    ready(live)
    resp = chat(live, "route:long-review", "word " * 9_000)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/big"
    assert "test/tiny: context 2000 <" in resp.headers["x-tollgate-route"]


def test_all_candidates_down_is_503_listing_attempts(live, simulator, sim_faults):
    a, a_key = model_with_channel(simulator, "test/down-a")
    b, b_key = model_with_channel(simulator, "test/down-b")
    sim_faults(a_key, "status:503")
    sim_faults(b_key, "status:429")
    ready(live)
    resp = chat(live, "test/down-a", models=["test/down-b"])
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "no_available_channel")
    assert "test/down-a via" in error["message"] and "HTTP 503" in error["message"]
    assert "test/down-b via" in error["message"] and "HTTP 429" in error["message"]
    assert error["request_id"] == resp.headers["x-request-id"]


def test_every_candidate_rate_limited_is_429_with_the_upstream_retry_after(live, simulator, sim_faults):
    """An upstream 429 is the upstream asking the client to wait: it is passed on as a 429 with Retry-After,
    not turned into a 502/503 (the simulator's 429 says Retry-After: 1)."""
    a, a_key = model_with_channel(simulator, "test/busy-a")
    b, b_key = model_with_channel(simulator, "test/busy-b")
    sim_faults(a_key, "status:429")
    sim_faults(b_key, "status:429")
    ready(live)
    resp = chat(live, "test/busy-a", models=["test/busy-b"])
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "1"
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "upstream_rate_limited")
    assert "test/busy-a via" in error["message"] and "test/busy-b via" in error["message"]
    assert error["request_id"] == resp.headers["x-request-id"]


def test_models_list_falls_back_in_order(live, simulator, sim_faults):
    first, first_key = model_with_channel(simulator, "test/first")
    model_with_channel(simulator, "test/second")
    sim_faults(first_key, "status:502")
    ready(live)
    resp = chat(live, "test/first", models=["no/such-model", "test/second"])
    assert resp.status_code == 200 and resp.json()["model"] == "test/second"
    assert "no/such-model: unknown model" in resp.headers["x-tollgate-route"]


def test_auto_routes_images_to_the_vision_route(live, simulator):
    text_model, _ = model_with_channel(simulator, "test/text-only", supports_vision=False)
    vision, _ = model_with_channel(simulator, "test/vision", supports_vision=True)
    routing_rule_upsert(team=live.team, name="default", default_model=text_model)
    routing_rule_upsert(team=live.team, name="vision", default_model=vision)
    ready(live)
    plain = chat(live, "auto", "describe the weather")
    assert plain.json()["model"] == "test/text-only"
    assert "route=auto -> route:default" in plain.headers["x-tollgate-route"]
    image = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    resp = chat(live, "auto", image)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/vision"


def test_image_to_a_text_only_model_is_a_clear_400(live, simulator):
    model_with_channel(simulator, "test/blind", supports_vision=False)
    ready(live)
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    resp = chat(live, "test/blind", image)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "unsupported_capability" and "test/blind: no image input" in error["message"]


def test_unknown_route_is_404(live):
    resp = chat(live, "route:nope")
    assert resp.status_code == 404 and "route:nope" in resp.json()["error"]["message"]


def test_forbidden_model_of_a_route_is_not_served(live, simulator):
    allowed, _ = model_with_channel(simulator, "test/cheap")
    pricey, _ = model_with_channel(simulator, "test/pricey")
    routing_rule_upsert(team=live.team, name="batch", default_model=pricey, backup_models=[allowed.public_id],
                        forbidden_models=[pricey.public_id])
    ready(live)
    resp = chat(live, "route:batch")
    assert resp.json()["model"] == "test/cheap"
    assert "test/pricey: not allowed" in resp.headers["x-tollgate-route"]


def _channel(id_, team_id=None, priority=0, weight=1):
    return ChannelEntry(id_, team_id, f"c{id_}", "openai", "http://x", "k", priority, weight, {})


def test_channel_order_team_first_then_priority_then_weight():
    own = _channel(1, team_id=7)
    high = _channel(2, priority=10)
    heavy, light = _channel(3, weight=3), _channel(4, weight=1)
    firsts = collections.Counter()
    for _ in range(4000):
        order = order_channels([light, heavy, high, own], team_id=7)
        assert order[:2] == [own, high]
        firsts[order[2].id] += 1
    share = firsts[3] / 4000
    assert 0.70 < share < 0.80   # weight 3 of 4
