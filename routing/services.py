from django.db import transaction

from routing.catalog import bump_version
from routing.models import Channel, Model, RoutingRule


@transaction.atomic
def model_upsert(*, public_id: str, **fields) -> Model:
    model, _ = Model.objects.update_or_create(public_id=public_id, defaults=fields)
    transaction.on_commit(bump_version)
    return model


@transaction.atomic
def channel_create(*, team=None, name: str, base_url: str, api_key: str, models, kind=Channel.OPENAI,
                   priority=0, weight=1, model_mapping=None) -> Channel:
    channel = Channel(team=team, name=name, kind=kind, base_url=base_url.rstrip("/"), priority=priority,
                      weight=weight, model_mapping=model_mapping or {})
    channel.set_api_key(api_key)
    channel.save()
    channel.models.set(models)
    transaction.on_commit(bump_version)
    return channel


@transaction.atomic
def channel_update(*, channel: Channel, api_key: str | None = None, models=None, **fields) -> Channel:
    for name, value in fields.items():
        setattr(channel, name, value)
    if api_key:
        channel.set_api_key(api_key)
    channel.save()
    if models is not None:
        channel.models.set(models)
    transaction.on_commit(bump_version)
    return channel


@transaction.atomic
def routing_rule_upsert(*, team, name: str, default_model, backup_models=(), downgrade_model=None,
                        forbidden_models=(), key_group=None):
    """Create or replace a team's named route (`model: "route:NAME"`)."""
    rule, _ = RoutingRule.objects.update_or_create(
        team=team, key_group=key_group, name=name,
        defaults={"default_model": default_model, "backup_models": list(backup_models),
                  "downgrade_model": downgrade_model, "forbidden_models": list(forbidden_models)})
    transaction.on_commit(bump_version)
    return rule
