import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts import roles
from accounts.models import Membership, StaffRole, Team
from billing.models import Price
from keys.models import KeyGroup
from keys.services import api_key_create
from routing.models import Model
from routing.services import channel_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)
    role = roles.OWNER


class StaffRoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaffRole

    user = factory.SubFactory(UserFactory)
    role = roles.SUPPORT


class KeyGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KeyGroup

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"group-{n}")


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Model

    public_id = factory.Sequence(lambda n: f"openai/test-model-{n}")
    display_name = factory.LazyAttribute(lambda m: m.public_id)
    provider = "openai"
    upstream_name = factory.LazyAttribute(lambda m: m.public_id.split("/")[-1])
    aliases = factory.LazyAttribute(lambda m: [m.public_id.split("/")[-1]])


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    model = factory.SubFactory(CatalogModelFactory)
    input_per_m = 150_000       # $0.15 per million
    output_per_m = 600_000
    cached_input_per_m = 75_000
    effective_from = factory.LazyFunction(lambda: timezone.now() - timezone.timedelta(days=1))


def api_key(*, team=None, owner=None, group=None, **kwargs):
    """An ApiKey made through the service (so the secret is hashed); returns (key, plain secret)."""
    team = team or (group.team if group else TeamFactory())
    group = group or KeyGroupFactory(team=team)
    owner = owner or MembershipFactory(team=team).user
    return api_key_create(team=team, owner=owner, group=group, name=kwargs.pop("name", "test key"), **kwargs)


def channel(*, models, base_url, team=None, api_key="sk-sim-test-channel", **kwargs):
    return channel_create(team=team, name=kwargs.pop("name", "sim"), base_url=base_url, api_key=api_key,
                          models=models, **kwargs)


def credit(team, amount=100 * 1_000_000):
    """Give a team a balance through the ledger (the only way balances change)."""
    from billing.services import balance_credit

    return balance_credit(team=team, amount=amount, reason="test credit", created_by=None,
                          idempotency_key=f"test-credit-{team.pk}-{amount}")


def routing_rule(*, team, name="default", default_model=None, **kwargs):
    """A team's route through the service (a fresh catalog model as its default unless given)."""
    from routing.services import routing_rule_upsert

    return routing_rule_upsert(team=team, name=name, default_model=default_model or CatalogModelFactory(), **kwargs)


def provider_models(*, kind: str, base_url: str, names, provider: str, api_key: str, name: str | None = None):
    """Catalog models `provider/NAME` (aliased NAME, priced) served by one platform channel of `kind`."""
    models = [CatalogModelFactory(public_id=f"{provider}/{n}", provider=provider, upstream_name=n, aliases=[n],
                                  supports_vision=True) for n in names]
    for model in models:
        PriceFactory(model=model)
    channel(models=models, base_url=base_url, kind=kind, name=name or kind, api_key=api_key)
    return models


def model_alias(*, team, alias="gpt-4-turbo-preview", model=None, **kwargs):
    """A team's model alias through the service (a fresh catalog model unless given)."""
    from routing.aliases import model_alias_upsert

    return model_alias_upsert(team=team, alias=alias, model=model or CatalogModelFactory(), **kwargs)[0]


def import_batch(**kwargs):
    """An ImportBatch as the One API importer records one (no rows: its rollback undoes nothing)."""
    import secrets

    from billing.models import ImportBatch

    return ImportBatch.objects.create(**{"code": f"imp_{secrets.token_hex(6)}", "product": "one-api",
                                         "version": "one-api", "source_label": "sqlite:///one-api.db", **kwargs})
