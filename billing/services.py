import datetime as dt
import hashlib
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Team
from billing import emails, limits
from billing.models import (
    BudgetAlert,
    CreditBundle,
    CreditBundleCursor,
    LedgerEntry,
    Price,
    PriceOverride,
    RedemptionCode,
    TeamBalance,
    TeamBillingPolicy,
    UsageRecord,
)
from keys.models import ApiKey, KeyGroup
from routing.catalog import bump_version
from routing.models import RoutingRule

log = logging.getLogger(__name__)
KINDS = frozenset(kind for kind, _ in LedgerEntry.KINDS)


@transaction.atomic
def price_set(*, model, input_per_m: int, output_per_m: int, cached_input_per_m: int | None = None,
              request_fee: int = 0, effective_from=None, cache_write_5m_per_m: int | None = None,
              cache_write_1h_per_m: int | None = None) -> Price:
    """Add a catalog price from a date on (past usage keeps the price it was charged at). Cache prices left
    None are the provider's published ratios of the input price (billing.models.fill_cache_prices)."""
    price, _ = Price.objects.update_or_create(
        model=model, effective_from=effective_from or timezone.now(),
        defaults={"input_per_m": input_per_m, "output_per_m": output_per_m,
                  "cached_input_per_m": cached_input_per_m, "request_fee": request_fee,
                  "cache_write_5m_per_m": cache_write_5m_per_m, "cache_write_1h_per_m": cache_write_1h_per_m})
    transaction.on_commit(bump_version)
    return price


# --- ledger -------------------------------------------------------------------------------------------------

def _balances_locked(team_ids) -> dict[int, TeamBalance]:
    """Lock the teams' balance rows (created at 0 when missing), in pk order so that two transactions
    locking overlapping teams cannot deadlock. Every ledger insert happens while holding its team's lock."""
    team_ids = sorted(set(team_ids))
    # ON CONFLICT DO NOTHING: a concurrent creator of the same row makes this wait, never fail.
    TeamBalance.objects.bulk_create([TeamBalance(team_id=t) for t in team_ids], ignore_conflicts=True)
    rows = TeamBalance.objects.select_for_update().filter(team_id__in=team_ids).order_by("pk")
    return {row.team_id: row for row in rows}


def _ledger_insert(*, balance: TeamBalance, kind: str, amount: int, idempotency_key: str, reason: str = "",
                   created_by=None) -> tuple[LedgerEntry, bool]:
    """Insert one entry and move the cached balance with it. The caller holds `balance` locked (its value
    is current). Returns (entry, created); an existing entry with the key is returned unchanged."""
    try:
        # A savepoint: a duplicate key must not abort the caller's transaction. The unique constraint, not
        # a look-up first, is what makes a retry (or a racing twin) a no-op.
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                team_id=balance.team_id, kind=kind, amount=amount, balance_after=balance.balance + amount,
                idempotency_key=idempotency_key, reason=reason, created_by=created_by)
    except IntegrityError:
        entry = LedgerEntry.objects.filter(team_id=balance.team_id, idempotency_key=idempotency_key).first()
        if entry is None:
            raise
        if (entry.kind, entry.amount) != (kind, amount):
            raise ValueError(f"idempotency key {idempotency_key!r} was used for a different entry")
        return entry, False
    TeamBalance.objects.filter(pk=balance.pk).update(balance=F("balance") + amount, updated_at=timezone.now())
    balance.balance += amount  # the locked row's value, for a later insert in this transaction
    if kind != LedgerEntry.USAGE:
        # Usage entries only move spend from "unbilled" to the balance: what a team may still spend is
        # unchanged. Every other entry changes it: tell the gateways' shared counter, with the entry's id (a
        # rebuild that read the entry counted it already; limits.CREDIT_LUA).
        team_id, entry_id = balance.team_id, entry.pk
        transaction.on_commit(lambda: limits.balance_changed(team_id, amount, entry_id))
    return entry, True


