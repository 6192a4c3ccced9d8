"""One SSE reader for every upstream: multi-line `data:` fields (a pretty-printed JSON event) are read as one
event, and the OpenAI passthrough forwards them as compact one-line chunks with our id, model and usage."""
import asyncio
import json

import httpx
import orjson
import pytest

from billing.models import UsageRecord
from routing.adapters.base import Finish, TextDelta, UsageEvent
from routing.adapters.openai import OpenAIAdapter
from routing.adapters.sse import sse_lines
from routing.catalog import bump_version
from routing.models import Channel
from tests.conftest import wait_for
from tests.servers import FixedUpstream

ADAPTER = OpenAIAdapter()
CHUNKS = [
    {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello, \"world\": "}, "finish_reason": None}],
     "usage": None},
    {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024",
     "choices": [{"index": 0, "delta": {"content": "again"}, "finish_reason": "stop"}], "usage": None},
    {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024", "choices": [],
     "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}},
]


def pretty_sse() -> bytes:
    """Each chunk pretty-printed over several `data:` lines (Python's json separators), as some
    OpenAI-compatible servers send them; a comment and an `id:` field in between."""
    out = [b": keep-alive\n\n"]
    for chunk in CHUNKS:
        lines = json.dumps(chunk, indent=2).split("\n")
        out.append(b"".join(b"data: " + line.encode() + b"\r\n" for line in lines) + b"\r\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


async def _iterate(body: bytes) -> list[bytes]:
    async def chunks():
        for line in body.splitlines(keepends=True):
            yield line
    return [line async for line in sse_lines(chunks())]


def test_multi_line_data_fields_are_one_event():
    lines = asyncio.run(_iterate(pretty_sse()))
    assert lines[0] == b": keep-alive"
    data = [line for line in lines if line.startswith(b"data:")]
    assert len(data) == len(CHUNKS) + 1 and data[-1] == b"data: [DONE]"
    assert [orjson.loads(line[5:]) for line in data[:-1]] == CHUNKS


def test_translated_stream_reads_pretty_events():
    async def events():
        async def chunks():
            for line in pretty_sse().splitlines(keepends=True):
                yield line
        return [e async for e in ADAPTER.stream_events(sse_lines(chunks()))]

    got = asyncio.run(events())
    assert [e.text for e in got if isinstance(e, TextDelta)] == ['Hello, "world": ', "again"]
    assert Finish("stop") in got
    usage = next(e.usage for e in got if isinstance(e, UsageEvent))
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 3)


def test_passthrough_compacts_only_what_is_not_compact():
    compact = b"data: " + orjson.dumps(CHUNKS[0])
    out, usage = ADAPTER.passthrough(compact)
    assert out is compact and usage is None   # the usual upstream: forwarded as it came, no parse
    spaced = b"data: " + json.dumps(CHUNKS[2]).encode()   # Python's ", " and ": " separators
    out, usage = ADAPTER.passthrough(spaced)
    assert out == b"data: " + orjson.dumps(CHUNKS[2]) and (usage.prompt_tokens, usage.completion_tokens) == (11, 3)
    multi = asyncio.run(_iterate(b"".join(b"data: " + line.encode() + b"\n"
                                          for line in json.dumps(CHUNKS[1], indent=2).split("\n"))))[0]
    assert ADAPTER.passthrough(multi)[0] == b"data: " + orjson.dumps(CHUNKS[1])


@pytest.fixture
def pretty_upstream():
    upstream = FixedUpstream(pretty_sse())
    yield upstream.base_url
    upstream.stop()


@pytest.mark.live
def test_passthrough_of_a_pretty_printed_upstream(live, pretty_upstream):
    Channel.objects.filter(pk=live.channel.pk).update(base_url=pretty_upstream)
    bump_version()

    def stream():
        with httpx.stream("POST", f"{live.base_url}/chat/completions", timeout=20,
                          headers={"Authorization": f"Bearer {live.secret}"},
                          json={"model": "openai/gpt-4o-mini", "stream": True,
                                "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": "hi"}]}) as resp:
            return resp, resp.read()

    def from_pretty_upstream():  # the gateway reloads its channels within 0.5 s
        result = stream()
        return result if b"world" in result[1] else None

    result = wait_for(from_pretty_upstream)
    assert result is not None, "the gateway never used the pretty-printing upstream"
    resp, body = result
    assert resp.status_code == 200, body
    events = [e for e in body.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), events  # one compact line each
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    request_hex = resp.headers["x-request-id"].removeprefix("req_")
    assert {c["id"] for c in chunks} == {"chatcmpl-" + request_hex}
    assert {c["model"] for c in chunks} == {"openai/gpt-4o-mini"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
        'Hello, "world": again'
    assert chunks[-1]["usage"]["prompt_tokens"] == 11
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert (record.prompt_tokens, record.completion_tokens, record.finish_reason) == (11, 3, "stop")
