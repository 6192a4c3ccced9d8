from django.core.management.base import BaseCommand

from billing import usage_journal


class Command(BaseCommand):
    help = "Replay usage-journal files of gateway processes that are gone (idempotent)."

    def handle(self, *args, **options):
        count = usage_journal.replay_orphans()
        self.stdout.write(f"replayed {count} usage records")
