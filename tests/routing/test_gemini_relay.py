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
    model = factories.CatalogModelFactory(public_id="google/gemini-2.5-flash", provider="google",
                                          upstream_name="gemini-2.5-flash", aliases=["gemini-2.5-flash"],
                                          supports_vision=True)
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.GEMINI, name="gemini",
                      api_key="sim-gemini-key")
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
            "generationConfig": {"maxOutputTokens": 40, "temperature": 0.5, "stopSequences": ["END"]}}
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
    record = record_of(data["responseId"])
    assert record.cost / 1_000_000 == pytest.approx(meta["cost"])


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


def test_upstream_error_mid_stream_ends_with_a_gemini_error_frame(gemini):
    body = {"contents": [{"parts": [{"text": "hi [[sim:fault=stream_error]]"}]}]}
    response = post(gemini, "gemini-2.5-flash", "streamGenerateContent", body, query="?alt=sse")
    frames = sse_frames(response.text)
    assert frames[-1]["error"]["code"] == 502 and frames[-1]["error"]["status"] == "UNAVAILABLE"
    record = wait_for(lambda: UsageRecord.objects.filter(path__startswith="/v1beta/", status_code=502).first())
    assert record.error_code == "upstream_unavailable"
