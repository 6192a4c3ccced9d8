"""The simulator speaks Anthropic's Messages API: checked with the official `anthropic` SDK and raw HTTP."""

import json
import time

import anthropic
import pytest

from simulator.tokens import count_tokens, pieces
from tests.simulator.sim_helpers import KEY, named_events, raw_messages

pytestmark = pytest.mark.live

MODEL = "claude-sim-1"
SYSTEM = "Be brief."
HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]
HELLO_INPUT_TOKENS = 19  # 2 x 4 overhead + "Be brief." (3) + "Hello there, how are you today?" (8)
WEATHER = {"name": "get_weather", "description": "Weather for a city", "input_schema": {
    "type": "object", "required": ["city", "unit", "days"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}, "hourly": {"type": "boolean"}}}}
WEATHER_ARGS = {"city": "sample_city", "unit": "celsius", "days": 1}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
THINKING = {"type": "enabled", "budget_tokens": 1024}
NO_DELAY = {"x-sim-chunk-delay-ms": "0"}


def create(claude, **kwargs):
    return claude.messages.create(**{"model": MODEL, "max_tokens": 256, "messages": HELLO, **kwargs})


def test_message_has_anthropic_shape_and_real_usage(claude, sim):
    r = create(claude, system=SYSTEM)
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant" and r.model == MODEL
    assert [b.type for b in r.content] == ["text"]
    assert r.content[0].text == "Simulated reply to: Hello there, how are you today"  # 12 tokens
    assert (r.stop_reason, r.stop_sequence) == ("end_turn", None)
    assert (r.usage.input_tokens, r.usage.output_tokens) == (HELLO_INPUT_TOKENS, 12)
    assert r.usage.cache_read_input_tokens == r.usage.cache_creation_input_tokens == 0
    counted = claude.messages.count_tokens(model=MODEL, system=SYSTEM, messages=HELLO)
    assert counted.input_tokens == HELLO_INPUT_TOKENS
    raw = raw_messages(sim, {"model": MODEL, "max_tokens": 10, "messages": HELLO})
    assert raw.headers["request-id"].startswith("req_") and "x-request-id" not in raw.headers
    body = raw.json()
    assert list(body) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} <= set(
        body["usage"])
    assert body["content"] == [{"type": "text", "text": "Simulated reply to: Hello there, how are"}]  # 10 tokens


def test_magic_tokens_set_length_and_cache_reads(claude):
    r = create(claude, messages=[{"role": "user", "content": "Write [[sim:tokens=30]] [[sim:cached=4]]"}])
    assert count_tokens(r.content[0].text) == 30 and "[[sim" not in r.content[0].text
    prompt = 4 + count_tokens("Write [[sim:tokens=30]] [[sim:cached=4]]")
    assert (r.usage.input_tokens, r.usage.cache_read_input_tokens) == (prompt - 4, 4)  # input excludes cache reads
    assert r.usage.output_tokens == 30


def test_max_tokens_and_stop_sequences(claude):
    r = create(claude, max_tokens=5)
    assert (r.stop_reason, r.content[0].text, r.usage.output_tokens) == ("max_tokens", "Simulated reply to:", 5)
    r = create(claude, stop_sequences=["nothing", "how", "there"])
    assert (r.stop_reason, r.stop_sequence) == ("stop_sequence", "there")  # the earliest match wins
    assert r.content[0].text == "Simulated reply to: Hello "
    assert r.usage.output_tokens == count_tokens("Simulated reply to: Hello ")