def _check(*, kind: str, amount: int, idempotency_key: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    if type(amount) is not int or amount == 0:  # bool, float and Decimal are not micro-units
        raise ValueError("amount must be a non-zero integer of micro-units")
    if not idempotency_key:
        raise ValueError("an idempotency key is required")


def ledger_post(*, team, kind: str, amount: int, idempotency_key: str, reason: str = "",
                created_by=None) -> LedgerEntry:
    """Append an entry to the team's ledger and move its balance in the same transaction. Idempotent: a
    second call with the same key returns the first entry and changes nothing."""
    _check(kind=kind, amount=amount, idempotency_key=idempotency_key)
    with transaction.atomic():
        balance = _balances_locked([team.pk])[team.pk]
        entry, _ = _ledger_insert(balance=balance, kind=kind, amount=amount, idempotency_key=idempotency_key,
                                  reason=reason, created_by=created_by)
    return entry


def balance_credit(*, team, amount: int, reason: str, created_by, idempotency_key: str) -> LedgerEntry:
    """An operator's credit (top-up) to a team."""
    if type(amount) is not int or amount <= 0:
        raise ValueError("a credit is a positive integer of micro-units")
    if not reason.strip():
        raise ValueError("a credit needs a reason")
    return ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=amount, idempotency_key=idempotency_key,
                       reason=reason.strip(), created_by=created_by)


def balance_adjust(*, team, amount: int, reason: str, created_by, idempotency_key: str) -> LedgerEntry:
    """A correction in either direction; the reason is the audit trail, so it is mandatory."""
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    return ledger_post(team=team, kind=LedgerEntry.ADJUSTMENT, amount=amount, idempotency_key=idempotency_key,
                       reason=reason.strip(), created_by=created_by)


# --- usage reconciliation -----------------------------------------------------------------------------------

def _usage_reconcile_batch(*, batch_size: int) -> tuple[int, int]:
    """Charge one batch of unbilled usage: one usage entry per team. Returns (records billed, entries)."""
    with transaction.atomic():
        # SKIP LOCKED: concurrent runs take disjoint batches instead of queueing behind each other. A row
        # another run billed meanwhile no longer matches `billed_at IS NULL` when re-checked, so no record
        # is charged twice.
        rows = list(UsageRecord.objects.select_for_update(skip_locked=True).filter(billed_at__isnull=True)
                    .order_by("pk").values_list("pk", "team_id", "cost")[:batch_size])
        if not rows:
            return 0, 0
        charged: dict[int, list[tuple[int, int]]] = defaultdict(list)
        free = []
        for pk, team_id, cost in rows:
            if cost:
                charged[team_id].append((pk, cost))
            else:
                free.append(pk)
        now, entries = timezone.now(), 0
        balances = _balances_locked(charged)
        for team_id, balance in balances.items():  # pk order
            records = charged[team_id]
            ids = [pk for pk, _ in records]
            # Derived from the records only: a retry of the same batch maps onto the same entry.
            key = f"usage:{ids[0]}-{ids[-1]}:{len(ids)}"
            entry, created = _ledger_insert(balance=balance, kind=LedgerEntry.USAGE,
                                            amount=-sum(cost for _, cost in records), idempotency_key=key)
            if not created:
                log.warning("usage %s was already posted as ledger entry %s; linking records only", key, entry.pk)
            entries += created
            UsageRecord.objects.filter(pk__in=ids).update(billed_at=now, ledger_entry=entry)
        if free:
            UsageRecord.objects.filter(pk__in=free).update(billed_at=now)
    return len(rows), entries


def usage_reconcile(*, batch_size: int = 500, deadline: float | None = None) -> int:
    """Charge every unbilled usage record to its team's ledger, batch by batch (one transaction each) until
    none is left or `deadline` (time.monotonic()) passes. Safe to run concurrently and repeatedly.
    Returns the number of ledger entries written."""
    written = 0
    while deadline is None or time.monotonic() < deadline:
        records, entries = _usage_reconcile_batch(batch_size=batch_size)
        written += entries
        if records < batch_size:
            break
    return written


# --- credit: redemption codes -------------------------------------------------------------------------------

