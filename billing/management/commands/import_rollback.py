from django.core.management.base import BaseCommand, CommandError

from billing.oneapi_import.services import SourceError, import_rollback


class Command(BaseCommand):
    help = ("Undo an import_oneapi batch: reversal ledger entries for its opening balances, its keys revoked, its "
            "channels, models and unused codes disabled, prices put back, users deactivated. Nothing is deleted.")

    def add_arguments(self, parser):
        parser.add_argument("batch", help="the batch code import_oneapi printed (imp_…)")

    def handle(self, *args, batch, **options):
        try:
            report = import_rollback(batch=batch)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        for line in report.mapped:
            self.stdout.write(f"  {line.kind:8} {line.source}: {line.target}")
        self.stdout.write(self.style.SUCCESS(
            f"Batch {batch} rolled back; balance total {report.totals_before['balance_micro']} → "
            f"{report.totals_after['balance_micro']} micro-units"))