def test_stream_events_and_wire_framing(claude, sim):
    plain = create(claude, system=SYSTEM)
    events = list(create(claude, system=SYSTEM, stream=True))
    assert [e.type for e in events] == ["message_start", "content_block_start", *["content_block_delta"] * 12,
                                        "content_block_stop", "message_delta", "message_stop"]
    start = events[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None
    assert (start.usage.input_tokens, start.usage.output_tokens) == (HELLO_INPUT_TOKENS, 1)
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == plain.content[0].text
    assert (events[-2].delta.stop_reason, events[-2].usage.output_tokens) == ("end_turn", 12)
    with claude.messages.stream(model=MODEL, max_tokens=256, system=SYSTEM, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == plain.content[0].text and final.usage.output_tokens == 12
    # on the wire: "event: <type>" names each data frame, and a ping comes after the first block opens
    r = raw_messages(sim, {"model": MODEL, "max_tokens": 3, "stream": True, "messages": HELLO})
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["request-id"]
    frames = named_events(r.text)
    assert all(name == data["type"] for name, data in frames)
    assert [name for name, _ in frames] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                            "content_block_delta", "content_block_delta", "content_block_stop",
                                            "message_delta", "message_stop"]
    assert frames[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                             "usage": {"output_tokens": 3}}


def test_first_stream_event_arrives_before_the_stream_ends(claude):
    start = time.monotonic()
    first = None
    for _ in create(claude, stream=True, extra_headers={"x-sim-chunk-delay-ms": "40"}):
        first = first or time.monotonic() - start
    total = time.monotonic() - start
    assert total >= 17 * 0.04 * 0.95 and first < total / 3  # 18 frames (ping included), 17 gaps


def test_forced_tool_use_then_text_after_tool_result(claude):
    r = create(claude, tools=[TIME, WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert r.stop_reason == "tool_use" and [b.type for b in r.content] == ["tool_use"]  # forced: no preamble
    (call,) = r.content
    assert call.id.startswith("toolu_") and call.name == "get_weather" and call.input == WEATHER_ARGS
    assert r.usage.output_tokens == len(pieces(json.dumps(WEATHER_ARGS, separators=(",", ":"))))
    messages = [*HELLO, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                              "content": [{"type": "text", "text": "Sunny and 21 degrees"}]}]}]
    r2 = create(claude, tools=[WEATHER], messages=messages)
    assert r2.stop_reason == "end_turn" and r2.content[0].text.startswith("Simulated reply to: Sunny and 21 degrees")


def test_tool_choice_auto_any_and_none(claude):
    auto = create(claude, tools=[TIME, WEATHER])
    assert [b.type for b in auto.content] == ["text", "tool_use"] and auto.content[1].name == "get_time"
    assert auto.content[0].text == "I'll use the get_time tool."
    assert auto.usage.output_tokens == count_tokens(auto.content[0].text) + len(pieces("{}"))
    anyone = create(claude, tools=[WEATHER, TIME], tool_choice={"type": "any"})
    assert [b.type for b in anyone.content] == ["tool_use"] and anyone.content[0].input == WEATHER_ARGS
    none = create(claude, tools=[WEATHER], tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn" and [b.type for b in none.content] == ["text"]


def test_streamed_tool_use_sends_input_json_fragments(claude):
    events = list(create(claude, tools=[WEATHER], stream=True))
    starts = [e for e in events if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["text", "tool_use"] and starts[1].index == 1
    assert starts[1].content_block.input == {} and starts[1].content_block.id.startswith("toolu_")
    fragments = [e.delta.partial_json for e in events if e.type == "content_block_delta"
                 and e.delta.type == "input_json_delta"]
    assert fragments[0] == "" and len(fragments) > 5 and json.loads("".join(fragments)) == WEATHER_ARGS
    assert events[-2].delta.stop_reason == "tool_use"
    with claude.messages.stream(model=MODEL, max_tokens=256, messages=HELLO, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert final.content[1].input == WEATHER_ARGS


def test_thinking_block_comes_first_and_counts_as_output(claude):
    r = create(claude, max_tokens=2048, thinking=THINKING)
    thinking, text = r.content
    assert thinking.type == "thinking" and thinking.signature and count_tokens(thinking.thinking) == 16
    assert thinking.thinking.startswith("Simulated thinking about: Hello there")
    assert text.type == "text" and r.usage.output_tokens == 16 + 12
    r = create(claude, max_tokens=1030, thinking=THINKING,
               messages=[{"role": "user", "content": "think [[sim:reasoning=1020]]"}])
    assert count_tokens(r.content[0].thinking) == 1020 and r.stop_reason == "max_tokens"  # thinking eats max_tokens
    assert r.usage.output_tokens == 1030
    events = list(create(claude, max_tokens=2048, thinking=THINKING, stream=True))
    deltas = [e.delta for e in events if e.type == "content_block_delta" and e.index == 0]
    assert [d.type for d in deltas] == ["thinking_delta"] * 16 + ["signature_delta"]
    assert "".join(d.thinking for d in deltas[:-1]) == thinking.thinking and deltas[-1].signature == thinking.signature


def test_thinking_tool_loop_needs_the_thinking_block_back(claude):
    first = create(claude, max_tokens=2048, thinking=THINKING, tools=[WEATHER])
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use"]
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[2]["id"], "content": "Sunny"}]}
    ok = create(claude, max_tokens=2048, thinking=THINKING, tools=[WEATHER],
                messages=[*HELLO, {"role": "assistant", "content": blocks}, result])
    assert ok.content[-1].text.startswith("Simulated reply to: Sunny")
    with pytest.raises(anthropic.BadRequestError) as e:
        create(claude, max_tokens=2048, thinking=THINKING, tools=[WEATHER],
               messages=[*HELLO, {"role": "assistant", "content": blocks[1:]}, result])
    assert e.value.api_message.startswith("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, "
                                          "but found `text`.")


