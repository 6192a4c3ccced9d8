"""Tenancy in one place: resolve the team at the edge, check the role, hand `team` to everything below."""
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts import roles
from accounts.models import Membership, StaffRole, Team, UserPreference


@dataclass(frozen=True)
class TeamAccess:
    team: Team
    role: str | None            # the caller's team role, None for platform staff who are not members
    platform_role: str | None
    permissions: frozenset[str]

    def require(self, permission: str | tuple[str, ...]) -> None:
        if not self.can(permission):
            raise PermissionDenied("Your role in this team does not allow this.")

    def can(self, permission: str | tuple[str, ...]) -> bool:
        """True when the caller holds the permission (a tuple: any one of them)."""
        wanted = (permission,) if isinstance(permission, str) else permission
        return any(p in self.permissions for p in wanted)


def platform_role(user) -> str | None:
    if not user.is_authenticated:
        return None
    staff = StaffRole.objects.filter(user=user).only("role").first()
    return staff.role if staff else None


def team_access(*, user, team_slug: str) -> TeamAccess:
    """The caller's access to a team; a team the caller cannot see is a 404 (existence is not leaked)."""
    staff_role = platform_role(user)
    membership = (
        Membership.objects.select_related("team").filter(user=user, team__slug=team_slug).first()
        if user.is_authenticated else None
    )
    if membership is None and staff_role is None:
        raise Http404("No such team.")
    team = membership.team if membership else Team.objects.filter(slug=team_slug).first()
    if team is None:
        raise Http404("No such team.")
    role = membership.role if membership else None
    return TeamAccess(team, role, staff_role, roles.team_permissions(role, staff_role))


def teams_for_user(*, user):
    if platform_role(user):
        return Team.objects.order_by("name")
    return Team.objects.filter(memberships__user=user).order_by("name")


@dataclass(frozen=True)
class PlatformAccess:
    role: str
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def can_manage(self) -> bool:  # for templates: show the write forms
        return self.can(roles.PLATFORM_MANAGE)


def require_platform(*, user, permission: str) -> str:
    role = platform_role(user)
    if role is None or permission not in roles.PLATFORM_PERMISSIONS[role]:
        raise PermissionDenied("Platform staff only.")
    return role


def platform_access(*, user, permission: str) -> PlatformAccess:
    """The caller's platform role, after checking it grants `permission` (403 otherwise)."""
    role = require_platform(user=user, permission=permission)
    return PlatformAccess(role, roles.PLATFORM_PERMISSIONS[role])


def console_teams(*, user, limit: int = 50):
    """The teams offered by the console's team switcher (bounded: platform staff see every team)."""
    return teams_for_user(user=user).only("name", "slug")[:limit]


def team_members(*, team):
    return (Membership.objects.filter(team=team).select_related("user")
            .order_by("user__username"))


def team_member(*, team, pk: int) -> Membership:
    membership = Membership.objects.select_related("user", "team").filter(team=team, pk=pk).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


def user_language(*, user) -> str:
    """The console language a user chose ('' when they never chose: the browser's decides)."""
    return UserPreference.objects.filter(user=user).values_list("language", flat=True).first() or ""


def password_change_required(*, user) -> bool:
    """True while the user still has the one-time password of an invite (every console page sends them to
    change it first)."""
    return user.is_authenticated and UserPreference.objects.filter(
        user=user, password_change_required=True).exists()


def staff_members():
    """Every platform staff account (operators first), active or not."""
    return StaffRole.objects.select_related("user").order_by("role", "user__username")


def staff_member(*, pk: int) -> StaffRole:
    staff = StaffRole.objects.select_related("user").filter(pk=pk).first()
    if staff is None:
        raise Http404("No such staff account.")
    return staff
