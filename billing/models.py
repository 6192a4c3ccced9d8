from django.conf import settings
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
    route = models.CharField(max_length=120, blank=True)       # "route:tools", "models[]", "auto → route:vision"
    attempts = models.JSONField(default=list, blank=True)      # candidates skipped or failed, and why
    created_at = models.DateTimeField(db_index=True)
    # Set together, by billing.services.usage_reconcile, in the transaction that posts the usage entry.
    # A zero-cost record is billed without an entry.
    billed_at = models.DateTimeField(null=True, blank=True)    # indexed where NULL: see usage_unbilled
    ledger_entry = models.ForeignKey("LedgerEntry", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="usage_records")

    class Meta:
        indexes = [
            models.Index(fields=["team", "-created_at"], name="usage_team_time"),
            # Reconciliation walks the unbilled backlog in pk order; this index holds only that backlog.
            models.Index(fields=["id"], condition=models.Q(billed_at__isnull=True), name="usage_unbilled"),
        ]


class AppendOnlyError(Exception):
    """A ledger entry was about to be changed or deleted: correct it with a new entry instead."""


class LedgerEntry(models.Model):
    """One movement of a team's money in micro-units: credits positive, usage negative.

    Insert-only (Zulip's LicenseLedger, django-oscar-accounts): a correction is a new adjustment or refund
    entry. The database rejects UPDATE and DELETE with triggers (migration 0002), so raw SQL and queryset
    `.update()`/`.delete()` fail too; `save()`/`delete()` here only fail earlier with a clearer message.
    Team and user are PROTECTed: deleting them would have to touch ledger rows, which the triggers refuse.
    """

    TOPUP, USAGE, ADJUSTMENT, REFUND, REDEMPTION, EXPIRY = (
        "topup", "usage", "adjustment", "refund", "redemption", "expiry")
    KINDS = [(TOPUP, "Top-up"), (USAGE, "Usage"), (ADJUSTMENT, "Adjustment"), (REFUND, "Refund"),
             (REDEMPTION, "Redemption"), (EXPIRY, "Expiry")]

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=KINDS)
    amount = models.BigIntegerField()                          # signed micro-units
    balance_after = models.BigIntegerField()                   # the team's balance once this entry is applied
    idempotency_key = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "idempotency_key"], name="ledger_unique_team_key")]
        indexes = [models.Index(fields=["team", "-id"], name="ledger_team_newest")]
        verbose_name_plural = "ledger entries"

    def __str__(self):
        return f"{self.kind} {self.amount:+d} ({self.idempotency_key})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("ledger entries are never changed; post a correcting entry")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("ledger entries are never deleted; post a correcting entry")


class TeamBalance(models.Model):
    """A team's balance, cached: always the sum of its ledger amounts (`ledger_audit` checks).

    Changed only by billing.services, in the transaction that inserts the ledger entry, with a locked
    `F()` update. Deliberately no CheckConstraint(balance >= 0): usage is charged after the request was
    served, so a team may overdraw by what was in flight; limits and holds refuse new work instead.
    """

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="balance")
    balance = models.BigIntegerField(default=0)                # micro-units
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.team_id}: {self.balance}"