@pytest.mark.parametrize(("change", "message"), [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"messages": None}, "messages: Field required"),
    ({"frobnicate": 1}, "frobnicate: Extra inputs are not permitted"),
    ({"max_tokens": "many"}, "max_tokens: Input should be a valid integer"),
    ({"max_tokens": True}, "max_tokens: Input should be a valid integer"),
    ({"messages": []}, "messages: at least one message is required"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or 'assistant'"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, 'messages: first message must use the "user" role'),
    ({"messages": [{"role": "user", "content": ""}]}, "messages.0: all messages must have non-empty content except "
                                                      "for the optional final assistant message"),
    ({"messages": [{"role": "user", "content": "x", "name": "bob"}]},
     "messages.0.name: Extra inputs are not permitted"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
     "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected tags: "),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/bmp", "data": "AAAA"}}]}]},
     "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
     "'image/webp'"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "data:image/png;base64,AAAA"}}]}]},
     "messages.0.content.0.image.source.base64.data: Invalid base64 data"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]},
     "messages.0.content.0.tool_use.input: Field required"),
    ({"messages": [*HELLO, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}, {"role": "user", "content": "and?"}]},
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1."),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "x"}]}]},
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: t9."),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text.text: Field required"),
    ({"system": [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]},
     "system.0.text.cache_control.type: Input should be 'ephemeral'"),
    ({"system": {"text": "x"}}, "system: Input should be a valid string"),
    ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
    ({"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    ({"stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
    ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session: Extra inputs are not permitted"),
    ({"tools": [{"name": "f"}]}, "tools.0.custom.input_schema: Field required"),
    ({"tools": [{"name": "f", "input_schema": {"type": "array"}}]}, "tools.0.custom.input_schema.type: Input should "
                                                                   "be 'object'"),
    ({"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "tools.0.custom.name: String should match"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools.0: Input tag 'function' found using 'type'"),
    ({"tool_choice": {"type": "required"}}, "tool_choice: Input tag 'required' found using 'type' does not match any "
                                            "of the expected tags: 'auto', 'any', 'none', 'tool'"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.tool.name: Field required"),
    ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "thinking.enabled.budget_tokens: Input should be greater "
                                                              "than or equal to 1024"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "`max_tokens` must be greater than "
                                                               "`thinking.budget_tokens`."),
    ({"max_tokens": 4096, "thinking": THINKING, "temperature": 0.5}, "`temperature` may only be set to 1 when "
                                                                     "thinking is enabled."),
    ({"max_tokens": 4096, "thinking": THINKING, "tools": [TIME], "tool_choice": {"type": "any"}},
     "Thinking may not be enabled when tool_choice forces tool use."),
])
def test_invalid_requests_get_400_in_anthropic_wording(sim, change, message):
    body = {"model": MODEL, "max_tokens": 1024, "messages": HELLO, **change}
    r = raw_messages(sim, {k: v for k, v in body.items() if v is not None})
    assert r.status_code == 400, r.text
    error = r.json()
    assert set(error) == {"type", "error", "request_id"} and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["message"].startswith(message)
    assert error["request_id"] == r.headers["request-id"]


def test_valid_full_request_is_accepted(sim):
    body = {
        "model": MODEL, "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"}, "service_tier": "auto", "stream": False, "tools": [WEATHER, TIME],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "x"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                                          "content": [{"type": "text", "text": "noon"}]}]},
        ],
    }
    r = raw_messages(sim, body)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"].startswith("Simulated reply to: noon")


