import datetime
import math
from dataclasses import dataclass

from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, NullIf, TruncDate
from django.utils import timezone

from accounts.models import Team
from billing.models import (
    LedgerEntry,
    Price,
    PriceOverride,
    RedemptionCode,
    TeamBalance,
    TeamBillingPolicy,
    UsageRecord,
)
from routing.models import Model


def team_balance(*, team) -> int:
    """The team's cached balance in micro-units (0 before its first ledger entry)."""
    return TeamBalance.objects.filter(team=team).values_list("balance", flat=True).first() or 0


def ledger_entries(*, team) -> QuerySet[LedgerEntry]:
    # Newest first by id: entries of a team are inserted under its balance lock, so id order is the order
    # in which balance_after was computed.
    return LedgerEntry.objects.filter(team=team).select_related("created_by").order_by("-id")


def usage_records(*, team, key=None) -> QuerySet[UsageRecord]:
    qs = UsageRecord.objects.filter(team=team).order_by("-created_at", "-id")
    return qs.filter(api_key=key) if key is not None else qs


# --- console: usage ------------------------------------------------------------------------------------------

def usage_scope(*, team, owner=None) -> QuerySet[UsageRecord]:
    """A team's usage records, or only those made with one user's keys (members see their own)."""
    qs = UsageRecord.objects.filter(team=team)
    return qs.filter(api_key__owner=owner) if owner is not None else qs


def usage_search(*, team, owner=None, since=None, until=None, key_id=None, model: str = "", status: str = "",
                 request_id: str = "") -> QuerySet[UsageRecord]:
    """Usage records for the logs page and its CSV export, newest first. `model` matches part of the
    requested or served model name, any case; `status`: "ok", "error", "4xx", "5xx" or a status code. Every
    search is bounded by team and time (index usage_team_time)."""
    qs = usage_scope(team=team, owner=owner).select_related("api_key", "channel").order_by("-created_at", "-id")
    return _usage_filtered(qs, since=since, until=until, key_id=key_id, model=model, status=status,
                           request_id=request_id)


def _usage_filtered(qs, *, since=None, until=None, key_id=None, model: str = "", status: str = "",
                    request_id: str = "") -> QuerySet[UsageRecord]:
    if request_id:
        # The response id a client sees (chatcmpl-<hex>) and the request id (req_<hex>) name the same call.
        return qs.filter(request_id="req_" + request_id.removeprefix("chatcmpl-").removeprefix("req_"))
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if key_id:
        qs = qs.filter(api_key_id=key_id)
    if model:
        qs = qs.filter(Q(requested_model__icontains=model) | Q(served_model__icontains=model))
    if status == "ok":
        qs = qs.filter(status_code__lt=400)
    elif status == "error":
        qs = qs.filter(status_code__gte=400)
    elif status in ("4xx", "5xx"):
        low = int(status[0]) * 100
        qs = qs.filter(status_code__gte=low, status_code__lt=low + 100)
    elif status.isdigit():
        qs = qs.filter(status_code=int(status))
    return qs


def usage_totals(records: QuerySet[UsageRecord]) -> dict:
    """How many records a search found and what they cost together (micro-units): one aggregate query."""
    return records.order_by().aggregate(count=Count("id"), cost=Coalesce(Sum("cost"), 0))


def usage_record(*, team, pk: int, owner=None) -> UsageRecord | None:
    return usage_scope(team=team, owner=owner).select_related("api_key", "channel").filter(pk=pk).first()


LATENCY_SAMPLE = 20_000   # p50/p95 over at most this many of the window's newest successful requests


def _percentile(sorted_values: list[int], fraction: float) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]  # nearest rank


