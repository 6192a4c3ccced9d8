"""OpenRouter's `provider` preferences and model suffixes through a live gateway with several channels for one
model: the team's own "azure" (Azure: no data retention, ZDR, fp16), "deepinfra" (DeepInfra, fp8) and
"claude" (an Anthropic-kind channel, which drops OpenAI-only parameters), then the platform's OpenAI channel.
Team channels show by name in X-Tollgate-Route (`channel=azure`), the platform one as `channel=platform`."""
import httpx
import pytest

from billing.models import Price, UsageRecord
from routing.catalog import bump_version
from tests import factories
from tests.conftest import wait_for


@pytest.fixture
def fleet(live, simulator):
    """Priorities make the plain routing order deepinfra, claude, azure, then the platform's channel."""
    model, team, sim = live.model, live.team, f"{simulator.url}/v1"
    factories.channel(models=[model], base_url=sim, team=team, name="azure", api_key="sk-sim-azure", priority=1,
                      provider_name="Azure", data_collection="deny", zdr=True, quantization="fp16")
    factories.channel(models=[model], base_url=sim, team=team, name="deepinfra", api_key="sk-sim-deepinfra",
                      priority=9, provider_name="DeepInfra", quantization="fp8")
    factories.channel(models=[model], base_url=simulator.url, team=team, name="claude", kind="anthropic",
                      api_key="sk-sim-claude", priority=5)
    bump_version()
    wait_for(lambda: "channel=deepinfra" in chat(live).headers.get("x-tollgate-route", ""))
    return live


def chat(live, model="openai/gpt-4o-mini", stream=False, content="hello", **extra):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": content}], "stream": stream,
                            **extra}, timeout=20)


def served_by(resp) -> str:
    assert resp.status_code == 200, resp.text
    route = resp.headers["x-tollgate-route"]
    return next(p.split("=", 1)[1] for p in route.split("; ") if p.startswith("channel="))


def unmet(resp) -> str:
    """A 503 naming, per channel, the requirement that excluded it (the route header lists the same)."""
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["code"] == "no_provider_available" and error["param"] == "provider"
    for part in ("channel 'azure'", "channel 'deepinfra'", "channel 'claude'", "platform channel #"):
        assert part in error["message"]
        assert part in resp.headers["x-tollgate-route"]
    return error["message"]


def test_order(fleet):
    assert served_by(chat(fleet, provider={"order": ["Azure", "OpenAI"]})) == "azure"
    assert served_by(chat(fleet, provider={"order": ["openai"]})) == "platform"   # names match case-insensitively


def test_order_falls_back_unless_told_not_to(fleet, sim_faults):
    sim_faults("sk-sim-azure", "status:503")
    assert served_by(chat(fleet, provider={"order": ["Azure"]})) == "deepinfra"    # then the routing order
    resp = chat(fleet, provider={"order": ["Azure"], "allow_fallbacks": False})
    assert resp.status_code == 502, resp.text                                     # Azure's own failure
    route = resp.headers["x-tollgate-route"]
    assert "channel 'azure': HTTP 503" in route and "not in provider.order (allow_fallbacks false)" in route
    # Without `order`, no fallbacks means the first channel of the routing order only.
    sim_faults("sk-sim-deepinfra", "status:503")
    assert chat(fleet, provider={"allow_fallbacks": False}).status_code == 502
    assert served_by(chat(fleet, provider={"allow_fallbacks": True})) == "claude"


def test_only_and_ignore(fleet):
    resp = chat(fleet, provider={"only": ["Azure", "Anthropic"]})
    assert served_by(resp) == "claude"
    assert "channel 'deepinfra': provider 'DeepInfra' not in provider.only" in resp.headers["x-tollgate-route"]
    assert served_by(chat(fleet, provider={"ignore": ["DeepInfra", "Anthropic"]})) == "azure"
    assert "not in provider.only" in unmet(chat(fleet, provider={"only": ["Groq"]}))