def test_count_tokens(claude, sim):
    base = claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "look"}]).input_tokens
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    with_image = claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, image]}]).input_tokens
    with_tools = claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "look"}],
                                              tools=[WEATHER]).input_tokens
    assert (base, with_image) == (5, 5 + 85) and with_tools > 5 + 20
    assert create(claude, messages=[{"role": "user", "content": "look"}], tools=[WEATHER],
                  tool_choice={"type": "none"}).usage.input_tokens == with_tools
    r = raw_messages(sim, {"model": MODEL, "max_tokens": 5, "messages": HELLO}, path="/v1/messages/count_tokens")
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens: Extra inputs are not permitted"


def test_auth_and_version_headers(sim, sim_url):
    body = {"model": MODEL, "max_tokens": 5, "messages": HELLO}
    r = sim.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"] == {"type": "authentication_error",
                                                          "message": "x-api-key header is required"}
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-invalid", max_retries=0).messages.create(**body)
    assert e.value.type == "authentication_error" and e.value.request_id.startswith("req_")
    r = sim.post("/v1/messages", json=body, headers={"x-api-key": KEY})
    assert r.status_code == 400 and r.json()["error"]["message"] == "anthropic-version: header is required"
    r = raw_messages(sim, body, headers={"anthropic-version": "2024-13-01"})
    assert r.json()["error"]["message"] == 'anthropic-version: "2024-13-01" is not a valid version'
    bearer = sim.post("/v1/messages", json=body, headers={"Authorization": f"Bearer {KEY}",
                                                          "anthropic-version": "2023-06-01"})
    assert bearer.status_code == 200
    bad = sim.post("/v1/messages", content=b"{nope", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_no_vision_model_rejects_images(sim):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]
    r = raw_messages(sim, {"model": "claude-no-vision", "max_tokens": 5, "messages": messages})
    assert r.status_code == 400 and r.json()["error"]["message"] == ("messages.0.content.1: claude-no-vision does "
                                                                    "not support image input.")
    assert raw_messages(sim, {"model": MODEL, "max_tokens": 5, "messages": messages}).status_code == 200


def test_request_log_masks_the_api_key(claude, sim):
    create(claude, metadata={"user_id": "u-7"})  # this SDK sends its key as a bearer token
    raw_messages(sim, {"model": MODEL, "max_tokens": 5, "messages": HELLO}, key="sk-ant-secret-9876")
    by_sdk, by_raw = sim.get("/_sim/requests").json()["requests"]
    assert by_sdk["path"] == "/v1/messages" and by_sdk["headers"]["authorization"] == "***" + KEY[-4:]
    assert by_sdk["body"]["metadata"] == {"user_id": "u-7"} and by_raw["headers"]["x-api-key"] == "***9876"
    assert KEY not in json.dumps(by_sdk) and "secret" not in json.dumps(by_raw)


# --- faults, in Anthropic's error shape -------------------------------------------------------------

@pytest.mark.parametrize(("status", "error_class", "kind"), [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (402, anthropic.PaymentRequiredError, "billing_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (413, anthropic.ContentTooLargeError, "request_too_large"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (529, anthropic.OverloadedError, "overloaded_error"),
])
def test_status_fault_by_header(claude, status, error_class, kind):
    with pytest.raises(error_class) as e:
        create(claude, extra_headers={"x-sim-fault": f"status:{status}"})
    body = e.value.response.json()
    assert e.value.status_code == status and e.value.type == kind
    assert set(body) == {"type", "error", "request_id"} and set(body["error"]) == {"type", "message"}
    assert body["request_id"] == e.value.request_id == e.value.response.headers["request-id"]
    assert e.value.response.headers.get("retry-after") == ("1" if status == 429 else None)
    if status == 404:
        assert e.value.api_message == f"model: {MODEL}"


def test_faults_by_magic_token_quota_and_context_length(claude):
    with pytest.raises(anthropic.OverloadedError):
        create(claude, system="x [[sim:fault=status:529]]")
    with pytest.raises(anthropic.OverloadedError):  # streamed too, before any event
        create(claude, system="x [[sim:fault=status:529]]", stream=True)
    with pytest.raises(anthropic.BadRequestError) as e:
        create(claude, messages=[{"role": "user", "content": "[[sim:fault=quota]]"}])
    assert e.value.api_message.startswith("Your credit balance is too low to access the Anthropic API.")
    with pytest.raises(anthropic.BadRequestError) as e:
        create(claude, messages=[{"role": "user", "content": "[[sim:fault=context_length]]"}])
    assert e.value.api_message.startswith("prompt is too long: ")


def test_stream_error_fault_sends_an_error_event(claude, sim):
    received = []
    with pytest.raises(anthropic.APIStatusError) as e:
        for event in create(claude, stream=True, extra_headers={"x-sim-fault": "stream_error:3"}):
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]  # the third frame was the ping
    assert e.value.type == "overloaded_error"
    r = raw_messages(sim, {"model": MODEL, "max_tokens": 50, "stream": True, "messages": HELLO},
                     headers={"x-sim-fault": "stream_error:1"})
    assert named_events(r.text)[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                             "message": "Overloaded"}})
    with pytest.raises(anthropic.OverloadedError):  # not streamed: a plain 529
        create(claude, extra_headers={"x-sim-fault": "stream_error"})