@dataclass
class UsageSummary:
    since: datetime.datetime
    days: list[dict]              # one per day, oldest first: day, requests, errors, spend
    by_model: list[dict]
    by_key: list[dict]
    requests: int
    errors: int
    spend: int
    tokens: int
    p50_ms: int | None
    p95_ms: int | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def usage_summary(*, team, owner=None, days: int = 14, now=None, top: int = 8) -> UsageSummary:
    """The dashboard: requests, errors and spend per day over the last `days` days (UTC), the top models and
    keys by spend, and p50/p95 latency. A handful of grouped queries over (team, created_at)."""
    now = now or timezone.now()
    first_day = now.date() - datetime.timedelta(days=days - 1)
    since = datetime.datetime.combine(first_day, datetime.time.min, tzinfo=datetime.UTC)
    qs = usage_scope(team=team, owner=owner).filter(created_at__gte=since).order_by()
    metrics = {"requests": Count("id"), "errors": Count("id", filter=Q(status_code__gte=400)),
               "spend": Coalesce(Sum("cost"), 0)}
    per_day = {row["day"]: row for row in
               qs.annotate(day=TruncDate("created_at")).values("day").annotate(**metrics)}
    series = []
    for offset in range(days):
        day = first_day + datetime.timedelta(days=offset)
        row = per_day.get(day, {})
        series.append({"day": day, **{name: row.get(name, 0) for name in metrics}})
    by_model = list(qs.annotate(model=Coalesce(NullIf("served_model", Value("")), "requested_model"))
                    .values("model").annotate(**metrics).order_by("-spend", "-requests")[:top])
    by_key = list(qs.values("api_key_id", "key_mask", "api_key__name").annotate(**metrics)
                  .order_by("-spend", "-requests")[:top])
    totals = qs.aggregate(**metrics, tokens=Coalesce(Sum(F("prompt_tokens") + F("completion_tokens")), 0))
    latencies = sorted(qs.filter(status_code__lt=400).order_by("-created_at")
                       .values_list("latency_ms", flat=True)[:LATENCY_SAMPLE])
    return UsageSummary(since=since, days=series, by_model=by_model, by_key=by_key, requests=totals["requests"],
                        errors=totals["errors"], spend=totals["spend"], tokens=totals["tokens"],
                        p50_ms=_percentile(latencies, 0.50), p95_ms=_percentile(latencies, 0.95))


# --- console and API: spend report, billing policy ---------------------------------------------------------

SPEND_GROUPS = ("key", "model", "day", "app")


@dataclass
class SpendReport:
    since: datetime.datetime      # inclusive, 00:00 UTC
    until: datetime.datetime      # exclusive, 00:00 UTC of the day after the last
    group_by: str                 # key / model / day / app
    rows: list[dict]              # key_id, key_name, key_mask, model, day, app_title, http_referer (those of
                                  # group_by) and the metrics
    totals: dict                  # the metrics over the whole range


def _spend_metrics() -> dict:
    return {"requests": Count("id"), "errors": Count("id", filter=Q(status_code__gte=400)),
            "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
            "completion_tokens": Coalesce(Sum("completion_tokens"), 0), "cost": Coalesce(Sum("cost"), 0)}


def spend_report(*, team, since: datetime.datetime, until: datetime.datetime, group_by: str) -> SpendReport:
    """The team's usage cost over [since, until) grouped by key, model (served, else requested), UTC day or
    app (the client's X-Title and HTTP-Referer headers),
    highest cost first (days in order, every day of the range listed); the rows add up to the totals. Two
    grouped queries over (team, created_at)."""
    if group_by not in SPEND_GROUPS:
        raise ValueError(f"group_by is one of {SPEND_GROUPS}")
    qs = UsageRecord.objects.filter(team=team, created_at__gte=since, created_at__lt=until).order_by()
    metrics = _spend_metrics()
    empty = {"key_id": None, "key_name": None, "key_mask": None, "model": None, "day": None, "app_title": None,
             "http_referer": None}
    if group_by == "key":
        rows = [{**empty, "key_id": r.pop("api_key_id"), "key_name": r.pop("api_key__name"),
                 "key_mask": r.pop("key_mask"), **r}
                for r in qs.values("api_key_id", "api_key__name", "key_mask").annotate(**metrics)
                .order_by("-cost", "-requests", "key_mask")]
    elif group_by == "model":
        rows = [{**empty, **r} for r in
                qs.annotate(model=Coalesce(NullIf("served_model", Value("")), "requested_model"))
                .values("model").annotate(**metrics).order_by("-cost", "-requests", "model")]
    elif group_by == "app":
        rows = [{**empty, **r} for r in qs.values("app_title", "http_referer").annotate(**metrics)
                .order_by("-cost", "-requests", "app_title", "http_referer")]
    else:
        per_day = {r["day"]: r for r in qs.annotate(day=TruncDate("created_at", tzinfo=datetime.UTC))
                   .values("day").annotate(**metrics)}
        zero = dict.fromkeys(metrics, 0)
        rows, day = [], since.date()
        while day < until.date():
            rows.append({**empty, **zero, **per_day.get(day, {}), "day": day})
            day += datetime.timedelta(days=1)
    return SpendReport(since=since, until=until, group_by=group_by, rows=rows, totals=qs.aggregate(**metrics))


