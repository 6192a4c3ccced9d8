"""The Gemini adapter: translations on representative inputs, then over real HTTP against the simulator."""

import orjson
import pytest

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, UpstreamFormatError, Usage, UsageEvent
from routing.adapters.gemini import SKIP_SIGNATURE, GeminiAdapter
from tests.routing.adapters import exchange
from tests.routing.adapters.exchange import PNG, WEATHER, call, last_request_body, post_raw, sse_data

ADAPTER = GeminiAdapter()
MODEL, SIGNING = "gemini-2.5-flash", "gemini-3-pro-preview"


def body_of(request, model=MODEL) -> dict:
    upstream = ADAPTER.to_upstream(request, upstream_model=model, base_url="https://g", api_key="k", stream=False)
    return orjson.loads(upstream.body)


def user(content="Hi"):
    return {"messages": [{"role": "user", "content": content}]}


def tool_call(call_id, name="get_weather", arguments='{"city":"Paris"}', **extra):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}, **extra}


def events_of(frames: list[dict]) -> list:
    return exchange.events_of(ADAPTER, frames)


# --- request translation -------------------------------------------------------------------------------------
def test_urls_and_headers():
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1beta", "http://h:1/v1beta/"):
        plain = ADAPTER.to_upstream(user(), upstream_model=MODEL, base_url=base, api_key="AIza", stream=False)
        assert plain.url == f"http://h:1/v1beta/models/{MODEL}:generateContent"
    streamed = ADAPTER.to_upstream(user(), upstream_model="models/" + MODEL, base_url="http://h:1", api_key="AIza",
                                   stream=True)
    assert streamed.url == f"http://h:1/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert streamed.headers == {"x-goog-api-key": "AIza", "content-type": "application/json"}
    assert orjson.loads(streamed.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_system_multi_turn_tool_calls_results_and_signatures():
    request = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            tool_call("call_1", thought_signature="c2lnLTE="), tool_call("call_2", arguments="{bad")]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
        {"role": "user", "content": "Thanks."},
    ], "tools": [WEATHER], "tool_choice": "auto"}
    body = body_of(request)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="},
            {"functionCall": {"name": "get_weather", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 21}}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "rainy"}}},
            {"text": "Thanks."}]}]
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["city"]}}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_unsigned_calls_get_the_placeholder_signature_on_gemini_3_only():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call("a"), tool_call("b")]},
                {"role": "tool", "tool_call_id": "a", "content": "x"},
                {"role": "tool", "tool_call_id": "b", "content": "y"}]
    parts = body_of({"messages": messages}, model=SIGNING)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [SKIP_SIGNATURE, None]
    assert all("thoughtSignature" not in p for p in body_of({"messages": messages})["contents"][1]["parts"])


def test_images_and_video_parts():
    content = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": PNG}},
               {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.webp?s=1"}},
               {"type": "video_url", "video_url": {"url": "https://x.test/clip.mov"}},
               {"type": "video_url", "video_url": {"url": "https://www.youtube.com/watch?v=abc"}},
               {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}]
    assert body_of(user(content))["contents"][0]["parts"] == [
        {"text": "Look"}, {"inlineData": {"mimeType": "image/png", "data": PNG.split(",", 1)[1]}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a/cat.webp?s=1"}},
        {"fileData": {"mimeType": "video/quicktime", "fileUri": "https://x.test/clip.mov"}},
        {"fileData": {"mimeType": "video/mp4", "fileUri": "https://www.youtube.com/watch?v=abc"}},
        {"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}}]


def test_generation_config():
    config = body_of({**user(), "max_completion_tokens": 80, "temperature": 3, "top_p": 0.9, "stop": "END", "n": 2,
                      "seed": 7, "reasoning_effort": "low"})["generationConfig"]
    assert config == {"maxOutputTokens": 80, "temperature": 2.0, "topP": 0.9, "stopSequences": ["END"],
                      "candidateCount": 2, "seed": 7,
                      "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    assert "generationConfig" not in body_of(user())
    thinking = {"type": "enabled", "budget_tokens": 2000}
    assert body_of({**user(), "thinking": thinking})["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2000


def test_json_schema_is_cut_to_what_gemini_accepts():
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "strict": True,
              "additionalProperties": False, "required": ["answer", "item"],
              "properties": {"answer": {"type": ["string", "null"], "description": "d"},
                             "item": {"$ref": "#/$defs/Item"},
                             "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
              "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer", "const": 1}},
                                 "additionalProperties": False}}}
    config = body_of({**user(), "response_format": {"type": "json_schema", "json_schema": {
        "name": "r", "strict": True, "schema": schema}}})["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseSchema": {
        "type": "object", "required": ["answer", "item"], "properties": {
            "answer": {"type": "string", "nullable": True, "description": "d"},
            "item": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}}}}
    json_object = body_of({**user(), "response_format": {"type": "json_object"}})["generationConfig"]
    assert json_object == {"responseMimeType": "application/json"}


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice(choice, expected):
    assert body_of({**user(), "tools": [WEATHER], "tool_choice": choice})["toolConfig"] == {
        "functionCallingConfig": expected}


