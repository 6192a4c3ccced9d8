"""The Anthropic adapter: translations on representative inputs, then over real HTTP against the simulator."""
import asyncio

import orjson
import pytest

from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.base import (
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    UpstreamFormatError,
    Usage,
    UsageEvent,
)
from tests.routing.adapters import exchange
from tests.routing.adapters.exchange import PNG, WEATHER, call, post_raw, sse_data

ADAPTER = AnthropicAdapter()
MODEL = "claude-sonnet-4-5"


def body_of(request, **kwargs) -> dict:
    upstream = ADAPTER.to_upstream(request, upstream_model=kwargs.pop("model", MODEL),
                                   base_url=kwargs.pop("base_url", "https://api.anthropic.com"), api_key="k",
                                   stream=kwargs.pop("stream", False))
    return orjson.loads(upstream.body)


def user(text="Hi"):
    return {"messages": [{"role": "user", "content": text}]}


def events_of(frames: list[dict]) -> list:
    return exchange.events_of(ADAPTER, frames)


# --- request translation -------------------------------------------------------------------------------------
def test_url_headers_and_defaults():
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        upstream = ADAPTER.to_upstream(user(), upstream_model=MODEL, base_url=base, api_key="sk-a", stream=True)
        assert upstream.url == "http://h:1/v1/messages"
    assert upstream.headers == {"x-api-key": "sk-a", "anthropic-version": "2023-06-01",
                                "content-type": "application/json"}
    body = orjson.loads(upstream.body)
    assert body == {"model": MODEL, "max_tokens": 4096, "stream": True,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    assert body_of({**user(), "max_tokens": 50})["max_tokens"] == 50
    assert body_of({**user(), "max_completion_tokens": 60, "max_tokens": 50})["max_tokens"] == 60


def test_system_multi_turn_tool_calls_and_results_alternate_roles():
    request = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "user", "content": "Thanks."},
    ], "tools": [WEATHER]}
    body = body_of(request)
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "rainy"}]},
        {"type": "text", "text": "And tomorrow?"}, {"type": "text", "text": "Thanks."}]
    assert body["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert "tool_choice" not in body


def test_images_data_url_and_url():
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]
    blocks = body_of(user(content))["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": PNG.split(",", 1)[1]}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tool_choice(choice, parallel, expected):
    request = {**user(), "tools": [WEATHER]}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    assert body_of(request).get("tool_choice") == expected


def test_sampling_stop_and_user():
    body = body_of({**user(), "temperature": 1.7, "top_p": 0.9, "stop": "END", "user": "u-1", "seed": 3, "n": 1})
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (1.0, 0.9, ["END"])
    assert body["metadata"] == {"user_id": "u-1"} and "seed" not in body and "n" not in body
    assert body_of({**user(), "stop": ["a", " ", "b"]})["stop_sequences"] == ["a", "b"]


def test_json_schema_is_a_forced_tool_and_comes_back_as_text():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body = body_of({**user(), "response_format": {"type": "json_schema",
                                                  "json_schema": {"name": "reply", "schema": schema}}})
    assert body["tools"][0]["name"] == "structured_output__reply"
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output__reply"}
    answer = {"type": "message", "id": "msg_1", "model": MODEL, "stop_reason": "tool_use", "usage": {},
              "content": [{"type": "tool_use", "id": "toolu_9", "name": "structured_output__reply",
                           "input": {"answer": "42"}}]}
    data, _ = ADAPTER.from_upstream(orjson.dumps(answer))
    assert data["choices"][0]["message"] == {"role": "assistant", "content": '{"answer":"42"}'}
    assert data["choices"][0]["finish_reason"] == "stop"