def billing_policy(*, team) -> TeamBillingPolicy:
    """The team's billing policy, or the defaults (unsaved) when none was ever set."""
    return TeamBillingPolicy.objects.filter(team=team).first() or TeamBillingPolicy(team=team)


def team_month_spend(*, team, now=None) -> int:
    """What the team's requests have cost this calendar month (UTC): what its monthly cap is measured
    against (billing.limits counts the same window)."""
    from billing.limits import period_start

    start = period_start("month", now or timezone.now())
    return UsageRecord.objects.filter(team=team, created_at__gte=start).aggregate(
        s=Coalesce(Sum("cost"), 0))["s"]


# --- operator ------------------------------------------------------------------------------------------------

def current_price(*, model, at=None) -> Price | None:
    return Price.objects.filter(model=model, effective_from__lte=at or timezone.now()).order_by(
        "-effective_from").first()


def model_prices(*, model) -> QuerySet[Price]:
    return Price.objects.filter(model=model).order_by("-effective_from")


def catalog_with_prices(*, at=None) -> QuerySet[Model]:
    """Every catalog model with the price in effect now (input/output/cached per million, request fee)."""
    current = Price.objects.filter(model=OuterRef("pk"), effective_from__lte=at or timezone.now()).order_by(
        "-effective_from")
    return Model.objects.order_by("provider", "public_id").annotate(
        **{f"price_{field}": Subquery(current.values(field)[:1])
           for field in ("input_per_m", "output_per_m", "cached_input_per_m", "cache_write_5m_per_m",
                         "cache_write_1h_per_m", "request_fee", "effective_from")},
        channel_count=Count("channels", distinct=True))


def teams_with_balances() -> QuerySet[Team]:
    return Team.objects.order_by("name").annotate(
        balance_value=Coalesce(F("balance__balance"), Value(0, output_field=BigIntegerField())),
        member_count=Count("memberships", distinct=True),
        # Custom pricing at a glance: a multiplier other than 1 (as a number, for display) and overrides.
        multiplier=ExpressionWrapper(F("billing_policy__price_multiplier_ppm") / Value(1e6),
                                     output_field=FloatField()),
        override_count=Count("price_overrides", distinct=True))


# --- operator: code batches, cross-team logs, prices per customer -------------------------------------------

def redemption_batches() -> QuerySet:
    """One row per code batch, newest first: label, amount, code and credit expiry, and how many of its
    codes are used, unused and disabled (voided)."""
    return (RedemptionCode.objects.order_by().values("batch")
            .annotate(name=Max("name"), amount=Max("amount"), expires_at=Max("expires_at"),
                      credit_valid_days=Max("credit_valid_days"), created_at=Min("created_at"),
                      created_by=Max("created_by__username"), total=Count("id"),
                      used=Count("id", filter=Q(status="used")), unused=Count("id", filter=Q(status="unused")),
                      disabled=Count("id", filter=Q(status="disabled")))
            .order_by("-created_at", "batch"))


def redemption_batch(*, batch: str) -> dict | None:
    return redemption_batches().filter(batch=batch).first()


def redemption_batch_codes(*, batch: str) -> QuerySet:
    """A batch's codes (masks and status only: the plain codes were never stored)."""
    return (RedemptionCode.objects.filter(batch=batch).select_related("redeemed_by_team", "redeemed_by_user")
            .order_by("pk"))


def platform_usage_search(*, team_id=None, since=None, until=None, model: str = "", status: str = "",
                          request_id: str = "") -> QuerySet[UsageRecord]:
    """Every team's usage records for the operator's cross-team logs, newest first: usage_search's filters,
    with an optional team instead of a key (bounded by time: index on created_at)."""
    qs = UsageRecord.objects.select_related("team", "api_key", "channel").order_by("-created_at", "-id")
    if team_id:
        qs = qs.filter(team_id=team_id)
    return _usage_filtered(qs, since=since, until=until, model=model, status=status, request_id=request_id)


def price_overrides(*, team) -> QuerySet:
    return PriceOverride.objects.filter(team=team).select_related("model", "created_by").order_by(
        "model__public_id", "-effective_from")


def team_multiplier_ppm(*, team) -> int:
    return TeamBillingPolicy.objects.filter(team=team).values_list(
        "price_multiplier_ppm", flat=True).first() or 1_000_000


