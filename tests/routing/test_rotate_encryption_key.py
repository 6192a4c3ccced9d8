"""`manage.py rotate_encryption_key`: every stored upstream key re-encrypted with the newest key, so the old
key can be dropped; one transaction, idempotent, and gateways are told to reload."""
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from gateway_site import crypto, shared_cache
from routing.catalog import VERSION_KEY
from routing.models import Channel
from tests import factories

pytestmark = pytest.mark.django_db

KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def rotate() -> str:
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    return out.getvalue()


@pytest.fixture
def channels(settings):
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_A]
    model = factories.CatalogModelFactory()
    team = factories.TeamFactory()
    platform = factories.channel(models=[model], base_url="http://127.0.0.1:9/v1", api_key="sk-platform-upstream-1")
    own = factories.channel(models=[model], base_url="http://127.0.0.1:9/v1", team=team, name="byok",
                            api_key="sk-team-upstream-2")
    return {platform.pk: "sk-platform-upstream-1", own.pk: "sk-team-upstream-2"}


def decrypted() -> dict[int, str]:
    return {c.pk: c.api_key() for c in Channel.objects.order_by("pk")}


def test_rotation_lets_the_old_key_go(settings, channels, django_capture_on_commit_callbacks):
    with pytest.raises(crypto.InvalidToken):   # before: key B alone cannot read what key A encrypted
        settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B]
        decrypted()

    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    before = {c.pk: c.api_key_encrypted for c in Channel.objects.all()}
    shared_cache.set(VERSION_KEY, b"before-rotation")
    with django_capture_on_commit_callbacks(execute=True):
        out = rotate()
    assert "Rotated 2 of 2 " in out
    after = {c.pk: c.api_key_encrypted for c in Channel.objects.all()}
    assert all(after[pk] != before[pk] for pk in before)
    assert shared_cache.get(VERSION_KEY) not in (None, b"before-rotation")   # gateways reload

    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B]   # the old key dropped from the setting
    assert decrypted() == channels
    assert {c.pk: c.api_key_mask for c in Channel.objects.all()} == {pk: f"…{k[-4:]}" for pk, k in channels.items()}


def test_a_second_run_changes_nothing(settings, channels, django_capture_on_commit_callbacks):
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    rotate()
    stored = {c.pk: c.api_key_encrypted for c in Channel.objects.all()}
    shared_cache.set(VERSION_KEY, b"after-first-run")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out = rotate()
    assert "Rotated 0 of 2 " in out
    assert callbacks == []   # nothing changed: no reload either
    assert shared_cache.get(VERSION_KEY) == b"after-first-run"
    assert {c.pk: c.api_key_encrypted for c in Channel.objects.all()} == stored
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B]
    assert decrypted() == channels


def test_an_undecryptable_key_stops_the_command_with_nothing_changed(settings, channels):
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    stranger = Channel.objects.order_by("pk").last()
    stranger.api_key_encrypted = Fernet(Fernet.generate_key()).encrypt(b"sk-unknown-key").decode()
    stranger.save(update_fields=["api_key_encrypted"])
    stored = {c.pk: c.api_key_encrypted for c in Channel.objects.all()}

    with pytest.raises(CommandError, match=f"channel {stranger.pk} "):
        rotate()
    assert {c.pk: c.api_key_encrypted for c in Channel.objects.all()} == stored   # the first one rolled back too


def test_rotate_returns_none_for_a_token_of_the_newest_key(settings):
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_A]
    old = crypto.encrypt("sk-secret")
    assert crypto.rotate(old) is None
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    new = crypto.rotate(old)
    assert new is not None and crypto.rotate(new) is None
    settings.TOLLGATE_ENCRYPTION_KEYS = [KEY_B]
    assert crypto.decrypt(new) == "sk-secret"
