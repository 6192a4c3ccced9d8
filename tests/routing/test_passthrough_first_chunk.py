"""The OpenAI passthrough rewrites ids and model once it saw the upstream's first JSON-object chunk; a data line
before that one which is no object (found by mypy: the ids were still None) is forwarded as it came, not an
internal error."""
import httpx
import orjson
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from tests.conftest import wait_for
from tests.servers import FixedUpstream

CHUNKS = [
    {"id": "up-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "first words"}, "finish_reason": None}]},
    {"id": "up-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


@pytest.fixture
def string_first_upstream():
    upstream = FixedUpstream(b'data: "warming up"\n\n' + b"".join(b"data: " + orjson.dumps(c) + b"\n\n"
                                                                 for c in CHUNKS) + b"data: [DONE]\n\n")
    yield upstream.base_url
    upstream.stop()


@pytest.mark.live
def test_a_first_data_line_that_is_no_object_is_forwarded(live, string_first_upstream):
    Channel.objects.filter(pk=live.channel.pk).update(base_url=string_first_upstream)
    bump_version()

    def stream():
        with httpx.stream("POST", f"{live.base_url}/chat/completions", timeout=20,
                          headers={"Authorization": f"Bearer {live.secret}"},
                          json={"model": "openai/gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}) as resp:
            return resp, resp.read()

    def from_this_upstream():  # the gateway reloads its channels within 0.5 s
        result = stream()
        return result if b"warming up" in result[1] else None

    result = wait_for(from_this_upstream)
    assert result is not None, "the gateway never used the test upstream"
    resp, body = result
    assert resp.status_code == 200, body
    events = [e for e in body.split(b"\n\n") if e]
    assert events[0] == b'data: "warming up"' and events[-1] == b"data: [DONE]", events
    assert b"internal_error" not in body
    chunks = [orjson.loads(e[6:]) for e in events[1:-1]]
    assert {c["id"] for c in chunks} == {"chatcmpl-" + resp.headers["x-request-id"].removeprefix("req_")}
    assert {c["model"] for c in chunks} == {"openai/gpt-4o-mini"}
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert (record.status_code, record.finish_reason) == (200, "stop")