def test_data_collection_and_zdr(fleet):
    assert served_by(chat(fleet, provider={"data_collection": "deny"})) == "azure"
    assert served_by(chat(fleet, provider={"zdr": True})) == "azure"
    assert served_by(chat(fleet, provider={"data_collection": "allow"})) == "deepinfra"
    message = unmet(chat(fleet, provider={"zdr": True, "ignore": ["Azure"]}))
    assert "provider 'DeepInfra' has no zero data retention (provider.zdr)" in message
    assert "provider 'Azure' in provider.ignore" in message


def test_quantizations(fleet):
    assert served_by(chat(fleet, provider={"quantizations": ["fp16", "bf16"]})) == "azure"
    assert served_by(chat(fleet, provider={"quantizations": ["unknown"]})) == "claude"
    message = unmet(chat(fleet, provider={"quantizations": ["int4"]}))
    assert "quantization fp8 not in provider.quantizations" in message
    assert "quantization unknown not in provider.quantizations" in message


def test_require_parameters(fleet):
    assert served_by(chat(fleet, provider={"order": ["Anthropic"]}, seed=7)) == "claude"   # seed dropped
    resp = chat(fleet, provider={"order": ["Anthropic"], "require_parameters": True}, seed=7)
    assert served_by(resp) == "deepinfra"
    assert "channel 'claude': does not support seed (provider.require_parameters)" in resp.headers["x-tollgate-route"]


def test_max_price(fleet):
    price = Price.objects.get(model=fleet.model)   # per million tokens, in micro-units
    prompt, completion = price.input_per_m / 1e6, price.output_per_m / 1e6
    assert served_by(chat(fleet, provider={"only": ["OpenAI"], "max_price": {"prompt": prompt,
                                                                         "completion": completion}})) == "platform"
    message = unmet(chat(fleet, provider={"only": ["OpenAI"], "max_price": {"completion": completion / 2}}))
    assert f"completion price {completion:g} > provider.max_price.completion {completion / 2:g}" in message
    # The team's own channels cost it only the BYOK fee (none here): they are within any max_price.
    assert served_by(chat(fleet, provider={"max_price": {"prompt": 0, "completion": 0}})) == "deepinfra"


def test_sort_by_measured_latency_and_throughput(fleet, sim_faults):
    """Latency and throughput are the relay's own measurements of each channel x model: make Azure slow to
    its first byte and slow to stream, measure every channel a few times, then the fast ones come first."""
    sim_faults("sk-sim-azure", "delay:400")
    for name in ("Azure", "DeepInfra", "Anthropic", "OpenAI"):
        slow = "[[sim:chunk_delay_ms=80]]" if name == "Azure" else ""
        for _ in range(3):
            assert chat(fleet, stream=True, content=f"hello {slow}",
                        provider={"order": [name], "allow_fallbacks": False}).status_code == 200
    order = {"only": ["Azure", "OpenAI"]}
    assert served_by(chat(fleet, provider={**order, "sort": "latency"})) == "platform"
    assert served_by(chat(fleet, provider={**order, "sort": {"by": "latency", "partition": "none"}})) == "platform"
    assert served_by(chat(fleet, "openai/gpt-4o-mini:nitro", provider=order)) == "platform"   # fastest first
    assert served_by(chat(fleet, provider=order)) == "azure"                 # the routing order: team's first
    # A preferred latency deprioritizes (not excludes) the slow channel; one all meet keeps the routing order.
    assert served_by(chat(fleet, provider={**order, "preferred_max_latency": 0.3})) == "platform"
    assert served_by(chat(fleet, provider={**order, "preferred_max_latency": {"p90": 30}})) == "azure"
    assert served_by(chat(fleet, provider={**order, "preferred_min_throughput": {"p50": 0.001}})) == "azure"
    # Azure: ~11 tokens/s streaming a frame every 80 ms, at most ~30 for a whole answer after its 400 ms delay;
    # the platform's channel ~55 streaming (a frame every 15 ms), hundreds for a whole answer.
    assert served_by(chat(fleet, provider={**order, "preferred_min_throughput": 40})) == "platform"
    # An explicit order outranks measured speed.
    assert served_by(chat(fleet, provider={"order": ["Azure", "OpenAI"], "sort": "latency"})) == "azure"


