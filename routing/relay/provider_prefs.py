"""OpenRouter's `provider` preferences and model suffixes, over Tollgate's channels.

A channel declares its provider ("OpenAI", "Azure", "DeepInfra"; empty: its kind's), whether that provider
may keep prompts (`data_collection`), zero data retention (`zdr`) and the model's quantization; its speed is
what the relay measured (routing/relay/health.py: time to first byte and output tokens/s, per channel ×
model). `only`, `ignore`, `order` with `allow_fallbacks: false`, `data_collection`, `zdr`, `quantizations`,
`require_parameters` and `max_price` exclude channels (each with the requirement that excluded it);
`order`, `sort` and the `preferred_*` thresholds order what is left. `:floor` is `sort: "price"`, `:nitro`
`sort: "throughput"`; `:online` asks for the web plugin, which this gateway does not have (a 400).

Price is what the team pays: the model's price on a platform channel, only the BYOK fee
(TOLLGATE_BYOK_FEE_PPM of it) on its own. As on OpenRouter, sorting keeps the models of a fallback list in
their order and sorts each model's channels (`partition: "model"`, the default); `partition: "none"` sorts
every model × channel together. `enforce_distillable_text: true` is a 400: no channel declares its model's
distillation terms."""
import re
from dataclasses import dataclass

from django.conf import settings

from billing.money import MICRO, combined_multiplier
from routing.relay import errors, health

SORTS = ("price", "throughput", "latency")
PARTITIONS = ("model", "none")
QUANTIZATIONS = ("int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown")
PERCENTILES = ("p50", "p75", "p90", "p99")
SUFFIX_SORTS = {":floor": "price", ":nitro": "throughput"}
ONLINE = ":online"
# The provider a channel is when it names none: its kind's.
KIND_PROVIDERS = {"openai": "OpenAI", "anthropic": "Anthropic", "gemini": "Google"}
# Request parameters a channel kind's translation leaves out (`require_parameters` excludes such channels);
# an OpenAI-compatible channel receives every parameter as sent.
DROPPED_PARAMETERS = {
    "anthropic": frozenset({"frequency_penalty", "presence_penalty", "seed", "n", "logprobs", "top_logprobs",
                            "logit_bias", "prediction", "audio", "modalities", "service_tier"}),
    "gemini": frozenset({"logprobs", "top_logprobs", "logit_bias", "prediction", "audio", "modalities",
                         "service_tier", "parallel_tool_calls"}),
}
_KEYS = ("order", "only", "ignore", "allow_fallbacks", "require_parameters", "data_collection", "zdr",
         "quantizations", "sort", "preferred_min_throughput", "preferred_max_latency", "max_price",
         "enforce_distillable_text")
_PRICE_KEYS = ("prompt", "completion", "request", "image", "audio")


@dataclass(frozen=True, slots=True)
class Prefs:
    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    require_parameters: bool = False
    data_collection: str = "allow"
    zdr: bool = False
    quantizations: frozenset[str] | None = None
    sort: str | None = None
    partition: str = "model"
    min_throughput: dict | None = None      # percentile → tokens/s
    max_latency: dict | None = None         # percentile → seconds
    max_price: dict | None = None           # "prompt" / "completion" / "request" → per million tokens (request: each)

    def describe(self) -> list[str]:
        """For the route header: how the preferences order channels ("provider.sort=price")."""
        parts = [f"provider.sort={self.sort}"] if self.sort else []
        if self.order:
            parts.append("provider.order=" + ",".join(self.order))
        return parts


