"""Native Gemini routes (/v1beta/models/…) through a live gateway and the simulator: natively to a Gemini channel
(the client's body forwarded as it is), by translation to an OpenAI channel; both stream shapes, countTokens,
the model list, the three ways to send the key, errors in Gemini's shape, and usage records without the key."""
import httpx
import orjson
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for

TOOLS = [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                                                   "required": ["city"]}}]}]
HELLO = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


@pytest.fixture
def gemini(live):
    """The live setup plus google/gemini-2.5-flash on a Gemini channel of the simulator."""
    factories.provider_models(kind=Channel.GEMINI, base_url=live.simulator.url, names=["gemini-2.5-flash"],
                              provider="google", api_key="sim-gemini-key")
    bump_version()
    wait_for(lambda: post(live, "gemini-2.5-flash", "generateContent", HELLO).status_code == 200)
    return live


def post(live, model, method, body, *, query="", headers=None):
    headers = {"x-goog-api-key": live.secret} if headers is None else headers
    return httpx.post(f"{live.server.url}/v1beta/models/{model}:{method}{query}", json=body, headers=headers,
                      timeout=30)


def sse_frames(text: str) -> list[dict]:
    return [orjson.loads(event[5:]) for event in text.split("\r\n\r\n") if event.startswith("data:")]


def sim_requests(live, n=1) -> list[dict]:
    return httpx.get(f"{live.simulator.url}/_sim/requests?limit={n}").json()["requests"]


def sent_body(live) -> dict:
    """The body the simulator got last (its request log keeps it parsed)."""
    body = sim_requests(live)[0]["body"]
    return orjson.loads(body) if isinstance(body, str) else body


def record_of(response_id: str) -> UsageRecord:
    return wait_for(lambda: UsageRecord.objects.filter(request_id=response_id).first())


