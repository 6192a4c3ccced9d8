"""The Gemini adapter's native relay (a Gemini client to a Gemini channel): the client's body forwarded as it
is, answers and stream frames with our ids, their usage and finish reason read on the way."""
import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.adapters.base import UpstreamFormatError
from routing.adapters.gemini import GeminiAdapter

ADAPTER = GeminiAdapter()
USAGE = {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 3, "cachedContentTokenCount": 2,
         "totalTokenCount": 17}


def frame(parts, finish=None, usage=None) -> bytes:
    candidate = {"content": {"role": "model", "parts": parts}, "index": 0, **({"finishReason": finish} if finish
                                                                             else {})}
    return b"data: " + orjson.dumps({"candidates": [candidate], "responseId": "up", "modelVersion": "gemini-x",
                                     **({"usageMetadata": usage} if usage else {})})


def stream(lines: list[bytes]) -> list:
    async def source():
        for line in lines:
            yield line

    async def collect():
        return [chunk async for chunk in ADAPTER.native_stream("gemini", source(), response_id="req_1",
                                                               model="google/gemini-x")]

    return asyncio.run(collect())


def test_the_request_is_the_clients_body_without_the_gateways_model():
    payload = {"model": "gemini-2.5-flash", "contents": [{"parts": [{"text": "hi"}]}], "cachedContent": "c/1",
               "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]}
    req = ADAPTER.native_request("gemini", payload, upstream_model="models/gemini-2.5-pro", base_url="http://g/v1beta",
                                 api_key="k", stream=True, headers={})
    assert req.url == "http://g/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert req.headers["x-goog-api-key"] == "k"
    assert orjson.loads(req.body) == {key: value for key, value in payload.items() if key != "model"}


def test_a_whole_answer_gets_our_ids_and_its_usage_and_finish_read():
    body = orjson.loads(frame([{"functionCall": {"name": "f", "args": {}}}], "STOP", USAGE)[6:])
    out, usage, finish = ADAPTER.native_answer("gemini", orjson.dumps(body), response_id="req_1",
                                               model="google/gemini-x")
    data = orjson.loads(out)
    assert data["responseId"] == "req_1" and data["modelVersion"] == "google/gemini-x"
    assert data["candidates"] == body["candidates"]
    assert finish == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens) == (10, 7, 3, 2)
    blocked = orjson.dumps({"promptFeedback": {"blockReason": "SAFETY"}})
    assert ADAPTER.native_answer("gemini", blocked, response_id="r", model="m")[2] == "content_filter"
    for bad in (b"{", b"[]", b'{"usageMetadata": {}}'):
        with pytest.raises(UpstreamFormatError):
            ADAPTER.native_answer("gemini", bad, response_id="r", model="m")


def test_a_stream_is_forwarded_frame_by_frame_done_on_the_finish():
    chunks = stream([frame([{"text": "Hel"}]), b"event: ignored", frame([{"text": "lo"}], "MAX_TOKENS", USAGE)])
    assert [c.done for c in chunks] == [False, True]
    assert chunks[-1].finish == "length" and chunks[-1].usage.completion_tokens == 7
    sent = [orjson.loads(c.data.removeprefix(b"data: ")) for c in chunks]
    assert all(c.data.endswith(b"\r\n\r\n") for c in chunks)
    assert [s["responseId"] for s in sent] == ["req_1", "req_1"] and sent[0]["candidates"][0]["content"]["parts"] == \
        [{"text": "Hel"}]


def test_an_error_frame_or_garbage_breaks_the_stream():
    with pytest.raises(UpstreamFormatError, match="overloaded"):
        stream([frame([{"text": "a"}]), b'data: {"error": {"code": 503, "message": "overloaded"}}'])
    with pytest.raises(UpstreamFormatError):
        stream([b"data: {nope"])


# --- any upstream bytes: a native answer or stream is read or refused as invalid, never a crash ------------
_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=8)
_shaped = st.fixed_dictionaries(
    {"candidates": st.lists(_values | st.fixed_dictionaries({
        "content": _values | st.fixed_dictionaries({"parts": _values | st.lists(_values)}),
        "finishReason": _values, "index": _values}), max_size=3)},
    optional={"usageMetadata": _values, "promptFeedback": _values, "error": _values})
_bodies = _shaped | _values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies)
def test_any_native_answer_is_read_or_invalid(body):
    try:
        ADAPTER.native_answer("gemini", orjson.dumps(body), response_id="r", model="m")
    except UpstreamFormatError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_bodies.map(lambda v: b"data: " + orjson.dumps(v)) | st.binary(max_size=20), max_size=4))
def test_any_native_stream_is_read_or_invalid(lines):
    try:
        stream(lines)
    except UpstreamFormatError:
        pass