def slug(name: str) -> str:
    """A provider name as matched: "DeepInfra", "deepinfra" and "Deep Infra" are one provider."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# --- parsing ----------------------------------------------------------------------------------------------
def _names(value, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise errors.invalid_value(field, 'expected an array of provider names such as ["OpenAI", "Azure"].')
    return tuple(value)


def _boolean(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise errors.invalid_value(field, "expected true or false.")
    return value


def _number(value, field: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise errors.invalid_value(field, f"expected a number of {unit}, 0 or more.")
    return float(value)


def _thresholds(value, field: str, unit: str) -> dict:
    """A number (the median) or an object of percentiles {p50, p75, p90, p99}."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in PERCENTILES]
        if unknown:
            raise errors.invalid_value(f"{field}.{unknown[0]}", f"expected one of {', '.join(PERCENTILES)}.")
        return {k: _number(v, f"{field}.{k}", unit) for k, v in value.items() if v is not None}
    return {"p50": _number(value, field, unit)}


def _sort(value) -> tuple[str, str]:
    if isinstance(value, dict):
        by, partition = value.get("by"), value.get("partition", "model")
        unknown = [k for k in value if k not in ("by", "partition")]
        if unknown:
            raise errors.invalid_value(f"provider.sort.{unknown[0]}", "expected only `by` and `partition`.")
        if by not in SORTS:
            raise errors.invalid_value("provider.sort.by", f"expected one of {', '.join(SORTS)}.")
        if partition not in PARTITIONS:
            raise errors.invalid_value("provider.sort.partition", "expected \"model\" or \"none\".")
        return by, partition
    if value not in SORTS:
        raise errors.invalid_value("provider.sort", f"expected one of {', '.join(SORTS)} (or {{by, partition}}).")
    return value, "model"


