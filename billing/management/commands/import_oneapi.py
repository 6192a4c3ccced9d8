from django.core.management.base import BaseCommand, CommandError

from billing.oneapi_import.services import SourceError, import_preview, import_run


class Command(BaseCommand):
    help = ("Import a One API or New API database (SQLite, PostgreSQL, MySQL/MariaDB): channels, users as teams, "
            "tokens as API keys with their secrets, groups, prices, balances, unused redemption codes. One "
            "transaction, recorded as an import batch (undo it with import_rollback); a re-run imports nothing twice.")

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, metavar="URL",
                            help="sqlite:///path/one-api.db, postgres://user:pw@host/db or mysql://user:pw@host/db")
        parser.add_argument("--into-team", metavar="SLUG", help="put every user into this existing team")
        parser.add_argument("--usd-rate", default="1", metavar="R",
                            help="deployment currency units per US dollar (default 1: a USD deployment)")
        parser.add_argument("--dry-run", action="store_true", help="print the full report and write nothing")

    def handle(self, *args, source, into_team, usd_rate, dry_run, **options):
        try:
            if dry_run:
                report = import_preview(source=source, into_team=into_team, usd_rate=usd_rate)
            else:
                _batch, report = import_run(source=source, into_team=into_team, usd_rate=usd_rate)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("\n".join(report.lines()))
        if not dry_run:
            self.stdout.write(self.style.SUCCESS(f"Batch {report.batch}: undo with "
                                                 f"`manage.py import_rollback {report.batch}`"))
