"""Which models, over which channels, in which order: a request's plan.

`model` may be a catalog id or alias, `route:NAME` (a team's routing rule), or `auto` (deterministic rules
on request features); OpenRouter-style `models: [..]` is an ordered fallback list. Candidates that cannot
serve the request (context too short, no tools, no vision, no JSON schema) are skipped with a reason.
Channels: the team's own first, then platform ones; highest priority tier first, weighted random inside."""
import hashlib
import random
import re
from dataclasses import dataclass, field, replace

import orjson
from django.conf import settings

from keys.auth import KeyContext
from keys.selectors import allowed_models
from routing import tokens
from routing.relay import errors, provider_prefs
from routing.relay.snapshot import DEFAULT_AUTO, AutoEntry, ChannelEntry, ModelEntry, RuleEntry, Snapshot

AUTO = "auto"
ROUTE_PREFIX = "route:"
# A Claude model id (what Claude Code sends: claude-opus-4-8, claude-haiku-4-5-20251001, next year's names).
_CLAUDE_ID = re.compile(r"(?:anthropic/)?claude-[\w.:@-]{1,100}")


@dataclass
class Plan:
    route: str | None                     # "route:tools", "auto -> route:vision", "models[]", or None
    models: list[ModelEntry]
    downgrade: ModelEntry | None = None
    skipped: list[str] = field(default_factory=list)
    rule: RuleEntry | None = None
    prefs: provider_prefs.Prefs | None = None   # OpenRouter's `provider` preferences (and model suffixes)
    channels: dict[str, list[ChannelEntry]] = field(default_factory=dict)  # with prefs: model → qualifying
    unmet: list[str] = field(default_factory=list)   # every channel failed the prefs: why (a 503)
    prices: dict[tuple[int, int], float] = field(default_factory=dict)   # with prefs: (model, channel) → price
    aliases: list[str] = field(default_factory=list)   # the team's aliases applied: "gpt-4-turbo->openai/gpt-4o"


class Features:
    """Request features, computed only when a candidate's capabilities make them matter."""

    def __init__(self, request: dict, body_size: int, output: str = "text"):
        self.request, self.body_size, self.output = request, body_size, output
        self._prompt: int | None = None

    def needed_context(self, model: ModelEntry | None = None) -> int:
        if self._prompt is None:
            self._prompt = tokens.estimate_prompt_tokens(self.request)
        return self._prompt + self.output_for(model)

    def output_for(self, model: ModelEntry | None) -> int:
        """The output to make room for: the request's max (or the default allowance), but no more than the
        model can write (Claude Code asks for 64k-128k whatever the model)."""
        wanted = tokens.max_output_tokens(self.request, settings.TOLLGATE_DEFAULT_OUTPUT_ALLOWANCE)
        return min(wanted, model.max_output_tokens) if model is not None else wanted

    def fits(self, model: ModelEntry) -> bool:
        # A body of N bytes holds at most ~N/3 tokens of text: most requests are decided without a scan.
        if self.body_size // tokens.CHARS_PER_TOKEN + self.output_for(model) <= model.context_length:
            return True
        return self.needed_context(model) <= model.context_length

    def why_not(self, model: ModelEntry) -> str | None:
        request = self.request
        if self.output not in model.output_modalities:  # chat on an embedding model, embeddings on a chat one
            return f"no {self.output} output"
        if request.get("tools") and not model.supports_tools:
            return "no tool calling"
        if not model.supports_vision and tokens.has_images(request):
            return "no image input"
        if "video" not in model.input_modalities and tokens.has_video(request):
            return "no video input"
        if not model.supports_json_schema and tokens.wants_json_schema(request):
            return "no JSON-schema output"
        if not self.fits(model):
            return f"context {model.context_length} < ~{self.needed_context(model)} tokens needed"
        return None


def auto_route(request: dict, features: Features, rules: AutoEntry = DEFAULT_AUTO) -> str:
    """`model: "auto"`, by the team's rules: images/video → its vision route, tools → its tools route, a long
    prompt → its long-prompt route, else its default route (built in: vision, tools, long-review, default)."""
    if tokens.has_images(request) or tokens.has_video(request):
        return rules.vision_route
    if request.get("tools"):
        return rules.tools_route
    if features.needed_context() > (rules.long_prompt_tokens or settings.TOLLGATE_AUTO_LONG_PROMPT_TOKENS):
        return rules.long_prompt_route
    return rules.default_route