def test_price_sort_keeps_fallbacks_unless_partition_none(fleet, simulator):
    """As on OpenRouter, `:floor` (sort by price) orders each model's channels and keeps a fallback list's
    models in order; `partition: "none"` sorts every model x channel by what the team pays (on its own
    channels only the BYOK fee: none here)."""
    for name, per_m in (("dear", 5_000_000), ("cheap", 10_000)):
        model = factories.CatalogModelFactory(public_id=f"test/{name}", upstream_name="gpt-4o-mini")
        factories.PriceFactory(model=model, input_per_m=per_m, output_per_m=2 * per_m)
        factories.channel(models=[model], base_url=f"{simulator.url}/v1", api_key=f"sk-sim-{name}", name=name)
    bump_version()
    wait_for(lambda: chat(fleet, "test/cheap").status_code == 200)
    resp = chat(fleet, "test/dear:floor", models=["test/cheap"])
    assert resp.json()["model"] == "test/dear"                        # fallback models remain fallbacks
    assert "; provider.sort=price; " in resp.headers["x-tollgate-route"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert record.route == "models[]" and record.served_model == "test/dear"   # route budgets still match
    everywhere = {"sort": {"by": "price", "partition": "none"}}
    assert chat(fleet, "test/dear", models=["test/cheap"], provider=everywhere).json()["model"] == "test/cheap"
    resp = chat(fleet, "test/cheap", models=["openai/gpt-4o-mini"], provider=everywhere)
    assert resp.json()["model"] == "openai/gpt-4o-mini" and served_by(resp) == "deepinfra"   # the team's own key
    # One model, sorted by price: the team's own channels (the fee) before the platform's (the full price).
    resp = chat(fleet, "openai/gpt-4o-mini:floor", provider={"only": ["OpenAI", "Azure"]})
    assert served_by(resp) == "azure"


def test_suffixes_on_a_single_model(fleet):
    resp = chat(fleet, "gpt-4o-mini:floor")   # an alias with a suffix
    assert resp.status_code == 200 and resp.json()["model"] == "openai/gpt-4o-mini"
    assert served_by(chat(fleet, "openai/gpt-4o-mini:nitro", stream=True))
    online = chat(fleet, "openai/gpt-4o-mini:online")
    assert online.status_code == 400
    error = online.json()["error"]
    assert error["code"] == "unsupported_plugin" and "`web`" in error["message"] and error["param"] == "model"


def test_bad_provider_object_is_a_400(fleet):
    resp = chat(fleet, provider={"sort": "cheapest"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "provider.sort" and "price, throughput, latency" in resp.text
    assert chat(fleet, provider={"max_price": {"prompt": "1"}}).json()["error"]["param"] == "provider.max_price.prompt"


def test_preferences_on_a_stream(fleet):
    resp = chat(fleet, stream=True, provider={"zdr": True})
    assert served_by(resp) == "azure" and resp.text.rstrip().endswith("data: [DONE]")


def test_preferences_on_every_inbound_format(fleet):
    headers = {"Authorization": f"Bearer {fleet.secret}", "anthropic-version": "2023-06-01"}
    messages = httpx.post(f"{fleet.base_url}/messages", headers=headers, timeout=20, json={
        "model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}],
        "provider": {"zdr": True}})
    assert served_by(messages) == "azure" and messages.json()["type"] == "message"
    responses = httpx.post(f"{fleet.base_url}/responses", headers=headers, timeout=20, json={
        "model": "openai/gpt-4o-mini", "input": "hi", "provider": {"only": ["OpenAI"]}})
    assert served_by(responses) == "platform" and responses.json()["object"] == "response"
    gemini = httpx.post(f"{fleet.server.url}/v1beta/models/openai/gpt-4o-mini:generateContent",
                        headers={"x-goog-api-key": fleet.secret}, timeout=20, json={
                            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                            "provider": {"quantizations": ["fp16"]}})
    assert served_by(gemini) == "azure" and gemini.json()["candidates"]
    bad = httpx.post(f"{fleet.base_url}/messages", headers=headers, timeout=20, json={
        "model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}],
        "provider": {"zdr": "yes"}})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert "provider.zdr" in bad.json()["error"]["message"]