def parse(value) -> Prefs | None:
    """The request's `provider` object, every field type-checked (a 400 naming the field); None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_value("provider", "expected an object of provider preferences (order, only, "
                                               "ignore, sort, max_price, ...).")
    unknown = [k for k in value if k not in _KEYS]
    if unknown:
        raise errors.invalid_value(f"provider.{unknown[0]}", f"not a provider preference this gateway knows "
                                                             f"(known: {', '.join(_KEYS)}).")
    v = {k: x for k, x in value.items() if x is not None}
    out: dict = {}
    if "order" in v:
        out["order"] = _names(v["order"], "provider.order")
    if "only" in v:
        out["only"] = frozenset(map(slug, _names(v["only"], "provider.only")))
    if "ignore" in v:
        out["ignore"] = frozenset(map(slug, _names(v["ignore"], "provider.ignore")))
    for key in ("allow_fallbacks", "require_parameters", "zdr"):
        if key in v:
            out[key] = _boolean(v[key], f"provider.{key}")
    if "enforce_distillable_text" in v and _boolean(v["enforce_distillable_text"],
                                                     "provider.enforce_distillable_text"):
        raise errors.invalid_value("provider.enforce_distillable_text",
                                   "not supported by this gateway: no channel declares whether its model allows "
                                   "text distillation. Leave it out or set it to false.")
    if "data_collection" in v:
        if v["data_collection"] not in ("allow", "deny"):
            raise errors.invalid_value("provider.data_collection", 'expected "allow" or "deny".')
        out["data_collection"] = v["data_collection"]
    if "quantizations" in v:
        q = v["quantizations"]
        if not isinstance(q, list) or not all(isinstance(x, str) and x in QUANTIZATIONS for x in q):
            raise errors.invalid_value("provider.quantizations", f"expected an array of {', '.join(QUANTIZATIONS)}.")
        out["quantizations"] = frozenset(q)
    if "sort" in v:
        out["sort"], out["partition"] = _sort(v["sort"])
    if "preferred_min_throughput" in v:
        out["min_throughput"] = _thresholds(v["preferred_min_throughput"], "provider.preferred_min_throughput",
                                            "tokens per second")
    if "preferred_max_latency" in v:
        out["max_latency"] = _thresholds(v["preferred_max_latency"], "provider.preferred_max_latency", "seconds")
    if "max_price" in v:
        price = v["max_price"]
        if not isinstance(price, dict):
            raise errors.invalid_value("provider.max_price", "expected an object such as "
                                                             '{"prompt": 1, "completion": 2} (per million tokens).')
        unknown = [k for k in price if k not in _PRICE_KEYS]
        if unknown:
            raise errors.invalid_value(f"provider.max_price.{unknown[0]}", f"expected one of {', '.join(_PRICE_KEYS)}.")
        out["max_price"] = {k: _number(x, f"provider.max_price.{k}", "currency units per million tokens")
                            for k, x in price.items() if x is not None}
    return Prefs(**out)


def model_suffix(name):
    """`openai/gpt-4o:floor` → ("openai/gpt-4o", "price"); `:nitro` → "throughput"; no suffix → (name, None).
    `:online` (the web plugin) is a 400: this gateway has no web search, and a silent answer without it would
    be wrong."""
    if not isinstance(name, str):
        return name, None
    if name.endswith(ONLINE):
        raise errors.unsupported_plugin("web", "model")
    for suffix, sort in SUFFIX_SORTS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], sort
    return name, None


# --- choosing channels -----------------------------------------------------------------------------------
def provider_of(channel) -> str:
    return channel.provider_name or KIND_PROVIDERS.get(channel.kind, channel.kind)


def label(channel, team_id: int) -> str:
    """Like the route header's: a team's own channel by name, a platform one by number."""
    return f"channel '{channel.name}'" if channel.team_id == team_id else f"platform channel #{channel.id}"


def _price_per_m(price, multiplier_ppm: int) -> dict:
    """What the team pays for a model, in currency units: per million prompt / completion tokens, per request."""
    if price is None:
        return {"prompt": 0.0, "completion": 0.0, "request": 0.0}
    scale = multiplier_ppm / MICRO / MICRO
    return {"prompt": price.input_per_m * scale, "completion": price.output_per_m * scale,
            "request": price.request_fee * scale}


def model_price(snap, model, ctx) -> dict:
    multiplier = combined_multiplier(snap.policy(ctx.team_id).multiplier_ppm, ctx.group_multiplier_ppm)
    return _price_per_m(snap.price_for(model, ctx.team_id), multiplier)


def channel_price(price: dict, channel, team_id: int) -> dict:
    """On the team's own channel (bring your own key) the team pays only the gateway's fee (pipeline._cost)."""
    if channel.team_id != team_id:
        return price
    fee = settings.TOLLGATE_BYOK_FEE_PPM / MICRO
    return {key: value * fee for key, value in price.items()}


def why_not(prefs: Prefs, channel, request: dict, price: dict) -> str | None:
    """The first of the preferences this channel fails, in the request's words; None when it qualifies."""
    provider = provider_of(channel)
    name = slug(provider)
    if prefs.only is not None and name not in prefs.only:
        return f"provider '{provider}' not in provider.only"
    if name in prefs.ignore:
        return f"provider '{provider}' in provider.ignore"
    if not prefs.allow_fallbacks and prefs.order and name not in {slug(o) for o in prefs.order}:
        return f"provider '{provider}' not in provider.order (allow_fallbacks false)"
    if prefs.data_collection == "deny" and channel.data_collection != "deny":
        return f"provider '{provider}' may retain prompts (provider.data_collection deny)"
    if prefs.zdr and not channel.zdr:
        return f"provider '{provider}' has no zero data retention (provider.zdr)"
    if prefs.quantizations is not None and (channel.quantization or "unknown") not in prefs.quantizations:
        return f"quantization {channel.quantization or 'unknown'} not in provider.quantizations"
    if prefs.require_parameters:
        dropped = sorted(k for k in DROPPED_PARAMETERS.get(channel.kind, ()) if request.get(k) is not None)
        if dropped:
            return f"does not support {', '.join(dropped)} (provider.require_parameters)"
    for key, limit in (prefs.max_price or {}).items():   # image / audio: billed as prompt tokens here
        if key in price and price[key] > limit:
            return f"{key} price {price[key]:g} > provider.max_price.{key} {limit:g}"
    return None


def _measured(channel, model, percentile: str, what: str) -> float | None:
    speed = health.speed(channel.id, model.id)
    if speed is None:
        return None
    return (speed.throughput if what == "throughput" else speed.latency).get(percentile)