class CreditError(Exception):
    """A redemption refused: `code` for API clients, `message` for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"   # no 0/O or 1/I: codes are read off paper and retyped
CODE_LENGTH = 16                                     # 80 random bits
LEGACY_CODE_LENGTH = 32                              # One API / New API codes (32 hex), kept by the importer


def _code_body(code: str) -> str:
    """The 16 characters that matter, however the code was typed (case, spaces, dashes, the TG- prefix)."""
    body = "".join(ch for ch in code.upper() if ch.isalnum())
    return body[2:] if len(body) == CODE_LENGTH + 2 and body.startswith("TG") else body


def _code_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def redemption_batch_create(*, created_by, count: int, amount: int, expires_at=None, name: str = "",
                            credit_valid_days: int | None = None) -> list[str]:
    """Make `count` single-use codes worth `amount` micro-units each and return them as
    "TG-XXXX-XXXX-XXXX-XXXX". The plain codes exist only in this return value (shown once): the database
    keeps their sha256 and a mask. `credit_valid_days`: redeemed credit expires that many days later."""
    if type(amount) is not int or amount <= 0:
        raise ValueError("a code is worth a positive integer of micro-units")
    if not 1 <= count <= 10_000:
        raise ValueError("make between 1 and 10000 codes at a time")
    if credit_valid_days is not None and credit_valid_days < 1:
        raise ValueError("credit_valid_days must be at least 1")
    batch = secrets.token_hex(8)
    bodies = ["".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)) for _ in range(count)]
    RedemptionCode.objects.bulk_create([
        RedemptionCode(batch=batch, name=name, code_hash=_code_hash(body), mask=f"TG-…{body[-4:]}", amount=amount,
                       expires_at=expires_at, credit_valid_days=credit_valid_days, created_by=created_by)
        for body in bodies])
    return ["TG-" + "-".join(body[i:i + 4] for i in range(0, CODE_LENGTH, 4)) for body in bodies]


def redemption_batch_of(*, code: str) -> str | None:
    """The batch a plain code belongs to (for the page that shows a new batch's codes once)."""
    return RedemptionCode.objects.filter(code_hash=_code_hash(_code_body(code))).values_list(
        "batch", flat=True).first()


def redemption_redeem(*, team, user, code: str) -> LedgerEntry:
    """Credit a code's amount to `team` (a "redemption" entry by `user`) and mark the code used, in one
    transaction. The code row is locked first, so of two concurrent redemptions one credits and the other
    finds the code used. Codes are global: an unknown code and another team's used code are refused alike."""
    body, now = _code_body(code), timezone.now()
    with transaction.atomic():
        row = (RedemptionCode.objects.select_for_update().filter(code_hash=_code_hash(body)).first()
               if len(body) in (CODE_LENGTH, LEGACY_CODE_LENGTH) else None)
        if row is None:
            raise CreditError("code_unknown", "This code does not exist; check it for typos.")
        if row.status == RedemptionCode.USED:
            raise CreditError("code_used", "This code has already been redeemed.")
        if row.status == RedemptionCode.DISABLED:
            raise CreditError("code_disabled", "This code has been disabled.")
        if row.expires_at is not None and row.expires_at <= now:
            raise CreditError("code_expired", f"This code expired on {row.expires_at:%Y-%m-%d %H:%M} UTC.")
        entry = ledger_post(team=team, kind=LedgerEntry.REDEMPTION, amount=row.amount,
                            idempotency_key=f"redeem:{row.pk}", reason=f"Redeemed code {row.mask}",
                            created_by=user)
        if row.credit_valid_days:
            _bundle_open(team=team, entry=entry, source=CreditBundle.REDEMPTION,
                         expires_at=now + dt.timedelta(days=row.credit_valid_days))
        RedemptionCode.objects.filter(pk=row.pk).update(status=RedemptionCode.USED, redeemed_by_team=team,
                                                        redeemed_by_user=user, redeemed_at=now, ledger_entry=entry)
    return entry


# --- credit: bundles that expire ----------------------------------------------------------------------------
#
# The rule, exact and replayable from the ledger:
# 1. Every debit (a negative entry other than an expiry) draws down the team's open bundles earliest expiry
#    first — only bundles granted before it (smaller entry id) and not yet expired when it was posted. What
#    no bundle covers comes out of permanent credit (credit without expiry is spent last).
# 2. At expiry, a bundle's unused part, min(remaining, the team's positive balance), leaves through ONE
#    "expiry" entry (key "expiry:<bundle id>"); the cap means expiry never pushes a balance below zero.
# Debits are applied lazily from a per-team cursor (CreditBundleCursor), always under the team's balance lock
# (the lock every ledger insert takes), so each debit is applied exactly once and every debit committed
# before an expiry is applied before it.

def _bundle_open(*, team, entry: LedgerEntry, expires_at, source: str) -> CreditBundle:
    """The bundle of a credit entry just posted. The caller holds the team's balance lock."""
    # A team's first bundle starts its cursor at its own entry: earlier debits can never draw from it.
    CreditBundleCursor.objects.get_or_create(team=team, defaults={"last_entry_id": entry.pk})
    return CreditBundle.objects.create(team=team, amount=entry.amount, remaining=entry.amount,
                                       expires_at=expires_at, source=source, ledger_entry=entry)


def credit_bundle_grant(*, team, amount: int, expires_at, reason: str, created_by, idempotency_key: str,
                        source: str = CreditBundle.TOPUP) -> CreditBundle:
    """Credit that expires at `expires_at`: a top-up entry and its bundle in one transaction. Idempotent:
    a retry with the same key returns the first bundle."""
    if type(amount) is not int or amount <= 0:
        raise ValueError("a credit is a positive integer of micro-units")
    if not reason.strip():
        raise ValueError("a credit needs a reason")
    if expires_at <= timezone.now():
        raise ValueError("the credit's expiry must be in the future")
    _check(kind=LedgerEntry.TOPUP, amount=amount, idempotency_key=idempotency_key)
    with transaction.atomic():
        balance = _balances_locked([team.pk])[team.pk]
        entry, created = _ledger_insert(balance=balance, kind=LedgerEntry.TOPUP, amount=amount,
                                        idempotency_key=idempotency_key, reason=reason.strip(),
                                        created_by=created_by)
        if not created:
            bundle = CreditBundle.objects.filter(ledger_entry=entry).first()
            if bundle is None:
                raise ValueError(f"idempotency key {idempotency_key!r} was used for a credit without expiry")
            return bundle
        return _bundle_open(team=team, entry=entry, expires_at=expires_at, source=source)


def _bundles_draw(*, team_id: int, chunk: int = 5_000) -> int:
    """Rule 1 for the debits posted since the cursor. The caller holds the team's balance lock (so no entry
    can appear meanwhile). Returns the micro-units drawn down."""
    cursor = CreditBundleCursor.objects.filter(team_id=team_id).first()
    if cursor is None:
        return 0
    bundles = list(CreditBundle.objects.filter(team_id=team_id, expired_at__isnull=True, remaining__gt=0)
                   .order_by("expires_at", "pk"))
    drawn, changed = 0, set()
    while True:
        entries = list(LedgerEntry.objects.filter(team_id=team_id, pk__gt=cursor.last_entry_id).order_by("pk")
                       .values_list("pk", "amount", "kind", "created_at")[:chunk])
        for pk, amount, kind, posted_at in entries:
            need = -amount if amount < 0 and kind != LedgerEntry.EXPIRY else 0
            for bundle in bundles:
                if not need:
                    break
                if bundle.remaining and bundle.ledger_entry_id < pk and bundle.expires_at > posted_at:
                    take = min(bundle.remaining, need)
                    bundle.remaining -= take
                    need -= take
                    drawn += take
                    changed.add(bundle)
        if entries:
            cursor.last_entry_id = entries[-1][0]
        if len(entries) < chunk:
            break
    CreditBundle.objects.bulk_update(list(changed), ["remaining"])
    CreditBundleCursor.objects.filter(pk=cursor.pk).update(last_entry_id=cursor.last_entry_id)
    return drawn


def credit_bundles_consume(*, team) -> int:
    """Draw the team's bundles down by the debits posted since the last call (rule 1). Idempotent: the
    cursor moves in the same transaction, so a second call applies nothing twice."""
    with transaction.atomic():
        _balances_locked([team.pk])
        return _bundles_draw(team_id=team.pk)


def credit_bundles_expire(*, team, now=None) -> list[LedgerEntry]:
    """Close the team's bundles whose expiry has passed (rule 2), after applying every pending debit.
    Safe to run twice or concurrently: runs queue on the balance lock, and a closed bundle is skipped (its
    idempotency key would make a second entry a no-op anyway). Returns the expiry entries written."""
    now = now or timezone.now()
    written = []
    with transaction.atomic():
        balance = _balances_locked([team.pk])[team.pk]
        _bundles_draw(team_id=team.pk)
        due = CreditBundle.objects.filter(team=team, expired_at__isnull=True, expires_at__lte=now).order_by(
            "expires_at", "pk")
        for bundle in due:
            unused, entry = min(bundle.remaining, max(balance.balance, 0)), None
            if unused:
                entry, created = _ledger_insert(
                    balance=balance, kind=LedgerEntry.EXPIRY, amount=-unused, idempotency_key=f"expiry:{bundle.pk}",
                    reason=f"Unused credit of bundle {bundle.pk} (granted {bundle.created_at:%Y-%m-%d}) expired")
                if created:
                    written.append(entry)
            CreditBundle.objects.filter(pk=bundle.pk).update(remaining=0, expired_at=now, expiry_entry=entry)
    return written


def credit_bundles_sweep(*, now=None, batch_size: int = 200, deadline: float | None = None) -> int:
    """Every team with open bundles: apply its debits and expire what is due, one transaction per team,
    until done or `deadline` (time.monotonic()) passes. Returns the number of expiry entries written."""
    written, last = 0, 0
    while deadline is None or time.monotonic() < deadline:
        team_ids = list(CreditBundle.objects.filter(expired_at__isnull=True, team_id__gt=last).order_by("team_id")
                        .values_list("team_id", flat=True).distinct()[:batch_size])
        for team in Team.objects.filter(pk__in=team_ids).order_by("pk"):
            written += len(credit_bundles_expire(team=team, now=now))
        if len(team_ids) < batch_size:
            break
        last = team_ids[-1]
    return written


# --- budget alerts ------------------------------------------------------------------------------------------

ALERT_THRESHOLDS = (80, 100)   # percent; a team's TeamBillingPolicy.alert_thresholds replaces them
PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "none": "total"}


