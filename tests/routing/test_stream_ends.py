"""Streams that end early are billed for what they produced: an upstream that breaks mid-way, and a stream the
gateway ends at its overall deadline (TOLLGATE_STREAM_DEADLINE_SECONDS) with a stream_deadline_exceeded event."""
import httpx
import orjson
import pytest

from billing.models import UsageRecord
from tests.conftest import make_live_setup, wait_for

pytestmark = pytest.mark.live
CHAT = "/v1/chat/completions"


def stream(server, secret, text: str) -> tuple[str, list]:
    with httpx.stream("POST", server.url + CHAT, headers={"Authorization": f"Bearer {secret}"}, timeout=15,
                      json={"model": "openai/gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": text}]}) as resp:
        assert resp.status_code == 200
        request_id = resp.headers["x-request-id"]
        events = [line[6:] for line in resp.read().decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return request_id, [orjson.loads(e) for e in events[:-1]]


def test_a_stream_the_upstream_broke_is_billed_for_what_it_streamed(live):
    request_id, chunks = stream(live.server, live.secret, "[[sim:fault=break:6]] [[sim:tokens=40]] go")
    assert chunks[-1]["error"]["code"] == "upstream_unavailable"
    streamed = sum(1 for c in chunks if (c.get("choices") or [{}])[0].get("delta", {}).get("content"))
    assert streamed >= 2
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record.status_code == 502
    assert record.completion_tokens >= streamed and record.prompt_tokens > 0
    assert record.cost > 0


def test_the_overall_stream_deadline_ends_a_stream_with_a_clear_error(transactional_db, gateway_factory, simulator):
    server = gateway_factory(TOLLGATE_STREAM_DEADLINE_SECONDS="0.000001", TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")
    live = make_live_setup(server, simulator)
    request_id, chunks = stream(server, live.secret, "[[sim:tokens=40]] go")
    error = chunks[-1]["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "stream_deadline_exceeded")
    assert error["request_id"] == request_id and "limit of 1e-06 s" in error["message"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert (record.status_code, record.error_code) == (504, "stream_deadline_exceeded")
    assert record.prompt_tokens > 0 and record.cost > 0