def test_output_faults_on_messages(claude, sim):
    body = {"model": MODEL, "max_tokens": 50, "messages": HELLO}
    with pytest.raises(anthropic.APIConnectionError):
        create(claude, extra_headers={"x-sim-fault": "break"})
    cut = raw_messages(sim, body, headers={"x-sim-fault": "truncate"})
    assert cut.status_code == 200 and len(cut.content) == len(raw_messages(sim, body).content) // 2
    r = raw_messages(sim, {**body, "stream": True}, headers={"x-sim-fault": "invalid_json"})
    with pytest.raises(json.JSONDecodeError):
        named_events(r.text)
    refused = create(claude, messages=[{"role": "user", "content": "hi [[sim:fault=content_filter]]"}])
    assert refused.stop_reason == "refusal" and refused.usage.output_tokens == 6


def test_scripted_faults_per_key(sim, sim_url):
    channel = anthropic.Anthropic(base_url=sim_url, api_key="sk-ant-channel-a", max_retries=0)
    other = anthropic.Anthropic(base_url=sim_url, api_key=KEY, max_retries=0)
    sim.post("/_sim/faults", json={"key": "sk-ant-channel-a", "fault": "status:429", "count": 2})
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError):
            channel.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        assert other.messages.create(model=MODEL, max_tokens=5, messages=HELLO).content
    assert channel.messages.create(model=MODEL, max_tokens=5, messages=HELLO).content


# --- what Claude Code 2.1 sends ---------------------------------------------------------------------------
CLAUDE_CODE_BETAS = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                       "context-management-2025-06-27,per-turn-control-2026-07-01,effort-2025-11-24"}
READ = {"name": "Read", "description": "Reads a file.", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
    "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
AGENT = {"name": "Agent", "input_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}}}


def claude_code_body(prompt="hello there", **changes):
    """The shape of Claude Code 2.1's requests (captured from the pinned client; texts shortened)."""
    return {"model": "claude-opus-5-5", "max_tokens": 128000, "stream": False,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1;"},
                       {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]},
                         {"role": "system", "content": [{"type": "text", "text": "# Environment"}],
                          "output_config": {"effort": "medium"}}],
            "tools": [AGENT, READ, {"name": "DeferredToolPlaceholder", "defer_loading": True,
                                    "input_schema": {"type": "object", "properties": {}}}],
            "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
            "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "medium"}, **changes}


def test_claude_code_request_is_accepted_with_its_betas(sim):
    r = raw_messages(sim, claude_code_body("hi [[sim:tool=none]]"), headers=CLAUDE_CODE_BETAS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["thinking"] == "" and body["content"][0]["signature"]   # display: omitted
    assert body["stop_reason"] == "end_turn"


@pytest.mark.parametrize(("change", "headers", "message"), [
    ({}, {}, "messages.1.role: Input should be 'user' or 'assistant'"),   # a system turn needs its beta
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}, CLAUDE_CODE_BETAS,
     "messages.1.content.0.type: a system message may only contain text blocks"),
    ({"context_management": {"edits": "all"}}, CLAUDE_CODE_BETAS, "context_management.edits: Input should be a "
                                                                   "valid list"),
    ({"output_config": {"effort": "huge"}}, CLAUDE_CODE_BETAS, "output_config.effort: Input should be 'low'"),
    ({"thinking": {"type": "adaptive", "budget_tokens": 2048}}, CLAUDE_CODE_BETAS,
     "thinking.adaptive.budget_tokens: Extra inputs are not permitted"),
    ({"not_a_field": 1}, CLAUDE_CODE_BETAS, "not_a_field: Extra inputs are not permitted"),
])
def test_claude_code_shapes_refused_like_anthropic(sim, change, headers, message):
    r = raw_messages(sim, claude_code_body(**change), headers=headers)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message), r.text