def unknown_claude_rule(snap: Snapshot, ctx: KeyContext, spec) -> RuleEntry | None:
    """The team's route for a Claude model id the catalog does not know (ids and aliases win), so a Claude
    Code release ahead of the catalog does not break the team; None when it has none."""
    if (not isinstance(spec, str) or _CLAUDE_ID.fullmatch(spec) is None
            or snap.resolve_for(ctx.team_id, spec)[0] is not None):
        return None
    name = snap.auto_for(ctx.team_id).claude_route
    return snap.rule(ctx.team_id, ctx.group_id, name) if name else None


def plan(snap: Snapshot, ctx: KeyContext, request: dict, body_size: int, output: str = "text") -> Plan:
    """`output`: what the call must produce, "text" (chat, messages) or "embeddings"."""
    prefs = provider_prefs.parse(request.pop("provider", None))   # the router's, never sent upstream
    spec, suffix_sort = provider_prefs.model_suffix(request.get("model"))   # gpt-4o:floor, :nitro
    fallbacks = request.get("models")
    if isinstance(fallbacks, list):
        stripped = [provider_prefs.model_suffix(name) for name in fallbacks]
        fallbacks = [name for name, _ in stripped]
        suffix_sort = suffix_sort or next((sort for _, sort in stripped if sort), None)
    if suffix_sort and (prefs is None or prefs.sort is None):
        prefs = provider_prefs.Prefs(sort=suffix_sort) if prefs is None else replace(prefs, sort=suffix_sort)
    features = Features(request, body_size, output)
    forbidden: frozenset[str] = frozenset()
    downgrade = rule = None
    if isinstance(spec, str) and (spec.startswith(ROUTE_PREFIX) or spec == AUTO):
        auto = snap.auto_for(ctx.team_id)
        name = auto_route(request, features, auto) if spec == AUTO else spec[len(ROUTE_PREFIX):]
        rule = snap.rule(ctx.team_id, ctx.group_id, name)
        if rule is None and spec == AUTO:
            rule = snap.rule(ctx.team_id, ctx.group_id, auto.default_route)
        if rule is None:
            raise errors.route_not_found(spec if spec != AUTO else f"auto -> route:{name}")
        route = f"route:{rule.name}" if spec != AUTO else f"auto -> route:{rule.name}"
        names, forbidden, downgrade = list(rule.models), rule.forbidden, rule.downgrade
    elif not fallbacks and (rule := unknown_claude_rule(snap, ctx, spec)) is not None:
        route = f"route:{rule.name}; unknown_model={spec}"   # said in X-Tollgate-Route and the record
        names, forbidden, downgrade = list(rule.models), rule.forbidden, rule.downgrade
    elif getattr(ctx, "group_routes_only", False) and (spec is not None or fallbacks):
        # The key's group may not bypass its routes' forbidden models by naming a model directly.
        raise errors.routes_only(spec if isinstance(spec, str) and spec else "models[]")
    elif isinstance(fallbacks, list) and fallbacks:
        route, names = "models[]", list(dict.fromkeys(([spec] if spec else []) + fallbacks))
    else:
        if spec is None:
            raise errors.missing_field("model")
        if not isinstance(spec, str) or not spec:
            raise errors.invalid_value("model", "expected a model id string such as `openai/gpt-4o-mini`.")
        route, names = None, [spec]

    allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models,
                             key_models=ctx.key_models, forbidden=forbidden)
    result = Plan(route, [], rule=rule)
    for name in names:
        model, aliased = snap.resolve_for(ctx.team_id, name)
        if aliased and model is not None:   # a team alias always names a model
            result.aliases.append(f"{name}->{model.public_id}")
        if model is None:
            if len(names) == 1:
                raise errors.model_not_found(name, claude=_CLAUDE_ID.fullmatch(name) is not None)
            result.skipped.append(f"{name}: unknown model")
        elif allowed is not None and model.public_id not in allowed:
            if len(names) == 1:
                raise errors.model_not_allowed(name)
            result.skipped.append(f"{name}: not allowed for this key")
        elif (reason := features.why_not(model)) is not None:
            result.skipped.append(f"{model.public_id}: {reason}")
        elif model not in result.models:
            result.models.append(model)
    if downgrade:
        model = snap.resolve(downgrade)
        if model and (allowed is None or model.public_id in allowed) and features.why_not(model) is None:
            result.downgrade = model
    if not result.models and result.downgrade is None:
        raise errors.no_capable_model(names, result.skipped)
    if prefs is not None:
        result.prefs = prefs
        provider_prefs.apply(prefs, snap, ctx, request, result)
    return result


def candidate_models(plan: Plan) -> list[ModelEntry]:
    """The models to try, in order: the planned ones, then the route's downgrade."""
    downgrade = plan.downgrade
    return plan.models + ([downgrade] if downgrade and downgrade not in plan.models else [])


