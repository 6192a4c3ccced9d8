"""API key → KeyContext, without a database query on the warm path.

Layers: a per-process map (entries live TOLLGATE_LOCAL_TTL_SECONDS, 0.5 s by default) → the shared cache
(Redis) → the database. Revoking a key rewrites its shared-cache entry, so every process refuses it within
the local TTL: well inside the 1 s the product promises.

Failing soft (docs/reliability.md): a shared entry in use is re-read from the database in the background
once it is REFRESH_AFTER old, and kept (its expiry pushed back) when the database cannot be reached, so known
keys keep working through a PostgreSQL outage and a missed change heals within a minute. Unknown keys are
remembered (shared: NEGATIVE_TTL, per process: a bounded LOCAL_NEGATIVE_TTL map), and concurrent look-ups of
one key share one query, so bad keys cost no database round trip each. While Redis is down its entries live
in-process for OUTAGE_TTL only (a revocation made meanwhile cannot reach this process through it).
"""
import asyncio
import ipaddress
import logging
import time
from dataclasses import asdict, dataclass

import orjson
from django.conf import settings

from gateway_site import shared_cache
from gateway_site.db import db_call
from keys.limit_values import NO_LIMITS, LimitValues
from keys.secrets import hash_secret

log = logging.getLogger(__name__)
CACHE_TTL = 300
REFRESH_AFTER = 60
NEGATIVE_TTL = 60
LOCAL_NEGATIVE_TTL = 5
OUTAGE_TTL = 10
_local = shared_cache.LocalTTL(settings.TOLLGATE_LOCAL_TTL_SECONDS)
_unknown = shared_cache.LocalTTL(LOCAL_NEGATIVE_TTL, max_items=50_000)
_loading: dict[str, asyncio.Future] = {}    # secret hash → the database look-up in progress
_refreshing: set[str] = set()
_refresh_failed = shared_cache.LocalTTL(10, max_items=50_000)   # refreshes that failed: retried 10 s later


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
    # A team admin marked the key as a debug key (it may ask for the upstream request body to be echoed).
    is_debug: bool = False

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
        is_debug=api_key.is_debug,
    )


def encode(ctx: KeyContext | None) -> bytes:
    """The shared entry: the context and when it was read from the database (`_at`, unix seconds)."""
    if not ctx:
        return _UNKNOWN
    return orjson.dumps({**asdict(ctx), "_at": int(time.time())}, default=list)  # LimitValues as a JSON array


