from django.conf import settings
from django.db import models

from accounts.models import Team
from keys.limit_values import LimitValues


class Limits(models.Model):
    """Spend and rate boundaries; None means "no limit at this level". Every level that sets one is checked
    and the tightest wins (billing/limits.py)."""

    NONE, DAY, WEEK, MONTH = "none", "day", "week", "month"
    PERIODS = [(NONE, "No reset"), (DAY, "Daily"), (WEEK, "Weekly"), (MONTH, "Monthly")]

    budget_limit = models.BigIntegerField(null=True, blank=True)           # micro-units per period
    budget_period = models.CharField(max_length=8, choices=PERIODS, default=MONTH)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)         # requests per minute
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)         # tokens per minute
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)   # requests in flight

    class Meta:
        abstract = True

    def limits_tuple(self) -> LimitValues:
        return LimitValues(self.budget_limit, self.budget_period, self.rpm_limit, self.tpm_limit, self.max_concurrency)


class KeyGroup(Limits):
    """A set of keys with shared boundaries (test, production, high-cost, scripts…)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="key_groups")
    name = models.CharField(max_length=80)
    # Public model ids keys of this group may use; empty means no extra restriction.
    allowed_models = models.JSONField(default=list, blank=True)
    # Price multiplier for this group's traffic, in parts per million (1_000_000 = catalog price).
    price_multiplier_ppm = models.PositiveIntegerField(null=True, blank=True)
    # Keys of this group may only call `route:NAME` or `auto`, so they cannot bypass a route's forbidden
    # models by naming a model directly (enforced by the router).
    routes_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Limits.Meta):
        abstract = False
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="keygroup_unique_team_name")]

    def __str__(self):
        return self.name


class ApiKey(Limits):
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
    # A debug key (set by a team admin) may ask the relay to echo the upstream request body (OpenRouter's
    # `debug: {echo_upstream_body: true}`): what the gateway sent upstream is for those who may see it.
    is_debug = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.mask})"
