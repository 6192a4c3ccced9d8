import logging
import time
from collections import defaultdict

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.models import LedgerEntry, Price, TeamBalance, UsageRecord
from routing.catalog import bump_version

log = logging.getLogger(__name__)
KINDS = frozenset(kind for kind, _ in LedgerEntry.KINDS)


@transaction.atomic
def price_set(*, model, input_per_m: int, output_per_m: int, cached_input_per_m: int, request_fee: int = 0,
              effective_from=None) -> Price:
    """Add a catalog price from a date on (past usage keeps the price it was charged at)."""
    price, _ = Price.objects.update_or_create(
        model=model, effective_from=effective_from or timezone.now(),
        defaults={"input_per_m": input_per_m, "output_per_m": output_per_m,
                  "cached_input_per_m": cached_input_per_m, "request_fee": request_fee})
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
