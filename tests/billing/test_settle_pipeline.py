"""The settles' pipeline (issue 14): one round trip per batch, EVALSHA with no SCRIPT EXISTS before it, and a
Redis that does not know the script (restarted) gets it loaded and the whole batch once."""
import asyncio
import uuid

from billing import limits
from gateway_site import shared_cache

# A script no Redis has seen (its comment is new each run), so the first batch meets NOSCRIPT.
ADD = "-- {}\nreturn redis.call('INCRBY', ARGV[1], ARGV[2])"


def test_a_batch_runs_once_even_when_redis_first_lacks_the_script(db):
    key = "tg:test:settle-pipeline:" + uuid.uuid4().hex

    async def scenario():
        client = shared_cache.async_client()
        script = client.register_script(ADD.format(uuid.uuid4().hex))
        assert await client.script_exists(script.sha) == [False]
        await limits._run_pipelined(client, script, [[key, 1], [key, 2], [key, 3]])   # NOSCRIPT, loaded, run
        await limits._run_pipelined(client, script, [[key, 10]])                      # known now
        total = int(await client.get(key))
        await client.delete(key)
        return total

    assert asyncio.run(scenario()) == 16


def test_cache_writes_ride_in_the_batch_and_are_written_once_past_noscript(db, monkeypatch):
    """limits.cache_soon's writes share the settles' round trip; a NOSCRIPT resend sends only the scripts."""
    key, cached = ("tg:test:settle-pipeline:" + uuid.uuid4().hex for _ in range(2))
    sent = []
    real = shared_cache.execute_pipeline

    async def counted(client, commands):
        sent.append([command[0] for command in commands])
        return await real(client, commands)

    async def scenario():
        client = shared_cache.async_client()
        script = client.register_script(ADD.format(uuid.uuid4().hex))
        await limits._run_pipelined(client, script, [[key, 1], [key, 2]], [(cached, b"kept", 60)])
        found = int(await client.get(key)), await client.get(cached), await client.ttl(cached)
        await client.delete(key, cached)
        return found

    monkeypatch.setattr(shared_cache, "execute_pipeline", counted)
    total, value, ttl = asyncio.run(scenario())
    assert (total, value) == (3, b"kept") and 0 < ttl <= 60
    assert sent == [["SET", "EVALSHA", "EVALSHA"], ["EVALSHA", "EVALSHA"]]
