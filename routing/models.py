from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Team
from gateway_site import crypto
from routing.adapters import registry


class Model(models.Model):
    """A catalog entry. Prices live in billing.Price (the one price source), keyed by this model."""

    public_id = models.CharField(max_length=120, unique=True)    # "openai/gpt-4o-mini"
    display_name = models.CharField(max_length=120)
    provider = models.CharField(max_length=40)                    # openai, anthropic, google, deepseek
    upstream_name = models.CharField(max_length=120)              # default name sent upstream
    aliases = models.JSONField(default=list, blank=True)          # provider-native names: "gpt-4o-mini"
    context_length = models.PositiveIntegerField(default=128_000)
    max_output_tokens = models.PositiveIntegerField(default=16_384)
    input_modalities = models.JSONField(default=list, blank=True)
    output_modalities = models.JSONField(default=list, blank=True)
    supports_tools = models.BooleanField(default=True)
    supports_json_schema = models.BooleanField(default=True)
    supports_vision = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.public_id


class Channel(models.Model):
    """An upstream account. Platform channels (team is null) are the operator's and sold at catalog prices;
    team channels (bring-your-own-key) carry only their own team's traffic."""

    OPENAI, ANTHROPIC, GEMINI = "openai", "anthropic", "gemini"
    KINDS = registry.KINDS   # one line per provider in routing/adapters/registry.py
    ENABLED, DISABLED = "enabled", "disabled"
    STATUSES = [(ENABLED, _("Enabled")), (DISABLED, _("Disabled by admin"))]

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=20, choices=KINDS, default=OPENAI)
    base_url = models.URLField(max_length=300)                   # up to and including /v1
    api_key_encrypted = models.TextField()
    api_key_mask = models.CharField(max_length=32, blank=True)
    model_mapping = models.JSONField(default=dict, blank=True)    # public id → upstream name
    priority = models.IntegerField(default=0)
    weight = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=STATUSES, default=ENABLED)
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)  # per gateway process; None = no cap
    created_at = models.DateTimeField(auto_now_add=True)
    # Health (routing/breaker.py): the model probes ask (default: the first it serves), and a flag the breaker
    # raises for an admin on upstream credential or billing errors. The breaker never changes `status`.
    test_model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=300, blank=True)    # redacted
    # Provider metadata for OpenRouter-style `provider` preferences (routing/relay/router.py): who the
    # upstream is, whether it may keep or train on prompts, zero data retention, the model's quantization.
    DATA_COLLECTION = [("allow", _("May retain or train on prompts")), ("deny", _("Does not retain prompts"))]
    QUANTIZATIONS = [(q, q) for q in ("int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32")]
    provider_name = models.CharField(max_length=60, blank=True)        # "OpenAI", "Azure"; empty: the kind
    data_collection = models.CharField(max_length=5, choices=DATA_COLLECTION, default="allow")
    zdr = models.BooleanField(default=False)                           # zero data retention
    quantization = models.CharField(max_length=8, choices=QUANTIZATIONS, blank=True)  # empty: unknown
    # Declared last: the field's name shadows the `models` module inside the class body.
    models = models.ManyToManyField(Model, related_name="channels")

    @property
    def is_platform(self) -> bool:
        return self.team_id is None

    def set_api_key(self, plain: str) -> None:
        self.api_key_encrypted = crypto.encrypt(plain)
        self.api_key_mask = f"…{plain[-4:]}" if len(plain) > 8 else "…"

    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    def __str__(self):
        return self.name


class RoutingRule(models.Model):
    """A named route (task tier) of a team, optionally for one key group: clients send `model: "route:NAME"`.

    The default model serves first, then the backups in order; the downgrade model serves when all of them
    failed (and, with budgets, when the route's soft limit is passed). Forbidden models are never served to
    keys this rule applies to."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="routing_rules")
    key_group = models.ForeignKey("keys.KeyGroup", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="routing_rules")
    name = models.SlugField(max_length=60)               # "default", "batch", "tools", "long-review", "vision"
    default_model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="+")
    backup_models = models.JSONField(default=list, blank=True)     # ordered public ids
    downgrade_model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    forbidden_models = models.JSONField(default=list, blank=True)
    # The route's own budget (micro-units per period); past the soft limit the downgrade model serves.
    budget_limit = models.BigIntegerField(null=True, blank=True)
    budget_period = models.CharField(max_length=8, default="month",
                                     choices=[("none", "No reset"), ("day", "Daily"), ("week", "Weekly"),
                                              ("month", "Monthly")])
    soft_limit = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "key_group", "name"], name="routingrule_unique_name"),
            models.UniqueConstraint(fields=["team", "name"], condition=models.Q(key_group=None),
                                    name="routingrule_unique_team_name"),
        ]

    def __str__(self):
        return f"route:{self.name}"


class ChannelProbe(models.Model):
    """One active health check: a minimal request to the channel in its own wire format (routing/probes.py)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="probes")
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(null=True)
    ttfb_ms = models.PositiveIntegerField(null=True)
    status_code = models.PositiveSmallIntegerField(null=True)
    ok = models.BooleanField()
    error_class = models.CharField(max_length=40, blank=True)        # timeout, connection, http_503, …
    error_text = models.TextField(blank=True)                        # always redacted
    manual = models.BooleanField(default=False)                      # "test now" rather than the schedule

    class Meta:
        indexes = [models.Index(fields=["channel", "-started_at"], name="probe_channel_time"),
                   models.Index(fields=["started_at"], name="probe_time")]


class ChannelHealthEvent(models.Model):
    """A circuit-breaker transition of a channel (model null) or of one of its models."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="health_events")
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    from_state = models.CharField(max_length=10)
    to_state = models.CharField(max_length=10)                       # closed | open
    reason = models.CharField(max_length=300, blank=True)            # always redacted
    cooldown_seconds = models.FloatField(null=True)
    source = models.CharField(max_length=10, default="traffic")      # traffic | probe

    class Meta:
        indexes = [models.Index(fields=["channel", "-created_at"], name="health_event_channel_time")]


class AutoRouting(models.Model):
    """A team's rules for `model: "auto"`: which request feature picks which route (checked in this order:
    images/video → vision route, tools → tools route, a long prompt → long-prompt route, else the default)."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="auto_routing")
    vision_route = models.SlugField(max_length=60, default="vision")
    tools_route = models.SlugField(max_length=60, default="tools")
    long_prompt_route = models.SlugField(max_length=60, default="long-review")
    long_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)   # None: the deployment's default
    default_route = models.SlugField(max_length=60, default="default")
    # Claude model ids the catalog does not know (a Claude Code release ahead of the catalog: claude-opus-9)
    # go to this route; empty: they are a 404 model_not_found like any unknown id.
    claude_route = models.SlugField(max_length=60, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"auto rules of {self.team}"


class TeamModelAlias(models.Model):
    """An old model name a team's clients still send (`gpt-4-turbo-preview`, a name One API's mapping
    rewrote) and the catalog model it means for that team. The relay resolves it after catalog public ids and
    before the catalog's own aliases (routing/relay/router.py), and says so in X-Tollgate-Route."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="model_aliases")
    alias = models.CharField(max_length=120)
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="team_aliases")
    note = models.CharField(max_length=200, blank=True)        # where it came from: "imported by imp_…"
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "alias"], name="teammodelalias_unique_alias")]
        ordering = ["alias"]

    def __str__(self):
        return f"{self.alias} -> {self.model_id}"
