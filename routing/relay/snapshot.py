"""The relay's in-memory picture of the catalog, prices and channels, so no request queries the database.

Reloaded when the shared catalog version changes (routing.catalog.bump_version), checked at most once per
local TTL; the reload itself runs in a thread, off the event loop.
"""
import logging
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from gateway_site import shared_cache
from gateway_site.db import db_call
from routing.catalog import VERSION_KEY

log = logging.getLogger(__name__)
DATABASE_DOWN = (OperationalError, InterfaceError)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    input_per_m: int
    output_per_m: int
    cached_input_per_m: int
    request_fee: int
    cache_write_5m_per_m: int | None = None     # None: as input (billing.money.usage_cost)
    cache_write_1h_per_m: int | None = None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: int
    public_id: str
    upstream_name: str
    provider: str
    context_length: int
    supports_tools: bool
    supports_vision: bool
    supports_json_schema: bool
    created: int
    price: PriceEntry | None
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)   # ("embeddings",) for an embedding model
    max_output_tokens: int = 16_384


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    id: int
    team_id: int | None
    name: str
    kind: str
    base_url: str
    api_key: str
    priority: int
    weight: int
    model_mapping: dict
    max_concurrency: int | None = None
    # Provider metadata (routing/relay/provider_prefs.py): name ("" = the kind's), data policy, quantization.
    provider_name: str = ""
    data_collection: str = "allow"
    zdr: bool = False
    quantization: str = ""


@dataclass(frozen=True, slots=True)
class RuleEntry:
    name: str
    key_group_id: int | None
    models: tuple[str, ...]             # default first, then backups, in order
    downgrade: str | None
    forbidden: frozenset[str]
    budget_limit: int | None = None
    budget_period: str = "month"
    soft_limit: int | None = None


@dataclass(frozen=True, slots=True)
class AutoEntry:
    """A team's `model: "auto"` rules (routing.models.AutoRouting); the defaults are the built-in ones."""
    vision_route: str = "vision"
    tools_route: str = "tools"
    long_prompt_route: str = "long-review"
    long_prompt_tokens: int | None = None      # None: settings.TOLLGATE_AUTO_LONG_PROMPT_TOKENS
    default_route: str = "default"
    claude_route: str = ""                     # the route for unknown Claude model ids ("": none)


DEFAULT_AUTO = AutoEntry()


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    monthly_cap: int | None = None
    multiplier_ppm: int = 1_000_000


DEFAULT_POLICY = TeamPolicy()


@dataclass
class Snapshot:
    version: bytes | None = None
    models: dict[str, ModelEntry] = field(default_factory=dict)          # public id and aliases → entry
    catalog: list[ModelEntry] = field(default_factory=list)             # each model once, sorted
    channels: dict[str, list[ChannelEntry]] = field(default_factory=dict)  # public id → channels
    rules: dict[int, dict[tuple[int | None, str], RuleEntry]] = field(default_factory=dict)  # team → rules
    policies: dict[int, TeamPolicy] = field(default_factory=dict)       # team → billing terms
    auto: dict[int, AutoEntry] = field(default_factory=dict)            # team → its `auto` rules
    # (team, model id) → the team's price overrides, newest first: (effective from as unix time, price), the
    # one in force now and any announced for later (chosen per request, so one starts without a reload).
    overrides: dict[tuple[int, int], tuple[tuple[float, PriceEntry], ...]] = field(default_factory=dict)
    # model id → catalog prices announced for later, newest first, chosen per request the same way.
    scheduled: dict[int, tuple[tuple[float, PriceEntry], ...]] = field(default_factory=dict)
    # team → its model aliases (routing.models.TeamModelAlias): old name → the catalog model it means.
    team_aliases: dict[int, dict[str, ModelEntry]] = field(default_factory=dict)

    def policy(self, team_id: int) -> TeamPolicy:
        return self.policies.get(team_id, DEFAULT_POLICY)

    def auto_for(self, team_id: int) -> AutoEntry:
        return self.auto.get(team_id, DEFAULT_AUTO)

    def price_for(self, model: ModelEntry, team_id: int, at: float | None = None) -> PriceEntry | None:
        """The price a team pays for a model (before multipliers): its override in force, else the catalog
        price (one announced for later counts from its start, without a reload)."""
        for dated in (self.overrides.get((team_id, model.id)) if self.overrides else None,
                      self.scheduled.get(model.id) if self.scheduled else None):
            if dated:
                at = time.time() if at is None else at
                for starts, price in dated:
                    if starts <= at:
                        return price
        return model.price

    def resolve(self, name: str) -> ModelEntry | None:
        return self.models.get(name)

    def resolve_for(self, team_id: int, name: str) -> tuple[ModelEntry | None, bool]:
        """A name as a team means it: a catalog public id, else the team's alias, else a catalog alias.
        (entry, True) when the team's alias decided."""
        entry = self.models.get(name)
        own = self.team_aliases.get(team_id) if self.team_aliases else None
        if own and name in own and (entry is None or entry.public_id != name):
            return own[name], True
        return entry, False

    def channels_for(self, model: ModelEntry, team_id: int) -> list[ChannelEntry]:
        """Channels that may carry a team's traffic for a model: its own channels and platform ones."""
        return [c for c in self.channels.get(model.public_id, ()) if c.team_id in (None, team_id)]

    def rule(self, team_id: int, group_id: int, name: str) -> RuleEntry | None:
        """A team's route by name; a key group's own rule wins over the team-wide one."""
        team_rules = self.rules.get(team_id)
        if not team_rules:
            return None
        return team_rules.get((group_id, name)) or team_rules.get((None, name))


