from django.conf import settings
from django.db import models

from accounts.models import Team
from billing.money import CACHE_PRICE_FIELDS, cache_price_defaults
from keys.models import ApiKey
from routing.models import Channel, Model


class Price(models.Model):
    """The operator's catalog price for a model, per million tokens in micro-units, from a date on.

    The one price source: usage is charged at the price in effect when the request was made."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="prices")
    input_per_m = models.BigIntegerField()
    output_per_m = models.BigIntegerField()
    cached_input_per_m = models.BigIntegerField()              # a cache read (hit)
    cache_write_5m_per_m = models.BigIntegerField()            # a prompt-cache write kept 5 minutes
    cache_write_1h_per_m = models.BigIntegerField()            # a prompt-cache write kept 1 hour
    request_fee = models.BigIntegerField(default=0)
    effective_from = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="price_unique_from")]
        ordering = ["model", "-effective_from"]

    def save(self, *args, **kwargs):
        fill_cache_prices(self, self.model)
        super().save(*args, **kwargs)


def fill_cache_prices(price, model) -> None:
    """Cache prices left unset (None) become the provider's published ratios of the input price
    (billing.money.cache_price_defaults), so a price typed with only input and output bills caching right."""
    defaults = cache_price_defaults(model.provider, model.upstream_name, price.input_per_m)
    for name, value in zip(CACHE_PRICE_FIELDS, defaults, strict=True):
        if getattr(price, name) is None:
            setattr(price, name, value)


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
    # Parts of prompt_tokens and completion_tokens, each priced once (billing.money.usage_cost).
    cached_tokens = models.PositiveIntegerField(default=0)     # prompt tokens read from the provider's cache
    cache_write_5m_tokens = models.PositiveIntegerField(default=0, db_default=0)   # written to a 5-minute cache
    cache_write_1h_tokens = models.PositiveIntegerField(default=0, db_default=0)   # written to a 1-hour cache
    reasoning_tokens = models.PositiveIntegerField(default=0, db_default=0)        # of completion_tokens
    # The upstream reported counts out of sane bounds (negative, or beyond 10x the model's context and
    # output limits, or parts larger than their whole): they were clamped before billing (issue 11).
    usage_clamped = models.BooleanField(default=False, db_default=False)
    cost = models.BigIntegerField(default=0)                   # micro-units
    latency_ms = models.PositiveIntegerField(default=0)
    ttfb_ms = models.PositiveIntegerField(null=True)
    stream = models.BooleanField(default=False)
    user_agent = models.CharField(max_length=300, blank=True)
    sdk = models.CharField(max_length=80, blank=True)          # "openai-python 1.2.3"
    path = models.CharField(max_length=300, blank=True)        # the path the client called
    finish_reason = models.CharField(max_length=40, blank=True, default="")  # stop | length | tool_calls | …
    route = models.CharField(max_length=120, blank=True)       # "route:tools", "models[]", "auto → route:vision"
    attempts = models.JSONField(default=list, blank=True)      # candidates skipped or failed, and why
    # App attribution: the client's HTTP-Referer and X-Title / X-OpenRouter-Title headers (redacted, clipped).
    http_referer = models.CharField(max_length=300, blank=True, default="", db_default="")
    app_title = models.CharField(max_length=120, blank=True, default="", db_default="")
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


def default_alert_thresholds() -> list[int]:
    return [80, 100]


class TeamBillingPolicy(models.Model):
    """Per-team billing terms: an optional monthly spend cap, a price multiplier (a per-customer
    discount or markup on catalog prices, in parts per million; 1_000_000 = catalog price), and who is
    told, at which percentages, that a budget is being used up."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="billing_policy")
    monthly_cap = models.BigIntegerField(null=True, blank=True)
    price_multiplier_ppm = models.PositiveIntegerField(default=1_000_000)
    # Percentages of a budget at which an alert fires (each once per period), ascending.
    alert_thresholds = models.JSONField(default=default_alert_thresholds, blank=True)
    # Addresses budget alerts go to; empty: the team's owners and billing members (billing.emails).
    alert_recipients = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


# --- credit: redemption codes, bundles, budget alerts --------------------------------------------------------

class RedemptionCode(models.Model):
    """A single-use code worth `amount` micro-units, made in batches by an operator. Only the sha256 of the
    code and a display mask are stored: the plain code is shown once, when the batch is made."""

    UNUSED, USED, DISABLED = "unused", "used", "disabled"
    STATUSES = [(UNUSED, "Unused"), (USED, "Used"), (DISABLED, "Disabled")]

    batch = models.CharField(max_length=32, db_index=True)
    name = models.CharField(max_length=120, blank=True)          # the batch's label: "launch promo"
    code_hash = models.CharField(max_length=64, unique=True)
    mask = models.CharField(max_length=32)                       # "TG-…AB12"
    amount = models.BigIntegerField()                            # micro-units
    status = models.CharField(max_length=10, choices=STATUSES, default=UNUSED)
    expires_at = models.DateTimeField(null=True, blank=True)     # the code's own deadline to be redeemed
    # Credit from this code expires this many days after redemption (a credit bundle); None: never.
    credit_valid_days = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    redeemed_by_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    redeemed_by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    redeemed_at = models.DateTimeField(null=True, blank=True)
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="redemption_amount_positive"),
            # "used" and "redeemed" are one fact: a code cannot be half-redeemed.
            models.CheckConstraint(condition=models.Q(status="used", redeemed_at__isnull=False,
                                                      ledger_entry__isnull=False)
                                   | (~models.Q(status="used") & models.Q(redeemed_at__isnull=True)),
                                   name="redemption_used_iff_redeemed"),
        ]

    def __str__(self):
        return f"{self.mask} ({self.status})"


