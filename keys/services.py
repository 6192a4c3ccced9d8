from django.db import transaction
from django.utils import timezone

from keys import auth
from keys.models import ApiKey, KeyGroup
from keys.secrets import hash_secret, mask_secret, new_secret


def key_group_create(*, team, name: str, allowed_models=()) -> KeyGroup:
    return KeyGroup.objects.create(team=team, name=name, allowed_models=list(allowed_models))


@transaction.atomic
def api_key_create(*, team, owner, group, name: str, allowed_models=(), allowed_ips=(), expires_at=None,
                   secret: str | None = None) -> tuple[ApiKey, str]:
    """Create a key; the plain secret is returned once and never stored."""
    if group.team_id != team.id:
        raise ValueError("group belongs to another team")
    secret = secret or new_secret()
    api_key = ApiKey.objects.create(
        team=team, owner=owner, group=group, name=name, prefix=secret[:10], secret_hash=hash_secret(secret),
        mask=mask_secret(secret), allowed_models=list(allowed_models), allowed_ips=list(allowed_ips),
        expires_at=expires_at,
    )
    transaction.on_commit(lambda: auth.publish(api_key))
    return api_key, secret


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.status, api_key.revoked_at = ApiKey.REVOKED, timezone.now()
    api_key.save(update_fields=["status", "revoked_at"])
    transaction.on_commit(lambda: auth.publish(api_key))
    return api_key


def _publish_after_commit(*api_keys: ApiKey) -> None:
    transaction.on_commit(lambda: [auth.publish(k) for k in api_keys])


@transaction.atomic
def api_key_update(*, api_key: ApiKey, name: str, group: KeyGroup, allowed_models=(), allowed_ips=(),
                   expires_at=None) -> ApiKey:
    """Change a key's boundaries; every gateway process sees the change within the local TTL."""
    if group.team_id != api_key.team_id:
        raise ValueError("group belongs to another team")
    api_key.name, api_key.group, api_key.expires_at = name, group, expires_at
    api_key.allowed_models, api_key.allowed_ips = list(allowed_models), list(allowed_ips)
    api_key.save(update_fields=["name", "group", "expires_at", "allowed_models", "allowed_ips"])
    _publish_after_commit(api_key)
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey) -> tuple[ApiKey, str]:
    """Replace a key by a new one with the same settings and revoke the old one, in one transaction.
    Returns the new key and its secret (shown once)."""
    if api_key.status != ApiKey.ACTIVE:
        raise ValueError("only an active key can be rotated")
    new_key, secret = api_key_create(
        team=api_key.team, owner=api_key.owner, group=api_key.group, name=api_key.name,
        allowed_models=api_key.allowed_models, allowed_ips=api_key.allowed_ips, expires_at=api_key.expires_at)
    api_key_revoke(api_key=api_key)
    return new_key, secret


@transaction.atomic
def api_keys_revoke_owned(*, team, owner) -> int:
    """Revoke every active key a user owns in a team (the user is leaving it)."""
    keys = list(ApiKey.objects.select_related("team", "group").select_for_update(of=("self",))
                .filter(team=team, owner=owner, status=ApiKey.ACTIVE).order_by("pk"))
    for api_key in keys:
        api_key_revoke(api_key=api_key)
    return len(keys)


@transaction.atomic
def key_group_update(*, group: KeyGroup, name: str, allowed_models=()) -> KeyGroup:
    """Rename a group or change its models; its keys' cached contexts are republished."""
    group.name, group.allowed_models = name, list(allowed_models)
    group.save(update_fields=["name", "allowed_models"])
    _publish_after_commit(*ApiKey.objects.select_related("team", "group").filter(group=group))
    return group


@transaction.atomic
def key_limits_set(*, target, **limits):
    """Set budget/rate limits on an ApiKey or KeyGroup (fields of keys.models.Limits)."""
    allowed = {"budget_limit", "budget_period", "rpm_limit", "tpm_limit", "max_concurrency",
               "price_multiplier_ppm"}
    for name, value in limits.items():
        if name not in allowed or not hasattr(target, name):
            raise ValueError(f"unknown limit {name}")
        setattr(target, name, value)
    target.save()
    if isinstance(target, KeyGroup):
        _publish_after_commit(*ApiKey.objects.select_related("team", "group").filter(group=target))
    else:
        _publish_after_commit(target)
    return target
