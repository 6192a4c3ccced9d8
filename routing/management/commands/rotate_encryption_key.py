"""`manage.py rotate_encryption_key`: re-encrypt every stored upstream key with the newest encryption key.

Put the new key first in TOLLGATE_ENCRYPTION_KEY (`new,old`), restart, run this, then drop the old key. One
transaction: a key no configured key decrypts stops the command with nothing changed. Idempotent: what the
newest key already encrypts is left as it is, so a second run rotates nothing.
"""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from gateway_site import crypto
from routing import catalog
from routing.models import Channel


class Command(BaseCommand):
    help = ("Re-encrypt every stored upstream API key with the newest key of TOLLGATE_ENCRYPTION_KEY (the "
            "first), so that the older keys can then be dropped from the setting.")

    def handle(self, *args, **options):
        with transaction.atomic():
            channels = list(Channel.objects.select_for_update().only("pk", "name", "api_key_encrypted")
                            .order_by("pk"))
            rotated = []
            for channel in channels:
                try:
                    token = crypto.rotate(channel.api_key_encrypted)
                except crypto.InvalidToken:
                    raise CommandError(
                        f"channel {channel.pk} ({channel.name}): no key of TOLLGATE_ENCRYPTION_KEY decrypts its "
                        "upstream key; nothing was rotated. Add the key it was encrypted with (after the "
                        "newest) and run again.") from None
                if token is not None:
                    channel.api_key_encrypted = token
                    rotated.append(channel)
            Channel.objects.bulk_update(rotated, ["api_key_encrypted"], batch_size=500)
            if rotated:  # gateways reload their channels (and the keys they decrypt) within a second
                transaction.on_commit(catalog.bump_version)
        self.stdout.write(f"Rotated {len(rotated)} of {len(channels)} stored upstream keys to the newest "
                          "encryption key.")