def test_json_object_and_json_schema_with_tools_become_instructions():
    body = body_of({"messages": [{"role": "system", "content": "Sys."}, *user()["messages"]],
                    "response_format": {"type": "json_object"}})
    assert body["system"][0]["text"] == "Sys." and "JSON object" in body["system"][1]["text"]
    assert "tools" not in body
    body = body_of({**user(), "tools": [WEATHER], "response_format": {
        "type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}})
    assert [t["name"] for t in body["tools"]] == ["get_weather"] and "JSON schema" in body["system"][0]["text"]


def test_reasoning_effort_becomes_thinking():
    body = body_of({**user(), "reasoning_effort": "medium", "temperature": 0.2, "top_p": 0.5})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["max_tokens"] == 4096 + 4096 and "temperature" not in body and "top_p" not in body
    # capped below max_tokens; impossible budgets and forced tools drop it
    assert body_of({**user(), "reasoning_effort": "high", "max_tokens": 3000})["thinking"]["budget_tokens"] == 2999
    assert "thinking" not in body_of({**user(), "reasoning_effort": "low", "max_tokens": 1000})
    assert "thinking" not in body_of({**user(), "reasoning_effort": "low", "tools": [WEATHER],
                                      "tool_choice": "required"})
    # the Anthropic inbound route's own `thinking` passes through untouched
    passed = {"type": "enabled", "budget_tokens": 2000, "display": "summarized"}
    assert body_of({**user(), "thinking": passed, "reasoning_effort": "low"})["thinking"] == passed


def test_assistant_reasoning_with_signature_becomes_a_leading_thinking_block():
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "reasoning_content": "hmm", "thinking_signature": "sig",
                 "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
    body = body_of({"messages": messages, "tools": [WEATHER], "reasoning_effort": "low"})
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assert body["thinking"]["type"] == "enabled"
    # unsigned reasoning (e.g. from another provider) is not sent, and thinking is off for that tool loop
    unsigned = [messages[0], {**messages[1], "thinking_signature": None}, messages[2]]
    body = body_of({"messages": unsigned, "tools": [WEATHER], "reasoning_effort": "low"})
    assert body["messages"][1]["content"][0]["type"] == "tool_use" and "thinking" not in body


# --- response translation -------------------------------------------------------------------------------------
def test_from_upstream_maps_blocks_usage_and_signature():
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "tool_use",
              "content": [{"type": "thinking", "thinking": "Let me see.", "signature": "sig-1"},
                          {"type": "text", "text": "I'll "}, {"type": "text", "text": "check."},
                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
              "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 20}}
    data, usage = ADAPTER.from_upstream(orjson.dumps(answer))
    message = data["choices"][0]["message"]
    assert message["content"] == "I'll check." and message["reasoning_content"] == "Let me see."
    assert message["thinking_signature"] == "sig-1"
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert data["choices"][0]["finish_reason"] == "tool_calls" and data["object"] == "chat.completion"
    assert usage == Usage(prompt_tokens=130, completion_tokens=7, cached_tokens=100, cache_write_tokens=20)
    assert data["usage"]["prompt_tokens"] == 130 and data["usage"]["prompt_tokens_details"]["cached_tokens"] == 100


@pytest.mark.parametrize("stop_reason, finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                 ("max_tokens", "length"), ("refusal", "content_filter"),
                                                 ("pause_turn", "stop")])
def test_stop_reasons(stop_reason, finish):
    answer = {"type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "usage": {}}
    assert ADAPTER.from_upstream(orjson.dumps(answer))[0]["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type":"message"}', b'{"choices":[]}'])
def test_from_upstream_rejects_what_is_not_a_message(body):
    with pytest.raises(UpstreamFormatError):
        ADAPTER.from_upstream(body)


def test_stream_events_tool_index_counts_calls_not_blocks():
    frames = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 3,
                                                        "cache_creation_input_tokens": 0, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Ok"}},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"ci'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'ty":1}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"}]
    assert events_of(frames) == [
        ReasoningDelta("Hm"), ReasoningDelta(signature="s"), TextDelta("Ok"),
        ToolCallDelta(0, "toolu_a", "get_weather"), ToolCallDelta(0, arguments='{"ci'),
        ToolCallDelta(0, arguments='ty":1}'), Finish("tool_calls"),
        UsageEvent(Usage(prompt_tokens=8, completion_tokens=9, cached_tokens=3))]


def test_stream_json_tool_becomes_text_and_errors_and_truncation():
    frames = [{"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {
                  "type": "tool_use", "id": "t", "name": "structured_output__r", "input": {}}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
              {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}},
              {"type": "message_stop"}]
    assert events_of(frames)[:2] == [TextDelta("{}"), Finish("stop")]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert events_of(frames[:1] + [error])[-1] == StreamError("Overloaded", "overloaded_error")
    with pytest.raises(UpstreamFormatError):
        events_of(frames[:-1])
    with pytest.raises(UpstreamFormatError):
        asyncio.run(_drain([b"data: {oops"]))


async def _drain(lines):
    return [e async for e in ADAPTER.stream_events(exchange.aiter_lines(lines))]


def test_error_detail():
    body = orjson.dumps({"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "prompt is too long: 210000 tokens > 200000 maximum"}})
    assert ADAPTER.error_detail(400, body)[1] == "context_length_exceeded"
    body = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert ADAPTER.error_detail(529, body) == ("Overloaded", "overloaded_error", None)
    assert ADAPTER.error_detail(502, b"<html>bad gateway</html>") == ("HTTP 502", None, None)


# --- over real HTTP against the simulator ---------------------------------------------------------------------
SCENARIOS = {
    "text": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
             "max_tokens": 100, "temperature": 0.5, "stop": ["NEVER"]},
    "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
              "tool_choice": "required"},
    "image": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe these"}, {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
}


def expected_usage(result) -> Usage:
    """The usage the simulator reported, read from its own answer."""
    if result.body:
        raw = orjson.loads(result.body)["usage"]
    else:
        frames = sse_data(result.raw_lines)
        raw = {**frames[0]["message"]["usage"], **next(f for f in frames if f["type"] == "message_delta")["usage"]}
    read, write = raw["cache_read_input_tokens"], raw["cache_creation_input_tokens"]
    return Usage(raw["input_tokens"] + read + write, raw["output_tokens"], read, 0, write)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_live(sim, scenario, stream):
    result = call(ADAPTER, sim, SCENARIOS[scenario], model=MODEL, stream=stream)
    assert result.status == 200, result.body
    text, calls, finish = result.answer(stream)
    if scenario == "tools":
        assert finish == "tool_calls" and len(calls) == 1
        assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
        assert orjson.loads(calls[0]["arguments"])["city"]
    else:
        assert finish == "stop" and not calls
        prompt = "Describe these" if scenario == "image" else "Say hello"
        assert text.startswith(f"Simulated reply to: {prompt}")
    assert result.usage == expected_usage(result) and result.usage.prompt_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_live_thinking_and_its_tool_loop(sim, stream):
    request = {"messages": [{"role": "user", "content": "Weather in Paris? [[sim:reasoning=20]]"}],
               "tools": [WEATHER], "reasoning_effort": "low", "max_tokens": 2048}
    first = call(ADAPTER, sim, request, model=MODEL, stream=stream)
    assert first.status == 200, first.body
    if stream:
        reasoning, signature = first.reasoning(), first.signatures()[-1]
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in first.tool_calls().values()]
        assert first.finishes() == ["tool_calls"]
    else:
        message = first.data["choices"][0]["message"]
        reasoning, signature, calls = message["reasoning_content"], message["thinking_signature"], message["tool_calls"]
    assert reasoning.startswith("Simulated thinking about:") and signature and calls
    assert first.usage == expected_usage(first)
    # the thinking block must come back first in the tool loop, or the simulator answers 400
    request["messages"] += [{"role": "assistant", "content": None, "reasoning_content": reasoning,
                             "thinking_signature": signature, "tool_calls": calls},
                            {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'}]
    second = call(ADAPTER, sim, request, model=MODEL, stream=stream)
    assert second.status == 200, second.body
    text = second.text() if stream else second.data["choices"][0]["message"]["content"]
    assert text.startswith("Simulated reply to:")


def test_live_json_schema(sim):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["answer", "n"]}
    request = {**user("Answer me"), "response_format": {"type": "json_schema",
                                                        "json_schema": {"name": "reply", "schema": schema}}}
    plain = call(ADAPTER, sim, request, model=MODEL)
    assert plain.status == 200, plain.body
    assert orjson.loads(plain.data["choices"][0]["message"]["content"]) == {"answer": "sample_answer", "n": 1}
    assert plain.data["choices"][0]["finish_reason"] == "stop"
    streamed = call(ADAPTER, sim, request, model=MODEL, stream=True)
    assert orjson.loads(streamed.text()) == {"answer": "sample_answer", "n": 1} and streamed.finishes() == ["stop"]


def test_live_simulator_refuses_a_wrong_field(sim):
    """The check the live tests rely on: a field Anthropic does not know is a 400."""
    r = post_raw(ADAPTER, sim, user(), model=MODEL, edit=lambda b: b.update(max_completion_tokens=5))
    assert r.status_code == 400 and "max_completion_tokens" in r.json()["error"]["message"]
