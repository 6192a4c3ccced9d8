from django.conf import settings
from django.db import models

from accounts.models import Team


class KeyGroup(models.Model):
    """A set of keys with shared boundaries (test, production, high-cost, scripts…)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="key_groups")
    name = models.CharField(max_length=80)
    # Public model ids keys of this group may use; empty means no extra restriction.
    allowed_models = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="keygroup_unique_team_name")]

    def __str__(self):
        return self.name


class ApiKey(models.Model):
    """A client key. Only the sha256 of the secret is stored; the secret is shown once at creation."""

    ACTIVE, REVOKED = "active", "revoked"
    STATUSES = [(ACTIVE, "Active"), (REVOKED, "Revoked")]

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    group = models.ForeignKey(KeyGroup, on_delete=models.PROTECT, related_name="api_keys")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16)          # shown in lists, e.g. "sk-tg-AbCd"
    secret_hash = models.CharField(max_length=64, unique=True)
    mask = models.CharField(max_length=32)            # "sk-tg-…a1b2"
    status = models.CharField(max_length=10, choices=STATUSES, default=ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True)
    # IPs or CIDR subnets the key may be used from; empty means anywhere.
    allowed_ips = models.JSONField(default=list, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.mask})"
