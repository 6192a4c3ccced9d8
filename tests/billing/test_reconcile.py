import random

import pytest
from django.core.management import call_command
from django.db.models import Sum

from billing import selectors
from billing.models import LedgerEntry, UsageRecord
from billing.services import balance_credit, usage_reconcile
from billing.tasks import reconcile_usage
from tests.billing.factories import UsageRecordFactory, usage_bulk
from tests.billing.test_ledger import run_threads
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_one_usage_entry_per_team_reduces_the_balance_by_exactly_the_costs():
    team_a, team_b = TeamFactory(), TeamFactory()
    balance_credit(team=team_a, amount=1_000_000, reason="prepaid", created_by=None, idempotency_key="t")
    a = [UsageRecordFactory(team=team_a, cost=c) for c in (420, 1, 999_999)]
    b = [UsageRecordFactory(team=team_b, cost=c) for c in (5_000, 7)]
    free = UsageRecordFactory(team=team_b, cost=0, status_code=502)

    assert usage_reconcile() == 2
    entry_a, entry_b = (LedgerEntry.objects.get(team=t, kind=LedgerEntry.USAGE) for t in (team_a, team_b))
    assert (entry_a.amount, entry_b.amount) == (-1_000_420, -5_007)
    assert entry_a.idempotency_key == f"usage:{a[0].pk}-{a[-1].pk}:3"
    assert selectors.team_balance(team=team_a) == 1_000_000 - 1_000_420 == entry_a.balance_after
    assert selectors.team_balance(team=team_b) == -5_007
    for record, entry in [*((r, entry_a) for r in a), *((r, entry_b) for r in b), (free, None)]:
        record.refresh_from_db()
        assert record.billed_at is not None and record.ledger_entry == entry
    assert list(entry_b.usage_records.order_by("pk")) == b

    assert usage_reconcile() == 0                      # the second run charges nothing
    assert LedgerEntry.objects.filter(kind=LedgerEntry.USAGE).count() == 2
    assert selectors.team_balance(team=team_a) == -420


def test_batches_each_write_their_own_entry_and_new_usage_is_picked_up_later():
    team = TeamFactory()
    usage_bulk(team=team, costs=range(1, 26))           # 25 records, 325 micro-units
    assert usage_reconcile(batch_size=10) == 3
    assert sorted(LedgerEntry.objects.values_list("amount", flat=True)) == [-155, -115, -55]
    usage_bulk(team=team, costs=[1_000])
    assert usage_reconcile(batch_size=10) == 1
    assert selectors.team_balance(team=team) == -1_325
    assert not UsageRecord.objects.filter(billed_at__isnull=True).exists()


def test_the_celery_task_reconciles_everything_and_returns_the_entry_count():
    usage_bulk(team=TeamFactory(), costs=[3] * 30)
    usage_bulk(team=TeamFactory(), costs=[0] * 5)
    assert reconcile_usage.apply(kwargs={"batch_size": 7}).get() == 5
    assert reconcile_usage.apply().get() == 0
    assert not UsageRecord.objects.filter(billed_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_bill_every_record_exactly_once(capsys, caplog):
    teams = [TeamFactory() for _ in range(3)]
    rng = random.Random(4)
    for _ in range(4):                                  # interleave the teams' records in pk order
        for team in teams:
            usage_bulk(team=team, costs=[rng.choice([0, 1, 37, 420, 1_999_999]) for _ in range(170)])
    assert UsageRecord.objects.count() == 2_040

    written = run_threads(4, lambda i: usage_reconcile(batch_size=100))

    assert sum(written) == LedgerEntry.objects.count() > 0
    assert sum(1 for n in written if n) > 1, written          # the runs shared the work...
    assert "already posted" not in caplog.text                 # ...in disjoint batches (skip locked)
    assert not UsageRecord.objects.filter(billed_at__isnull=True).exists()
    for team in teams:
        cost = UsageRecord.objects.filter(team=team).aggregate(s=Sum("cost"))["s"]
        assert selectors.team_balance(team=team) == -cost
        assert LedgerEntry.objects.filter(team=team).aggregate(s=Sum("amount"))["s"] == -cost
    for entry in LedgerEntry.objects.all():             # each entry charges exactly its own records
        assert entry.amount == -entry.usage_records.aggregate(s=Sum("cost"))["s"]
    assert not UsageRecord.objects.exclude(cost=0).filter(ledger_entry__isnull=True).exists()

    assert run_threads(2, lambda i: usage_reconcile(batch_size=100)) == [0, 0]
    call_command("ledger_audit")
    assert "ledger OK" in capsys.readouterr().out
