"""Writes to teams, memberships and user preferences. Domain errors are ValidationErrors (shown on the form)."""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from accounts import roles
from accounts.models import Membership, UserPreference

TEAM_ROLE_CODES = frozenset(code for code, _label in roles.TEAM_ROLES)


def _one_time_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def member_invite(*, team, identifier: str, role: str) -> tuple[Membership, str | None]:
    """Add a user to the team by username or email. An unknown identifier creates the user with a one-time
    password, returned once (None when the user already existed)."""
    identifier = identifier.strip()
    if role not in TEAM_ROLE_CODES:
        raise ValidationError(_("Unknown role."))
    if not identifier:
        raise ValidationError(_("Enter a username or an email address."))
    User = get_user_model()
    user = User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier)).order_by("pk").first()
    password = None
    if user is None:
        email = identifier if "@" in identifier else ""
        user = User(username=identifier[:150], email=email)
        password = _one_time_password()
        user.set_password(password)
        user.save()
    elif Membership.objects.filter(team=team, user=user).exists():
        raise ValidationError(_("%(user)s is already a member of this team.") % {"user": user.username})
    return Membership.objects.create(team=team, user=user, role=role), password


def _owners_locked(team) -> list[int]:
    """Lock the team's owner rows (pk order) so two concurrent demotions cannot both leave it ownerless."""
    return list(Membership.objects.select_for_update().filter(team=team, role=roles.OWNER)
                .order_by("pk").values_list("pk", flat=True))


@transaction.atomic
def member_role_set(*, membership: Membership, role: str) -> Membership:
    if role not in TEAM_ROLE_CODES:
        raise ValidationError(_("Unknown role."))
    if membership.role == roles.OWNER and role != roles.OWNER and _owners_locked(membership.team) == [membership.pk]:
        raise ValidationError(_("A team needs at least one owner: make someone else owner first."))
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership) -> None:
    """Remove a member and revoke their keys in this team (a removed member must lose API access too)."""
    # Keys sit above accounts in the app stack; this is the one place membership changes reach into them.
    from keys.services import api_keys_revoke_owned

    if membership.role == roles.OWNER and _owners_locked(membership.team) == [membership.pk]:
        raise ValidationError(_("The last owner cannot be removed: make someone else owner first."))
    api_keys_revoke_owned(team=membership.team, owner=membership.user)
    membership.delete()


def user_language_set(*, user, language: str) -> None:
    if language not in dict(settings.LANGUAGES):
        raise ValidationError(_("Unknown language."))
    UserPreference.objects.update_or_create(user=user, defaults={"language": language})
