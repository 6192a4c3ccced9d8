import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Every role case makes users with passwords: PBKDF2 would cost ~0.3 s each on this suite's clock."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
