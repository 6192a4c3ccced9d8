"""Writes to teams, memberships, platform staff, passwords and user preferences. Domain errors are
ValidationErrors (shown on the form)."""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from accounts import roles
from accounts.models import Membership, StaffRole, UserPreference

TEAM_ROLE_CODES = frozenset(code for code, _label in roles.TEAM_ROLES)
PLATFORM_ROLE_CODES = frozenset(code for code, _label in roles.PLATFORM_ROLES)


def _one_time_password() -> str:
    return secrets.token_urlsafe(12)


def _user_with_one_time_password(*, username: str, email: str) -> tuple:
    """A new user whose password is a one-time one: returned once, and to be changed at first sign-in."""
    user = get_user_model()(username=username, email=email)
    password = _one_time_password()
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same username, created concurrently
        raise ValidationError(_("The username %(username)s is taken.") % {"username": username}) from None
    UserPreference.objects.update_or_create(user=user, defaults={"password_change_required": True})
    return user, password


@transaction.atomic
def member_invite(*, team, identifier: str, role: str) -> tuple[Membership, str | None]:
    """Add a user to the team by username or email. An unknown identifier creates the user with a one-time
    password, returned once (None when the user already existed), which they must change at first sign-in."""
    identifier = identifier.strip()
    if role not in TEAM_ROLE_CODES:
        raise ValidationError(_("Unknown role."))
    if not identifier:
        raise ValidationError(_("Enter a username or an email address."))
    User = get_user_model()
    user = User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier)).order_by("pk").first()
    password = None
    if user is None:
        user, password = _user_with_one_time_password(
            username=identifier[:150], email=identifier if "@" in identifier else "")
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


@transaction.atomic
def user_password_change(*, user, password: str) -> None:
    """Set the user's own new password (Django's validators) and clear the one-time-password flag.

    The caller checked the old password (the form) and keeps the current session signed in
    (`update_session_auth_hash`); the user's other sessions end, as Django does on a password change."""
    password_validation.validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    UserPreference.objects.filter(user=user, password_change_required=True).update(password_change_required=False)


# --- platform staff (operators, support) ----------------------------------------------------------------

@transaction.atomic
def staff_invite(*, username: str, email: str, role: str) -> tuple[StaffRole, str]:
    """Create a staff account (a new user) with a one-time password, returned once; it must be changed at
    first sign-in."""
    username, email = username.strip(), email.strip()
    if role not in PLATFORM_ROLE_CODES:
        raise ValidationError(_("Unknown role."))
    if not username:
        raise ValidationError(_("Enter a username."))
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(_("The username %(username)s is taken.") % {"username": username})
    if email and User.objects.filter(email__iexact=email).exists():
        raise ValidationError(_("Another account already uses %(email)s.") % {"email": email})
    user, password = _user_with_one_time_password(username=username, email=email)
    return StaffRole.objects.create(user=user, role=role), password


@transaction.atomic
def staff_deactivate(*, staff: StaffRole, by) -> StaffRole:
    """Deactivate a staff account: it can no longer sign in, its sessions stop working (Django's backend
    refuses an inactive user's session) and its personal access tokens are revoked."""
    from accounts.tokens import personal_access_tokens_revoke_all

    if staff.user_id == by.pk:
        raise ValidationError(_("You cannot deactivate your own account."))
    if staff.role == roles.OPERATOR:
        # Lock the active operators so two operators deactivating each other cannot leave none.
        active = list(StaffRole.objects.select_for_update().filter(role=roles.OPERATOR, user__is_active=True)
                      .order_by("pk").values_list("pk", flat=True))
        if active == [staff.pk]:
            raise ValidationError(_("The platform needs at least one active operator."))
    user = staff.user
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    personal_access_tokens_revoke_all(user=user)
    return staff


@transaction.atomic
def staff_reactivate(*, staff: StaffRole) -> StaffRole:
    """Let a deactivated staff account sign in again (with its password; revoked tokens stay revoked)."""
    user = staff.user
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
    return staff