class CreditBundle(models.Model):
    """Prepaid credit that expires: the part still unused at `expires_at` leaves the balance through one
    "expiry" ledger entry (billing.services.credit_bundles_expire explains the consumption rule)."""

    TOPUP, REDEMPTION, GRANT = "topup", "redemption", "grant"
    SOURCES = [(TOPUP, "Top-up"), (REDEMPTION, "Redemption"), (GRANT, "Grant")]

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="credit_bundles")
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()                         # drawn down by debits, earliest expiry first
    expires_at = models.DateTimeField()
    source = models.CharField(max_length=12, choices=SOURCES)
    ledger_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="credit_bundle")
    # Set together when the bundle is closed at expiry; the entry is None when nothing was left to expire.
    expired_at = models.DateTimeField(null=True, blank=True)
    expiry_entry = models.OneToOneField(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0, remaining__gte=0,
                                                      remaining__lte=models.F("amount")),
                                   name="bundle_remaining_in_range"),
        ]
        indexes = [
            # The open bundles: what the drawdown and the expiry sweep walk.
            models.Index(fields=["team", "expires_at"], condition=models.Q(expired_at__isnull=True),
                         name="bundle_open"),
        ]


class CreditBundleCursor(models.Model):
    """How far a team's ledger has been applied to its bundles: debits with a larger entry id have not
    drawn anything down yet. Moved only under the team's balance lock, so each debit is applied once."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="+")
    last_entry_id = models.BigIntegerField()


class BudgetAlert(models.Model):
    """A budget reached 80% or 100% in one period: created once (the unique constraint) and mailed once."""

    KEY, GROUP, ROUTE, TEAM, BALANCE = "key", "group", "route", "team", "balance"
    SCOPES = [(KEY, "API key"), (GROUP, "Key group"), (ROUTE, "Route"), (TEAM, "Team monthly cap"),
              (BALANCE, "Balance")]

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budget_alerts")
    scope_kind = models.CharField(max_length=8, choices=SCOPES)
    scope_id = models.CharField(max_length=40)                   # key / group / rule / team id
    # billing.limits.period_tag ("m20261101", "all"); balance: "c<id of the credit entry it is measured from>".
    period_tag = models.CharField(max_length=24)
    threshold = models.PositiveSmallIntegerField()               # 80 or 100 (percent)
    label = models.CharField(max_length=200)                     # "key group 'production' monthly budget"
    spent = models.BigIntegerField()                             # micro-units, when the alert fired
    limit = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "scope_kind", "scope_id", "period_tag", "threshold"],
                                               name="budgetalert_once_per_period")]
        indexes = [models.Index(fields=["team", "-created_at"], name="budgetalert_team_newest")]

    def __str__(self):
        return f"{self.label}: {self.threshold}%"


class PriceOverride(models.Model):
    """A team's own price for one catalog model from a date on (a negotiated rate), in place of the
    catalog price; the team's and key group's multipliers still apply on top. Like catalog prices, usage is
    costed at the override in effect when the request was made, so a new override never reprices the past."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="price_overrides")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="price_overrides")
    input_per_m = models.BigIntegerField()
    output_per_m = models.BigIntegerField()
    cached_input_per_m = models.BigIntegerField()
    cache_write_5m_per_m = models.BigIntegerField()
    cache_write_1h_per_m = models.BigIntegerField()
    request_fee = models.BigIntegerField(default=0)
    effective_from = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "model", "effective_from"], name="priceoverride_unique_from"),
            models.CheckConstraint(condition=models.Q(input_per_m__gte=0, output_per_m__gte=0,
                                                      cached_input_per_m__gte=0, request_fee__gte=0),
                                   name="priceoverride_not_negative"),
            models.CheckConstraint(condition=models.Q(cache_write_5m_per_m__gte=0, cache_write_1h_per_m__gte=0),
                                   name="priceoverride_cache_not_negative"),
        ]
        ordering = ["team", "model", "-effective_from"]

    def save(self, *args, **kwargs):
        fill_cache_prices(self, self.model)
        super().save(*args, **kwargs)


# --- moving in from One API / New API (billing/oneapi_import) ----------------------------------------------

class ImportBatch(models.Model):
    """One run of `import_oneapi`: what it read, its report, and (ImportedRow) every object it created, so
    `import_rollback` can undo exactly that batch and a re-run can skip what an active batch imported."""

    code = models.CharField(max_length=20, unique=True)          # "imp_<12 hex>", what import_rollback takes
    product = models.CharField(max_length=10)                    # one-api | new-api
    version = models.CharField(max_length=120, blank=True)
    source_label = models.CharField(max_length=300)              # the URL with any password removed
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    report = models.JSONField(default=dict, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rollback_report = models.JSONField(default=dict, blank=True)

    @property
    def status(self) -> str:
        return "rolled_back" if self.rolled_back_at else "active"

    def __str__(self):
        return self.code


class ImportedRow(models.Model):
    """A source row an import batch turned into a Tollgate object (kind says which model `target_id` is)."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="rows")
    kind = models.CharField(max_length=12)  # user team member group token channel model price balance code
    source_key = models.CharField(max_length=200)  # natural key in the source ("user:alice", "token:<sha256>")
    target_id = models.BigIntegerField()
    # What the rollback needs besides the id (the price this one superseded…).
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "source_key"], name="importedrow_kind_key")]
