"""Personal access tokens for the management API: create (secret shown once), list, revoke, authenticate.

A token acts as its user: every team endpoint still resolves the team and checks the user's role there.
Only team owners/admins (and platform operators) may create one. Stored as sha256 + mask, like API keys.
"""
import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts import roles
from accounts.models import Membership, PersonalAccessToken
from accounts.selectors import password_change_required, platform_role

PREFIX = "tgp_"
LAST_USED_RESOLUTION = timedelta(minutes=1)   # last_used_at is written at most once a minute per token


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create_allowed(*, user) -> bool:
    return platform_role(user) == roles.OPERATOR or Membership.objects.filter(
        user=user, role__in=(roles.OWNER, roles.ADMIN)).exists()


def personal_access_token_create(*, user, name: str, expires_at=None) -> tuple[PersonalAccessToken, str]:
    """Create a token; the plain secret is returned once and never stored."""
    if not token_create_allowed(user=user):
        raise PermissionDenied("Only team owners and admins may create personal access tokens.")
    if password_change_required(user=user):
        raise PermissionDenied("Change your one-time password before creating a personal access token.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = PersonalAccessToken.objects.create(user=user, name=name, token_hash=_hash(secret),
                                               mask=f"{PREFIX}…{secret[-4:]}", expires_at=expires_at)
    return token, secret


def personal_access_token_revoke(*, token: PersonalAccessToken) -> PersonalAccessToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def personal_access_tokens_revoke_all(*, user) -> int:
    """Revoke every live token of a user (a deactivated account); returns how many."""
    return PersonalAccessToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())


def personal_access_tokens(*, user) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at")


def personal_access_token_authenticate(secret: str) -> PersonalAccessToken:
    """The live token for a secret; raises AuthenticationFailed naming what is wrong (never the secret)."""
    token = PersonalAccessToken.objects.select_related("user").filter(token_hash=_hash(secret)).first()
    if token is None or not token.user.is_active:
        raise exceptions.AuthenticationFailed("Unknown personal access token.")
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed(f"This personal access token ({token.mask}) has been revoked.")
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise exceptions.AuthenticationFailed(f"This personal access token ({token.mask}) has expired.")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class PersonalAccessTokenAuthentication(authentication.BaseAuthentication):
    """DRF authentication: `Authorization: Bearer tgp_…`. Other schemes fall through to the session."""

    def authenticate(self, request):
        scheme, _, secret = authentication.get_authorization_header(request).decode(errors="replace") \
            .partition(" ")
        if scheme.lower() != "bearer":
            return None
        secret = secret.strip()
        if not secret.startswith(PREFIX):
            raise exceptions.AuthenticationFailed(
                "The management API takes a personal access token (tgp_…), not a relay API key.")
        token = personal_access_token_authenticate(secret)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
