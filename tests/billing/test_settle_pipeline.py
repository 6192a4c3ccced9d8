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
