"""OpenRouter's `provider` preferences and model suffixes, unit level: parsing (a 400 naming the field), what
excludes a channel, and the order measured speed gives (routing/relay/provider_prefs.py, health.speed)."""
import pytest

from routing.relay import errors, health, provider_prefs
from routing.relay.provider_prefs import Prefs, parse, reorder, why_not
from routing.relay.snapshot import ChannelEntry


def ch(id, provider="", kind="openai", **meta):
    return ChannelEntry(id, 7, f"c{id}", kind, "http://x/v1", "k", 0, 1, {}, None, provider, **meta)


class M:
    id = 1
    public_id = "openai/gpt-4o-mini"


@pytest.fixture(autouse=True)
def _fresh_health():
    health.reset()
    yield
    health.reset()


@pytest.mark.parametrize("value, field", [
    ("OpenAI", "provider"),
    ({"order": "OpenAI"}, "provider.order"),
    ({"order": ["OpenAI", 3]}, "provider.order"),
    ({"only": [""]}, "provider.only"),
    ({"ignore": {"a": 1}}, "provider.ignore"),
    ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
    ({"require_parameters": 1}, "provider.require_parameters"),
    ({"data_collection": "never"}, "provider.data_collection"),
    ({"zdr": "true"}, "provider.zdr"),
    ({"quantizations": ["fp8", "q4_k_m"]}, "provider.quantizations"),
    ({"sort": "cheapest"}, "provider.sort"),
    ({"sort": {"by": "speed"}}, "provider.sort.by"),
    ({"sort": {"by": "price", "partition": "all"}}, "provider.sort.partition"),
    ({"preferred_min_throughput": "fast"}, "provider.preferred_min_throughput"),
    ({"preferred_min_throughput": {"p95": 10}}, "provider.preferred_min_throughput.p95"),
    ({"preferred_max_latency": -1}, "provider.preferred_max_latency"),
    ({"preferred_max_latency": {"p90": True}}, "provider.preferred_max_latency.p90"),
    ({"max_price": 2}, "provider.max_price"),
    ({"max_price": {"prompt": "1"}}, "provider.max_price.prompt"),
    ({"max_price": {"tokens": 1}}, "provider.max_price.tokens"),
    ({"favourite": "OpenAI"}, "provider.favourite"),
    ({"enforce_distillable_text": True}, "provider.enforce_distillable_text"),   # no channel declares it
    ({"enforce_distillable_text": "no"}, "provider.enforce_distillable_text"),
])
def test_bad_provider_field_is_a_400_naming_it(value, field):
    with pytest.raises(errors.RelayError) as exc:
        parse(value)
    assert exc.value.status == 400 and exc.value.param == field and field in exc.value.message


def test_every_field_parses():
    prefs = parse({"order": ["Azure", "OpenAI"], "only": ["Azure", "open ai"], "ignore": ["DeepInfra"],
                   "allow_fallbacks": False, "require_parameters": True, "data_collection": "deny", "zdr": True,
                   "quantizations": ["fp8", "unknown"], "sort": {"by": "latency", "partition": "none"},
                   "preferred_min_throughput": {"p90": 50}, "preferred_max_latency": 2,
                   "max_price": {"prompt": 1, "completion": 2.5}})
    assert prefs == Prefs(order=("Azure", "OpenAI"), only=frozenset({"azure", "openai"}),
                          ignore=frozenset({"deepinfra"}), allow_fallbacks=False, require_parameters=True,
                          data_collection="deny", zdr=True, quantizations=frozenset({"fp8", "unknown"}),
                          sort="latency", partition="none", min_throughput={"p90": 50.0},
                          max_latency={"p50": 2.0}, max_price={"prompt": 1.0, "completion": 2.5})
    assert parse(None) is None and parse({}) == Prefs() and parse({"sort": None}) == Prefs()
    assert parse({"enforce_distillable_text": False}) == Prefs()


