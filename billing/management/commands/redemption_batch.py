import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from billing.services import redemption_batch_create


class Command(BaseCommand):
    help = ("Make a batch of single-use redemption codes and print them, one a line. They are shown only "
            "now: the database keeps their hashes.")

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--amount", type=int, required=True, help="micro-units per code")
        parser.add_argument("--expires-at", type=dt.datetime.fromisoformat, default=None,
                            help="ISO date/time (UTC if no offset) after which the codes cannot be redeemed")
        parser.add_argument("--name", default="", help="a label for the batch")
        parser.add_argument("--credit-valid-days", type=int, default=None,
                            help="redeemed credit expires this many days after redemption")

    def handle(self, *args, count, amount, expires_at, name, credit_valid_days, **options):
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        try:
            codes = redemption_batch_create(created_by=None, count=count, amount=amount, expires_at=expires_at,
                                            name=name, credit_valid_days=credit_valid_days)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("\n".join(codes))