def test_generate_content_natively_to_a_gemini_channel(gemini):
    body = {**HELLO, "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 50, "thinkingConfig": {"thinkingBudget": 512}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}
    response = post(gemini, "models/gemini-2.5-flash", "generateContent", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["candidates"][0]["content"]["parts"][0]["text"]
    assert data["candidates"][0]["finishReason"] == "STOP"
    assert data["modelVersion"] == "google/gemini-2.5-flash"
    assert data["responseId"] == response.headers["x-request-id"]
    meta = data["usageMetadata"]
    assert meta["promptTokenCount"] > 0 and meta["candidatesTokenCount"] > 0
    sent = sim_requests(gemini)[0]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent_body(gemini) == body   # untouched: safetySettings and thinkingConfig included, no `model` added
    record = record_of(data["responseId"])
    assert record.path == "/v1beta/models/models/gemini-2.5-flash:generateContent"
    assert record.requested_model == "gemini-2.5-flash" and record.served_model == "google/gemini-2.5-flash"
    assert record.prompt_tokens == meta["promptTokenCount"] and record.cost > 0
    assert meta["cost"] == pytest.approx(record.cost / 1_000_000)   # the native answer says what it cost


def test_stream_natively_with_alt_sse(gemini):
    response = post(gemini, "gemini-2.5-flash", "streamGenerateContent", HELLO, query="?alt=sse")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(response.text)
    assert len(frames) > 1 and all(f["responseId"] == frames[0]["responseId"] for f in frames)
    text = "".join(p.get("text", "") for f in frames for p in f["candidates"][0]["content"]["parts"])
    assert text and frames[-1]["candidates"][0]["finishReason"] == "STOP"
    record = record_of(frames[0]["responseId"])
    assert record.stream and record.completion_tokens == frames[-1]["usageMetadata"]["candidatesTokenCount"]
    assert record.finish_reason == "stop"
    assert frames[-1]["usageMetadata"]["cost"] == pytest.approx(record.cost / 1_000_000)


def test_stream_without_alt_is_one_json_array(gemini):
    for model in ("gemini-2.5-flash", "gpt-4o-mini"):   # native, and translated from an OpenAI channel
        response = post(gemini, model, "streamGenerateContent", HELLO)
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        frames = response.json()
        assert isinstance(frames, list) and len(frames) > 1
        assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
        assert frames[-1]["usageMetadata"]["totalTokenCount"] > 0


def test_translated_to_an_openai_channel(gemini):
    body = {**HELLO, "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 40, "temperature": 0.5, "stopSequences": ["END"],
                                 "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}}
    response = post(gemini, "gpt-4o-mini", "generateContent", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["modelVersion"] == "openai/gpt-4o-mini" and data["candidates"][0]["content"]["parts"][0]["text"]
    meta = data["usageMetadata"]
    assert meta["cost"] > 0 and meta["totalTokenCount"] == meta["promptTokenCount"] + meta["candidatesTokenCount"]
    assert sim_requests(gemini)[0]["path"] == "/v1/chat/completions"
    forwarded = sent_body(gemini)
    assert forwarded["messages"][0] == {"role": "system", "content": "Be brief."}
    assert forwarded["max_tokens"] == 40 and forwarded["stop"] == ["END"]
    assert "reasoning_effort" not in forwarded and "thinking" not in forwarded   # gpt-4o-mini would refuse them
    record = record_of(data["responseId"])
    assert record.cost / 1_000_000 == pytest.approx(meta["cost"])
    generation = httpx.get(f"{gemini.server.url}/v1/generation", params={"id": data["responseId"]},
                           headers={"Authorization": f"Bearer {gemini.secret}"})
    assert generation.json()["data"]["total_cost_micro"] == record.cost


def test_tool_round_trip_translated(gemini):
    """functionCall ↔ tool calls: the OpenAI channel's tool call comes back as a whole functionCall (in the last
    chunk of a stream), and its functionResponse goes back as the tool message."""
    ask = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": TOOLS}
    response = post(gemini, "gpt-4o-mini", "streamGenerateContent", ask, query="?alt=sse")
    frames = sse_frames(response.text)
    calls = [p["functionCall"] for f in frames for p in f["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and "city" in calls[0]["args"]
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
    sent = sent_body(gemini)
    assert sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    follow = {"contents": [*ask["contents"], {"role": "model", "parts": [{"functionCall": calls[0]}]},
                           {"role": "user", "parts": [{"functionResponse": {
                               "id": calls[0]["id"], "name": "get_weather", "response": {"output": "18C, sunny"}}}]}],
              "tools": TOOLS}
    response = post(gemini, "gpt-4o-mini", "generateContent", follow)
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"]
    messages = sent_body(gemini)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == calls[0]["id"]
    assert messages[2] == {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C, sunny"}


def test_native_tool_call_keeps_its_gemini_shape(gemini):
    ask = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": TOOLS,
           "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}
    data = post(gemini, "gemini-2.5-flash", "generateContent", ask).json()
    part = data["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["name"] == "get_weather"
    assert record_of(data["responseId"]).finish_reason == "tool_calls"


def test_count_tokens(gemini):
    response = post(gemini, "gemini-2.5-flash", "countTokens", {"contents": [{"parts": [{"text": "hello " * 100}]}]})
    assert response.status_code == 200 and 100 <= response.json()["totalTokens"] <= 400
    wrapped = post(gemini, "gemini-2.5-flash", "countTokens",
                   {"generateContentRequest": {"model": "models/gemini-2.5-flash",
                                               "contents": [{"parts": [{"text": "hello " * 100}]}]}})
    assert wrapped.json() == response.json()


def test_models_list_and_get(gemini):
    headers = {"x-goog-api-key": gemini.secret}
    listed = httpx.get(f"{gemini.server.url}/v1beta/models", headers=headers).json()["models"]
    names = {m["name"] for m in listed}
    assert {"models/google/gemini-2.5-flash", "models/openai/gpt-4o-mini"} <= names
    assert "generateContent" in listed[0]["supportedGenerationMethods"]
    one = httpx.get(f"{gemini.server.url}/v1beta/models/gemini-2.5-flash", headers=headers)
    assert one.status_code == 200 and one.json()["name"] == "models/google/gemini-2.5-flash"
    missing = httpx.get(f"{gemini.server.url}/v1beta/models/no-such-model", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_the_key_by_header_query_or_bearer_and_never_recorded(gemini):
    by_query = post(gemini, "gemini-2.5-flash", "generateContent", HELLO, query=f"?key={gemini.secret}", headers={})
    by_bearer = post(gemini, "gemini-2.5-flash", "generateContent", HELLO,
                     headers={"Authorization": f"Bearer {gemini.secret}"})
    assert by_query.status_code == 200 and by_bearer.status_code == 200
    record = record_of(by_query.json()["responseId"])
    assert record.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert gemini.secret not in f"{record.path} {record.user_agent} {record.sdk} {record.error_text}"
    metrics = httpx.get(f"{gemini.server.url}/metrics").text
    assert gemini.secret not in metrics
    assert gemini.secret not in gemini.server.log()
    # ?key= is Gemini's: the OpenAI routes do not take it.
    chat = httpx.post(f"{gemini.server.url}/v1/chat/completions?key={gemini.secret}",
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 401


def test_errors_in_gemini_shape(gemini):
    wrong = post(gemini, "gemini-2.5-flash", "generateContent", HELLO, headers={"x-goog-api-key": "sk-tg-nope"})
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED" and error["message"]
    assert error["details"][0]["metadata"]["request_id"] == wrong.headers["x-request-id"]
    unknown = post(gemini, "gemini-9-ultra", "generateContent", HELLO)
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    for body, field in (({}, "contents"), ({"contents": []}, "contents"),
                        ({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
                        ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
                        ({**HELLO, "generationConfig": {"maxOutputTokens": "many"}},
                         "generationConfig.maxOutputTokens"),
                        ({**HELLO, "tools": [{"functionDeclarations": [{"description": "no name"}]}]},
                         "tools[0].functionDeclarations[0].name")):
        bad = post(gemini, "gemini-2.5-flash", "generateContent", body)
        assert bad.status_code == 400, (body, bad.text)
        error = bad.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["details"][0]["metadata"]["param"] == field
    not_json = httpx.post(f"{gemini.server.url}/v1beta/models/gemini-2.5-flash:generateContent", content=b"{",
                          headers={"x-goog-api-key": gemini.secret})
    assert not_json.status_code == 400 and not_json.json()["error"]["status"] == "INVALID_ARGUMENT"
    method = post(gemini, "gemini-2.5-flash", "embedContent", HELLO)
    assert method.status_code == 404 and method.json()["error"]["status"] == "NOT_FOUND"
    elsewhere = httpx.get(f"{gemini.server.url}/v1beta/cachedContents", headers={"x-goog-api-key": gemini.secret})
    assert elsewhere.status_code == 404 and "generateContent" in elsewhere.json()["error"]["message"]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini"])
@pytest.mark.parametrize("fault", ["stream_error:2", "break:2"])
def test_a_stream_that_breaks_ends_with_a_gemini_error_frame(gemini, model, fault):
    body = {"contents": [{"parts": [{"text": f"hi [[sim:fault={fault}]]"}]}]}
    response = post(gemini, model, "streamGenerateContent", body, query="?alt=sse")
    frames = sse_frames(response.text)
    assert frames[0]["candidates"][0]["content"]["parts"][0]["text"]   # what came before the break
    assert frames[-1]["error"]["code"] == 502 and frames[-1]["error"]["status"] == "UNAVAILABLE"
    record = wait_for(lambda: UsageRecord.objects.filter(path__startswith="/v1beta/", status_code=502).first())
    assert record.error_code == "upstream_unavailable"


@pytest.fixture
def claude(gemini):
    factories.provider_models(kind=Channel.ANTHROPIC, base_url=gemini.simulator.url, names=["claude-sonnet-4-5"],
                              provider="anthropic", api_key="sim-anthropic-key")
    bump_version()
    wait_for(lambda: post(gemini, "claude-sonnet-4-5", "countTokens", HELLO).status_code == 200)
    return gemini


def test_translated_to_an_anthropic_channel_with_thinking(claude):
    """thinkingConfig → Claude's thinking budget; its thinking comes back as thought parts, whole and streamed."""
    body = {**HELLO, "generationConfig": {"maxOutputTokens": 4000,
                                          "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}}}
    data = post(claude, "claude-sonnet-4-5", "generateContent", body).json()
    parts = data["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[0]["text"] and parts[1]["text"] and "thought" not in parts[1]
    sent = sent_body(claude)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and sent["max_tokens"] == 4000
    assert data["usageMetadata"]["candidatesTokenCount"] > 0
    frames = sse_frames(post(claude, "claude-sonnet-4-5", "streamGenerateContent", body, query="?alt=sse").text)
    first = frames[0]["candidates"][0]["content"]["parts"][0]
    assert first["thought"] is True
    assert any("thought" not in p and p.get("text") for f in frames for p in f["candidates"][0]["content"]["parts"])


def test_function_call_through_an_anthropic_channel(claude):
    ask = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": TOOLS}
    data = post(claude, "claude-sonnet-4-5", "generateContent", ask).json()
    call = next(p["functionCall"] for p in data["candidates"][0]["content"]["parts"] if "functionCall" in p)
    assert call["name"] == "get_weather" and call["id"].startswith("toolu_")
    assert sent_body(claude)["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    follow = {"contents": [*ask["contents"], {"role": "model", "parts": [{"functionCall": call}]},
                           {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                            "response": {"temp": 18}}}]}],
              "tools": TOOLS}
    answer = post(claude, "claude-sonnet-4-5", "generateContent", follow)
    assert answer.status_code == 200, answer.text
    result = sent_body(claude)["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call["id"]
    assert record_of(data["responseId"]).finish_reason == "tool_calls"


def test_native_thoughts_and_cached_tokens_are_counted(gemini):
    body = {"contents": [{"parts": [{"text": "Think first [[sim:reasoning=20]] [[sim:cached=5]]"}]}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    data = post(gemini, "gemini-2.5-flash", "generateContent", body).json()
    assert data["candidates"][0]["content"]["parts"][0]["thought"] is True
    meta = data["usageMetadata"]
    assert meta["thoughtsTokenCount"] == 20 and meta["cachedContentTokenCount"] == 5
    record = record_of(data["responseId"])
    assert record.completion_tokens == meta["candidatesTokenCount"] + 20 and record.cached_tokens == 5


@pytest.fixture
def broken_gemini_channel(gemini):
    faults = f"{gemini.simulator.url}/_sim/faults"
    httpx.post(faults, json={"key": "sim-gemini-key", "fault": "status:503", "count": None}).raise_for_status()
    yield gemini
    httpx.delete(f"{faults}?key=sim-gemini-key").raise_for_status()


def test_a_route_falls_back_from_a_failing_gemini_channel_to_openai(broken_gemini_channel):
    live = broken_gemini_channel
    gemini_model = Channel.objects.get(name="gemini").models.get()
    factories.routing_rule(team=live.team, name="default", default_model=gemini_model,
                           backup_models=[live.model.public_id])
    bump_version()
    wait_for(lambda: post(live, "route:default", "countTokens", HELLO).status_code == 200)
    response = post(live, "route:default", "streamGenerateContent", HELLO, query="?alt=sse")
    assert response.status_code == 200, response.text
    assert "model=openai/gpt-4o-mini" in response.headers["x-tollgate-route"]
    assert "google/gemini-2.5-flash via platform channel" in response.headers["x-tollgate-route"]
    frames = sse_frames(response.text)
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP" and frames[-1]["modelVersion"] == "openai/gpt-4o-mini"
    record = record_of(frames[0]["responseId"])
    assert record.path == "/v1beta/models/route:default:streamGenerateContent"
    assert record.served_model == "openai/gpt-4o-mini" and record.route == "route:default"


def test_claude_thinking_signatures_round_trip_in_a_tool_loop(claude):
    """A thought part carries Claude's signature out and back in, so a tool loop with thinking on keeps it."""
    config = {"maxOutputTokens": 4000, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    ask = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "tools": TOOLS,
           "generationConfig": config}
    frames = sse_frames(post(claude, "claude-sonnet-4-5", "streamGenerateContent", ask, query="?alt=sse").text)
    parts = [p for f in frames for p in f["candidates"][0]["content"]["parts"]]
    signature = next(p["thoughtSignature"] for p in parts if p.get("thought") and p.get("thoughtSignature"))
    follow = {**ask, "contents": [*ask["contents"], {"role": "model", "parts": parts},
                                  {"role": "user", "parts": [{"functionResponse": {
                                      "name": "get_weather", "response": {"output": "18C"}}}]}]}
    answer = post(claude, "claude-sonnet-4-5", "generateContent", follow)
    assert answer.status_code == 200, answer.text
    sent = sent_body(claude)
    thinking = sent["messages"][1]["content"][0]
    assert thinking["type"] == "thinking" and thinking["signature"] == signature
    assert sent["thinking"]["type"] == "enabled"


def test_googles_curl_example_shape_both_ways(gemini):
    """snake_case names (protobuf JSON) and a lone `parts` object, as Google's REST examples send them."""
    body = {"system_instruction": {"parts": {"text": "You are a cat."}},
            "contents": [{"parts": [{"text": "Hello there"}]}],
            "generation_config": {"max_output_tokens": 30, "stop_sequences": ["Z"]}}
    translated = post(gemini, "gpt-4o-mini", "generateContent", body)
    assert translated.status_code == 200, translated.text
    assert sent_body(gemini)["messages"][0] == {"role": "system", "content": "You are a cat."}
    assert sent_body(gemini)["max_tokens"] == 30
    body["system_instruction"]["parts"] = [body["system_instruction"]["parts"]]
    native = post(gemini, "gemini-2.5-flash", "generateContent", body)
    assert native.status_code == 200, native.text
    assert sent_body(gemini) == body   # forwarded as sent: Gemini reads protobuf JSON itself


def test_limits_answer_in_geminis_shape(gemini):
    """A key's rate limit is a 429 and its budget a 402, both RESOURCE_EXHAUSTED, with the limit headers."""
    _, limited = factories.api_key(team=gemini.team, group=gemini.key.group, rpm_limit=1)
    _, broke = factories.api_key(team=gemini.team, group=gemini.key.group, budget_limit=1)
    assert post(gemini, "gemini-2.5-flash", "generateContent", HELLO,
                headers={"x-goog-api-key": limited}).status_code == 200
    second = post(gemini, "gemini-2.5-flash", "generateContent", HELLO, headers={"x-goog-api-key": limited})
    assert second.status_code == 429 and second.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert second.headers["retry-after"] and second.headers["x-ratelimit-limit-requests"] == "1"
    spent = post(gemini, "gemini-2.5-flash", "generateContent", HELLO, headers={"x-goog-api-key": broke})
    wait_for(lambda: record_of(spent.json()["responseId"]))   # its cost now counts against the budget

    def refused():   # once the spend is settled (batched, off the response path)
        response = post(gemini, "gemini-2.5-flash", "streamGenerateContent", HELLO, query="?alt=sse",
                        headers={"x-goog-api-key": broke})
        return response if response.status_code == 402 else None

    refused = wait_for(refused)
    assert refused is not None and refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini"])
@pytest.mark.parametrize("query", ["?alt=sse", ""])
def test_a_client_that_leaves_mid_stream_is_billed_for_what_it_got(gemini, model, query):
    body = {"contents": [{"parts": [{"text": "[[sim:tokens=60]] [[sim:chunk_delay_ms=50]] long"}]}]}
    url = f"{gemini.server.url}/v1beta/models/{model}:streamGenerateContent{query}"
    with httpx.stream("POST", url, json=body, timeout=30, headers={"x-goog-api-key": gemini.secret}) as r:
        request_id = r.headers["x-request-id"]
        chunks = r.iter_bytes()
        for _ in range(3):   # a few frames, then the client goes away
            next(chunks)
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id, status_code=499).first(), timeout=10)
    assert record is not None and record.completion_tokens >= 1 and record.cost > 0
