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
