"""Secrets at rest (upstream API keys): Fernet, with MultiFernet so keys can be rotated.

TOLLGATE_ENCRYPTION_KEY is a comma-separated list, newest first: the first key encrypts, every key decrypts.
Rotating is adding a new key in front, running `manage.py rotate_encryption_key` (which re-encrypts what is
stored with the newest key, through `rotate`), then dropping the old key.
"""
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "rotate"]


@lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, MultiFernet]:
    fernets = [Fernet(k.encode()) for k in keys]
    return fernets[0], MultiFernet(fernets)


def _fernet() -> MultiFernet:
    return _fernets(tuple(settings.TOLLGATE_ENCRYPTION_KEYS))[1]


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str | None:
    """`token` re-encrypted with the newest key, or None when the newest key already encrypted it (so running
    a rotation twice changes nothing). Raises InvalidToken when no configured key decrypts it."""
    newest, every = _fernets(tuple(settings.TOLLGATE_ENCRYPTION_KEYS))
    try:
        newest.decrypt(token.encode())
        return None
    except InvalidToken:
        return every.rotate(token.encode()).decode()