def watches_spend(plan: Plan) -> bool:
    """Does the route's spend decide the models (a soft limit with a downgrade to fall to)?"""
    rule = plan.rule
    return rule is not None and rule.soft_limit is not None and plan.downgrade is not None


def after_spend(plan: Plan, spent: int | None) -> None:
    """The last model choice, once the route's spend this period is known (None: nothing recorded yet)."""
    if watches_spend(plan) and spent is not None:
        assert plan.rule is not None and plan.rule.soft_limit is not None   # watches_spend checked both
        if spent >= plan.rule.soft_limit:
            downgrade_past_soft_limit(plan)


def downgrade_past_soft_limit(plan: Plan) -> None:
    """The route's spend passed its soft limit: only the downgrade model serves (said in the route header)."""
    assert plan.downgrade is not None and plan.rule is not None   # only a rule with a downgrade watches spend
    plan.models = [plan.downgrade]
    plan.skipped.append(f"route '{plan.rule.name}' past its soft limit: downgraded")


def channels_in_order(plan: Plan, snap: Snapshot, model: ModelEntry, team_id: int,
                      sticky: bytes | None = None) -> list[ChannelEntry]:
    """A model's channels to try, in order: the routing order, then the request's provider preferences."""
    if plan.prefs is None:
        return order_channels(snap.channels_for(model, team_id), team_id, sticky)
    channels = plan.channels.get(model.public_id)
    ordered = order_channels(snap.channels_for(model, team_id) if channels is None else channels, team_id, sticky)
    return provider_prefs.reorder(plan.prefs, ordered, model, plan.prices)


def order_channels(channels: list[ChannelEntry], team_id: int, sticky: bytes | None = None) -> list[ChannelEntry]:
    """Team's own channels, then platform; each by priority tier (high first), weighted random inside. With a
    cache key (`cache_key`) the draw inside a tier is the key's own (weighted rendezvous hashing): requests
    with the same key go to the same channel, whose prompt cache is warm, in every gateway process, and
    move to the next one only while it is skipped (circuit open, at its cap)."""
    def draw(c: ChannelEntry) -> float:
        if sticky is None:
            return random.random()
        digest = hashlib.blake2b(sticky + c.id.to_bytes(8, "big"), digest_size=8).digest()
        return (int.from_bytes(digest, "big") + 1) / (2**64 + 1)

    def tiers(group):
        by_priority: dict[int, list[ChannelEntry]] = {}
        for c in group:
            by_priority.setdefault(c.priority, []).append(c)
        ordered = []
        for priority in sorted(by_priority, reverse=True):
            tier = by_priority[priority]
            if len(tier) > 1:  # weighted shuffle: each pick proportional to weight among the rest
                tier = sorted(tier, key=lambda c: draw(c) ** (1.0 / max(c.weight, 1)), reverse=True)
            ordered.extend(tier)
        return ordered

    if len(channels) == 1:
        return channels
    own = [c for c in channels if c.team_id == team_id]
    platform = [c for c in channels if c.team_id is None]
    return tiers(own) + tiers(platform)


def cache_key(request: dict, team_id: int) -> bytes | None:
    """What makes a request's prompt cache reusable (a provider keeps it per account, so per channel): OpenAI's
    `prompt_cache_key`, else a hash of the prompt up to its first `cache_control` breakpoint (Anthropic's
    cached prefix: the system prompt and tools, the same on every turn of a session), else the end `user`.
    Scoped to the team. None: nothing to keep warm, channels are drawn at random."""
    key = request.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return b"%d:k:%s" % (team_id, key.encode())
    prefix = _cached_prefix(request)
    if prefix is not None:
        return b"%d:p:%s" % (team_id, hashlib.blake2b(prefix, digest_size=16).digest())
    user = request.get("user")
    if isinstance(user, str) and user:
        return b"%d:u:%s" % (team_id, user.encode())
    return None


def _cached_prefix(request: dict) -> bytes | None:
    """The prompt's parts up to and including the first one marked with cache_control (without the mark), or
    None when nothing is marked."""
    parts: list = []
    for message in request.get("messages") or ():
        if not isinstance(message, dict):
            return None
        content = message.get("content")
        for part in content if isinstance(content, list) else (content,):
            marked = isinstance(part, dict) and isinstance(part.get("cache_control"), dict)
            parts.append((message.get("role"), {k: v for k, v in part.items() if k != "cache_control"}
                          if marked and isinstance(part, dict) else part))
            if marked:
                return orjson.dumps(parts)
    return None
