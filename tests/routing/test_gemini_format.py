"""The Gemini inbound format on its own (no server): request → canonical, canonical answer and events → Gemini's
response and chunks, the JSON-array stream, errors in Google's shape."""
import asyncio
from dataclasses import dataclass

import orjson
import pytest

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.relay import errors
from routing.relay.formats import gemini
from routing.relay.formats.gemini import ChunkRenderer, complete, json_array, to_canonical


@dataclass
class Model:
    public_id: str = "google/gemini-2.5-flash"


class Call:
    """What the format reads of a RelayCall."""
    hex_id = "ab" * 12
    model = Model()

    def cost_now(self, usage):
        return 0.000123


def test_a_conversation_with_a_function_call_and_its_response():
    payload = {"model": "gemini-2.5-flash", "systemInstruction": {"parts": [{"text": "Be brief."}]},
               "contents": [
                   {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                   {"role": "model", "parts": [{"text": "Checking", "thought": True, "thoughtSignature": "Y2xh"},
                                               {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                                "thoughtSignature": "c2ln"}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                    "response": {"output": "18C"}}}]}]}
    canonical = to_canonical(payload)
    system, user, assistant, tool = canonical["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user == {"role": "user", "content": "Weather in Paris?"}
    call = assistant["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["thought_signature"] == "c2ln" and assistant["reasoning_content"] == "Checking"
    assert assistant["thinking_signature"] == "Y2xh"
    assert assistant["content"] is None
    assert tool == {"role": "tool", "tool_call_id": call["id"], "content": "18C"}   # matched by name
    assert canonical["model"] == "gemini-2.5-flash" and canonical["_translated"] is True


def test_function_responses_find_their_calls_by_id_first():
    calls = [{"functionCall": {"id": "a", "name": "f", "args": {}}}, {"functionCall": {"id": "b", "name": "f"}}]
    results = [{"functionResponse": {"id": "b", "name": "f", "response": {"n": 2}}},
               {"functionResponse": {"id": "a", "name": "f", "response": {"n": 1}}}]
    canonical = to_canonical({"contents": [{"role": "user", "parts": [{"text": "go"}]},
                                           {"role": "model", "parts": calls}, {"role": "user", "parts": results}]})
    assert [(m["tool_call_id"], m["content"]) for m in canonical["messages"][2:]] == [("b", '{"n":2}'),
                                                                                       ("a", '{"n":1}')]


def test_media_parts():
    parts = [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
             {"fileData": {"mimeType": "video/mp4", "fileUri": "https://example.com/v.mp4"}},
             {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}]
    (message,) = to_canonical({"contents": [{"parts": parts}]})["messages"]
    assert message["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]


def test_tools_generation_config_and_thinking():
    payload = {"contents": [{"parts": [{"text": "x"}]}],
               "tools": [{"functionDeclarations": [
                   {"name": "a", "parameters": {"type": "OBJECT", "properties": {
                       "q": {"type": "STRING", "nullable": True}, "n": {"type": "ARRAY", "items": {"type": "INTEGER"}}},
                       "propertyOrdering": ["q", "n"]}},
                   {"name": "b", "parametersJsonSchema": {"type": "object", "additionalProperties": False}},
                   {"name": "c"}]}, {"googleSearch": {}}],
               "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}},
               "generationConfig": {"maxOutputTokens": 99, "temperature": 0.3, "topP": 0.9, "stopSequences": ["Z"],
                                    "candidateCount": 2, "responseMimeType": "application/json",
                                    "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
                                    "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}}
    canonical = to_canonical(payload)
    a, b, c = (t["function"] for t in canonical["tools"])   # built-in tools are left to Gemini channels
    assert a["parameters"] == {"type": "object", "properties": {
        "q": {"type": ["string", "null"]}, "n": {"type": "array", "items": {"type": "integer"}}}}
    assert b["parameters"] == {"type": "object", "additionalProperties": False}
    assert c["parameters"] == {"type": "object", "properties": {}}
    assert canonical["tool_choice"] == {"type": "function", "function": {"name": "b"}}
    assert (canonical["max_tokens"], canonical["temperature"], canonical["top_p"], canonical["stop"],
            canonical["n"]) == (99, 0.3, 0.9, ["Z"], 2)
    assert canonical["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "response", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    assert canonical["thinking"] == {"type": "enabled", "budget_tokens": 8192} and "reasoning_effort" not in canonical


@pytest.mark.parametrize("thinking, budget", [({"thinkingBudget": 0}, None), ({"thinkingBudget": -1}, 8192),
                                              ({"thinkingBudget": 512}, 1024), ({"thinkingBudget": 30000}, 30000),
                                              ({"thinkingLevel": "HIGH"}, 24576), ({"thinkingLevel": "LOW"}, 1024),
                                              ({}, None)])
def test_thinking_budgets_and_levels(thinking, budget):
    canonical = to_canonical({"contents": [{"parts": [{"text": "x"}]}],
                              "generationConfig": {"thinkingConfig": thinking}})
    assert (canonical.get("thinking") or {}).get("budget_tokens") == budget


@pytest.mark.parametrize("payload, field", [
    ({"contents": [{"parts": []}]}, "contents[0].parts"),
    ({"contents": [{"parts": ["hi"]}]}, "contents[0].parts[0]"),
    ({"contents": [{"parts": [{"functionCall": {"name": "f", "args": []}}]}]},
     "contents[0].parts[0].functionCall.args"),
    ({"contents": [{"parts": [{"inlineData": {"data": 1}}]}]}, "contents[0].parts[0].inlineData.data"),
    ({"contents": [{"parts": [{"text": "x"}]}], "systemInstruction": {"parts": "x"}}, "systemInstruction.parts[0]"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": {"thinkingBudget": 1.5}}},
     "generationConfig.thinkingConfig.thinkingBudget"),
    ({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": 1}}},
     "toolConfig.functionCallingConfig.mode"),
])
def test_bad_input_is_a_400_naming_the_field(payload, field):
    with pytest.raises(errors.RelayError) as exc:
        to_canonical(payload)
    assert exc.value.status == 400 and exc.value.param == field


def test_complete_renders_a_generate_content_response():
    data = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Sure", "reasoning_content": "hmm", "thinking_signature": "Y2xh",
        "tool_calls": [{"id": "call_1", "type": "function", "thought_signature": "c2ln",
                        "function": {"name": "f", "arguments": '{"a": 1}'}}]}}]}
    usage = Usage(prompt_tokens=10, completion_tokens=7, cached_tokens=4, reasoning_tokens=2)
    body = complete(Call(), data, usage)
    candidate = body["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [
        {"text": "hmm", "thought": True, "thoughtSignature": "Y2xh"}, {"text": "Sure"},
        {"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"}]}
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 17,
                                     "cachedContentTokenCount": 4, "thoughtsTokenCount": 2, "cost": 0.000123}
    assert body["responseId"] == "req_" + Call.hex_id and body["modelVersion"] == "google/gemini-2.5-flash"


def frames(chunks: list[bytes]) -> list[dict]:
    return [orjson.loads(f[6:]) for c in chunks for f in c.split(b"\r\n\r\n") if f]


def test_stream_chunks_with_whole_function_calls_and_usage_last():
    renderer = ChunkRenderer(Call())
    out = []
    for event in (ReasoningDelta("hmm"), TextDelta("Hel"), TextDelta("lo"),
                  ToolCallDelta(0, "call_1", "f", '{"a":'), ToolCallDelta(0, arguments=" 1}"),
                  ToolCallDelta(1, "call_2", "g", "{}"), Finish("tool_calls"),
                  UsageEvent(Usage(prompt_tokens=3, completion_tokens=4))):
        out += renderer.render(event)
    out += renderer.finish()
    parts = [f["candidates"][0]["content"]["parts"] for f in frames(out)]
    assert parts[:3] == [[{"text": "hmm", "thought": True}], [{"text": "Hel"}], [{"text": "lo"}]]
    assert parts[3] == [{"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}},
                        {"functionCall": {"id": "call_2", "name": "g", "args": {}}}]
    last = frames(out)[-1]
    assert last["candidates"][0]["finishReason"] == "STOP" and last["usageMetadata"]["totalTokenCount"] == 7
    assert all("usageMetadata" not in f for f in frames(out)[:-1])
    with pytest.raises(errors.RelayError):
        renderer.render(StreamError("boom"))
    (error,) = frames(renderer.error(errors.upstream_unavailable("x"), "req_1"))
    assert error["error"]["code"] == 502 and error["error"]["status"] == "UNAVAILABLE"


def test_json_array_framing():
    async def sse():
        yield gemini.sse({"a": 1}) + gemini.sse({"a": 2})
        yield gemini.sse({"a": 3})

    async def collect(source):
        return b"".join([chunk async for chunk in json_array(source)])

    assert orjson.loads(asyncio.run(collect(sse()))) == [{"a": 1}, {"a": 2}, {"a": 3}]

    async def nothing():
        return
        yield

    assert orjson.loads(asyncio.run(collect(nothing()))) == []


def test_errors_in_googles_shape():
    err = errors.RelayError(429, "rate_limit_error", "rate_limited", "Slow down.", headers={"Retry-After": "3"})
    response = gemini.error_response(err, "req_9")
    body = orjson.loads(response.content)["error"]
    assert response.status_code == 429 and response["Retry-After"] == "3" and response["X-Request-Id"] == "req_9"
    assert body["code"] == 429 and body["status"] == "RESOURCE_EXHAUSTED" and body["message"] == "Slow down."
    assert body["details"][0]["reason"] == "rate_limited" and body["details"][0]["metadata"]["request_id"] == "req_9"


def test_snake_case_names_and_lone_objects_as_protobuf_json_allows():
    """What Google's own curl examples send: snake_case names, `parts` as one object."""
    payload = {"system_instruction": {"parts": {"text": "You are a cat."}},
               "contents": {"parts": [{"text": "Hi"}, {"inline_data": {"mime_type": "image/png", "data": "iVBO"}}]},
               "generation_config": {"max_output_tokens": 9, "stop_sequences": ["Z"],
                                     "thinking_config": {"thinking_budget": 2048}},
               "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {
                   "type": "object", "properties": {"snake_arg": {"type": "string"}}}}]}],
               "tool_config": {"function_calling_config": {"mode": "NONE"}}}
    canonical = to_canonical(payload)
    assert canonical["messages"] == [
        {"role": "system", "content": "You are a cat."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]}]
    assert canonical["max_tokens"] == 9 and canonical["stop"] == ["Z"]
    assert canonical["thinking"]["budget_tokens"] == 2048 and canonical["tool_choice"] == "none"
    assert canonical["tools"][0]["function"]["parameters"]["properties"] == {"snake_arg": {"type": "string"}}
    floats = to_canonical({"contents": [{"parts": [{"text": "x"}]}],
                           "generationConfig": {"maxOutputTokens": 64.0, "thinkingConfig": {"thinkingBudget": 2048.0}}})
    assert floats["max_tokens"] == 64 and type(floats["max_tokens"]) is int
    assert floats["thinking"]["budget_tokens"] == 2048
    counted = gemini.count_request({"generate_content_request": {"contents": [{"parts": [{"text": "x"}]}]}})
    assert counted["contents"] == [{"parts": [{"text": "x"}]}]


def test_translation_notes_say_what_a_non_gemini_channel_cannot_carry():
    body = {"contents": [{"parts": [{"text": "x"}]}], "cached_content": "cachedContents/abc",
            "tools": [{"functionDeclarations": [{"name": "f"}]}, {"googleSearch": {}}, {"code_execution": {}}],
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]}
    assert gemini.translation_notes(body) == ["dropped built-in tools codeExecution,googleSearch",
                                              "dropped cachedContent", "dropped safetySettings"]
    assert gemini.translation_notes({"contents": body["contents"], "tools": body["tools"][:1]}) == []
