"""The OpenAI adapter's native Responses relay on its own: what it forwards, what it reads from an answer and a
stream, and that any upstream bytes are either read or an UpstreamFormatError (property-based, as
tests/routing/test_property_fuzz.py does for the other parsers), never another exception."""
import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.adapters.base import UpstreamFormatError
from routing.adapters.openai import OpenAIAdapter
from tests.routing.test_property_fuzz import FUZZ, frames, json_values

ADAPTER = OpenAIAdapter()
COMPLETED = {"type": "response.completed", "sequence_number": 3, "response": {
    "id": "resp_upstream", "object": "response", "model": "gpt-4o-mini-2024", "status": "completed",
    "output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
    "usage": {"input_tokens": 10, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2},
              "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14}}}


def _stream(lines: list[bytes]) -> list:
    async def feed():
        for line in lines:
            yield line

    async def run():
        return [c async for c in ADAPTER.native_stream("responses", feed(), response_id="resp_ours", model="ours")]

    return asyncio.run(run())


class _Headers(dict):
    def get(self, name, default=None):
        return super().get(name.lower(), default)


def test_the_request_is_the_clients_own_with_the_upstream_model():
    payload = {"model": "openai/gpt-4o-mini", "models": ["x"], "previous_response_id": "resp_ours", "input": [
        {"type": "reasoning", "summary": [], "encrypted_content": "tgsig:claude"},
        {"type": "reasoning", "summary": [], "encrypted_content": "openai-blob"},
        {"role": "user", "content": "hi"}], "future_field": 1}
    req = ADAPTER.native_request("responses", payload, upstream_model="gpt-4o-mini", base_url="https://u/v1",
                                 api_key="k", stream=True, headers=_Headers({"openai-beta": "responses=v1"}))
    body = orjson.loads(req.body)
    assert req.url == "https://u/v1/responses" and req.headers["OpenAI-Beta"] == "responses=v1"
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True and body["future_field"] == 1
    assert "models" not in body and "previous_response_id" not in body
    assert [i.get("encrypted_content") for i in body["input"]] == ["openai-blob", None]   # ours left out


def test_an_answer_gets_our_id_and_model_and_says_its_usage():
    body, usage, finish = ADAPTER.native_answer("responses", orjson.dumps(COMPLETED["response"]),
                                                response_id="resp_ours", model="ours")
    data = orjson.loads(body)
    assert (data["id"], data["model"]) == ("resp_ours", "ours") and finish == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (10, 4, 2, 1)
    with pytest.raises(UpstreamFormatError):
        ADAPTER.native_answer("responses", b'{"object": "response"}', response_id="r", model="m")


def test_a_stream_is_forwarded_with_our_ids_and_ends_on_its_terminal_event():
    created = {"type": "response.created", "sequence_number": 0, "response": {**COMPLETED["response"],
                                                                              "status": "in_progress"}}
    delta = b'data: {"type":"response.output_text.delta","item_id":"msg_1","delta":"hi","sequence_number":1}'
    chunks = _stream([b"event: response.created", b"data: " + orjson.dumps(created),
                      b"event: response.output_text.delta", delta,
                      b"event: response.completed", b"data: " + orjson.dumps(COMPLETED)])
    assert chunks[1].data == b"event: response.output_text.delta\n" + delta + b"\n\n"   # byte for byte
    first = orjson.loads(chunks[0].data.split(b"\ndata: ")[1])
    assert (first["response"]["id"], first["response"]["model"]) == ("resp_ours", "ours")
    assert chunks[-1].done and chunks[-1].finish == "tool_calls" and chunks[-1].usage.prompt_tokens == 10
    with pytest.raises(UpstreamFormatError):
        _stream([b"event: response.failed", b'data: {"type":"response.failed","response":{"error":{"message":"x"}}}'])


@FUZZ
@given(body=st.binary(max_size=60) | json_values.map(orjson.dumps))
def test_any_answer_bytes_are_read_or_refused(body):
    try:
        ADAPTER.native_answer("responses", body, response_id="r", model="m")
    except UpstreamFormatError:
        pass


lifecycle = json_values.map(lambda v: b'data: {"type":"response.completed","response":' + orjson.dumps(v) + b"}")


@FUZZ
@given(lines=st.lists(frames | lifecycle, max_size=8))
def test_any_stream_bytes_are_read_or_refused(lines):
    try:
        _stream(lines)
    except UpstreamFormatError:
        pass
