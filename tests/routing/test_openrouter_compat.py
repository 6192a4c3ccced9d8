"""Code written for OpenRouter runs against Tollgate (issue 12, part 1): the `openai` SDK with
base_url=".../api/v1" against a live gateway — chat, stream, the model list in OpenRouter's schema, errors in
OpenRouter's shape, /key, /generation the moment a response ended —, `models: [..]` fallback on every inbound
format, and app attribution on the usage record."""
import datetime as dt
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.relay import errors, generations
from routing.relay.formats import checks, openrouter
from routing.relay.snapshot import PriceEntry
from tests import factories
from tests.conftest import wait_for, wait_for_config

HELLO = [{"role": "user", "content": "[[sim:tokens=5]] hello"}]


def api_base(live) -> str:
    return live.server.url + "/api/v1"


def sdk(live, secret=None, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_base(live), api_key=secret or live.secret, max_retries=0, **kwargs)


def get(live, path, secret=None, **params):
    return httpx.get(api_base(live) + path, params=params, headers={"Authorization": f"Bearer {secret or live.secret}"},
                     timeout=20)


def record_of(request_id):
    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())


# --- the openai SDK against /api/v1 ----------------------------------------------------------------------------

def test_chat_and_a_generation_look_up_the_moment_it_ended(live):
    client = sdk(live)
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HELLO)
    completion = raw.parse()
    # Looked up before anything else happens: the usage record may not be in PostgreSQL yet.
    gen = client.get("/generation", cast_to=object, options={"params": {"id": completion.id}})["data"]
    assert completion.id.startswith("gen-") and raw.headers["x-generation-id"] == completion.id
    assert completion.choices[0].message.content and completion.usage.completion_tokens == 5
    assert gen["total_cost"] == completion.usage.model_extra["cost"] > 0
    assert (gen["model"], gen["provider_name"], gen["streamed"], gen["cancelled"]) == \
        ("openai/gpt-4o-mini", "OpenAI", False, False)   # the channel's provider (its kind's: it names none)
    assert (gen["finish_reason"], gen["native_finish_reason"]) == ("stop", "stop")
    assert completion.choices[0].model_extra["native_finish_reason"] == "stop"
    assert (gen["tokens_prompt"], gen["tokens_completion"]) == \
        (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    record = record_of(raw.headers["x-request-id"])
    assert gen["id"] == record.request_id and gen["total_cost_micro"] == record.cost
    # Once the record is in the database (and any summary gone) the record answers the same.
    generations._local.clear()
    from_record = get(live, "/generation", id=raw.headers["x-request-id"]).json()["data"]
    assert {k: from_record[k] for k in ("total_cost", "tokens_prompt", "finish_reason", "provider_name")} == \
        {k: gen[k] for k in ("total_cost", "tokens_prompt", "finish_reason", "provider_name")}


def test_stream_and_its_generation(live):
    client = sdk(live)
    with client.chat.completions.with_streaming_response.create(
            model="openai/gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}) as resp:
        generation_id = resp.headers["x-generation-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text and usage.completion_tokens == 5 and {c.id for c in chunks} == {generation_id}
    gen = client.get("/generation", cast_to=object, options={"params": {"id": generation_id}})["data"]
    assert gen["streamed"] is True and gen["total_cost"] == usage.model_extra["cost"]
    assert gen["finish_reason"] == "stop"


def test_a_stream_always_ends_with_its_usage_and_cost(live):
    """As on OpenRouter (stream_options.include_usage is a deprecated no-op there), a stream under /api/v1
    ends with one chunk of `choices: []` carrying the usage and its cost, asked for or not: relayed from an
    OpenAI-compatible channel and translated from an Anthropic one. Under /v1 only when asked for (OpenAI's)."""
    from routing.models import Channel

    factories.provider_models(kind=Channel.ANTHROPIC, base_url=live.simulator.url, names=["claude-usage-test"],
                              provider="anthropic", api_key="sk-sim-anthropic-usage")
    bump_version()
    client = sdk(live)
    for model in ("openai/gpt-4o-mini", "anthropic/claude-usage-test"):
        chunks = wait_for(lambda: _or_none(lambda: list(client.chat.completions.create(
            model=model, messages=HELLO, stream=True))))   # no stream_options
        usage_chunks = [c for c in chunks if c.usage is not None]
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == [], model
        usage = usage_chunks[0].usage
        assert usage.completion_tokens == 5 and usage.model_extra["cost"] > 0, model
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), model
    plain = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)
    chunks = list(plain.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_models_list_in_openrouter_schema_at_the_team_price(live):
    hidden = factories.CatalogModelFactory(public_id="openai/not-for-this-key")
    factories.PriceFactory(model=hidden)
    factories.channel(models=[hidden], base_url=f"{live.simulator.url}/v1", name="hidden")
    _, secret = factories.api_key(team=live.team, allowed_models=["openai/gpt-4o-mini"])
    bump_version()
    assert wait_for(lambda: len(sdk(live).models.list().data) == 2)   # the team's key sees both
    models = sdk(live, secret=secret).models.list().data
    assert [m.id for m in models] == ["openai/gpt-4o-mini"]
    model = models[0].model_dump()
    assert model["context_length"] == live.model.context_length
    assert model["architecture"]["input_modalities"] == list(live.model.input_modalities or ["text"])
    assert model["pricing"] == {"prompt": "0.00000015", "completion": "0.0000006", "request": "0", "image": "0",
                                "input_cache_read": "0.000000075", "input_cache_write": "0.00000015"}
    assert model["top_provider"]["max_completion_tokens"] == live.model.max_output_tokens
    assert {"tools", "response_format", "max_tokens"} <= set(model["supported_parameters"])
    one = get(live, "/models/openai/gpt-4o-mini", secret).json()["data"]
    assert one["id"] == "openai/gpt-4o-mini" and one["pricing"] == model["pricing"]
    assert get(live, "/models/openai/not-for-this-key", secret).json()["error"]["code"] == 404
    full = httpx.get(f"{live.base_url}/models", params={"detail": "full"},
                     headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert [m["pricing"] for m in full] == [model["pricing"]]


def test_models_list_at_the_teams_override_and_multipliers_as_billed(live):
    """The listed prices are what this key's calls cost: the team's price override, times its multiplier and
    its key group's; another team sees the catalog price. Every field of OpenRouter's model schema is there."""
    from billing.models import PriceOverride, TeamBillingPolicy

    PriceOverride.objects.create(team=live.team, model=live.model, input_per_m=1_000_000, output_per_m=4_000_000,
                                 cached_input_per_m=500_000, cache_write_5m_per_m=1_250_000,
                                 cache_write_1h_per_m=2_000_000, effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    TeamBillingPolicy.objects.update_or_create(team=live.team, defaults={"price_multiplier_ppm": 1_500_000})
    group = factories.KeyGroupFactory(team=live.team, price_multiplier_ppm=2_000_000)
    _, secret = factories.api_key(team=live.team, group=group)
    _, stranger = factories.api_key()
    bump_version()
    priced = {"prompt": "0.000003", "completion": "0.000012", "request": "0", "image": "0",   # x 1.5 x 2
              "input_cache_read": "0.0000015", "input_cache_write": "0.00000375"}
    model = wait_for(lambda: (lambda m: m if m["pricing"] == priced else None)(
        get(live, "/models", secret).json()["data"][0]))
    assert model, get(live, "/models", secret).json()
    assert {"id", "name", "created", "description", "context_length", "architecture", "pricing", "top_provider",
            "supported_parameters"} <= set(model)
    assert model["id"] == "openai/gpt-4o-mini" and model["created"] == int(live.model.created_at.timestamp())
    assert model["name"] and model["description"] and model["architecture"]["output_modalities"] == ["text"]
    assert get(live, "/models", stranger).json()["data"][0]["pricing"]["prompt"] == "0.00000015"   # the catalog's
    completion = sdk(live, secret=secret).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    usage = completion.usage
    assert usage.model_extra["cost"] == pytest.approx(
        usage.prompt_tokens * float(priced["prompt"]) + usage.completion_tokens * float(priced["completion"]))


def test_errors_in_openrouter_shape(live):
    client = sdk(live)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[])
    body = bad.value.response.json()["error"]
    assert body["code"] == 400 and "messages" in body["message"]
    assert body["metadata"]["request_id"] == bad.value.response.headers["x-request-id"]
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        sdk(live, secret="sk-tg-wrong").chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert unauthorized.value.response.json()["error"]["code"] == 401
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no/such-model", messages=HELLO)
    assert unknown.value.response.json()["error"]["code"] == 404
    lost = httpx.post(api_base(live) + "/completions/legacy", json={})
    assert lost.status_code == 404 and lost.json()["error"]["code"] == 404
    assert "/api/v1" in lost.json()["error"]["message"]
    # Messages keeps Anthropic's error shape under /api/v1 (Anthropic SDKs read it).
    messages = httpx.post(api_base(live) + "/messages", json={"model": "openai/gpt-4o-mini"},
                          headers={"x-api-key": live.secret})
    assert messages.status_code == 400 and messages.json()["type"] == "error"


def test_a_402_names_its_limit_source(live, gateway, simulator):
    poor, secret = factories.api_key()   # a team with no balance
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(live, secret=secret).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    error = refused.value.response.json()["error"]
    assert refused.value.status_code == 402 and error["code"] == 402
    assert error["metadata"]["limit_source"] == "balance"


def test_a_429_carries_retry_after(live, simulator, sim_faults):
    sim_faults("sk-sim-test-channel", "status:429")
    with pytest.raises(openai.RateLimitError) as limited:
        sdk(live).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.response.json()["error"]["code"] == 429


def test_key_under_api_v1(live):
    data = get(live, "/key").json()["data"]
    assert {"label", "limit", "limit_remaining", "limit_reset", "usage", "usage_daily", "usage_weekly",
            "usage_monthly", "is_free_tier", "expires_at"} <= set(data)   # OpenRouter's fields, every one
    assert data["is_free_tier"] is False and data["limit"] is None and data["expires_at"] is None
    assert get(live, "/key", secret="sk-tg-nope").json()["error"]["code"] == 401


def test_embeddings_and_responses_under_api_v1(live):
    embed = factories.CatalogModelFactory(public_id="openai/test-embedding", upstream_name="text-embedding-3-small",
                                          output_modalities=["embeddings"])
    factories.PriceFactory(model=embed)
    factories.channel(models=[embed], base_url=f"{live.simulator.url}/v1", name="embed")
    wait_for_config(live.server)   # served before the first call (the SDK raises on a 404, wait_for would too)
    client = sdk(live)
    vectors = client.embeddings.create(model="openai/test-embedding", input="hi")
    assert vectors.data[0].embedding
    answer = client.responses.create(model="openai/gpt-4o-mini", input="[[sim:tokens=3]] hi")
    assert answer.output_text
    gen = get(live, "/generation", id=answer.id).json()["data"]
    assert gen["total_cost"] == answer.usage.model_extra["cost"]


# --- models: [..] on every inbound format ------------------------------------------------------------------

def _failing_first(live, sim_faults):
    first = factories.CatalogModelFactory(public_id="test/first", upstream_name="gpt-4o-mini")
    second = factories.CatalogModelFactory(public_id="test/second", upstream_name="gpt-4o-mini")
    for model in (first, second):
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", api_key=f"sk-sim-{model.pk}",
                          name=model.public_id)
    sim_faults(f"sk-sim-{first.pk}", "status:502")
    bump_version()
    assert wait_for(lambda: get(live, "/models/test/second").status_code == 200)


def test_messages_take_a_fallback_list(live, sim_faults):
    _failing_first(live, sim_faults)
    resp = httpx.post(api_base(live) + "/messages", headers={"x-api-key": live.secret}, timeout=20, json={
        "model": "test/first", "models": ["test/second"], "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/second" and resp.headers["x-generation-id"] == resp.json()["id"]


def test_gemini_and_legacy_route_fallback(live, sim_faults):
    _failing_first(live, sim_faults)
    gemini = httpx.post(f"{live.server.url}/v1beta/models/test/first:generateContent", timeout=20,
                        headers={"x-goog-api-key": live.secret},
                        json={"models": ["test/second"], "contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert gemini.status_code == 200, gemini.text
    assert gemini.json()["modelVersion"] == "test/second"
    chat = sdk(live).chat.completions.create(model="test/first", messages=HELLO,
                                             extra_body={"models": ["test/second"], "route": "fallback"})
    assert chat.model == "test/second"


# --- app attribution ---------------------------------------------------------------------------------------

def test_app_headers_are_stored_redacted(live):
    client = sdk(live, default_headers={"HTTP-Referer": "https://myapp.example", "X-Title": "My App"})
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HELLO)
    record = record_of(raw.headers["x-request-id"])
    assert (record.http_referer, record.app_title) == ("https://myapp.example", "My App")
    gen = get(live, "/generation", id=raw.headers["x-generation-id"]).json()["data"]
    assert (gen["http_referer"], gen["app_title"]) == ("https://myapp.example", "My App")
    leaky = sdk(live, default_headers={"X-OpenRouter-Title": "key sk-proj-abcdefghijklmnopqrstuvwxyz123456"})
    raw = leaky.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HELLO)
    title = record_of(raw.headers["x-request-id"]).app_title
    assert title.startswith("key ") and "abcdefghijklmnopqrstuvwxyz" not in title


# --- units ------------------------------------------------------------------------------------------------

def test_openrouter_error_object():
    err = errors.RelayError(402, "insufficient_quota", "insufficient_quota", "no money",
                            metadata={"limit_source": "key"}, headers={"Retry-After": "3"})
    resp = openrouter.error_response(err, "req_1")
    assert resp.status_code == 402 and resp["Retry-After"] == "3"
    import orjson
    assert orjson.loads(resp.content) == {"error": {"code": 402, "message": "no money", "metadata": {
        "error_type": "insufficient_quota", "error_code": "insufficient_quota", "request_id": "req_1",
        "limit_source": "key"}}}


def test_prices_are_per_token_decimal_strings():
    price = PriceEntry(input_per_m=2_500_000, output_per_m=10_000_000, cached_input_per_m=1_250_000,
                       request_fee=0, cache_write_5m_per_m=3_125_000)
    assert openrouter.pricing(price, 1_000_000) == {
        "prompt": "0.0000025", "completion": "0.00001", "request": "0", "image": "0",
        "input_cache_read": "0.00000125", "input_cache_write": "0.000003125"}
    doubled = openrouter.pricing(price, 2_000_000)
    assert Decimal(doubled["prompt"]) == 2 * Decimal("0.0000025")
    assert set(openrouter.pricing(None, 1_000_000).values()) == {"0"}


@pytest.mark.parametrize("payload, out", [
    ({}, {}), ({"models": ["a", "b"]}, {"models": ["a", "b"]}), ({"models": ["a"], "route": "fallback"},
                                                                {"models": ["a"]})])
def test_fallback_fields(payload, out):
    assert checks.fallback(payload) == out


@pytest.mark.parametrize("payload, field", [({"models": "a"}, "models"), ({"models": [1]}, "models[0]"),
                                            ({"route": "fastest"}, "route"), ({"route": 3}, "route")])
def test_bad_fallback_fields_are_400s_naming_them(payload, field):
    with pytest.raises(errors.RelayError) as bad:
        checks.fallback(payload)
    assert bad.value.status == 400 and bad.value.param == field


def test_native_finish_reasons_in_the_providers_words():
    assert generations.native_finish_reason("anthropic", 200, "length") == "max_tokens"
    assert generations.native_finish_reason("anthropic", 200, "tool_calls") == "tool_use"
    assert generations.native_finish_reason("gemini", 200, "stop") == "STOP"
    assert generations.native_finish_reason("openai", 200, "length") == "length"
    assert generations.native_finish_reason("anthropic", 502, "") == "error"
    summary = generations.summary({"request_id": "req_ab", "team_id": 1, "status_code": 499, "prompt_tokens": 1,
                                   "completion_tokens": 2, "cached_tokens": 0, "cache_write_5m_tokens": 0,
                                   "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "usage_clamped": False,
                                   "cost": 1500, "stream": True, "latency_ms": 9, "created_at": 0.0},
                                  provider_name="openai", channel_kind="openai")
    assert (summary["cancelled"], summary["finish_reason"], summary["total_cost"]) == (True, None, 0.0015)
    assert summary["created_at"] == dt.datetime(1970, 1, 1, tzinfo=dt.UTC).isoformat()


def test_another_process_reads_the_summary_from_the_shared_cache(db):
    """The summary a gateway process keeps reaches the shared cache: a process that did not serve the call (no
    local copy) finds it there, for the caller's team only."""
    import asyncio

    record = {"request_id": "req_" + "cd" * 12, "team_id": 7, "status_code": 200, "served_model": "openai/m",
              "prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 0, "cache_write_5m_tokens": 0,
              "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "usage_clamped": False, "cost": 2_500,
              "stream": False, "latency_ms": 12, "ttfb_ms": 12, "finish_reason": "length", "created_at": 1.0}
    generations.remember(record, provider_name="Anthropic", channel_kind="anthropic")
    generations._local.clear()   # as seen from another process
    found = asyncio.run(generations.recall(7, "cd" * 12))
    assert (found["total_cost"], found["provider_name"], found["native_finish_reason"]) == \
        (0.0025, "Anthropic", "max_tokens")
    assert asyncio.run(generations.recall(8, "cd" * 12)) is None   # another team's: not found


def test_a_stream_that_breaks_after_tokens_ends_with_openrouters_error_chunk(live):
    """After tokens went out the status stays 200: one last chunk carries `error: {code, message, metadata}`
    with finish_reason "error", then [DONE]."""
    import orjson

    with httpx.stream("POST", api_base(live) + "/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "openai/gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "[[sim:fault=break:6]] [[sim:tokens=40]] go"}]}
                      ) as resp:
        assert resp.status_code == 200
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = orjson.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "error" and last["id"] == resp.headers["x-generation-id"]
    assert last["error"]["code"] == 502 and last["error"]["metadata"]["request_id"] == resp.headers["x-request-id"]
    assert any(orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2])


