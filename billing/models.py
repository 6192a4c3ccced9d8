from django.db import models

from accounts.models import Team
from keys.models import ApiKey
from routing.models import Channel, Model


class Price(models.Model):
    """The operator's catalog price for a model, per million tokens in micro-units, from a date on.

    The one price source: usage is charged at the price in effect when the request was made."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="prices")
    input_per_m = models.BigIntegerField()
    output_per_m = models.BigIntegerField()
    cached_input_per_m = models.BigIntegerField()
    request_fee = models.BigIntegerField(default=0)
    effective_from = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="price_unique_from")]
        ordering = ["model", "-effective_from"]


class UsageRecord(models.Model):
    """One relayed request, success or failure: the troubleshooting and billing evidence."""

    request_id = models.CharField(max_length=40, unique=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage_records")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="usage_records")
    key_mask = models.CharField(max_length=32, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    served_model = models.CharField(max_length=200, blank=True)
    channel = models.ForeignKey(Channel, null=True, on_delete=models.SET_NULL, related_name="usage_records")
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=60, blank=True)
    error_text = models.TextField(blank=True)                  # always redacted before it gets here
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost = models.BigIntegerField(default=0)                   # micro-units
    latency_ms = models.PositiveIntegerField(default=0)
    ttfb_ms = models.PositiveIntegerField(null=True)
    stream = models.BooleanField(default=False)
    user_agent = models.CharField(max_length=300, blank=True)
    sdk = models.CharField(max_length=80, blank=True)          # "openai-python 1.2.3"
    path = models.CharField(max_length=300, blank=True)        # the path the client called
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["team", "-created_at"], name="usage_team_time")]