@dataclass
class TeamModelPrice:
    model: Model
    list_price: Price | None          # the catalog price in force
    override: object | None           # the team's PriceOverride in force, if any
    multiplier_ppm: int               # the team's
    input_per_m: int | None = None    # "your price": override or list price, times the multiplier
    output_per_m: int | None = None
    cached_input_per_m: int | None = None
    cache_write_5m_per_m: int | None = None
    cache_write_1h_per_m: int | None = None
    request_fee: int | None = None


def _times(micro: int, ppm: int) -> int:
    return (micro * ppm + 500_000) // 1_000_000


def team_model_prices(*, team, at=None) -> list[TeamModelPrice]:
    """Each enabled catalog model with its list price and the team's price: its override in force (else the
    list price), times the team's multiplier — what relay/snapshot.py charges, before any key-group
    multiplier. Three queries."""
    at = at or timezone.now()
    overrides = {}
    for o in PriceOverride.objects.filter(team=team, effective_from__lte=at).order_by("model_id", "-effective_from"):
        overrides.setdefault(o.model_id, o)
    multiplier = team_multiplier_ppm(team=team)
    fields = ("input_per_m", "output_per_m", "cached_input_per_m", "cache_write_5m_per_m", "cache_write_1h_per_m",
              "request_fee")
    rows = []
    for model in catalog_with_prices(at=at).filter(enabled=True):
        list_price = None if model.price_input_per_m is None else Price(
            model=model, effective_from=model.price_effective_from,
            **{f: getattr(model, f"price_{f}") for f in fields})
        row = TeamModelPrice(model, list_price, overrides.get(model.pk), multiplier)
        source = row.override or row.list_price
        if source is not None:
            for f in fields:
                setattr(row, f, _times(getattr(source, f), multiplier))
        rows.append(row)
    return rows


# --- keys: spend against their budgets (keys/views.py) -------------------------------------------------------

def key_period_spend(*, team, keys, now=None) -> dict[int, int]:
    """What each key has spent in its own budget period so far (the window billing.limits counts: from its
    period_start to now; all time for a period without reset), by key id. One grouped query per period."""
    from billing.limits import period_start

    now = now or timezone.now()
    by_start: dict = {}
    for key in keys:
        by_start.setdefault(period_start(key.budget_period, now), []).append(key.pk)
    spend = {pk: 0 for pks in by_start.values() for pk in pks}
    for start, pks in by_start.items():
        qs = UsageRecord.objects.filter(team=team, api_key_id__in=pks)
        if start is not None:
            qs = qs.filter(created_at__gte=start)
        for row in qs.order_by().values("api_key_id").annotate(total=Sum("cost")):
            spend[row["api_key_id"]] = row["total"] or 0
    return spend


@dataclass
class KeySpend:
    since: datetime.datetime
    days: list[dict]       # oldest first: day, requests, spend
    by_model: list[dict]   # model, requests, spend; highest spend first
    spend: int
    requests: int


def key_spend_breakdown(*, key, days: int = 30, now=None) -> KeySpend:
    """A key's spend per day (UTC) and per model over the last `days` days."""
    now = now or timezone.now()
    first_day = now.date() - datetime.timedelta(days=days - 1)
    since = datetime.datetime.combine(first_day, datetime.time.min, tzinfo=datetime.UTC)
    qs = UsageRecord.objects.filter(team_id=key.team_id, api_key=key, created_at__gte=since).order_by()
    metrics = {"requests": Count("id"), "spend": Coalesce(Sum("cost"), 0)}
    per_day = {row["day"]: row for row in
               qs.annotate(day=TruncDate("created_at")).values("day").annotate(**metrics)}
    series = []
    for offset in range(days):
        day = first_day + datetime.timedelta(days=offset)
        row = per_day.get(day, {})
        series.append({"day": day, "requests": row.get("requests", 0), "spend": row.get("spend", 0)})
    by_model = list(qs.annotate(model=Coalesce(NullIf("served_model", Value("")), "requested_model"))
                    .values("model").annotate(**metrics).order_by("-spend", "-requests"))
    return KeySpend(since=since, days=series, by_model=by_model, spend=sum(d["spend"] for d in series),
                    requests=sum(d["requests"] for d in series))


