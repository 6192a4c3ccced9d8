import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing.models import LedgerEntry, TeamBalance, UsageRecord
from billing.services import balance_credit, ledger_post, usage_reconcile
from tests.billing.factories import UsageRecordFactory
from tests.factories import TeamFactory
from tests.servers import ROOT, database_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    """Two teams with credits and reconciled usage: clean books."""
    teams = [TeamFactory(slug="acme"), TeamFactory(slug="globex")]
    for team in teams:
        balance_credit(team=team, amount=5_000_000, reason="prepaid", created_by=None, idempotency_key="t")
        for cost in (420, 0, 99):
            UsageRecordFactory(team=team, cost=cost)
    usage_reconcile()
    return teams


def audit(*args) -> str:
    """Run ledger_audit; returns its report, raises CommandError (exit status 1 on the command line)."""
    out = StringIO()
    try:
        call_command("ledger_audit", *args, stdout=out)
    except CommandError as exc:
        exc.report = out.getvalue()
        raise
    return out.getvalue()


def test_clean_books_pass(books):
    assert audit().strip() == "ledger OK"


def test_a_balance_changed_outside_the_ledger_is_reported(books):
    TeamBalance.objects.filter(team=books[1]).update(balance=7)
    with pytest.raises(CommandError, match="1 problem") as exc:
        audit()
    assert "team globex" in exc.value.report and "balance 7 != ledger sum 4999481" in exc.value.report
    assert "acme" not in exc.value.report


def test_a_team_with_entries_but_no_balance_row_is_reported(books):
    TeamBalance.objects.filter(team=books[0]).delete()
    with pytest.raises(CommandError) as exc:
        audit()
    assert "team acme" in exc.value.report and "no balance row" in exc.value.report


def test_usage_marked_billed_without_an_entry_is_reported(books):
    UsageRecordFactory(team=books[0], cost=15, billed_at=timezone.now())
    UsageRecordFactory(team=books[1], cost=0, billed_at=timezone.now())       # free usage needs no entry
    with pytest.raises(CommandError, match="1 problem") as exc:
        audit()
    assert "team acme" in exc.value.report and "without a ledger entry" in exc.value.report


def test_a_usage_entry_that_does_not_match_its_records_is_reported(books):
    record = UsageRecordFactory(team=books[1], cost=3)
    entry = LedgerEntry.objects.get(team=books[1], kind=LedgerEntry.USAGE)
    UsageRecord.objects.filter(pk=record.pk).update(billed_at=timezone.now(), ledger_entry=entry)  # charged 0
    with pytest.raises(CommandError) as exc:
        audit()
    assert f"usage entry {entry.pk} amount -519 != -(sum of its records' costs 522)" in exc.value.report


def test_a_usage_entry_without_records_and_a_record_linked_across_teams_are_reported(books):
    ledger_post(team=books[0], kind=LedgerEntry.USAGE, amount=-10, idempotency_key="by-hand")
    foreign = LedgerEntry.objects.get(team=books[0], kind=LedgerEntry.USAGE, idempotency_key__startswith="usage:")
    UsageRecord.objects.filter(team=books[1], cost=99).update(ledger_entry=foreign)
    report = pytest.raises(CommandError, audit).value.report
    assert "sum of its records' costs 0" in report
    assert "team globex" in report and "not their team's usage" in report


def test_usage_left_unbilled_past_the_window_is_reported(books):
    UsageRecordFactory(team=books[1], cost=5, created_at=timezone.now() - timedelta(minutes=30))
    UsageRecordFactory(team=books[0], cost=5)                                  # recent: still in the window
    with pytest.raises(CommandError, match="1 problem") as exc:
        audit()
    assert "team globex" in exc.value.report and "unbilled for over 150s" in exc.value.report
    assert audit("--max-unbilled-age", "3600").strip() == "ledger OK"


@pytest.mark.django_db(transaction=True)
def test_the_command_line_exit_status(books):
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}

    def run():
        return subprocess.run([sys.executable, "manage.py", "ledger_audit"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    clean = run()
    assert (clean.returncode, clean.stdout.strip()) == (0, "ledger OK"), clean.stderr
    TeamBalance.objects.filter(team=books[0]).update(balance=0)
    broken = run()
    assert broken.returncode == 1
    assert "team acme" in broken.stdout and "problem" in broken.stderr
