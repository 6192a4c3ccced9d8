"""Changes to the catalog, channels or prices bump one version number in the shared cache; every gateway
process reloads its in-memory snapshot when it sees a new version (checked at most every local TTL)."""
import uuid

from gateway_site import shared_cache

VERSION_KEY = "tg:catalog:version"


def bump_version() -> None:
    shared_cache.set(VERSION_KEY, uuid.uuid4().hex.encode())
