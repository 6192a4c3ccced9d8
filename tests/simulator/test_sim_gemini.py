"""The simulator speaks Gemini's generateContent API (raw HTTP: the google SDK is not a dependency)."""

import json
import time

import pytest

from simulator.tokens import count_tokens
from tests.simulator.sim_helpers import KEY, raw_gemini, sse_events

pytestmark = pytest.mark.live

MODEL = "gemini-2.5-flash"
SIGNING = "gemini-3-pro-preview"
HELLO = {"systemInstruction": {"parts": [{"text": "Be brief."}]},
         "contents": [{"role": "user", "parts": [{"text": "Hello there, how are you today?"}]}]}
HELLO_PROMPT_TOKENS = 19  # 2 x 4 overhead + "Be brief." (3) + "Hello there, how are you today?" (8)
REPLY = "Simulated reply to: Hello there, how are you today"  # 12 tokens
WEATHER = {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "OBJECT", "required": ["city", "unit", "days"], "properties": {
        "city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "INTEGER"}, "hourly": {"type": "BOOLEAN"}}}}
WEATHER_ARGS = {"city": "sample_city", "unit": "celsius", "days": 1}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
TOOLS = [{"functionDeclarations": [WEATHER, TIME]}]


def stream_frames(r) -> list[dict]:
    """The chunks of an SSE reply, checking Gemini's framing: `data: {json}` frames split by CRLF CRLF."""
    assert r.headers["content-type"].startswith("text/event-stream")
    *frames, tail = r.text.split("\r\n\r\n")
    assert tail == "" and all(f.startswith("data: {") for f in frames) and "[DONE]" not in r.text
    return [json.loads(f[len("data: "):]) for f in frames]


def test_response_has_gemini_shape_and_real_usage(sim):
    r = raw_gemini(sim, MODEL, HELLO)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert body["modelVersion"] == MODEL and body["responseId"]
    assert body["candidates"] == [{"content": {"parts": [{"text": REPLY}], "role": "model"}, "finishReason": "STOP",
                                   "index": 0}]
    assert body["usageMetadata"] == {"promptTokenCount": HELLO_PROMPT_TOKENS, "candidatesTokenCount": 12,
                                     "totalTokenCount": HELLO_PROMPT_TOKENS + 12}


def test_generation_config_limits_stops_candidates_and_snake_case(sim):
    r = raw_gemini(sim, MODEL, {**HELLO, "generationConfig": {"maxOutputTokens": 5.0}}).json()
    assert r["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert r["candidates"][0]["content"]["parts"] == [{"text": "Simulated reply to:"}]  # 5 tokens
    assert r["usageMetadata"]["candidatesTokenCount"] == 5
    snake = {"system_instruction": HELLO["systemInstruction"], "contents": HELLO["contents"],
             "generation_config": {"stop_sequences": ["how", "there"], "candidate_count": 2, "top_k": 40,
                                   "thinking_config": {"thinking_budget": 0}}}
    r = raw_gemini(sim, MODEL, snake).json()
    assert [c["index"] for c in r["candidates"]] == [0, 1]
    assert {c["content"]["parts"][0]["text"] for c in r["candidates"]} == {"Simulated reply to: Hello "}
    assert {c["finishReason"] for c in r["candidates"]} == {"STOP"}
    assert r["usageMetadata"]["candidatesTokenCount"] == 2 * count_tokens("Simulated reply to: Hello ")


def test_directives_report_cached_and_thought_tokens(sim):
    text = "Write [[sim:tokens=20]] [[sim:cached=3]] [[sim:reasoning=7]]"
    r = raw_gemini(sim, MODEL, {"contents": [{"parts": [{"text": text}]}]}).json()
    prompt = 4 + count_tokens(text)
    assert count_tokens(r["candidates"][0]["content"]["parts"][0]["text"]) == 20
    assert r["usageMetadata"] == {"promptTokenCount": prompt, "candidatesTokenCount": 20,
                                  "totalTokenCount": prompt + 20 + 7, "cachedContentTokenCount": 3,
                                  "thoughtsTokenCount": 7}


def test_sse_stream_frames_without_done(sim):
    r = raw_gemini(sim, MODEL, HELLO, method="streamGenerateContent", query="?alt=sse")
    chunks = stream_frames(r)
    assert len(chunks) == 12 and len({c["responseId"] for c in chunks}) == 1
    assert all(c["modelVersion"] == MODEL and c["candidates"][0]["content"]["role"] == "model" for c in chunks)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == REPLY
    assert [("finishReason" in c["candidates"][0]) for c in chunks] == [False] * 11 + [True]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": HELLO_PROMPT_TOKENS, "candidatesTokenCount": 12,
                                           "totalTokenCount": HELLO_PROMPT_TOKENS + 12}
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks[:3]] == [1, 2, 3]  # running totals


def test_stream_without_alt_sse_is_a_json_array(sim):
    r = raw_gemini(sim, MODEL, {**HELLO, "generationConfig": {"maxOutputTokens": 3}}, method="streamGenerateContent")
    assert r.headers["content-type"] == "application/json"
    chunks = r.json()
    assert len(chunks) == 3 and chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_first_stream_chunk_arrives_before_the_stream_ends(sim):
    start, first = time.monotonic(), None
    with sim.stream("POST", f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", json=HELLO,
                    headers={"x-goog-api-key": KEY, "x-sim-chunk-delay-ms": "50"}) as r:
        for _ in r.iter_raw():
            first = first or time.monotonic() - start
    total = time.monotonic() - start
    assert total >= 11 * 0.05 * 0.95 and first < total / 3


def test_function_call_then_text_after_function_response(sim):
    r = raw_gemini(sim, MODEL, {**HELLO, "tools": TOOLS}).json()
    (candidate,) = r["candidates"]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [{"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}]
    arguments = json.dumps(WEATHER_ARGS, separators=(",", ":"))
    assert r["usageMetadata"]["candidatesTokenCount"] == count_tokens("get_weather") + count_tokens(arguments)
    contents = [*HELLO["contents"], candidate["content"],
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                 "response": {"result": "Sunny and 21 degrees"}}}]}]
    r2 = raw_gemini(sim, MODEL, {"contents": contents, "tools": TOOLS}).json()
    assert r2["candidates"][0]["content"]["parts"][0]["text"].startswith("Simulated reply to: Sunny and 21 degrees")
    streamed = stream_frames(raw_gemini(sim, MODEL, {**HELLO, "tools": TOOLS}, method="streamGenerateContent",
                                        query="?alt=sse"))
    assert len(streamed) == 1 and streamed[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == (
        WEATHER_ARGS)


def test_function_calling_modes(sim):
    def called(config):
        r = raw_gemini(sim, MODEL, {**HELLO, "tools": TOOLS, "toolConfig": {"functionCallingConfig": config}})
        part = r.json()["candidates"][0]["content"]["parts"][0]
        return part["functionCall"]["name"] if "functionCall" in part else None

    assert called({"mode": "AUTO"}) == "get_weather"
    assert called({"mode": "NONE"}) is None
    assert called({"mode": "ANY", "allowedFunctionNames": ["get_time"]}) == "get_time"


def test_gemini_3_function_calls_carry_a_thought_signature_that_must_come_back(sim):
    r = raw_gemini(sim, SIGNING, {**HELLO, "tools": TOOLS}).json()
    (part,) = r["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == "get_weather" and part["thoughtSignature"]
    result = {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}
    signed = [*HELLO["contents"], {"role": "model", "parts": [part]}, result]
    assert raw_gemini(sim, SIGNING, {"contents": signed, "tools": TOOLS}).status_code == 200
    unsigned = [*HELLO["contents"], {"role": "model", "parts": [{"functionCall": part["functionCall"]}]}, result]
    r = raw_gemini(sim, SIGNING, {"contents": unsigned, "tools": TOOLS})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert r.json()["error"]["message"].startswith("Function call is missing a thought_signature in functionCall "
                                                   "parts.")
    assert "`default_api:get_weather` , position 2." in r.json()["error"]["message"]
    # earlier turns (before the last user text) are not checked, nor are other models
    older = [*unsigned, {"role": "model", "parts": [{"text": "Sunny."}]}, {"role": "user", "parts": [{"text": "ok"}]}]
    assert raw_gemini(sim, SIGNING, {"contents": older, "tools": TOOLS}).status_code == 200
    plain = raw_gemini(sim, MODEL, {**HELLO, "tools": TOOLS}).json()["candidates"][0]["content"]["parts"][0]
    assert "thoughtSignature" not in plain
    assert raw_gemini(sim, MODEL, {"contents": unsigned, "tools": TOOLS}).status_code == 200


def test_json_response_follows_the_schema(sim):
    schema = {"type": "OBJECT", "properties": {"name": {"type": "STRING"}, "tags": {"type": "ARRAY",
              "items": {"type": "STRING"}}}, "required": ["name", "tags"]}
    r = raw_gemini(sim, MODEL, {**HELLO, "generationConfig": {"responseMimeType": "application/json",
                                                              "responseSchema": schema}}).json()
    assert json.loads(r["candidates"][0]["content"]["parts"][0]["text"]) == {"name": "sample_name",
                                                                            "tags": ["sample_tags"]}


def _part(**part):
    return {"contents": [{"role": "user", "parts": [part]}]}


@pytest.mark.parametrize(("body", "message"), [
    ({**HELLO, "frobnicate": 1}, 'Invalid JSON payload received. Unknown name "frobnicate": Cannot find field.'),
    ({**HELLO, "generationConfig": {"maxTokens": 5}},
     "Invalid JSON payload received. Unknown name \"maxTokens\" at 'generation_config': Cannot find field."),
    ({**HELLO, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}}]}]},
     "Invalid JSON payload received. Unknown name \"additionalProperties\" at "
     "'tools[0].function_declarations[0].parameters': Cannot find field."),
    ({**HELLO, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": ["string", "null"]}}}}]}]},
     "Invalid value at 'tools[0].function_declarations[0].parameters.properties.a.type' "
     "(type.googleapis.com/google.ai.generativelanguage.v1beta.Type)"),
    ({**HELLO, "generationConfig": {"temperature": "hot"}},
     "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""),
    ({**HELLO, "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}},
     "Invalid value at 'tool_config.function_calling_config.mode' "
     "(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"REQUIRED\""),
    ({"contents": "hi"},
     "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), \"hi\""),
    (_part(inlineData={"mimeType": "image/png", "data": "data:image/png;base64,iVBORw0KGgo="}),
     "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed for"),
    (_part(inlineData={"data": "iVBORw0KGgo="}),
     "* GenerateContentRequest.contents[0].parts[0].inline_data.mime_type: "),
    (_part(image_url={"url": "u"}),
     "Invalid JSON payload received. Unknown name \"image_url\" at 'contents[0].parts[0]': Cannot find field."),
    (_part(), "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one "),
    (_part(text="a", functionCall={"name": "f"}), "Invalid JSON payload received. Oneof field 'data' is already set."),
    ({}, "* GenerateContentRequest.contents: contents is not specified"),
    ({"contents": [{"role": "user", "parts": []}]}, "* GenerateContentRequest.contents[0].parts: contents.parts must "
                                                    "not be empty."),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
    ({**HELLO, "generationConfig": {"candidateCount": 9}},
     "* GenerateContentRequest.generation_config.candidate_count"),
    ({**HELLO, "tools": [{"functionDeclarations": [{"name": "get weather"}]}]},
     "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name."),
    ({**HELLO, "safetySettings": [{"category": "HARM_CATEGORY_GORE", "threshold": "BLOCK_NONE"}]},
     "Invalid value at 'safety_settings[0].category' (type.googleapis.com/google.ai.generativelanguage.v1beta."
     "HarmCategory), \"HARM_CATEGORY_GORE\""),
])
def test_invalid_requests_get_400_invalid_argument(sim, body, message):
    r = raw_gemini(sim, MODEL, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT") and error["message"].startswith(message)
    if message.startswith("Invalid JSON payload received. Unknown name"):
        (violation,) = error["details"][0]["fieldViolations"]
        assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert violation["description"] == error["message"]


def test_valid_full_request_is_accepted(sim):
    body = {
        "systemInstruction": {"role": "system", "parts": [{"text": "rules"}]}, "cachedContent": None,
        "contents": [
            {"role": "user", "parts": [
                {"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "video/mp4", "fileUri": "https://x/v.mp4"}}]},
            {"role": "model", "parts": [
                {"text": "hmm", "thought": True},
                {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2ln"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {"time": "noon"}}}]},
        ],
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.5, "topP": 0.9, "topK": 40, "seed": 1,
                             "stopSequences": ["END"], "candidateCount": 1, "responseMimeType": "text/plain",
                             "thinkingConfig": {"includeThoughts": False, "thinkingBudget": 128}},
        "tools": [{"functionDeclarations": [WEATHER, TIME]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    }
    r = raw_gemini(sim, SIGNING, body)
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Simulated reply to: noon")


def test_capability_limited_models(sim):
    image = _part(inlineData={"mimeType": "image/png", "data": "iVBORw0KGgo="})
    video = _part(fileData={"mimeType": "video/mp4", "fileUri": "https://x/v.mp4"})
    r = raw_gemini(sim, "gemini-no-vision", image)
    assert r.status_code == 400 and r.json()["error"]["message"] == ("Image input modality is not enabled for "
                                                                    "models/gemini-no-vision")
    assert raw_gemini(sim, "gemini-2.0-flash-novideo", video).json()["error"]["status"] == "INVALID_ARGUMENT"
    assert raw_gemini(sim, "gemini-2.0-flash-novideo", image).status_code == 200
    assert raw_gemini(sim, "gemini-no-vision", video).status_code == 200


def test_api_key_header_or_query_and_masked_in_the_log(sim):
    r = raw_gemini(sim, MODEL, HELLO, key=None)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = raw_gemini(sim, MODEL, HELLO, key="sk-sim-invalid")
    error = r.json()["error"]
    assert r.status_code == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    sim.delete("/_sim/requests")
    assert raw_gemini(sim, MODEL, HELLO, key=None, query="?alt=sse&key=AIzaSyTopSecret9876").status_code == 200
    assert raw_gemini(sim, MODEL, HELLO, key="AIzaSyOtherSecret5432").status_code == 200
    by_query, by_header = sim.get("/_sim/requests").json()["requests"]
    assert by_query["query"] == "alt=sse&key=***9876" and by_header["headers"]["x-goog-api-key"] == "***5432"
    assert "Secret" not in json.dumps([by_query, by_header])
    r = sim.post(f"/v1beta/models/{MODEL}:generateContent", content=b"{nope", headers={"x-goog-api-key": KEY})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("Invalid JSON payload received.")
    r = raw_gemini(sim, MODEL, HELLO, method="embedText")
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


# --- faults, in Google's error shape ----------------------------------------------------------------

@pytest.mark.parametrize(("status", "name"), [
    (400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED"),
    (500, "INTERNAL"), (503, "UNAVAILABLE"),
])
def test_status_fault_by_header(sim, status, name):
    for method, query in (("generateContent", ""), ("streamGenerateContent", "?alt=sse")):
        r = raw_gemini(sim, MODEL, HELLO, method=method, query=query, headers={"x-sim-fault": f"status:{status}"})
        assert r.status_code == status and r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert (error["code"], error["status"]) == (status, name) and error["message"]
    if status == 404:
        assert error["message"].startswith(f"models/{MODEL} is not found for API version v1beta")


def test_quota_and_magic_token_faults(sim):
    r = raw_gemini(sim, MODEL, _part(text="hi [[sim:fault=quota]]"))
    error = r.json()["error"]
    assert r.status_code == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("You exceeded your current quota")
    assert [d["@type"].rsplit(".", 1)[-1] for d in error["details"]] == ["QuotaFailure", "RetryInfo"]
    r = raw_gemini(sim, MODEL, {**HELLO, "systemInstruction": {"parts": [{"text": "[[sim:fault=context_length]]"}]}})
    assert r.status_code == 400 and "exceeds the maximum number of tokens" in r.json()["error"]["message"]


def test_stream_error_and_output_faults(sim):
    r = raw_gemini(sim, MODEL, HELLO, method="streamGenerateContent", query="?alt=sse",
                   headers={"x-sim-fault": "stream_error:2"})
    events = [json.loads(e) for e in sse_events(r.text)]
    assert len(events) == 3 and "candidates" in events[1]
    assert events[2] == {"error": {"code": 500, "message": events[2]["error"]["message"], "status": "INTERNAL"}}
    assert raw_gemini(sim, MODEL, HELLO, headers={"x-sim-fault": "stream_error"}).status_code == 500
    assert raw_gemini(sim, MODEL, HELLO, headers={"x-sim-fault": "empty"}).content == b""
    r = raw_gemini(sim, MODEL, HELLO, method="streamGenerateContent", query="?alt=sse",
                   headers={"x-sim-fault": "invalid_json"})
    with pytest.raises(json.JSONDecodeError):
        [json.loads(e) for e in sse_events(r.text)]
    filtered = raw_gemini(sim, MODEL, _part(text="hi [[sim:fault=content_filter]]")).json()["candidates"][0]
    assert filtered["finishReason"] == "SAFETY" and filtered["safetyRatings"][0]["blocked"] is True


def test_scripted_faults_per_key(sim):
    sim.post("/_sim/faults", json={"key": "AIza-channel-g", "fault": "status:503", "count": 2})
    assert raw_gemini(sim, MODEL, HELLO, key="AIza-channel-g").status_code == 503
    assert raw_gemini(sim, MODEL, HELLO, key=None, query="?key=AIza-channel-g").status_code == 503  # same key
    assert raw_gemini(sim, MODEL, HELLO, key="AIza-channel-g").status_code == 200  # count used up
    assert sim.get("/_sim/faults").json() == {"faults": []}
