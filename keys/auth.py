"""API key → KeyContext, without a database query on the warm path.

Layers: a per-process map (entries live TOLLGATE_LOCAL_TTL_SECONDS, 0.5 s by default) → the shared cache
(Redis) → the database. Revoking a key rewrites its shared-cache entry, so every process refuses it within
the local TTL: well inside the 1 s the product promises.
"""
import ipaddress
import time
from dataclasses import asdict, dataclass

import orjson
from django.conf import settings

from gateway_site import shared_cache
from gateway_site.db import db_call
from keys.limit_values import NO_LIMITS, LimitValues
from keys.secrets import hash_secret

CACHE_TTL = 300
_local = shared_cache.LocalTTL(settings.TOLLGATE_LOCAL_TTL_SECONDS)


@dataclass(frozen=True, slots=True)
class KeyContext:
    key_id: int
    team_id: int
    team_slug: str
    group_id: int
    owner_id: int
    name: str
    mask: str
    status: str
    expires_at: float | None            # unix seconds
    team_models: tuple[str, ...]
    group_models: tuple[str, ...]
    key_models: tuple[str, ...]
    allowed_ips: tuple[str, ...] = ()
    group_name: str = ""
    key_limits: LimitValues = NO_LIMITS
    group_limits: LimitValues = NO_LIMITS
    group_multiplier_ppm: int | None = None
    # The group's keys may only call `route:NAME` or `auto` (no model named directly).
    group_routes_only: bool = False

    def ip_allowed(self, ip: str) -> bool:
        if not self.allowed_ips:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.allowed_ips)


class AuthError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def cache_key(secret_hash: str) -> str:
    return f"tg:key:{secret_hash}"


_UNKNOWN = b"-"


def context_for(api_key) -> KeyContext:
    return KeyContext(
        key_id=api_key.id, team_id=api_key.team_id, team_slug=api_key.team.slug, group_id=api_key.group_id,
        owner_id=api_key.owner_id, name=api_key.name, mask=api_key.mask, status=api_key.status,
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
        team_models=tuple(api_key.team.allowed_models), group_models=tuple(api_key.group.allowed_models),
        key_models=tuple(api_key.allowed_models), allowed_ips=tuple(api_key.allowed_ips),
        group_name=api_key.group.name, key_limits=api_key.limits_tuple(), group_limits=api_key.group.limits_tuple(),
        group_multiplier_ppm=api_key.group.price_multiplier_ppm, group_routes_only=api_key.group.routes_only,
    )


def encode(ctx: KeyContext | None) -> bytes:
    return orjson.dumps(asdict(ctx), default=list) if ctx else _UNKNOWN  # default: LimitValues as a JSON array


def _decode(raw: bytes) -> KeyContext | None:
    if raw == _UNKNOWN:
        return None
    data = orjson.loads(raw)
    known = KeyContext.__dataclass_fields__
    # An entry written by an older or newer release: missing fields take their defaults, unknown ones are dropped.
    data = {name: value for name, value in data.items() if name in known}
    for name in ("team_models", "group_models", "key_models", "allowed_ips"):
        if name in data:
            data[name] = tuple(data[name])  # JSON gives lists; the context is hashable and frozen
    for name in ("key_limits", "group_limits"):
        if name in data:
            data[name] = LimitValues(*data[name])
    return KeyContext(**data)


def publish(api_key) -> None:
    """Write a key's current state to the shared cache (called after every change to a key)."""
    shared_cache.set(cache_key(api_key.secret_hash), encode(context_for(api_key)), CACHE_TTL)


def _load_from_db(secret_hash: str) -> KeyContext | None:
    from keys.models import ApiKey

    api_key = ApiKey.objects.select_related("team", "group").filter(secret_hash=secret_hash).first()
    return context_for(api_key) if api_key else None


def secret_from_headers(headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return headers.get("x-api-key") or headers.get("x-goog-api-key")   # Anthropic's header, Gemini's


async def authenticate(secret: str | None) -> KeyContext:
    if not secret:
        raise AuthError("missing", "No API key provided. Send it as `Authorization: Bearer <key>` "
                                   "(or `x-api-key: <key>`); create one in the Tollgate console.")
    secret_hash = hash_secret(secret)
    ctx = _local.get(secret_hash)
    if ctx is None:
        raw = await shared_cache.aget(cache_key(secret_hash))
        if raw is None:
            ctx = await db_call(_load_from_db)(secret_hash)
            await shared_cache.aset(cache_key(secret_hash), encode(ctx), CACHE_TTL if ctx else 5)
        else:
            ctx = _decode(raw)
        ctx = ctx or False
        _local.put(secret_hash, ctx)
    if ctx is False:
        raise AuthError("unknown", "Incorrect API key provided. Check the key in the Tollgate console "
                                   "(keys start with sk-tg-).")
    if ctx.status != "active":
        raise AuthError("revoked", f"This API key ({ctx.mask}) has been revoked. Create a new key in the console.")
    if ctx.expires_at is not None and ctx.expires_at <= time.time():
        raise AuthError("expired", f"This API key ({ctx.mask}) has expired. Extend it or create a new key.")
    return ctx
