"""The demo the one-command setup seeds: an operator, team "demo" with an owner, a key group, a key, a model
catalog with public prices, and platform channels to the simulated upstream. Idempotent."""
from dataclasses import dataclass
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
from routing.models import Channel
from routing.services import channel_create, channel_update, model_upsert

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
    owner_password: str
    operator_username: str
    api_key: str


def _user(username: str, password: str, **extra):
    user, _ = get_user_model().objects.get_or_create(username=username, defaults=extra)
    user.set_password(password)
    user.save()
    return user


@transaction.atomic
def seed_demo(*, api_key: str, owner_password: str, operator_password: str, simulator_url: str) -> Demo:
    operator = _user("operator", operator_password, is_staff=True, is_superuser=True)
    StaffRole.objects.update_or_create(user=operator, defaults={"role": roles.OPERATOR})
    owner = _user("demo", owner_password, email="demo@example.com")
    team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
    Membership.objects.update_or_create(user=owner, team=team, defaults={"role": roles.OWNER})
    group, _ = KeyGroup.objects.get_or_create(team=team, name="default")

    models = []
    for (public_id, display, provider, upstream, aliases, context, tools, vision, p_in, p_out,
         p_cached) in CATALOG:
        embedding = "embedding" in public_id
        model = model_upsert(public_id=public_id, display_name=display, provider=provider, upstream_name=upstream,
                             aliases=aliases, context_length=context, supports_tools=tools, supports_vision=vision,
                             supports_json_schema=not embedding,
                             input_modalities=["text", "image"] if vision else ["text"],
                             output_modalities=["embeddings"] if embedding else ["text"])
        if not Price.objects.filter(model=model).exists():
            price_set(model=model, input_per_m=to_micro(p_in), output_per_m=to_micro(p_out),
                      cached_input_per_m=to_micro(p_cached))
        models.append(model)

    for kind, label in Channel.KINDS:
        served = [m for m in models if CHANNEL_KINDS[m.provider] == kind]
        name = f"Simulator ({label})"
        base_url = simulator_url + CHANNEL_PATHS[kind]
        channel = Channel.objects.filter(team=None, name=name).first()
        if channel is None:
            channel_create(name=name, kind=kind, base_url=base_url, api_key=f"sim-demo-{kind}-channel-key",
                           models=served)
        else:
            channel_update(channel=channel, base_url=base_url, models=served)

    balance_credit(team=team, amount=100 * MICRO, reason="demo credit", created_by=operator,
                   idempotency_key="demo-initial-credit")
    if not ApiKey.objects.filter(secret_hash=hash_secret(api_key)).exists():
        api_key_create(team=team, owner=owner, group=group, name="demo", secret=api_key)
    return Demo(team, owner.username, owner_password, operator.username, api_key)