@dataclass
class BudgetUse:
    source: str            # "key" | "group" | "team": whose budget
    limit: int
    period: str            # keys.models.Limits periods
    spent: int             # recorded usage cost since the period started
    resets_at: datetime.datetime | None

    @property
    def left(self) -> int:
        return self.limit - self.spent


def key_budgets(*, key, now=None) -> list[BudgetUse]:
    """Every budget a key's requests are held against — its own, its group's, the team's monthly cap — with
    what each has spent this period, counted as billing.limits does (the same periods and scopes)."""
    from billing.limits import period_end, period_start
    from billing.models import TeamBillingPolicy

    now = now or timezone.now()
    cap = TeamBillingPolicy.objects.filter(team_id=key.team_id).values_list("monthly_cap", flat=True).first()
    scopes = [("key", key.budget_limit, key.budget_period, Q(api_key_id=key.pk)),
              ("group", key.group.budget_limit, key.group.budget_period, Q(api_key__group_id=key.group_id)),
              ("team", cap, "month", Q())]
    result = []
    for source, limit, period, scope in scopes:
        if limit is None:
            continue
        start = period_start(period, now)
        qs = UsageRecord.objects.filter(scope, team_id=key.team_id)
        if start is not None:
            qs = qs.filter(created_at__gte=start)
        result.append(BudgetUse(source, limit, period, qs.aggregate(s=Coalesce(Sum("cost"), 0))["s"],
                                period_end(period, now)))
    return result


# === relay: a key's own spend and one request's record (GET /v1/key, GET /v1/generation) ==================
# routing/relay/views.py reads these (through db_call); nothing else in billing depends on them.
def _spent_in(records, period: str, now) -> int:
    from billing import limits

    start = limits.period_start(period, now)
    if start is not None:
        records = records.filter(created_at__gte=start)
    return records.aggregate(s=Sum("cost"))["s"] or 0


def relay_key_spend(*, ctx, monthly_cap: int | None, now) -> tuple[dict, list[tuple]]:
    """A key's spend (all time, today, this week, this month) and the budgets over it: (sums, [(source,
    limit, period, spent in the period)]) for the key's budget, its group's and the team's monthly cap."""
    from billing import limits

    records = UsageRecord.objects.filter(api_key_id=ctx.key_id)
    sums = records.aggregate(
        usage=Sum("cost"),
        daily=Sum("cost", filter=Q(created_at__gte=limits.period_start("day", now))),
        weekly=Sum("cost", filter=Q(created_at__gte=limits.period_start("week", now))),
        monthly=Sum("cost", filter=Q(created_at__gte=limits.period_start("month", now))))
    budgets = []
    for source, (budget, period, *_), scoped in (
            ("key", ctx.key_limits, records),
            ("key group", ctx.group_limits, UsageRecord.objects.filter(api_key__group_id=ctx.group_id))):
        if budget is not None:
            budgets.append((source, budget, period, _spent_in(scoped, period, now)))
    if monthly_cap is not None:
        budgets.append(("team", monthly_cap, "month",
                        _spent_in(UsageRecord.objects.filter(team_id=ctx.team_id), "month", now)))
    return sums, budgets


def generation_record(*, team_id: int, request_id: str) -> UsageRecord | None:
    """One request's usage record, scoped to the caller's team."""
    return UsageRecord.objects.filter(team_id=team_id, request_id=request_id).first()


def team_credits(*, team_id: int) -> tuple[int, int]:
    """(everything credited to the team, what its usage has cost), in micro-units (OpenRouter's /credits): usage
    is the ledger's charged usage plus the usage records not reconciled yet, so a call counts from the moment
    its record is written. One statement, so a record reconciled meanwhile is counted once."""
    def total(qs, column):
        return Coalesce(Subquery(qs.filter(team_id=OuterRef("pk")).order_by().values("team_id")
                                 .annotate(total=Sum(column)).values("total")), 0)

    row = Team.objects.filter(pk=team_id).annotate(
        charged=total(LedgerEntry.objects.filter(kind=LedgerEntry.USAGE), "amount"),
        unbilled=total(UsageRecord.objects.filter(billed_at__isnull=True), "cost"),
        cached_balance=Coalesce(Subquery(TeamBalance.objects.filter(team_id=OuterRef("pk")).values("balance")), 0),
    ).values("charged", "unbilled", "cached_balance").first() or {"charged": 0, "unbilled": 0, "cached_balance": 0}
    return row["cached_balance"] - row["charged"], row["unbilled"] - row["charged"]
