import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Sum

from billing import selectors
from billing.models import AppendOnlyError, LedgerEntry, TeamBalance
from billing.services import balance_adjust, balance_credit, ledger_post
from tests.factories import TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def ledger_sum(team) -> int:
    return LedgerEntry.objects.filter(team=team).aggregate(s=Sum("amount"))["s"] or 0


@pytest.fixture
def entry():
    return balance_credit(team=TeamFactory(), amount=10_000_000, reason="welcome credit", created_by=UserFactory(),
                          idempotency_key="welcome")


# --- append-only ---------------------------------------------------------------------------------------------

def test_save_and_delete_of_an_existing_entry_raise_in_python(entry):
    entry.amount = 1
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    entry.refresh_from_db()
    assert entry.amount == 10_000_000


@pytest.mark.parametrize("write", [
    lambda: LedgerEntry.objects.update(amount=1),
    lambda: LedgerEntry.objects.filter(kind=LedgerEntry.TOPUP).update(reason="edited"),
    lambda: LedgerEntry.objects.all().delete(),
], ids=["update-amount", "update-reason", "delete"])
def test_queryset_update_and_delete_are_rejected_by_the_database(entry, write):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        write()
    entry.refresh_from_db()
    assert (entry.amount, entry.reason) == (10_000_000, "welcome credit")


@pytest.mark.parametrize("sql", [
    "UPDATE billing_ledgerentry SET amount = amount + 1 WHERE id = %s",
    "UPDATE billing_ledgerentry SET balance_after = 0",
    "DELETE FROM billing_ledgerentry WHERE id = %s",
])
def test_raw_sql_update_and_delete_are_rejected_by_the_database(entry, sql):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk] if "%s" in sql else [])
    assert LedgerEntry.objects.filter(pk=entry.pk, amount=10_000_000, balance_after=10_000_000).exists()


def test_a_team_or_user_with_ledger_history_cannot_be_deleted(entry):
    with pytest.raises(ProtectedError):
        entry.team.delete()
    with pytest.raises(ProtectedError):
        entry.created_by.delete()


# --- posting -------------------------------------------------------------------------------------------------

def test_same_key_twice_writes_one_entry_and_moves_the_balance_once():
    team = TeamFactory()
    first = ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=5_000_000, idempotency_key="stripe:pi_1")
    again = ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=5_000_000, idempotency_key="stripe:pi_1")
    assert again.pk == first.pk
    assert LedgerEntry.objects.filter(team=team).count() == 1
    assert selectors.team_balance(team=team) == 5_000_000 == first.balance_after
    # The same key in another team is another entry.
    other = TeamFactory()
    ledger_post(team=other, kind=LedgerEntry.TOPUP, amount=1, idempotency_key="stripe:pi_1")
    assert selectors.team_balance(team=other) == 1


def test_a_key_reused_for_a_different_amount_is_refused_inside_a_callers_transaction():
    team = TeamFactory()
    ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=5_000_000, idempotency_key="k")
    with transaction.atomic():  # the duplicate insert rolls back to its savepoint, not the whole transaction
        with pytest.raises(ValueError, match="different entry"):
            ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=6_000_000, idempotency_key="k")
        ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=1, idempotency_key="k2")
    assert selectors.team_balance(team=team) == 5_000_001


@pytest.mark.parametrize("kwargs", [
    {"amount": 1.5}, {"amount": 0}, {"amount": True}, {"kind": "gift"}, {"idempotency_key": ""},
])
def test_invalid_postings_are_refused(kwargs):
    team = TeamFactory()
    with pytest.raises(ValueError):
        ledger_post(team=team, **{"kind": LedgerEntry.TOPUP, "amount": 1, "idempotency_key": "k", **kwargs})
    assert not LedgerEntry.objects.exists()


def test_credit_and_adjustment_need_a_reason_and_a_credit_is_positive():
    team, user = TeamFactory(), UserFactory()
    with pytest.raises(ValueError):
        balance_adjust(team=team, amount=-5, reason="  ", created_by=user, idempotency_key="a")
    with pytest.raises(ValueError):
        balance_credit(team=team, amount=-5, reason="oops", created_by=user, idempotency_key="c")
    entry = balance_adjust(team=team, amount=-5, reason="double-charged request", created_by=user,
                           idempotency_key="a")
    assert (entry.kind, entry.amount, entry.reason, entry.created_by) == (
        LedgerEntry.ADJUSTMENT, -5, "double-charged request", user)


def test_balance_equals_ledger_sum_and_running_balances_after_a_mix_of_operations():
    team, other, user = TeamFactory(), TeamFactory(), UserFactory()
    balance_credit(team=team, amount=20_000_000, reason="prepaid", created_by=user, idempotency_key="t1")
    ledger_post(team=team, kind=LedgerEntry.USAGE, amount=-1_234_567, idempotency_key="u1")
    ledger_post(team=other, kind=LedgerEntry.REDEMPTION, amount=3_000_000, idempotency_key="code:ABC")
    balance_adjust(team=team, amount=-765_433, reason="manual fix", created_by=user, idempotency_key="a1")
    ledger_post(team=team, kind=LedgerEntry.REFUND, amount=500_000, idempotency_key="r1", reason="outage")
    ledger_post(team=team, kind=LedgerEntry.USAGE, amount=-25_000_000, idempotency_key="u2")  # may overdraw
    ledger_post(team=team, kind=LedgerEntry.EXPIRY, amount=-1, idempotency_key="e1")
    balance_credit(team=team, amount=20_000_000, reason="prepaid", created_by=user, idempotency_key="t1")

    assert selectors.team_balance(team=team) == ledger_sum(team) == -6_500_001
    assert selectors.team_balance(team=other) == ledger_sum(other) == 3_000_000
    entries = list(selectors.ledger_entries(team=team))
    assert [e.idempotency_key for e in entries] == ["e1", "u2", "r1", "a1", "u1", "t1"]  # newest first
    running = 0
    for e in reversed(entries):
        running += e.amount
        assert e.balance_after == running
    assert selectors.team_balance(team=TeamFactory()) == 0


# --- concurrency ---------------------------------------------------------------------------------------------

def run_threads(count: int, work) -> list:
    """Run work(i) in `count` threads released together; each thread uses (and closes) its own connection."""
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # surfaced in the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_threads_racing_on_one_key_write_one_entry():
    team = TeamFactory()
    results = run_threads(8, lambda i: ledger_post(team=team, kind=LedgerEntry.TOPUP, amount=7_000_000,
                                                   idempotency_key="retry-storm").pk)
    assert len(set(results)) == 1
    assert LedgerEntry.objects.filter(team=team).count() == 1
    assert TeamBalance.objects.get(team=team).balance == 7_000_000


@pytest.mark.django_db(transaction=True)
def test_concurrent_postings_with_distinct_keys_all_land_in_the_balance():
    team = TeamFactory()
    run_threads(8, lambda i: [ledger_post(team=team, kind=LedgerEntry.USAGE, amount=-(i * 100 + n + 1),
                                          idempotency_key=f"u{i}-{n}") for n in range(20)])
    assert LedgerEntry.objects.filter(team=team).count() == 160
    assert selectors.team_balance(team=team) == ledger_sum(team) == -sum(
        i * 100 + n + 1 for i in range(8) for n in range(20))
    running = 0
    for e in LedgerEntry.objects.filter(team=team).order_by("id"):
        running += e.amount
        assert e.balance_after == running
