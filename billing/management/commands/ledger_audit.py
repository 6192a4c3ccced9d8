from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q, Sum, Window
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Team
from billing import limits, usage_journal
from billing.models import LedgerEntry, TeamBalance, UsageRecord
from gateway_site import periodic


class Command(BaseCommand):
    help = ("Check the ledger: balances equal ledger sums, running balances, usage billed exactly once, no "
            "usage left unbilled too long, no usage record quarantined by the journal. Exits non-zero with a "
            "report on any mismatch.")

    def add_arguments(self, parser):
        parser.add_argument("--max-unbilled-age", type=float, default=None, metavar="SECONDS",
                            help="usage older than this and still unbilled is a problem (default: the reconcile "
                                 "window, two reconcile intervals plus a journal replay interval; "
                                 "TOLLGATE_UNBILLED_WINDOW_SECONDS overrides)")

    def handle(self, *args, max_unbilled_age: float | None, **options):
        if max_unbilled_age is None:
            max_unbilled_age = periodic.unbilled_window()
        outermost = not connection.in_atomic_block   # inside a caller's transaction (tests) it is too late
        with transaction.atomic():
            if outermost and connection.vendor == "postgresql":
                # One snapshot for every query: entries and balances move together in their transactions,
                # so a post landing between two of these queries must not look like a mismatch.
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            problems = [*self.balances(), *self.running_balances(), *self.usage_billing(),
                        *self.unbilled(timedelta(seconds=max_unbilled_age))]
        stale = limits.stale_hold_count()
        if stale:
            self.stdout.write(f"MISMATCH holds: {stale} hold(s) older than the sweep window "
                              f"({settings.TOLLGATE_HOLD_SWEEP_SECONDS} s); run billing.tasks.sweep_stale_holds")
        rejected, rejected_files = usage_journal.quarantined()
        if rejected:
            self.stdout.write(f"MISMATCH journal: {rejected} quarantined usage record(s) in {rejected_files} "
                              f"rejected-*.jsonl file(s) under {settings.TOLLGATE_JOURNAL_DIR}: the database "
                              f"refused them (see the log for their request ids); fix and replay them")
        if problems or stale or rejected:
            slugs = dict(Team.objects.filter(pk__in={t for t, _ in problems}).values_list("pk", "slug"))
            for team_id, text in problems:
                self.stdout.write(f"MISMATCH team {slugs.get(team_id, '?')} (id {team_id}): {text}")
            raise CommandError(f"ledger audit found {len(problems) + bool(stale) + bool(rejected)} problem(s)")
        self.stdout.write("ledger OK")

    def balances(self):
        sums = dict(LedgerEntry.objects.values("team_id").annotate(total=Sum("amount"))
                    .values_list("team_id", "total"))
        cached = dict(TeamBalance.objects.values_list("team_id", "balance"))
        for team_id in sorted(sums.keys() | cached.keys()):
            if team_id not in cached:
                yield team_id, f"has ledger entries (sum {sums[team_id]}) but no balance row"
            elif cached[team_id] != sums.get(team_id, 0):
                yield team_id, f"balance {cached[team_id]} != ledger sum {sums.get(team_id, 0)}"

    def running_balances(self):
        running = Window(Sum("amount"), partition_by=[F("team_id")], order_by=F("id").asc())
        bad = (LedgerEntry.objects.annotate(running=running).exclude(balance_after=F("running"))
               .values_list("team_id", "id", "balance_after", "running").order_by("team_id", "id"))
        for team_id, entry_id, after, expected in bad:
            yield team_id, f"entry {entry_id} balance_after {after} != running sum {expected}"

    def usage_billing(self):
        unlinked = (UsageRecord.objects.filter(billed_at__isnull=False, ledger_entry__isnull=True).exclude(cost=0)
                    .values("team_id").annotate(n=Count("id"), first=Min("id")).order_by("team_id"))
        for row in unlinked:
            yield row["team_id"], (f"{row['n']} usage record(s) marked billed without a ledger entry "
                                   f"(first {row['first']})")
        crossed = (UsageRecord.objects.filter(ledger_entry__isnull=False)
                   .filter(Q(billed_at__isnull=True) | ~Q(ledger_entry__team_id=F("team_id")) |
                           ~Q(ledger_entry__kind=LedgerEntry.USAGE))
                   .values("team_id").annotate(n=Count("id"), first=Min("id")).order_by("team_id"))
        for row in crossed:
            yield row["team_id"], (f"{row['n']} usage record(s) linked to an entry that is not their team's usage "
                                   f"or not marked billed (first {row['first']})")
        entries = (LedgerEntry.objects.filter(kind=LedgerEntry.USAGE)
                   .annotate(billed=Coalesce(Sum("usage_records__cost"), 0))
                   .exclude(amount=-F("billed")).values_list("team_id", "id", "amount", "billed").order_by("id"))
        for team_id, entry_id, amount, billed in entries:
            yield team_id, f"usage entry {entry_id} amount {amount} != -(sum of its records' costs {billed})"

    def unbilled(self, max_age: timedelta):
        stale = (UsageRecord.objects.filter(billed_at__isnull=True, created_at__lt=timezone.now() - max_age)
                 .values("team_id").annotate(n=Count("id"), oldest=Min("created_at")).order_by("team_id"))
        for row in stale:
            yield row["team_id"], (f"{row['n']} usage record(s) unbilled for over {max_age.total_seconds():.0f}s "
                                   f"(oldest {row['oldest']:%Y-%m-%d %H:%M:%S})")