def _age(raw: bytes) -> float:
    """Seconds since the entry was read from the database (an entry without `_at` counts as old)."""
    try:
        return time.time() - float(orjson.loads(raw).get("_at") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return float("inf")


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


class KeyStoreUnavailable(AuthError):
    """Neither the shared cache nor the database could say whether the key exists (the relay answers 503)."""

    def __init__(self):
        super().__init__("unavailable", "The gateway cannot check API keys right now (its database is "
                                        "unreachable). Retry in a few seconds.")


def _entry_ttl(ctx: KeyContext | None) -> int:
    if shared_cache.outage.down_since is not None:
        return OUTAGE_TTL
    return CACHE_TTL if ctx else NEGATIVE_TTL


async def _load(secret_hash: str) -> KeyContext | None:
    """One database look-up per key at a time in this process (a burst of one key waits for the same one)."""
    pending = _loading.get(secret_hash)
    if pending is not None:
        return await asyncio.shield(pending)
    future = _loading[secret_hash] = asyncio.get_running_loop().create_future()
    try:
        ctx = await db_call(_load_from_db)(secret_hash)
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when no one else waited
        raise
    else:
        future.set_result(ctx)
    finally:
        _loading.pop(secret_hash, None)
    await shared_cache.aset(cache_key(secret_hash), encode(ctx), _entry_ttl(ctx))
    return ctx


async def _refresh(secret_hash: str) -> None:
    """Re-read an entry in use from the database; if it cannot be reached, keep the entry as it is."""
    try:
        try:
            ctx = await db_call(_load_from_db)(secret_hash)
        except Exception as exc:
            log.warning("key cache: database unreachable (%s), keeping the cached entry", type(exc).__name__)
            _refresh_failed.put(secret_hash, True)
            await shared_cache.aexpire(cache_key(secret_hash), CACHE_TTL)
            return
        await shared_cache.aset(cache_key(secret_hash), encode(ctx), _entry_ttl(ctx))
        _local.put(secret_hash, ctx or False)
    finally:
        _refreshing.discard(secret_hash)


def _refresh_soon(secret_hash: str, raw: bytes) -> None:
    if secret_hash in _refreshing or _refresh_failed.get(secret_hash) or _age(raw) < REFRESH_AFTER:
        return
    _refreshing.add(secret_hash)
    asyncio.get_running_loop().create_task(_refresh(secret_hash))


async def _lookup(secret_hash: str) -> KeyContext | None:
    if _unknown.get(secret_hash):
        return None
    raw = await shared_cache.aget(cache_key(secret_hash))
    if raw is None:
        try:
            ctx = await _load(secret_hash)
        except Exception as exc:
            log.warning("key look-up failed: %s: %s", type(exc).__name__, exc)
            raise KeyStoreUnavailable() from None
    else:
        ctx = _decode(raw)
        if ctx is not None:
            _refresh_soon(secret_hash, raw)
    if ctx is None:
        _unknown.put(secret_hash, True)
    return ctx


def oneapi_form(secret: str) -> str | None:
    """The key a One API / New API token is imported as (`sk-` + its 48 characters), for the other forms those
    gateways accept: the bare key, and a channel pin after it (`sk-KEY-3`, `KEY-3`: Tollgate routes by itself, so
    the pin is ignored). None when `secret` is not one of them."""
    key, _, pin = secret.removeprefix("sk-").partition("-")
    if len(key) != 48 or not key.isalnum() or not key.isascii() or (pin and not pin.isdigit()):
        return None
    imported = "sk-" + key
    return imported if imported != secret else None


# Look-ups on their way (secret hash → the task): the requests of one key that arrive together once its
# in-process entry expired wait for one look-up, not one Redis GET each (1,000 at once took every pooled
# connection and made Redis look down; `make bench`'s 1,000 streams).
_inflight: dict[str, asyncio.Future] = {}


def _shared_lookup(secret_hash: str) -> asyncio.Future:
    pending = _inflight.get(secret_hash)
    if pending is None or pending.get_loop() is not asyncio.get_running_loop():
        pending = _inflight[secret_hash] = asyncio.ensure_future(_lookup(secret_hash))
        pending.add_done_callback(lambda done: _inflight.pop(secret_hash, None) if _inflight.get(secret_hash)
                                  is done else None)
        # every waiter may have gone (cancelled): the outcome is still looked at, so none is left unretrieved
        pending.add_done_callback(lambda done: done.cancelled() or done.exception())
    return pending


async def _context(secret: str) -> KeyContext | None:
    """The key's context, or None for a key nobody has (remembered in-process as False for a while)."""
    secret_hash = hash_secret(secret)
    ctx = _local.get(secret_hash)
    if ctx is None:
        ctx = await asyncio.shield(_shared_lookup(secret_hash)) or False
        _local.put(secret_hash, ctx)
    return ctx or None


async def authenticate(secret: str | None) -> KeyContext:
    if not secret:
        raise AuthError("missing", "No API key provided. Send it as `Authorization: Bearer <key>` "
                                   "(or `x-api-key: <key>`); create one in the Tollgate console.")
    ctx = await _context(secret)
    if ctx is None and (imported := oneapi_form(secret)) is not None:
        ctx = await _context(imported)   # a key moved in from One API, sent as its clients sent it there
    if ctx is None:
        raise AuthError("unknown", "Incorrect API key provided. Check the key in the Tollgate console "
                                   "(keys start with sk-tg-).")
    if ctx.status != "active":
        raise AuthError("revoked", f"This API key ({ctx.mask}) has been revoked. Create a new key in the console.")
    if ctx.expires_at is not None and ctx.expires_at <= time.time():
        raise AuthError("expired", f"This API key ({ctx.mask}) has expired. Extend it or create a new key.")
    return ctx