def _slow(prefs: Prefs, channel, model) -> bool:
    """Below a preferred throughput or above a preferred latency, as measured (unmeasured: not slow)."""
    for percentile, floor in (prefs.min_throughput or {}).items():
        value = _measured(channel, model, percentile, "throughput")
        if value is not None and value < floor:
            return True
    for percentile, ceiling in (prefs.max_latency or {}).items():
        value = _measured(channel, model, percentile, "latency")
        if value is not None and value > ceiling:
            return True
    return False


def speed_key(sort: str | None, channel, model, prices: dict | None = None) -> float:
    """Smaller first: what the team pays per million tokens, the channel's median latency (s), or its median
    throughput negated; unmeasured last."""
    if sort == "price":
        return (prices or {}).get((model.id, channel.id), 0.0)
    if sort not in ("throughput", "latency"):
        return 0.0
    value = _measured(channel, model, "p50", sort)
    if value is None:
        return float("inf")
    return -value if sort == "throughput" else value


def reorder(prefs: Prefs, channels: list, model, prices: dict | None = None) -> list:
    """A model's channels, in routing order, rearranged by the preferences: providers named in `order` first
    (in its order), then channels meeting the `preferred_*` thresholds before the rest, each group by `sort`
    (price: `prices`, (model id, channel id) → per million tokens; throughput, latency: measured); without
    fallbacks, only the first of them."""
    rank = {slug(name): i for i, name in enumerate(prefs.order)}

    def key(item):
        i, channel = item
        return (rank.get(slug(provider_of(channel)), len(rank)), _slow(prefs, channel, model),
                speed_key(prefs.sort, channel, model, prices), i)

    ordered = [c for _, c in sorted(enumerate(channels), key=key)]
    if not prefs.allow_fallbacks and not prefs.order:
        return ordered[:1]
    return ordered


def _model_key(prefs: Prefs, model, channels: list, prices: dict) -> float:
    """A model's best channel by the sort (`partition: "none"` orders models by it)."""
    return min((speed_key(prefs.sort, c, model, prices) for c in channels), default=float("inf"))


def apply(prefs: Prefs, snap, ctx, request: dict, plan) -> None:
    """Keep, per planned model, the channels that meet the preferences (plan.channels, their prices in
    plan.prices), each excluded one said in plan.skipped; a model left without any is dropped. With
    `partition: "none"` the models are ordered by their best channel. When nothing qualifies the models stay
    (quota is held as for any call) and `plan.unmet` says why: the pipeline answers the 503."""
    excluded: list[str] = []
    kept_models = []
    downgrade = plan.downgrade
    for model in plan.models + ([downgrade] if downgrade is not None and downgrade not in plan.models else []):
        price = model_price(snap, model, ctx)
        channels, failed = [], []
        for channel in snap.channels_for(model, ctx.team_id):
            paid = channel_price(price, channel, ctx.team_id)
            reason = why_not(prefs, channel, request, paid)
            if reason is None:
                channels.append(channel)
                plan.prices[(model.id, channel.id)] = paid["prompt"] + paid["completion"]
            else:
                failed.append(f"{model.public_id} via {label(channel, ctx.team_id)}: {reason}")
        excluded += failed
        plan.channels[model.public_id] = channels
        if channels or not failed:   # a model no channel serves at all is the pipeline's to report
            kept_models.append(model)
        elif model is downgrade:
            plan.downgrade = None
    plan.skipped += excluded
    if not any(m in kept_models for m in plan.models) and plan.downgrade is None:
        plan.unmet = excluded
        return
    plan.models = [m for m in plan.models if m in kept_models]
    if prefs.sort and prefs.partition == "none":
        keys = {m.public_id: _model_key(prefs, m, plan.channels[m.public_id], plan.prices) for m in plan.models}
        plan.models.sort(key=lambda m: keys[m.public_id])
