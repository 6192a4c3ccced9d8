import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Every factory user gets a password: PBKDF2 would dominate these tests' time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
