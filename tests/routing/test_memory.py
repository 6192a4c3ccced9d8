"""What a gateway process keeps in memory for as long as it runs (README, performance: memory)."""
import asyncio
import time
import tracemalloc

import orjson

from routing.relay import generations


def _record(i: int) -> dict:
    return {"request_id": f"req_{i:024x}", "status_code": 200, "created_at": time.time(), "team_id": 1,
            "served_model": "openai/gpt-4o-mini", "prompt_tokens": 12, "completion_tokens": 30,
            "cached_tokens": 0, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "reasoning_tokens": 0,
            "usage_clamped": False, "cost": 1234, "stream": True, "latency_ms": 250, "ttfb_ms": 40,
            "finish_reason": "stop"}


def test_a_remembered_generation_holds_about_its_own_size(monkeypatch):
    # orjson leaves its output buffer (4 KB and up) allocated: 10,000 summaries kept for 5 minutes held ~80 MB.
    # Summaries wait here until their shared-cache write is done: a write that never ends keeps them all.
    monkeypatch.setattr(generations, "_local", type(generations._local)())
    n = 500

    async def scenario():
        callbacks = []   # the writes' "written" callbacks: none is called until the test says so

        def never_written(key, value, ttl, written):
            callbacks.append(written)
            return asyncio.get_running_loop().create_future()

        monkeypatch.setattr(generations.limits, "cache_soon", never_written)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                generations.remember(_record(i), provider_name="OpenAI", channel_kind="openai")
            held = (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()
        size = len(next(iter(generations._local.values()))[1])
        assert len(generations._local) == n
        # the summary's bytes, its key, the entry and the write's callback (~550 B measured); not orjson's
        # 4-8 KB buffer
        assert held < size + 1500, (held, size)
        assert orjson.loads(generations._local[f"{7:024x}"][1])["id"] == f"req_{7:024x}"
        for written in callbacks:   # written: nothing stays
            written()
        assert not generations._local

    asyncio.run(scenario())
