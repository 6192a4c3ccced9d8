"""The key cache fails soft (keys/auth.py, docs/reliability.md): unknown keys cost no database round trip each,
an entry in use is refreshed from the database (and kept when the database is away), a key the cache does not
know while the database is away is "unavailable" (a 503), never "unknown" (a 401)."""
import asyncio
import time

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connections

from gateway_site import shared_cache
from keys import auth
from keys.secrets import hash_secret
from tests import factories


def run(coro):
    """Run `coro` on a fresh loop and close that loop's Redis client after it."""
    async def main():
        try:
            return await coro
        finally:
            loop = asyncio.get_running_loop()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if pending:
                await asyncio.wait(pending, timeout=5)
            client = shared_cache._async_clients.pop(loop, None)
            if client is not None:
                await client.aclose()
            await sync_to_async(connections.close_all, thread_sensitive=True)()   # db_call's thread's connection
    return asyncio.run(main())


@pytest.fixture
def loads(monkeypatch):
    """Counts database look-ups of keys (and can make them fail like an unreachable database)."""
    calls = {"n": 0, "fail": False}
    real = auth._load_from_db

    def counted(secret_hash):
        calls["n"] += 1
        if calls["fail"]:
            raise OperationalError("connection refused")
        return real(secret_hash)

    monkeypatch.setattr(auth, "_load_from_db", counted)
    auth._local.clear()
    auth._unknown.clear()
    auth._refresh_failed.clear()
    yield calls
    auth._local.clear()
    auth._unknown.clear()
    auth._refresh_failed.clear()


def _entry(secret) -> dict | None:
    raw = shared_cache.get(auth.cache_key(hash_secret(secret)))
    return None if raw is None or raw == b"-" else orjson.loads(raw)


def test_a_bad_key_costs_one_lookup_not_one_per_request(transactional_db, loads):
    async def burst():
        results = await asyncio.gather(*(auth.authenticate("sk-tg-not-a-key") for _ in range(20)),
                                       return_exceptions=True)
        auth._local.clear()           # past the 0.5 s layer: the negative entries answer
        results.append(await asyncio.gather(auth.authenticate("sk-tg-not-a-key"), return_exceptions=True))
        return results

    results = run(burst())
    assert all(isinstance(r, auth.AuthError) and r.reason == "unknown" for r in results[:20])
    assert isinstance(results[20][0], auth.AuthError) and results[20][0].reason == "unknown"
    assert loads["n"] == 1           # twenty concurrent requests and one later: one query
    assert shared_cache.get(auth.cache_key(hash_secret("sk-tg-not-a-key"))) == b"-"

    auth._unknown.clear()
    auth._local.clear()
    with pytest.raises(auth.AuthError):
        run(auth.authenticate("sk-tg-not-a-key"))
    assert loads["n"] == 1           # the shared negative entry (NEGATIVE_TTL) still answers


def test_the_negative_cache_is_bounded():
    cache = shared_cache.LocalTTL(60, max_items=100)
    for n in range(1000):
        cache.put(f"bad-{n}", True)
    assert len(cache._data) <= 100 and cache.get("bad-999") is True


def test_a_key_created_after_a_miss_works_at_once(transactional_db, loads):
    with pytest.raises(auth.AuthError):
        run(auth.authenticate("sk-tg-chosen-demo-secret"))
    key, secret = factories.api_key(secret="sk-tg-chosen-demo-secret")
    auth._local.clear()
    auth._unknown.clear()         # another process never saw the miss; the shared entry was rewritten
    assert run(auth.authenticate(secret)).key_id == key.id


