"""generations.remember on the event loop: the summaries of a few milliseconds reach the shared cache in one
pipelined round trip (the limits' settle pipeline; issue 14), and another process then finds each of them."""
import asyncio

from gateway_site import shared_cache
from routing.relay import generations


def _record(hex_id: str, team_id: int = 7) -> dict:
    return {"request_id": "req_" + hex_id, "team_id": team_id, "status_code": 200, "served_model": "openai/m",
            "prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 0, "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "usage_clamped": False, "cost": 2_500,
            "stream": False, "latency_ms": 12, "ttfb_ms": 12, "finish_reason": "stop", "created_at": 1.0}


def test_summaries_of_one_moment_share_one_round_trip(db, monkeypatch):
    batches = []
    real = shared_cache.execute_pipeline

    async def counted(client, commands):
        batches.append([command[1] for command in commands if command[0] == "SET"])
        return await real(client, commands)

    monkeypatch.setattr(shared_cache, "execute_pipeline", counted)
    ids = [f"{i:02x}" * 12 for i in (1, 2, 3)]

    async def scenario():
        for hex_id in ids:
            generations.remember(_record(hex_id), provider_name="OpenAI", channel_kind="openai")
        held = [hex_id in generations._local for hex_id in ids]   # answered here until the write lands
        await generations._writer
        assert not any(hex_id in generations._local for hex_id in ids)   # then the shared cache has them
        assert held == [True] * 3
        return [await generations.recall(7, hex_id) for hex_id in ids], await generations.recall(8, ids[0])

    found, other_team = asyncio.run(scenario())
    assert batches == [[f"tg:gen:{hex_id}" for hex_id in ids]]
    assert [f["id"] for f in found] == ["req_" + hex_id for hex_id in ids]
    assert other_team is None


def test_a_batch_redis_refuses_is_kept_in_process(db, monkeypatch):
    """An unreachable Redis (the outage begins): the batch lands in the in-process store, not lost."""
    async def refused(client, commands):
        raise shared_cache.redis.exceptions.ConnectionError("refused")

    monkeypatch.setattr(shared_cache, "execute_pipeline", refused)
    outage = shared_cache.outage

    async def scenario():
        generations.remember(_record("ab" * 12), provider_name="OpenAI", channel_kind="openai")
        await generations._writer
        if outage.probe is not None:   # the outage's probe: this test ends it itself
            outage.probe.cancel()
        return shared_cache.memory_store().get("tg:gen:" + "ab" * 12)

    try:
        kept = asyncio.run(scenario())
    finally:
        outage.down_since, outage.probe, outage.loop = None, None, None
    assert kept is not None and b'"id":"req_' + b"ab" * 12 + b'"' in kept