def test_model_suffixes():
    assert provider_prefs.model_suffix("openai/gpt-4o:floor") == ("openai/gpt-4o", "price")
    assert provider_prefs.model_suffix("gpt-4o-mini:nitro") == ("gpt-4o-mini", "throughput")
    assert provider_prefs.model_suffix("gpt-4o-mini") == ("gpt-4o-mini", None)
    assert provider_prefs.model_suffix(":floor") == (":floor", None)
    with pytest.raises(errors.RelayError) as exc:
        provider_prefs.model_suffix("gpt-4o-mini:online")
    assert exc.value.status == 400 and exc.value.code == "unsupported_plugin" and "web" in exc.value.message


FREE = {"prompt": 0.15, "completion": 0.6, "request": 0.0}


@pytest.mark.parametrize("prefs, channel, reason", [
    (Prefs(only=frozenset({"azure"})), ch(1, "OpenAI"), "provider 'OpenAI' not in provider.only"),
    (Prefs(ignore=frozenset({"deepinfra"})), ch(1, "Deep Infra"), "provider 'Deep Infra' in provider.ignore"),
    (Prefs(order=("Azure",), allow_fallbacks=False), ch(1), "provider 'OpenAI' not in provider.order"),
    (Prefs(data_collection="deny"), ch(1, "Azure"), "may retain prompts (provider.data_collection deny)"),
    (Prefs(zdr=True), ch(1, "Azure", data_collection="deny"), "no zero data retention (provider.zdr)"),
    (Prefs(quantizations=frozenset({"fp8"})), ch(1, "DeepInfra", quantization="int4"),
     "quantization int4 not in provider.quantizations"),
    (Prefs(quantizations=frozenset({"fp8"})), ch(1), "quantization unknown not in provider.quantizations"),
    (Prefs(require_parameters=True), ch(1, kind="anthropic"), "does not support logit_bias, seed"),
    (Prefs(max_price={"prompt": 0.1}), ch(1), "prompt price 0.15 > provider.max_price.prompt 0.1"),
])
def test_what_excludes_a_channel(prefs, channel, reason):
    request = {"seed": 1, "logit_bias": {"1": 2}, "temperature": 0.2}
    assert reason in why_not(prefs, channel, request, FREE)


@pytest.mark.parametrize("prefs, channel", [
    (Prefs(only=frozenset({"azure"})), ch(1, "AZURE")),
    (Prefs(data_collection="deny", zdr=True), ch(1, "Azure", data_collection="deny", zdr=True)),
    (Prefs(quantizations=frozenset({"unknown"})), ch(1)),
    (Prefs(require_parameters=True), ch(1)),                     # OpenAI-compatible: every parameter goes
    (Prefs(max_price={"prompt": 0.15, "completion": 1}), ch(1)),
    (Prefs(order=("Google",), allow_fallbacks=False), ch(1, kind="gemini")),   # the kind's provider name
])
def test_a_channel_that_qualifies(prefs, channel):
    assert why_not(prefs, channel, {"seed": 1}, FREE) is None


def test_order_then_routing_order_and_no_fallbacks():
    a, b, c = ch(1, "OpenAI"), ch(2, "Azure"), ch(3, "DeepInfra")
    assert reorder(Prefs(order=("DeepInfra", "Azure")), [a, b, c], M) == [c, b, a]
    assert reorder(Prefs(allow_fallbacks=False), [a, b, c], M) == [a]
    assert reorder(Prefs(), [a, b, c], M) == [a, b, c]


def measure(channel, ttfb_ms, tokens_per_s, n=5):
    for _ in range(n):
        health.observe_speed(channel.id, M.id, ttfb_ms=ttfb_ms, latency_ms=ttfb_ms + 1000, tokens=tokens_per_s,
                             stream=True)


def test_speed_percentiles_per_channel_and_model():
    assert health.speed(1, 1) is None
    for ttfb in range(100, 1100, 100):   # 10 answers, 100 ms .. 1000 ms to first byte, 1 s of 50 tokens
        health.observe_speed(1, 1, ttfb_ms=ttfb, latency_ms=ttfb + 1000, tokens=50, stream=True)
    speed = health.speed(1, 1)
    assert speed.samples == 10
    assert speed.latency == {"p50": 0.6, "p75": 0.8, "p90": 1.0, "p99": 1.0}
    assert speed.throughput["p50"] == pytest.approx(50)
    health.observe_speed(1, 1, ttfb_ms=None, latency_ms=2000, tokens=100, stream=False)   # a whole answer
    assert health.speed(1, 1).samples == 11 and health.speed(2, 1) is None and health.speed(1, 2) is None