def test_an_entry_in_use_is_refreshed_and_kept_while_the_database_is_away(transactional_db, loads):
    key, secret = factories.api_key()
    name = auth.cache_key(hash_secret(secret))
    old = {**_entry(secret), "_at": int(time.time()) - auth.REFRESH_AFTER - 5}
    shared_cache.set(name, orjson.dumps(old), 10)     # about to expire

    loads["fail"] = True
    assert run(auth.authenticate(secret)).key_id == key.id          # served from the cache meanwhile
    assert shared_cache.sync_client().ttl(name) > 10                # kept: its expiry pushed back
    assert _entry(secret)["_at"] == old["_at"]

    auth._local.clear()
    assert run(auth.authenticate(secret)).key_id == key.id
    assert loads["n"] == 1                                          # not retried at every read: 10 s later

    loads["fail"] = False
    auth._local.clear()
    auth._refresh_failed.clear()
    assert run(auth.authenticate(secret)).key_id == key.id
    assert _entry(secret)["_at"] >= int(time.time()) - 2            # re-read from the database
    assert shared_cache.sync_client().ttl(name) > auth.CACHE_TTL - 10


def test_a_missed_revocation_heals_on_refresh(transactional_db, loads):
    key, secret = factories.api_key()
    stale = {**_entry(secret), "_at": int(time.time()) - auth.REFRESH_AFTER - 5}
    key.status = "revoked"
    key.save(update_fields=["status"])          # in the database only: the cache was not told
    shared_cache.set(auth.cache_key(hash_secret(secret)), orjson.dumps(stale), auth.CACHE_TTL)
    assert run(auth.authenticate(secret)).key_id == key.id          # the stale entry answers once
    auth._local.clear()
    with pytest.raises(auth.AuthError) as exc:
        run(auth.authenticate(secret))
    assert exc.value.reason == "revoked"


def test_an_uncached_key_while_the_database_is_away_is_unavailable_not_unknown(transactional_db, loads):
    loads["fail"] = True
    with pytest.raises(auth.KeyStoreUnavailable) as exc:
        run(auth.authenticate("sk-tg-whatever"))
    assert exc.value.reason == "unavailable"
    assert shared_cache.get(auth.cache_key(hash_secret("sk-tg-whatever"))) is None   # nothing cached
    loads["fail"] = False
    with pytest.raises(auth.AuthError) as exc:
        run(auth.authenticate("sk-tg-whatever"))
    assert exc.value.reason == "unknown"


def test_requests_of_one_key_arriving_together_share_one_lookup(transactional_db, loads, monkeypatch):
    """1,000 streams at once of one key whose in-process entry expired: one Redis GET (and at most one database
    query), not one each: they took every pooled Redis connection and made Redis look down."""
    key, secret = factories.api_key(name="busy")
    gets = []
    real_get = shared_cache.aget

    async def counted_get(name):
        gets.append(name)
        await asyncio.sleep(0.01)   # the GET takes a moment: the others arrive meanwhile
        return await real_get(name)

    monkeypatch.setattr(shared_cache, "aget", counted_get)

    async def burst():
        first = await asyncio.gather(*(auth.authenticate(secret) for _ in range(200)))
        auth._local.clear()   # the 0.5 s layer expired: the next burst looks the key up again, once
        second = await asyncio.gather(*(auth.authenticate(secret) for _ in range(200)))
        return first + second

    contexts = run(burst())
    assert {ctx.key_id for ctx in contexts} == {key.pk} and len(contexts) == 400
    assert gets.count(auth.cache_key(hash_secret(secret))) == 2
    assert loads["n"] <= 1
    assert auth._inflight == {}


def test_a_failed_shared_lookup_fails_every_waiter_and_the_next_request_tries_again(transactional_db, loads,
                                                                                     monkeypatch):
    key, secret = factories.api_key(name="unlucky")
    monkeypatch.setattr(shared_cache, "aget", lambda name: asyncio.sleep(0.01, result=None))
    loads["fail"] = True   # neither Redis (no entry) nor the database can say

    async def burst():
        failed = await asyncio.gather(*(auth.authenticate(secret) for _ in range(50)), return_exceptions=True)
        loads["fail"] = False
        return failed, await auth.authenticate(secret)

    failed, later = run(burst())
    assert all(isinstance(r, auth.KeyStoreUnavailable) for r in failed)
    assert loads["n"] == 2 and later.key_id == key.pk
