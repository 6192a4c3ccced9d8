"""The simulator speaks OpenAI's wire format: checked with the official SDK and raw HTTP."""

import base64
import json
import math
import struct
import time

import openai
import pytest

from simulator.tokens import count_tokens
from tests.simulator.sim_helpers import raw_chat, sse_events

pytestmark = pytest.mark.live

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there, how are you today?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "hourly": {"type": "boolean"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
# 2 messages x 4 overhead + "Be brief." (3) + "Hello there, how are you today?" (8)
HELLO_PROMPT_TOKENS = 19


def test_completion_has_openai_shape_and_real_usage(sdk):
    r = sdk.chat.completions.create(model="any-model-name", messages=HELLO)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "any-model-name"
    assert r.system_fingerprint and abs(r.created - time.time()) < 60
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.refusal is None and choice.finish_reason == "stop"
    assert choice.message.content == "Simulated reply to: Hello there, how are you today"  # 12 tokens
    assert r.usage.prompt_tokens == HELLO_PROMPT_TOKENS
    assert r.usage.completion_tokens == count_tokens(choice.message.content) == 12
    assert r.usage.total_tokens == HELLO_PROMPT_TOKENS + 12
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_magic_tokens_set_exact_length_cached_and_reasoning(sdk):
    messages = [{"role": "user", "content": "Write [[sim:tokens=40]] [[sim:cached=5]] [[sim:reasoning=7]]"}]
    r = sdk.chat.completions.create(model="o3-mini", messages=messages, max_completion_tokens=500)
    assert count_tokens(r.choices[0].message.content) == 40
    assert "[[sim" not in r.choices[0].message.content
    assert r.usage.completion_tokens == 47 and r.usage.completion_tokens_details.reasoning_tokens == 7
    assert r.usage.prompt_tokens_details.cached_tokens == 5


def test_prompt_tokens_count_parts_images_and_tools(sdk):
    base = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "look"}])
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    with_image = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
    assert base.usage.prompt_tokens == 5
    assert with_image.usage.prompt_tokens == 4 + count_tokens("look ") + 85  # the parts' text joined by a space
    with_tools = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "look"}],
                                                tools=[WEATHER], tool_choice="none")
    assert with_tools.usage.prompt_tokens > 5 + 20


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_truncates_with_finish_length(sdk, limit):
    r = sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **{limit: 5})
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "Simulated reply to:"  # Sim|ulated| reply| to|:
    assert r.usage.completion_tokens == 5


def test_n_choices_and_stop_sequence(sdk):
    r = sdk.chat.completions.create(model="m", messages=HELLO, n=3, stop=["how"])
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert {c.message.content for c in r.choices} == {"Simulated reply to: Hello there, "}  # cut before "how"
    assert r.usage.completion_tokens == 3 * count_tokens("Simulated reply to: Hello there, ")