@dataclass(slots=True)
class BudgetScope:
    """One budget of a team as alerts see it, with what has been spent against it in its current period."""

    kind: str
    ident: str
    label: str
    limit: int
    tag: str
    period: str = ""                  # day / week / month / none; "" for the balance
    since: dt.datetime | None = None  # no-reset budgets count from the scope's creation
    match: tuple = ()                 # (usage row field, value or set); () = the whole team
    spent: int = 0


def _limit_scope(kind, obj, label, match, now) -> BudgetScope:
    period = obj.budget_period
    # A no-reset budget has one "period" per limit value: raising it arms its alerts again.
    tag = f"all-{obj.budget_limit}" if period == "none" else limits.period_tag(period, now)
    return BudgetScope(kind, str(obj.pk), f"{label} {PERIOD_WORDS.get(period, period)} budget", obj.budget_limit,
                       tag, period, obj.created_at, match)


def _budget_scopes(*, team_ids, now, spend: bool) -> dict[int, list[BudgetScope]]:
    """Every budget of these teams (key, key group, route, monthly cap, balance); with `spend`, each with
    its spend this period: one grouped usage query per team over (team, created_at)."""
    scopes: dict[int, list[BudgetScope]] = defaultdict(list)
    for key in ApiKey.objects.filter(team_id__in=team_ids, status=ApiKey.ACTIVE, budget_limit__gt=0):
        scopes[key.team_id].append(_limit_scope(BudgetAlert.KEY, key, f"key '{key.name}' ({key.mask})",
                                                ("api_key_id", key.pk), now))
    for group in KeyGroup.objects.filter(team_id__in=team_ids, budget_limit__gt=0):
        scopes[group.team_id].append(_limit_scope(BudgetAlert.GROUP, group, f"key group '{group.name}'",
                                                  ("group_id", group.pk), now))
    for rule in RoutingRule.objects.filter(team_id__in=team_ids, budget_limit__gt=0):
        # The gateway counts a route's spend under its name, whether asked for directly or chosen by auto.
        names = {f"route:{rule.name}", f"auto -> route:{rule.name}", f"auto → route:{rule.name}"}
        scopes[rule.team_id].append(_limit_scope(BudgetAlert.ROUTE, rule, f"route '{rule.name}'",
                                                 ("route", names), now))
    for team_id, cap in TeamBillingPolicy.objects.filter(team_id__in=team_ids, monthly_cap__gt=0).values_list(
            "team_id", "monthly_cap"):
        scopes[team_id].append(BudgetScope(BudgetAlert.TEAM, str(team_id), "team monthly cap", cap,
                                           limits.period_tag("month", now), "month"))
    # Low balance: measured against the balance right after the last top-up or redemption, so each new
    # credit starts a new "period" (tag c<entry id>): 80% = a fifth of it left, 100% = nothing left.
    credits = LedgerEntry.objects.filter(team_id=OuterRef("team_id"), kind__in=[
        LedgerEntry.TOPUP, LedgerEntry.REDEMPTION]).order_by("-id")
    balances = (TeamBalance.objects.filter(team_id__in=team_ids)
                .annotate(ref_id=Subquery(credits.values("id")[:1]), ref=Subquery(credits.values("balance_after")[:1]))
                .filter(ref__gt=0).values_list("team_id", "balance", "ref_id", "ref"))
    unbilled = dict(UsageRecord.objects.filter(team_id__in=team_ids, billed_at__isnull=True).order_by()
                    .values("team_id").annotate(s=Sum("cost")).values_list("team_id", "s")) if spend else {}
    for team_id, balance, ref_id, ref in balances:
        available = balance - unbilled.get(team_id, 0)   # what the gateway lets the team spend
        scopes[team_id].append(BudgetScope(BudgetAlert.BALANCE, str(team_id), "team balance", ref, f"c{ref_id}",
                                           spent=ref - available))
    if spend:
        for team_id, team_scopes in scopes.items():
            _scopes_spend(team_id=team_id, scopes=team_scopes, now=now)
    return scopes


