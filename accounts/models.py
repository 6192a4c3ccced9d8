from django.conf import settings
from django.db import models

from accounts import roles


class Team(models.Model):
    """The tenant. Every key, team channel, route, usage record and ticket belongs to exactly one team."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Catalog models this team may use (public ids); empty means the whole catalog.
    allowed_models = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=roles.TEAM_ROLES, default=roles.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]


class StaffRole(models.Model):
    """Platform staff: operators run the platform, support staff work tickets across teams."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_role")
    role = models.CharField(max_length=16, choices=roles.PLATFORM_ROLES)


class UserPreference(models.Model):
    """Per-user console settings that follow the user across browsers: the language, and whether the user
    still signs in with a one-time password (from an invite) that must be changed before anything else."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    language = models.CharField(max_length=10, blank=True)   # a code from settings.LANGUAGES; blank: browser's
    password_change_required = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)


class PersonalAccessToken(models.Model):
    """A management-API token of one user (team admins and owners): `Authorization: Bearer tgp_…`.

    Acts as its user, with the user's roles in each team. Only the sha256 of the secret is stored, with a
    display mask; the secret is shown once. Services and authentication live in accounts/tokens.py."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="personal_access_tokens")
    name = models.CharField(max_length=80)
    token_hash = models.CharField(max_length=64, unique=True)
    mask = models.CharField(max_length=32)            # "tgp_…a1b2"
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.mask})"