def test_stream_matches_non_stream_and_has_no_usage_unless_asked(sdk, sim):
    plain = sdk.chat.completions.create(model="m", messages=HELLO).choices[0].message.content
    chunks = list(sdk.chat.completions.create(model="m", messages=HELLO, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == plain
    assert len(chunks) == 1 + 12 + 1  # role, one chunk per token, finish
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    # on the wire: no "usage" key at all, and the stream ends with [DONE]
    r = raw_chat(sim, {"model": "m", "messages": HELLO, "stream": True}, headers={"x-sim-chunk-delay-ms": "0"})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]" and all("usage" not in json.loads(e) for e in events[:-1])


def test_stream_include_usage_adds_a_final_usage_chunk(sdk, sim):
    chunks = list(sdk.chat.completions.create(model="m", messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == HELLO_PROMPT_TOKENS
    assert all(c.usage is None for c in chunks[:-1])
    body = {"model": "m", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    events = [json.loads(e) for e in sse_events(raw_chat(sim, body, headers={"x-sim-chunk-delay-ms": "0"}).text)[:-1]]
    assert all("usage" in e for e in events)
    assert [e for e in events if e["usage"] is not None] == [events[-1]]


def test_first_stream_chunk_arrives_before_the_stream_ends(sdk):
    start = time.monotonic()
    stream = sdk.chat.completions.create(model="m", messages=HELLO, stream=True,
                                            extra_headers={"x-sim-chunk-delay-ms": "60"})
    first = None
    for chunk in stream:
        first = first or time.monotonic() - start
    total = time.monotonic() - start
    assert total >= 13 * 0.06 * 0.95  # 14 frames, 13 gaps (timers may fire a hair early)
    assert first < 0.3 and first < total / 3


def test_magic_chunk_delay(sdk):
    start = time.monotonic()
    messages = [{"role": "user", "content": "hi [[sim:chunk_delay_ms=40]] [[sim:tokens=5]]"}]
    list(sdk.chat.completions.create(model="m", messages=messages, stream=True,
                                     extra_headers={"x-sim-chunk-delay-ms": openai.Omit()}))
    assert time.monotonic() - start >= 6 * 0.04 * 0.95


def test_tool_call_then_text_after_tool_result(sdk):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=[TIME, WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "sample_city", "unit": "celsius", "days": 1}
    assert r.usage.completion_tokens == count_tokens(call.function.name) + count_tokens(call.function.arguments)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny and 21 degrees"}]
    r2 = sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    assert r2.choices[0].finish_reason == "stop" and not r2.choices[0].message.tool_calls
    assert r2.choices[0].message.content.startswith("Simulated reply to: Sunny and 21 degrees")


def test_tool_choice_auto_calls_first_function_and_none_answers(sdk):
    messages = [{"role": "user", "content": "What time is it?"}]
    auto = sdk.chat.completions.create(model="m", messages=messages, tools=[TIME, WEATHER])
    assert auto.choices[0].message.tool_calls[0].function.name == "get_time"
    assert json.loads(auto.choices[0].message.tool_calls[0].function.arguments) == {}
    none = sdk.chat.completions.create(model="m", messages=messages, tools=[TIME], tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.content


def test_streamed_tool_call_assembles_to_json(sdk):
    stream = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "Paris?"}],
                                            tools=[WEATHER], stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    head, fragments = deltas[0], deltas[1:]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "get_weather" and head.function.arguments == ""
    assert len(fragments) > 3 and all(f.id is None and f.function.name is None for f in fragments)
    args = json.loads("".join(f.function.arguments for f in fragments))
    assert args == {"city": "sample_city", "unit": "celsius", "days": 1}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == count_tokens(head.function.name) + len(fragments)


def test_response_format_json_schema(sdk):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array",
              "items": {"type": "string"}}}, "required": ["name", "tags"]}
    r = sdk.chat.completions.create(model="m", messages=HELLO, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    assert json.loads(r.choices[0].message.content) == {"name": "sample_name", "tags": ["sample_tags"]}


@pytest.mark.parametrize(("change", "param", "code"), [
    ({"messages": None}, "messages", "missing_required_parameter"),
    ({"model": None}, "model", "missing_required_parameter"),
    ({"model": 5}, "model", "invalid_type"),
    ({"messages": []}, "messages", "empty_array"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url.url", "missing_required_parameter"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
     "messages[0].content[0].type", "invalid_value"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "missing_required_parameter"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].function.arguments", "missing_required_parameter"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", "missing_required_parameter"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name",
     "missing_required_parameter"),
    ({"tool_choice": "auto"}, "tool_choice", "invalid_value"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"temperature": 2.5}, "temperature", "decimal_above_max_value"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"top_p": -0.1}, "top_p", "decimal_below_min_value"),
    ({"n": 0}, "n", "integer_below_min_value"),
    ({"n": True}, "n", "invalid_type"),
    ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens", "invalid_type"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
    ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format.json_schema.name",
     "missing_required_parameter"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "invalid_value"),
    ({"frobnicate": 1}, "frobnicate", None),
])
def test_invalid_requests_get_400_naming_the_param(sim, change, param, code):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = raw_chat(sim, body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    if param == "frobnicate":
        assert error["message"] == "Unrecognized request argument supplied: frobnicate"


def test_valid_full_request_is_accepted(sim):
    body = {
        "model": "gpt-4o", "temperature": 0.2, "top_p": 1, "n": 1, "seed": 7, "user": "u1", "store": False,
        "frequency_penalty": 0, "presence_penalty": 0.5, "logit_bias": {"50256": -100}, "metadata": {"a": "b"},
        "max_completion_tokens": 50, "parallel_tool_calls": True, "stop": "END", "service_tier": "auto",
        "response_format": {"type": "text"}, "tools": [WEATHER], "tool_choice": "none", "logprobs": False,
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "ok"}]},
        ],
    }
    r = raw_chat(sim, body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Simulated reply to: ok")


def test_reasoning_models_reject_max_tokens(sdk):
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="o3-mini", messages=HELLO, max_tokens=10)
    assert e.value.code == "unsupported_parameter" and e.value.param == "max_tokens"
    assert "Use 'max_completion_tokens' instead." in e.value.message
    ok = sdk.chat.completions.create(model="o3-mini", messages=HELLO, max_completion_tokens=10)
    assert ok.usage.completion_tokens == 10
    assert sdk.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=10).usage.completion_tokens == 10


def test_auth_is_required(sim, sim_url):
    r = sim.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
    assert r.status_code == 401
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}}
    bad = openai.OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-invalid", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="m", messages=HELLO)
    assert e.value.code == "invalid_api_key"
    assert sim.get("/v1/models", headers={"Authorization": "Bearer"}).status_code == 401


def test_malformed_json_body_and_unknown_route(sim):
    r = sim.post("/v1/chat/completions", content=b"{nope", headers={"Authorization": "Bearer k"})
    assert r.status_code == 400 and "could not parse the JSON body" in r.json()["error"]["message"]
    r = sim.post("/v1/chat/completions", json=["a"], headers={"Authorization": "Bearer k"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_type"
    r = sim.get("/v1/nothing", headers={"Authorization": "Bearer k"})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (GET /v1/nothing)"


def test_models(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert {"gpt-4o-mini", "gpt-4o", "deepseek-chat", "o3-mini"} <= set(ids)
    model = sdk.models.retrieve("made-up-model")
    assert model.id == "made-up-model" and model.object == "model"


def test_embeddings_are_deterministic_unit_vectors(sdk, sim):
    r = sdk.embeddings.create(model="text-embedding-3-small", input=["hello world", "other", "hello world"],
                                 encoding_format="float")
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2] and all(len(v) == 8 for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert abs(math.sqrt(sum(x * x for x in vectors[0])) - 1) < 1e-4
    assert r.usage.prompt_tokens == r.usage.total_tokens == 2 + 1 + 2
    # by default the SDK asks for base64 and decodes it: same floats, at float32 precision
    default = sdk.embeddings.create(model="text-embedding-3-small", input="hello world")
    assert default.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    b64 = sdk.embeddings.create(model="e", input="hello world", encoding_format="base64", dimensions=4)
    assert len(struct.unpack("<4f", base64.b64decode(b64.data[0].embedding))) == 4
    bad = sim.post("/v1/embeddings", headers={"Authorization": "Bearer k"}, json={"model": "e", "input": ""})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