def _scopes_spend(*, team_id: int, scopes: list[BudgetScope], now) -> None:
    usage = [s for s in scopes if s.period]
    if not usage:
        return
    starts = {p: limits.period_start(p, now) for p in ("day", "week", "month")}
    since = min(starts[s.period] if s.period in starts else s.since for s in usage)
    sums = {p: Coalesce(Sum("cost", filter=Q(created_at__gte=start)), 0) for p, start in starts.items()}
    rows = list(UsageRecord.objects.filter(team_id=team_id, created_at__gte=since).order_by()
                .values("api_key_id", "route", group_id=F("api_key__group_id"))
                .annotate(**sums, none=Coalesce(Sum("cost"), 0)))
    for scope in usage:
        field, wanted = scope.match or (None, None)
        scope.spent = sum(row[scope.period] for row in rows if field is None or (
            row[field] in wanted if isinstance(wanted, set) else row[field] == wanted))


def _alerts_fire(*, team_id: int, scopes: list[BudgetScope], thresholds=ALERT_THRESHOLDS) -> int:
    due = [(s, t) for s in scopes for t in thresholds if s.limit > 0 and s.spent * 100 >= s.limit * t]
    if not due:
        return 0
    fired = set(BudgetAlert.objects.filter(team_id=team_id, period_tag__in={s.tag for s, _ in due})
                .values_list("scope_kind", "scope_id", "period_tag", "threshold"))
    new = []
    with transaction.atomic():
        for scope, threshold in due:
            if (scope.kind, scope.ident, scope.tag, threshold) in fired:
                continue
            try:
                with transaction.atomic():
                    new.append(BudgetAlert.objects.create(
                        team_id=team_id, scope_kind=scope.kind, scope_id=scope.ident, period_tag=scope.tag,
                        threshold=threshold, label=scope.label, spent=scope.spent, limit=scope.limit))
            except IntegrityError:
                continue  # a concurrent run created it first; that run sends its mail
        if new:
            # After commit: no mail for an alert that was rolled back. robust: a mail server that is down
            # is logged, it does not fail the run (the alert stays in the console banner).
            transaction.on_commit(lambda: emails.budget_alerts_send(team_id=team_id, alerts=new), robust=True)
    return len(new)


