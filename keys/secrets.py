import hashlib
import secrets

SECRET_PREFIX = "sk-tg-"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(30)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mask_secret(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}" if secret.startswith(SECRET_PREFIX) else f"…{secret[-4:]}"
