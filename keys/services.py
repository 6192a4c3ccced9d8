from django.db import transaction
from django.utils import timezone

from keys import auth
from keys.models import ApiKey, KeyGroup, Limits
from keys.secrets import hash_secret, mask_secret, new_secret

LIMIT_FIELDS = ("budget_limit", "budget_period", "rpm_limit", "tpm_limit", "max_concurrency")


def _checked_limits(limits: dict) -> dict:
    """Limits (fields of keys.models.Limits) as given, refused if out of range: None means "no limit"; money is
    integer micro-units ≥ 0; rates and concurrency are whole numbers ≥ 1."""
    for name, value in limits.items():
        if name not in LIMIT_FIELDS:
            raise ValueError(f"unknown limit {name}")
        if name == "budget_period":
            if value not in dict(Limits.PERIODS):
                raise ValueError(f"unknown budget period {value!r}")
        elif value is not None and (type(value) is not int or value < (0 if name == "budget_limit" else 1)):
            raise ValueError(f"{name} must be None or a whole number ≥ {0 if name == 'budget_limit' else 1}")
    return limits


def key_group_create(*, team, name: str, allowed_models=(), routes_only: bool = False, **limits) -> KeyGroup:
    return KeyGroup.objects.create(team=team, name=name, allowed_models=list(allowed_models),
                                   routes_only=routes_only, **_checked_limits(limits))


@transaction.atomic
def api_key_create(*, team, owner, group, name: str, allowed_models=(), allowed_ips=(), expires_at=None,
                   secret: str | None = None, is_debug: bool = False, **limits) -> tuple[ApiKey, str]:
    """Create a key (with optional limits: fields of keys.models.Limits); the plain secret is returned once
    and never stored."""
    if group.team_id != team.id:
        raise ValueError("group belongs to another team")
    secret = secret or new_secret()
    api_key = ApiKey.objects.create(
        team=team, owner=owner, group=group, name=name, prefix=secret[:10], secret_hash=hash_secret(secret),
        mask=mask_secret(secret), allowed_models=list(allowed_models), allowed_ips=list(allowed_ips),
        expires_at=expires_at, is_debug=is_debug, **_checked_limits(limits),
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
                   expires_at=None, is_debug: bool | None = None, **limits) -> ApiKey:
    """Change a key's boundaries (limits given are set, the others kept; `is_debug` None keeps it); every
    gateway process sees the change within the local TTL."""
    if group.team_id != api_key.team_id:
        raise ValueError("group belongs to another team")
    for field, value in _checked_limits(limits).items():
        setattr(api_key, field, value)
    api_key.name, api_key.group, api_key.expires_at = name, group, expires_at
    api_key.allowed_models, api_key.allowed_ips = list(allowed_models), list(allowed_ips)
    if is_debug is not None:
        api_key.is_debug = is_debug
    api_key.save(update_fields=["name", "group", "expires_at", "allowed_models", "allowed_ips", "is_debug",
                                *limits])
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
        allowed_models=api_key.allowed_models, allowed_ips=api_key.allowed_ips, expires_at=api_key.expires_at,
        is_debug=api_key.is_debug, **{field: getattr(api_key, field) for field in LIMIT_FIELDS})
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
def key_group_update(*, group: KeyGroup, name: str, allowed_models=(), routes_only: bool | None = None,
                     **limits) -> KeyGroup:
    """Rename a group, change its models, "routes only" or limits (those given; the others are kept); its
    keys' cached contexts are republished."""
    for field, value in _checked_limits(limits).items():
        setattr(group, field, value)
    if routes_only is not None:
        group.routes_only = routes_only
    group.name, group.allowed_models = name, list(allowed_models)
    group.save(update_fields=["name", "allowed_models", "routes_only", *limits])
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