def budget_alerts_check(*, now=None, batch_size: int = 200, deadline: float | None = None) -> int:
    """Fire the alerts of every budget that reached one of its team's thresholds this period (80% and 100%
    unless the team's billing policy says otherwise), each once per period (BudgetAlert's unique
    constraint), and mail each team's alert recipients once per run (billing.emails.alert_recipients).
    Teams are walked in pk order, `batch_size` at a time, until done or `deadline` passes. Returns alerts
    created."""
    now = now or timezone.now()
    created, last = 0, 0
    while deadline is None or time.monotonic() < deadline:
        team_ids = list(Team.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        thresholds = dict(TeamBillingPolicy.objects.filter(team_id__in=team_ids).values_list(
            "team_id", "alert_thresholds"))
        for team_id, scopes in sorted(_budget_scopes(team_ids=team_ids, now=now, spend=True).items()):
            created += _alerts_fire(team_id=team_id, scopes=scopes,
                                    thresholds=thresholds.get(team_id, ALERT_THRESHOLDS))
        if len(team_ids) < batch_size:
            break
        last = team_ids[-1]
    return created


def _policy_thresholds(values) -> list[int]:
    values = list(values)
    if any(type(v) is not int or not 1 <= v <= 100 for v in values) or len(set(values)) > 10:
        raise ValueError("alert thresholds are at most 10 whole percentages from 1 to 100")
    return sorted(set(values))


def _policy_recipients(values) -> list[str]:
    result, seen = [], set()
    for value in values:
        try:
            validate_email(value)
        except ValidationError:
            raise ValueError(f"{value!r} is not an email address") from None
        if value.lower() not in seen:
            seen.add(value.lower())
            result.append(value)
    if len(result) > 20:
        raise ValueError("at most 20 alert recipients")
    return result


def billing_policy_set(*, team, monthly_cap: int | None, alert_thresholds, alert_recipients) -> TeamBillingPolicy:
    """Set a team's monthly cap (micro-units; None: no cap), the percentages at which its budgets alert, and
    who is mailed (empty: the default recipients). The price multiplier is the operator's and is kept. The
    gateways reload the cap within a second (the snapshot version is bumped on commit)."""
    if monthly_cap is not None and (type(monthly_cap) is not int or monthly_cap <= 0):
        raise ValueError("a monthly cap is a positive integer of micro-units, or None")
    fields = {"monthly_cap": monthly_cap, "alert_thresholds": _policy_thresholds(alert_thresholds),
              "alert_recipients": _policy_recipients(alert_recipients)}
    with transaction.atomic():
        policy, _ = TeamBillingPolicy.objects.update_or_create(team=team, defaults=fields)
        transaction.on_commit(bump_version)
    return policy


# --- reads for the console and the API (selectors.py belongs to another change; re-export from there) ------

def active_alerts(*, team, now=None) -> list[BudgetAlert]:
    """The team's alerts that still hold — the budget still exists with the same limit and the period is the
    current one — one per budget (its highest threshold), newest first: the console banner. One query when
    the team has no recent alerts."""
    now = now or timezone.now()
    current_tags = {limits.period_tag(p, now) for p in ("day", "week", "month")}
    candidates = list(BudgetAlert.objects.filter(team=team).filter(
        Q(period_tag__in=current_tags) | Q(period_tag__startswith="all-") | Q(period_tag__startswith="c"))
        .order_by("-created_at", "-threshold")[:200])
    if not candidates:
        return []
    current = {(s.kind, s.ident, s.tag, s.limit)
               for s in _budget_scopes(team_ids=[team.pk], now=now, spend=False).get(team.pk, [])}
    best: dict[tuple, BudgetAlert] = {}
    for alert in candidates:
        key = (alert.scope_kind, alert.scope_id, alert.period_tag, alert.limit)
        if key in current and (key not in best or alert.threshold > best[key].threshold):
            best[key] = alert
    return sorted(best.values(), key=lambda a: (a.created_at, a.threshold), reverse=True)


def credit_bundles_open(*, team):
    """The team's bundles not yet expired, soonest expiry first (`remaining` as of the last drawdown)."""
    return CreditBundle.objects.filter(team=team, expired_at__isnull=True).order_by("expires_at", "pk")


# --- operator: redemption-code batches, teams, prices per customer -----------------------------------------

def redemption_batch_void(*, batch: str) -> int:
    """Disable the codes of a batch that are still unused; used codes keep their history. A redemption
    racing this either committed first (its code is used, so it is skipped) or finds the code disabled.
    Returns the number of codes voided (0 for an unknown or fully used batch)."""
    return RedemptionCode.objects.filter(batch=batch, status=RedemptionCode.UNUSED).update(
        status=RedemptionCode.DISABLED)


@transaction.atomic
def team_create(*, name: str, slug: str, owner: str) -> tuple[Team, str | None]:
    """A new team with its owner, named by username or email (accounts.services.member_invite: an unknown
    one becomes a new user with a one-time password, returned once; None for an existing user)."""
    from django.core.exceptions import ValidationError
    from django.utils.translation import gettext as _

    from accounts import roles
    from accounts.services import member_invite

    name, slug = name.strip(), slug.strip().lower()
    if not name or not slug:
        raise ValidationError(_("A team needs a name and a slug."))
    if Team.objects.filter(slug=slug).exists():
        raise ValidationError(_("The slug “%(slug)s” is taken.") % {"slug": slug})
    team = Team.objects.create(name=name, slug=slug)
    TeamBalance.objects.create(team=team)
    _membership, password = member_invite(team=team, identifier=owner, role=roles.OWNER)
    return team, password


def team_multiplier_set(*, team, multiplier_ppm: int) -> TeamBillingPolicy:
    """The team's price multiplier (parts per million of its price), for calls from now on."""
    if type(multiplier_ppm) is not int or multiplier_ppm < 0:
        raise ValueError("a multiplier is a non-negative integer of parts per million")
    with transaction.atomic():
        policy, _ = TeamBillingPolicy.objects.update_or_create(team=team,
                                                               defaults={"price_multiplier_ppm": multiplier_ppm})
        transaction.on_commit(bump_version)
    return policy


def group_multiplier_set(*, group: KeyGroup, multiplier_ppm: int | None) -> KeyGroup:
    """A key group's own price multiplier (None: none, the team's applies alone); its keys' cached
    contexts are republished, so gateways use it at once."""
    from keys.services import key_limits_set

    if multiplier_ppm is not None and (type(multiplier_ppm) is not int or multiplier_ppm < 0):
        raise ValueError("a multiplier is a non-negative integer of parts per million")
    return key_limits_set(target=group, price_multiplier_ppm=multiplier_ppm)


def price_override_set(*, team, model, input_per_m: int, output_per_m: int, cached_input_per_m: int | None = None,
                       request_fee: int = 0, effective_from=None, created_by=None,
                       cache_write_5m_per_m: int | None = None,
                       cache_write_1h_per_m: int | None = None) -> PriceOverride:
    """The team's own price for a model from a date on (now by default), in place of the catalog price.
    Usage already recorded keeps the cost it was recorded with; gateways pick the new price up within a
    second of the commit (the catalog version is bumped)."""
    amounts = (input_per_m, output_per_m, request_fee)
    cache = (cached_input_per_m, cache_write_5m_per_m, cache_write_1h_per_m)   # None: the provider's ratio
    if any(type(v) is not int or v < 0 for v in amounts + tuple(v for v in cache if v is not None)):
        raise ValueError("prices are non-negative integers of micro-units")
    effective_from = effective_from or timezone.now()
    if effective_from < timezone.now() - dt.timedelta(minutes=5):
        raise ValueError("an override cannot start in the past: past usage was costed already")
    with transaction.atomic():
        override, _ = PriceOverride.objects.update_or_create(
            team=team, model=model, effective_from=effective_from,
            defaults={"input_per_m": input_per_m, "output_per_m": output_per_m,
                      "cached_input_per_m": cached_input_per_m, "request_fee": request_fee,
                      "cache_write_5m_per_m": cache_write_5m_per_m,
                      "cache_write_1h_per_m": cache_write_1h_per_m, "created_by": created_by})
        transaction.on_commit(bump_version)
    return override


def price_override_delete(*, override: PriceOverride) -> None:
    """Remove an override: later calls pay the catalog price again (or an older override still in
    force). Recorded usage keeps its cost."""
    with transaction.atomic():
        override.delete()
        transaction.on_commit(bump_version)