def test_sort_by_measured_speed_unmeasured_last():
    slow, fast, unknown = ch(1), ch(2), ch(3)
    measure(slow, 900, 20)
    measure(fast, 100, 80)
    assert reorder(Prefs(sort="latency"), [unknown, slow, fast], M) == [fast, slow, unknown]
    assert reorder(Prefs(sort="throughput"), [slow, unknown, fast], M) == [fast, slow, unknown]
    assert reorder(Prefs(sort="price"), [slow, unknown, fast], M) == [slow, unknown, fast]   # no prices: as routed
    prices = {(M.id, 1): 2.0, (M.id, 2): 1.0, (M.id, 3): 0.0}   # what the team pays on each (BYOK: the fee)
    assert reorder(Prefs(sort="price"), [slow, unknown, fast], M, prices) == [unknown, fast, slow]


def test_preferred_thresholds_deprioritize_but_keep():
    slow, fast = ch(1), ch(2)
    measure(slow, 900, 20)
    measure(fast, 100, 80)
    assert reorder(Prefs(min_throughput={"p50": 50}), [slow, fast], M) == [fast, slow]
    assert reorder(Prefs(max_latency={"p90": 0.5}), [slow, fast], M) == [fast, slow]
    assert reorder(Prefs(max_latency={"p50": 5}), [slow, fast], M) == [slow, fast]


def test_own_channels_cost_the_byok_fee(settings):
    settings.TOLLGATE_BYOK_FEE_PPM = 50_000   # 5 %
    own, platform = ch(1), ChannelEntry(2, None, "p", "openai", "http://x/v1", "k", 0, 1, {})
    assert provider_prefs.channel_price(FREE, platform, 7) == FREE
    assert provider_prefs.channel_price(FREE, own, 7)["completion"] == pytest.approx(0.03)
    assert why_not(Prefs(max_price={"completion": 0.05}), own, {}, provider_prefs.channel_price(FREE, own, 7)) is None


def test_speed_is_shared_between_gateway_processes():
    """One process's measurements reach another through Redis in the health sync (asked-about pairs only)."""
    import asyncio

    async def run():
        health.observe_speed(5, 6, ttfb_ms=250, latency_ms=1250, tokens=40, stream=True)
        await health.sync_once()                    # pushed
        health._speeds.clear()                       # ... another process, which has measured nothing
        health._speed_cache.clear()
        assert health.speed(5, 6) is None            # asked: read back at the next sync
        await health.sync_once()
        return health.speed(5, 6)

    shared = asyncio.run(run())
    assert shared.samples == 1 and shared.latency["p50"] == 0.25 and shared.throughput["p50"] == pytest.approx(40)


def _fuzz_values():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    keys = st.sampled_from(list(provider_prefs._KEYS) + ["by", "partition", "prompt", "completion", "p50", "p90"])
    return st.recursive(scalars | st.sampled_from(["price", "latency", "deny", "fp8", "OpenAI", "none"]),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys | st.text(max_size=4),
                                                                                     inner, max_size=4),
                        max_leaves=12)


def test_any_provider_object_parses_or_is_a_400_naming_a_provider_field():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None)
    @given(st.dictionaries(st.sampled_from(provider_prefs._KEYS), _fuzz_values(), max_size=5) | _fuzz_values())
    def check(value):
        try:
            prefs = parse(value)
        except errors.RelayError as exc:
            assert exc.status == 400 and exc.param.startswith("provider")
            return
        if prefs is not None:   # whatever parsed, the channel checks and the ordering take
            why_not(prefs, ch(1, "OpenAI", kind="anthropic"), {"seed": 1}, FREE)
            reorder(prefs, [ch(1), ch(2, "Azure")], M)

    check()
