"""The demo the one-command setup seeds: an operator, a support-staff user, team "demo" with an owner, a key
group with a daily budget and an rpm limit, a key, a model catalog with public prices, platform channels to
the simulated upstream and the team's task tiers (`route:batch`, `route:default`, `route:tools`,
`route:long-review`, `route:vision`, which `model: "auto"` picks from).

Idempotent and create-if-missing: a re-run creates what is not there and never changes a row that exists, so
nothing an operator or team admin edited (a route, a price, a key group's limits, a password) is overwritten;
the task tiers go into a team that has no routes yet, so a tier the admin deleted is not brought back.
The one exception is the simulator channels' base URL, which follows SIMULATOR_URL while it still points at a
simulator on the loopback address (`make run` with another SIMULATOR_PORT)."""
import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts import roles
from accounts.models import Membership, StaffRole, Team
from billing.models import Price
from billing.money import MICRO
from billing.services import balance_credit, price_set
from keys.models import ApiKey, KeyGroup
from keys.secrets import hash_secret
from keys.services import api_key_create
from routing.models import AutoRouting, Channel, Model, RoutingRule
from routing.services import auto_routing_update, channel_create, channel_update, model_upsert, routing_rule_upsert

# (public id, display, provider, upstream name, aliases, context, tools, vision, USD per 1M: in, out, cached in)
CATALOG = [
    ("openai/gpt-4o-mini", "GPT-4o mini", "openai", "gpt-4o-mini", ["gpt-4o-mini"], 128_000, True, True,
     "0.15", "0.60", "0.075"),
    ("openai/gpt-4o", "GPT-4o", "openai", "gpt-4o", ["gpt-4o"], 128_000, True, True, "2.50", "10.00", "1.25"),
    ("openai/gpt-4.1-mini", "GPT-4.1 mini", "openai", "gpt-4.1-mini", ["gpt-4.1-mini"], 1_047_576, True, True,
     "0.40", "1.60", "0.10"),
    ("anthropic/claude-sonnet-4-5", "Claude Sonnet 4.5", "anthropic", "claude-sonnet-4-5",
     ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929"], 200_000, True, True, "3.00", "15.00", "0.30"),
    ("anthropic/claude-haiku-4-5", "Claude Haiku 4.5", "anthropic", "claude-haiku-4-5",
     ["claude-haiku-4-5", "claude-haiku-4-5-20251001"], 200_000, True, True, "1.00", "5.00", "0.10"),
    ("google/gemini-2.5-flash", "Gemini 2.5 Flash", "google", "gemini-2.5-flash", ["gemini-2.5-flash"],
     1_048_576, True, True, "0.30", "2.50", "0.03"),
    ("google/gemini-2.5-pro", "Gemini 2.5 Pro", "google", "gemini-2.5-pro", ["gemini-2.5-pro"], 1_048_576,
     True, True, "1.25", "10.00", "0.125"),
    ("deepseek/deepseek-chat", "DeepSeek V3.2", "deepseek", "deepseek-chat", ["deepseek-chat"], 128_000, True,
     False, "0.28", "0.42", "0.028"),
    ("openai/text-embedding-3-small", "Text embedding 3 small", "openai", "text-embedding-3-small",
     ["text-embedding-3-small"], 8_191, False, False, "0.02", "0", "0.02"),
]
# Gemini takes video as well as images (`video_url` parts).
VIDEO_PROVIDERS = {"google"}
# The costly models the cheap tiers never use, whatever a request names in `models: [...]`.
COSTLY = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "google/gemini-2.5-pro"]
# The seed's task tiers: name → (default, ordered backups, downgrade (used past a route's soft limit),
# forbidden). `auto` sends images/video to vision, tools to tools, long prompts to long-review, else default.
ROUTES = {
    "batch": ("deepseek/deepseek-chat", ["openai/gpt-4o-mini", "google/gemini-2.5-flash"],
              "openai/gpt-4o-mini", COSTLY),
    "default": ("openai/gpt-4o-mini", ["google/gemini-2.5-flash", "anthropic/claude-haiku-4-5"],
                "deepseek/deepseek-chat", COSTLY),
    "tools": ("openai/gpt-4.1-mini", ["anthropic/claude-haiku-4-5", "google/gemini-2.5-flash"],
              "openai/gpt-4o-mini", []),
    "long-review": ("anthropic/claude-sonnet-4-5", ["google/gemini-2.5-pro", "openai/gpt-4.1-mini"],
                    "anthropic/claude-haiku-4-5", []),
    "vision": ("google/gemini-2.5-flash", ["google/gemini-2.5-pro", "openai/gpt-4o"], "openai/gpt-4o-mini", []),
}
# Where Claude model ids the catalog does not know go (Claude Code's default model, next year's names).
CLAUDE_ROUTE = "long-review"
# The demo key group's limits, so limits and their x-ratelimit-* headers show from the first call.
DEMO_DAILY_BUDGET_USD = "5"
DEMO_RPM_LIMIT = 60
# Which simulator wire format serves each provider's models (the simulator speaks all three).
CHANNEL_KINDS = {"openai": Channel.OPENAI, "deepseek": Channel.OPENAI, "anthropic": Channel.ANTHROPIC,
                 "google": Channel.GEMINI}
CHANNEL_PATHS = {Channel.OPENAI: "/v1", Channel.ANTHROPIC: "", Channel.GEMINI: ""}
# CNY deployments get the same list prices converted at a fixed, documented rate.
CNY_PER_USD = Decimal("7.2")


def to_micro(usd: str) -> int:
    amount = Decimal(usd) * (CNY_PER_USD if settings.TOLLGATE_CURRENCY == "CNY" else 1)
    return int((amount * MICRO).to_integral_value())