def test_sim_tool_directive_picks_the_tool_or_none(sim):
    called = raw_messages(sim, claude_code_body("look [[sim:tool=Read]]"), headers=CLAUDE_CODE_BETAS).json()
    uses = [b for b in called["content"] if b["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["Read"] and uses[0]["input"] == {"file_path": "sample_file_path"}
    assert called["stop_reason"] == "tool_use"
    first = raw_messages(sim, claude_code_body("look"), headers=CLAUDE_CODE_BETAS).json()   # no directive: the first
    assert [b["name"] for b in first["content"] if b["type"] == "tool_use"] == ["Agent"]
    absent = raw_messages(sim, claude_code_body("look [[sim:tool=Bash]]"), headers=CLAUDE_CODE_BETAS).json()
    assert not [b for b in absent["content"] if b["type"] == "tool_use"]


def _usage(sim, system, messages=HELLO):
    r = raw_messages(sim, {"model": MODEL, "max_tokens": 50, "system": system, "messages": messages})
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def test_cache_control_writes_then_reads_the_prefix_with_its_ttl(sim):
    unique = f"You are the cache test {time.time_ns()}."   # the simulator's cache lives as long as its process
    system = [{"type": "text", "text": unique + " One two three.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Four five six seven.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first, second = _usage(sim, system), _usage(sim, system)
    total = first["input_tokens"] + first["cache_creation_input_tokens"]
    assert first["cache_read_input_tokens"] == 0
    split = first["cache_creation"]
    assert split["ephemeral_5m_input_tokens"] == 4 + count_tokens(unique + " One two three.")   # with the overhead
    assert split["ephemeral_1h_input_tokens"] == count_tokens("Four five six seven.")
    assert first["cache_creation_input_tokens"] == sum(split.values())
    # the same prefix again: read from the cache, nothing written, the rest (the user turn) is input
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0 and second["input_tokens"] == first["input_tokens"]
    assert second["input_tokens"] + second["cache_read_input_tokens"] == total
    # a longer conversation on the same prefix: reads the prefix, writes up to its new breakpoint
    marked = {"type": "text", "text": "And you?", "cache_control": {"type": "ephemeral"}}
    longer = [HELLO[0], {"role": "assistant", "content": "Fine."}, {"role": "user", "content": [marked]}]
    third = _usage(sim, system, longer)
    assert third["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert third["cache_creation"]["ephemeral_5m_input_tokens"] > 0 and third["input_tokens"] == 0
    # a changed prefix misses; no cache_control, no caching
    changed = [{**system[0], "text": unique + " Changed."}, system[1]]
    assert _usage(sim, changed)["cache_read_input_tokens"] == 0
    plain = _usage(sim, unique + " plain")
    assert plain["cache_read_input_tokens"] == plain["cache_creation_input_tokens"] == 0


def test_stream_interleaves_signed_thinking_text_and_tool_use_in_order(sim):
    body = claude_code_body("look [[sim:tool=Read]]", stream=True, thinking={"type": "adaptive"})
    r = raw_messages(sim, body, headers=CLAUDE_CODE_BETAS)
    events = named_events(r.text)
    starts = [(e["index"], e["content_block"]["type"]) for n, e in events if n == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    deltas = [e["delta"]["type"] for n, e in events if n == "content_block_delta" and e["index"] == 0]
    assert deltas[-1] == "signature_delta" and set(deltas[:-1]) == {"thinking_delta"}
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    usage = events[0][1]["message"]["usage"]
    assert usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"] > 0   # system's breakpoint
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