def _load(version: bytes | None) -> Snapshot:
    from billing.models import Price, PriceOverride, TeamBillingPolicy
    from routing.models import AutoRouting, Channel, Model, RoutingRule, TeamModelAlias

    now = timezone.now()
    prices: dict[int, PriceEntry] = {}
    for p in Price.objects.filter(effective_from__lte=now).order_by("model_id", "-effective_from"):
        prices.setdefault(p.model_id, PriceEntry(p.input_per_m, p.output_per_m, p.cached_input_per_m,
                                                 p.request_fee, p.cache_write_5m_per_m, p.cache_write_1h_per_m))
    snap = Snapshot(version=version)
    for m in Model.objects.filter(enabled=True).order_by("public_id"):
        entry = ModelEntry(m.id, m.public_id, m.upstream_name, m.provider, m.context_length, m.supports_tools,
                           m.supports_vision, m.supports_json_schema, int(m.created_at.timestamp()),
                           prices.get(m.id), tuple(m.input_modalities or ("text",)),
                           tuple(m.output_modalities or ("text",)), m.max_output_tokens)
        snap.catalog.append(entry)
        for alias in m.aliases:
            snap.models.setdefault(alias, entry)
    for entry in snap.catalog:  # public ids win over aliases
        snap.models[entry.public_id] = entry
    by_id = {entry.id: entry for entry in snap.catalog}
    for a in TeamModelAlias.objects.all():
        if a.model_id in by_id:  # an alias of a disabled model means nothing until it is enabled again
            snap.team_aliases.setdefault(a.team_id, {})[a.alias] = by_id[a.model_id]
    for ch in Channel.objects.filter(status=Channel.ENABLED).prefetch_related("models"):
        channel = ChannelEntry(ch.id, ch.team_id, ch.name, ch.kind, ch.base_url.rstrip("/"), ch.api_key(),
                             ch.priority, ch.weight, dict(ch.model_mapping), ch.max_concurrency,
                             ch.provider_name, ch.data_collection, ch.zdr, ch.quantization)
        for m in ch.models.all():
            snap.channels.setdefault(m.public_id, []).append(channel)
    for r in RoutingRule.objects.select_related("default_model", "downgrade_model"):
        snap.rules.setdefault(r.team_id, {})[(r.key_group_id, r.name)] = RuleEntry(
            r.name, r.key_group_id, (r.default_model.public_id, *r.backup_models),
            r.downgrade_model.public_id if r.downgrade_model else None, frozenset(r.forbidden_models),
            r.budget_limit, r.budget_period, r.soft_limit)
    for a in AutoRouting.objects.all():
        snap.auto[a.team_id] = AutoEntry(a.vision_route, a.tools_route, a.long_prompt_route, a.long_prompt_tokens,
                                         a.default_route, a.claude_route)
    for p in TeamBillingPolicy.objects.all():
        snap.policies[p.team_id] = TeamPolicy(p.monthly_cap, p.price_multiplier_ppm)
    overrides: dict[tuple[int, int], list] = {}
    for o in PriceOverride.objects.order_by("team_id", "model_id", "-effective_from"):
        found = overrides.setdefault((o.team_id, o.model_id), [])
        if not found or found[-1][0] > now.timestamp():  # older than the one in force: never used again
            found.append((o.effective_from.timestamp(), PriceEntry(
                o.input_per_m, o.output_per_m, o.cached_input_per_m, o.request_fee, o.cache_write_5m_per_m,
                o.cache_write_1h_per_m)))
    snap.overrides = {pair: tuple(entries) for pair, entries in overrides.items()}
    scheduled: dict[int, list] = {}
    for p in Price.objects.filter(effective_from__gt=now).order_by("model_id", "-effective_from"):
        scheduled.setdefault(p.model_id, []).append((p.effective_from.timestamp(), PriceEntry(
            p.input_per_m, p.output_per_m, p.cached_input_per_m, p.request_fee, p.cache_write_5m_per_m,
            p.cache_write_1h_per_m)))
    snap.scheduled = {model_id: tuple(entries) for model_id, entries in scheduled.items()}
    return snap


def load_now() -> Snapshot:
    """A fresh snapshot straight from the database (sync; the console's dry run, never the relay path)."""
    return _load(None)


_current = Snapshot()
_checked_at = 0.0


async def current(now: bool = False) -> Snapshot:
    """The snapshot, reloaded if the shared version changed: checked at most once per local TTL, or at once
    with `now` (readiness: what it reports is current; the requests' own next check is not put off)."""
    global _current, _checked_at
    moment = time.monotonic()
    if not now:
        if moment - _checked_at < settings.TOLLGATE_LOCAL_TTL_SECONDS and _current.version is not None:
            return _current
        _checked_at = moment
    version = await shared_cache.aget(VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex.encode()  # cache was emptied: start a new version everyone reloads
        await shared_cache.aset(VERSION_KEY, version)
    if version != _current.version:
        try:
            _current = await db_call(_load)(version)
        except DATABASE_DOWN:
            if _current.version is None:
                raise   # nothing to serve from yet
            # PostgreSQL is away: keep serving the configuration this process has (docs/reliability.md)
            log.warning("could not reload the configuration (database unreachable); serving the last one")
    return _current


def invalidate_local() -> None:
    """Forget the local snapshot (tests, and after a change made in this same process)."""
    global _checked_at
    _checked_at = 0.0
    _current.version = None