def test_credits_are_the_ledger(live):
    """GET /api/v1/credits: credited minus charged usage is the team balance."""
    from billing.selectors import team_balance

    data = get(live, "/credits").json()["data"]
    assert data["total_credits"] == 100.0 and data["total_usage"] == 0.0   # the live team's credit
    assert data["total_credits"] - data["total_usage"] == team_balance(team=live.team) / 1_000_000
    assert get(live, "/credits", secret="sk-tg-nope").json()["error"]["code"] == 401


def test_an_anthropic_channel_finishes_in_its_own_words(live):
    """A chat call served by an Anthropic channel: the choice and the generation say `max_tokens` (the
    provider's word) beside OpenAI's `length`, and the provider is the channel's."""
    from routing.models import Channel

    factories.provider_models(kind=Channel.ANTHROPIC, base_url=live.simulator.url, names=["claude-or-test"],
                              provider="anthropic", api_key="sk-sim-anthropic-or")
    bump_version()
    client = sdk(live)
    ask = {"model": "anthropic/claude-or-test", "max_tokens": 3,
           "messages": [{"role": "user", "content": "[[sim:tokens=20]] hi"}]}
    completion = wait_for(lambda: _or_none(lambda: client.chat.completions.create(**ask)))
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.model_extra["native_finish_reason"]) == ("length", "max_tokens")
    gen = get(live, "/generation", id=completion.id).json()["data"]
    assert (gen["finish_reason"], gen["native_finish_reason"], gen["provider_name"]) == \
        ("length", "max_tokens", "Anthropic")


def _or_none(call):
    try:
        return call()
    except openai.NotFoundError:   # the gateway has not reloaded its catalog yet
        return None