def test_tool_without_parameters_is_declared_without_them():
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    assert body_of({**user(), "tools": [tool]})["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


# --- response translation -------------------------------------------------------------------------------------
def test_from_upstream_parts_ids_signatures_and_usage():
    answer = {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"text": "Thinking...", "thought": True}, {"text": "Let me check."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"}]}}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7,
                          "cachedContentTokenCount": 4, "totalTokenCount": 22},
        "modelVersion": MODEL, "responseId": "r1"}
    data, usage = ADAPTER.from_upstream(orjson.dumps(answer))
    message = data["choices"][0]["message"]
    assert message["content"] == "Let me check." and message["reasoning_content"] == "Thinking..."
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) > 10 and call["thought_signature"] == "c2ln"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == Usage(prompt_tokens=10, completion_tokens=12, cached_tokens=4, reasoning_tokens=7)
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 7


@pytest.mark.parametrize("reason, finish", [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                            ("RECITATION", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
                                            ("OTHER", "content_filter")])
def test_finish_reasons(reason, finish):
    answer = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert ADAPTER.from_upstream(orjson.dumps(answer))[0]["choices"][0]["finish_reason"] == finish


def test_blocked_prompt_and_invalid_answers():
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    data, usage = ADAPTER.from_upstream(orjson.dumps(blocked))
    assert data["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ""},
                                "finish_reason": "content_filter"}] and usage.prompt_tokens == 3
    for body in (b"nope", b"[]", b"{}", b'{"candidates": []}'):
        with pytest.raises(UpstreamFormatError):
            ADAPTER.from_upstream(body)


def test_stream_events():
    frames = [
        {"candidates": [{"content": {"parts": [{"text": "Hmm", "thought": True}]}, "index": 0}]},
        {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}},
        {"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "g", "args": {}}}]}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9, "thoughtsTokenCount": 2}}]
    events = events_of(frames)
    assert events[:2] == [ReasoningDelta("Hmm"), TextDelta("Hi")]
    first, second = events[2], events[3]
    assert (first.index, first.name, first.arguments, first.signature) == (0, "f", '{"a":1}', "c2ln")
    assert first.id.startswith("call_") and (second.index, second.name, second.signature) == (1, "g", None)
    assert events[4:] == [Finish("tool_calls"), UsageEvent(Usage(4, 11, 0, 2))]
    with pytest.raises(UpstreamFormatError):
        events_of(frames[:2])  # no finishReason
    error = {"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}
    assert events_of(frames[:1] + [error])[-1] == StreamError("Internal", "INTERNAL")
    assert events_of([{"promptFeedback": {"blockReason": "OTHER"}}]) == [Finish("content_filter")]


def test_error_detail():
    bad_key = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}
    assert ADAPTER.error_detail(400, orjson.dumps(bad_key)) == ("API key not valid.", "API_KEY_INVALID", None)
    too_long = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                          "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."}}
    assert ADAPTER.error_detail(400, orjson.dumps(too_long))[1] == "context_length_exceeded"
    field = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "m", "details": [
        {"fieldViolations": [{"field": "generation_config.top_p", "description": "d"}]}]}}
    assert ADAPTER.error_detail(400, orjson.dumps([field])) == ("m", "INVALID_ARGUMENT", "generation_config.top_p")
    assert ADAPTER.error_detail(503, b"") == ("HTTP 503", None, None)


# --- over real HTTP against the simulator ---------------------------------------------------------------------
SCENARIOS = {
    "text": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
             "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["NEVER"]},
    "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
              "tool_choice": "required"},
    "image": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe these"}, {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}]}]},
}