@dataclass
class Demo:
    team: Team
    owner_username: str
    operator_username: str
    support_username: str | None
    api_key: str
    created: list[str] = field(default_factory=list)   # what this run made ("route:batch", "price …")
    kept: list[str] = field(default_factory=list)      # what existed and was left as it is


def _user(demo: Demo, username: str, password: str, **extra):
    """The user, created with this password if missing; an existing user (and password) stays as it is."""
    user, created = get_user_model().objects.get_or_create(username=username, defaults=extra)
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    (demo.created if created else demo.kept).append(f"user {username}")
    return user


def _simulator_url_of(base_url: str, path: str) -> bool:
    return re.fullmatch(r"http://(127\.0\.0\.1|localhost):\d+" + re.escape(path), base_url) is not None


@transaction.atomic
def seed_demo(*, api_key: str, owner_password: str, operator_password: str, simulator_url: str,
              support_password: str | None = None, daily_budget: int | None = None,
              rpm_limit: int | None = DEMO_RPM_LIMIT) -> Demo:
    """Create what is missing of the demo (see the module doc). `daily_budget` (micro-units, default
    DEMO_DAILY_BUDGET_USD) and `rpm_limit` apply to a newly created key group only; 0 or None: no limit."""
    if daily_budget is None:
        daily_budget = to_micro(DEMO_DAILY_BUDGET_USD)
    team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
    demo = Demo(team, "demo", "operator", "support" if support_password else None, api_key)
    operator = _user(demo, "operator", operator_password, is_staff=True, is_superuser=True)
    StaffRole.objects.get_or_create(user=operator, defaults={"role": roles.OPERATOR})
    if support_password:
        support = _user(demo, "support", support_password, email="support@example.com")
        StaffRole.objects.get_or_create(user=support, defaults={"role": roles.SUPPORT})
    owner = _user(demo, "demo", owner_password, email="demo@example.com")
    Membership.objects.get_or_create(user=owner, team=team, defaults={"role": roles.OWNER})
    group, created = KeyGroup.objects.get_or_create(
        team=team, name="default",
        defaults={"budget_limit": daily_budget or None, "budget_period": KeyGroup.DAY,
                  "rpm_limit": rpm_limit or None})
    (demo.created if created else demo.kept).append("key group default")

    models = []
    for (public_id, display, provider, upstream, aliases, context, tools, vision, p_in, p_out,
         p_cached) in CATALOG:
        model = Model.objects.filter(public_id=public_id).first()
        if model is None:
            embedding = "embedding" in public_id
            modalities = ["text", "image", "video"] if provider in VIDEO_PROVIDERS else ["text", "image"]
            model = model_upsert(public_id=public_id, display_name=display, provider=provider,
                                 upstream_name=upstream, aliases=aliases, context_length=context,
                                 supports_tools=tools, supports_vision=vision, supports_json_schema=not embedding,
                                 input_modalities=modalities if vision else ["text"],
                                 output_modalities=["embeddings"] if embedding else ["text"])
            demo.created.append(f"model {public_id}")
        if not Price.objects.filter(model=model).exists():
            price_set(model=model, input_per_m=to_micro(p_in), output_per_m=to_micro(p_out),
                      cached_input_per_m=to_micro(p_cached))
            demo.created.append(f"price {public_id}")
        models.append(model)

    for kind, label in Channel.KINDS:
        served = [m for m in models if CHANNEL_KINDS.get(m.provider) == kind]
        name = f"Simulator ({label})"
        base_url = simulator_url.rstrip("/") + CHANNEL_PATHS[kind]
        channel = Channel.objects.filter(team=None, name=name).first()
        if channel is None:
            channel_create(name=name, kind=kind, base_url=base_url, api_key=f"sim-demo-{kind}-channel-key",
                           models=served)
            demo.created.append(f"channel {name}")
        elif channel.base_url != base_url and _simulator_url_of(channel.base_url, CHANNEL_PATHS[kind]):
            channel_update(channel=channel, base_url=base_url)   # the simulator moved to another port
        else:
            demo.kept.append(f"channel {name}")

    # The tiers go in once, into a team without routes: after that the routes are the team admin's, and a
    # tier they deleted stays deleted.
    catalog = {m.public_id: m for m in Model.objects.all()}
    has_routes = RoutingRule.objects.filter(team=team).exists()
    for name, (default, backups, downgrade, forbidden) in ROUTES.items():
        if has_routes:
            demo.kept.append(f"route:{name}")
            continue
        if default not in catalog:
            continue   # the operator removed the model this tier is built on
        routing_rule_upsert(team=team, name=name, default_model=catalog[default],
                            backup_models=[b for b in backups if b in catalog],
                            downgrade_model=catalog.get(downgrade),
                            forbidden_models=[f for f in forbidden if f in catalog])
        demo.created.append(f"route:{name}")
    if not AutoRouting.objects.filter(team=team).exists() and RoutingRule.objects.filter(
            team=team, name=CLAUDE_ROUTE).exists():
        auto_routing_update(team=team, claude_route=CLAUDE_ROUTE)
        demo.created.append(f"unknown Claude ids -> route:{CLAUDE_ROUTE}")

    balance_credit(team=team, amount=100 * MICRO, reason="demo credit", created_by=operator,
                   idempotency_key="demo-initial-credit")
    if not ApiKey.objects.filter(secret_hash=hash_secret(api_key)).exists():
        api_key_create(team=team, owner=owner, group=group, name="demo", secret=api_key)
        demo.created.append("api key demo")
    return demo