def expected_usage(result) -> Usage:
    """The usage the simulator reported: its answer's (or its last frame's) usageMetadata."""
    frame = orjson.loads(result.body) if result.body else sse_data(result.raw_lines)[-1]
    meta = frame["usageMetadata"]
    thoughts = meta.get("thoughtsTokenCount", 0)
    return Usage(meta["promptTokenCount"], meta["candidatesTokenCount"] + thoughts,
                 meta.get("cachedContentTokenCount", 0), thoughts)


def answer_of(result, stream):
    """(text, tool calls as OpenAI dicts, finish reason) of a plain answer or a stream."""
    if stream:
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]},
                  **({"thought_signature": c["signature"]} if c["signature"] else {})}
                 for c in result.tool_calls().values()]
        return result.text(), calls, result.finishes()[-1]
    choice = result.data["choices"][0]
    return choice["message"]["content"], choice["message"].get("tool_calls") or [], choice["finish_reason"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_live(sim, scenario, stream):
    result = call(ADAPTER, sim, SCENARIOS[scenario], model=MODEL, stream=stream)
    assert result.status == 200, result.body
    text, calls, finish = answer_of(result, stream)
    if scenario == "tools":
        assert finish == "tool_calls" and len(calls) == 1 and calls[0]["id"].startswith("call_")
        assert calls[0]["function"]["name"] == "get_weather"
        assert orjson.loads(calls[0]["function"]["arguments"])["city"]
    else:
        prompt = "Describe these" if scenario == "image" else "Say hello"
        assert finish == "stop" and not calls and text.startswith(f"Simulated reply to: {prompt}")
    assert result.usage == expected_usage(result) and result.usage.prompt_tokens > 0


def test_live_usage_with_cached_and_thought_tokens(sim):
    result = call(ADAPTER, sim, user("hi [[sim:cached=3]] [[sim:reasoning=5]]"), model=MODEL)
    assert result.usage == expected_usage(result)
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (3, 5)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_live_gemini_3_tool_loop_sends_the_thought_signature_back(sim, stream):
    request = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
               "reasoning_effort": "low"}
    first = call(ADAPTER, sim, request, model=SIGNING, stream=stream)
    assert first.status == 200, first.body
    _, calls, finish = answer_of(first, stream)
    assert finish == "tool_calls" and calls[0]["thought_signature"]
    request["messages"] += [{"role": "assistant", "content": None, "tool_calls": calls},
                            {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'}]
    second = call(ADAPTER, sim, request, model=SIGNING, stream=stream)
    assert second.status == 200, second.body
    text, _, finish = answer_of(second, stream)
    assert finish == "stop" and text.startswith("Simulated reply to:")
    sent = last_request_body(sim)["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == calls[0]["thought_signature"]
    assert sent["functionCall"]["name"] == "get_weather"
    assert last_request_body(sim)["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_weather", "response": {"result": {"temp": 21}}}

    def strip_signature(body):
        del body["contents"][1]["parts"][0]["thoughtSignature"]
    refused = post_raw(ADAPTER, sim, request, model=SIGNING, edit=strip_signature)
    assert refused.status_code == 400 and "thought_signature" in refused.json()["error"]["message"]


def test_live_json_schema(sim):
    schema = {"type": "object", "additionalProperties": False, "required": ["answer", "n"],
              "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}}}
    request = {**user("Answer me"), "response_format": {"type": "json_schema", "json_schema": {
        "name": "reply", "strict": True, "schema": schema}}}
    result = call(ADAPTER, sim, request, model=MODEL)
    assert result.status == 200, result.body
    assert orjson.loads(result.data["choices"][0]["message"]["content"]) == {"answer": "sample_answer", "n": 1}


def test_live_candidates_become_choices(sim):
    result = call(ADAPTER, sim, {**user(), "n": 2}, model=MODEL)
    assert [c["index"] for c in result.data["choices"]] == [0, 1]


def test_live_model_without_video_names_itself(sim):
    result = call(ADAPTER, sim, SCENARIOS["image"], model="gemini-2.0-flash-novideo")
    assert result.status == 400
    message, code, _ = ADAPTER.error_detail(400, result.body)
    assert code == "INVALID_ARGUMENT" and "gemini-2.0-flash-novideo" in message
