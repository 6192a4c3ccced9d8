"""POST /v1/responses through a live gateway and the simulator: natively to an OpenAI channel (the simulator's
/v1/responses checks the Responses request schema), and translated to Anthropic and Gemini channels (their
simulators check theirs); the typed event stream, validation, hosted tools, usage records."""
import httpx
import orjson
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CODEX_LIKE = {  # the shape Codex CLI sends on every turn (clients.md)
    "stream": True, "store": False, "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
    "client_metadata": {"session_id": "s-1"},
    "tools": [WEATHER,
              {"type": "namespace", "name": "agents", "description": "Sub-agents",
               "tools": [{"type": "function", "name": "spawn_agent", "strict": False,
                          "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]},
              {"type": "web_search", "external_web_access": False}],
}


@pytest.fixture
def kinds(live):
    """Beside the live OpenAI channel: a Claude model on an Anthropic channel, a Gemini model on a Gemini one."""
    for public_id, upstream, kind in (("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", Channel.ANTHROPIC),
                                      ("google/gemini-2.5-flash", "gemini-2.5-flash", Channel.GEMINI)):
        model = factories.CatalogModelFactory(public_id=public_id, upstream_name=upstream, aliases=[upstream],
                                              supports_vision=True, input_modalities=["text", "image"])
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=live.simulator.url, kind=kind, name=kind, api_key=f"sim-{kind}")
    bump_version()
    wait_for(lambda: post(live, {"model": "gemini-2.5-flash", "input": "hi"}).status_code == 200)
    return live


def post(live, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{live.base_url}/responses", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {live.secret}"}, **kwargs)


def events(response: httpx.Response) -> list[dict]:
    out = []
    for block in response.text.split("\n\n"):
        lines = block.strip().split("\n")
        data = [ln[5:].strip() for ln in lines if ln.startswith("data:")]
        if data:
            frame = orjson.loads(data[0])
            name = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), None)
            assert name == frame["type"]           # the SSE event name is the event's type
            out.append(frame)
    return out


def sim_requests(live, path: str) -> list[dict]:
    sent = httpx.get(f"{live.simulator.url}/_sim/requests?limit=50").json()["requests"]
    return [r for r in sent if r["path"].startswith(path)]


def record_of(response_id: str):
    return wait_for(lambda: UsageRecord.objects.filter(request_id="req_" + response_id.removeprefix("resp_")).first())


def test_native_answer_from_an_openai_channel(live):
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    r = post(live, {"model": "gpt-4o-mini", "input": "Say hello [[sim:cached=3]]", "instructions": "Be brief.",
                    "max_output_tokens": 64, "prompt_cache_retention": "24h", "truncation": "auto"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "response" and body["id"].startswith("resp_") and body["status"] == "completed"
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["output"][0]["type"] == "message" and body["output"][0]["content"][0]["text"]
    assert body["usage"]["input_tokens_details"]["cached_tokens"] == 3
    sent = sim_requests(live, "/v1/responses")[-1]["body"]   # natively: the client's own fields, untouched
    assert sent["model"] == "gpt-4o-mini" and (sent["prompt_cache_retention"], sent["truncation"]) == ("24h", "auto")
    assert sent["instructions"] == "Be brief." and "messages" not in sent
    record = record_of(body["id"])
    assert record.path == "/v1/responses" and record.status_code == 200
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (
        body["usage"]["input_tokens"], body["usage"]["output_tokens"], 3)
    assert record.cost > 0


def test_native_stream_keeps_the_event_sequence_with_our_ids(live):
    r = post(live, {"model": "gpt-4o-mini", "input": "count [[sim:reasoning=5]]", "stream": True,
                    "reasoning": {"summary": "auto"}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = events(r)
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.delta" in kinds
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    final = frames[-1]["response"]
    assert final["id"] == frames[0]["response"]["id"] and final["id"].startswith("resp_")
    assert final["model"] == "openai/gpt-4o-mini"
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    record = record_of(final["id"])
    assert record.stream and record.completion_tokens == final["usage"]["output_tokens"] and record.cost > 0


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_translated_answer_and_stream(kinds, model):
    r = post(kinds, {"model": model, "input": [{"role": "developer", "content": "Be brief."},
                                               {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
                     "max_output_tokens": 200})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] in ("anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash")
    text = body["output"][-1]["content"][0]["text"]
    assert body["output"][-1]["type"] == "message" and text
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    assert body["usage"]["cost"] > 0
    s = post(kinds, {"model": model, "input": "hi", "stream": True})
    frames = events(s)
    kinds_seen = [f["type"] for f in frames]
    assert kinds_seen[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                              "response.content_part.added"]
    assert kinds_seen[-4:] == ["response.output_text.done", "response.content_part.done",
                               "response.output_item.done", "response.completed"]
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    deltas = "".join(f["delta"] for f in frames if f["type"] == "response.output_text.delta")
    assert deltas and deltas == frames[-1]["response"]["output"][0]["content"][0]["text"]
    usage = frames[-1]["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0 and usage["cost"] > 0
    record = record_of(frames[-1]["response"]["id"])
    assert record.path == "/v1/responses" and record.stream and record.cost > 0


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_translated_tool_loop(kinds, model):
    first = post(kinds, {"model": model, "input": "Weather in Paris?", "tools": [WEATHER]}).json()
    call = next(i for i in first["output"] if i["type"] == "function_call")
    assert call["name"] == "get_weather" and "city" in orjson.loads(call["arguments"])
    follow = post(kinds, {"model": model, "tools": [WEATHER], "input": [
        {"role": "user", "content": "Weather in Paris?"}, call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 18}'}]})
    assert follow.status_code == 200, follow.text
    assert follow.json()["output"][-1]["type"] == "message"
    stream = events(post(kinds, {"model": model, "input": "Weather in Paris?", "tools": [WEATHER], "stream": True}))
    kinds_seen = [f["type"] for f in stream]
    assert "response.function_call_arguments.delta" in kinds_seen
    done = next(f for f in stream if f["type"] == "response.function_call_arguments.done")
    assert "city" in orjson.loads(done["arguments"])
    item = next(f["item"] for f in stream if f["type"] == "response.output_item.done"
                and f["item"]["type"] == "function_call")
    assert item["arguments"] == done["arguments"] and item["call_id"]


def test_codex_shaped_request_translated_drops_hosted_tools_and_flattens_namespaces(kinds):
    httpx.delete(f"{kinds.simulator.url}/_sim/requests")
    body = {**CODEX_LIKE, "model": "claude-sonnet-4-5",
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Agent."}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]}
    r = post(kinds, body)
    assert r.status_code == 200, r.text
    assert "translated=dropped hosted tools web_search" in r.headers["x-tollgate-route"]
    assert events(r)[-1]["type"] == "response.completed"
    sent = sim_requests(kinds, "/v1/messages")[-1]["body"]
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "spawn_agent"]


def test_a_namespaced_call_comes_back_with_its_namespace(kinds):
    tools = [{"type": "namespace", "name": "agents", "description": "Sub-agents", "tools": [
        {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}}]}]
    body = post(kinds, {"model": "gemini-2.5-flash", "input": "go", "tools": tools}).json()
    call = next(i for i in body["output"] if i["type"] == "function_call")
    assert (call["namespace"], call["name"]) == ("agents", "spawn_agent")


def test_forcing_a_hosted_tool_on_a_translated_channel_is_a_clear_400(kinds):
    r = post(kinds, {"model": "claude-sonnet-4-5", "input": "news?", "tools": [{"type": "web_search"}],
                     "tool_choice": {"type": "web_search"}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "unsupported_tool" and "`web_search`" in error["message"]
    assert error["param"] == "tool_choice" and r.headers["x-request-id"]


def test_json_schema_format_reaches_the_canonical_response_format(kinds):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    r = post(kinds, {"model": "gemini-2.5-flash", "input": "answer",
                     "text": {"format": {"type": "json_schema", "name": "reply", "schema": schema}}})
    assert r.status_code == 200, r.text
    assert "answer" in orjson.loads(r.json()["output"][-1]["content"][0]["text"])


@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-4o-mini"}, "input"),
    ({"model": "gpt-4o-mini", "input": 5}, "input"),
    ({"model": "gpt-4o-mini", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
    ({"model": "gpt-4o-mini", "input": "x", "tools": [{"type": "function", "parameters": []}]}, "tools[0].parameters"),
    ({"input": "x"}, "model"),
])
def test_bad_input_is_a_400_in_openai_shape_naming_the_field(live, body, param):
    r = post(live, body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["request_id"]


def test_a_broken_native_stream_ends_with_response_failed(live):
    r = post(live, {"model": "gpt-4o-mini", "input": "[[sim:fault=stream_error:4]] hi", "stream": True})
    frames = events(r)
    assert frames[0]["type"] == "response.created" and frames[-1]["type"] == "response.failed"
    assert frames[-1]["response"]["error"]["message"]
    assert sum(f["type"] == "response.created" for f in frames) == 1
    record = record_of(frames[0]["response"]["id"])
    assert record.status_code == 502


def test_a_broken_translated_stream_ends_with_response_failed(kinds):
    r = post(kinds, {"model": "claude-sonnet-4-5", "input": "[[sim:fault=break:4]] hi", "stream": True})
    frames = events(r)
    assert frames[0]["type"] == "response.created" and frames[-1]["type"] == "response.failed"
    assert frames[-1]["response"]["status"] == "failed"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5"])
def test_usage_cost_is_what_the_ledger_records(kinds, model, stream):
    r = post(kinds, {"model": model, "input": "price me [[sim:cached=2]]", "stream": stream})
    body = events(r)[-1]["response"] if stream else r.json()
    usage = body["usage"]
    record = record_of(body["id"])
    assert record.cost > 0 and round(usage["cost"] * 1_000_000) == record.cost
    assert (usage["input_tokens"], usage["output_tokens"]) == (record.prompt_tokens, record.completion_tokens)


def test_claude_thinking_round_trips_through_encrypted_content(kinds):
    """Codex's way: store false, reasoning items sent back with their encrypted_content; Claude wants its
    signed thinking block back before the tool result (the simulator refuses the turn without it)."""
    base = {"model": "claude-sonnet-4-5", "tools": [WEATHER], "store": False, "max_output_tokens": 4000,
            "reasoning": {"effort": "low", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    first = post(kinds, {**base, "input": "Weather in Paris?"}).json()
    reasoning = next(i for i in first["output"] if i["type"] == "reasoning")
    assert reasoning["summary"][0]["text"] and reasoning["encrypted_content"].startswith("tgsig:")
    call = next(i for i in first["output"] if i["type"] == "function_call")
    follow = post(kinds, {**base, "input": [{"role": "user", "content": "Weather in Paris?"}, *first["output"],
                                            {"type": "function_call_output", "call_id": call["call_id"],
                                             "output": "18 C"}]})
    assert follow.status_code == 200, follow.text
    sent = sim_requests(kinds, "/v1/messages")[-1]["body"]
    assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
    assert assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["signature"] == reasoning["encrypted_content"].removeprefix("tgsig:")


def test_an_input_image_reaches_gemini_as_inline_data(kinds):
    image = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
             "JRU5ErkJggg==")
    httpx.delete(f"{kinds.simulator.url}/_sim/requests")
    r = post(kinds, {"model": "gemini-2.5-flash", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": image}]}]})
    assert r.status_code == 200, r.text
    parts = sim_requests(kinds, "/v1beta/models")[-1]["body"]["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"} and parts[1]["inlineData"]["mimeType"] == "image/png"


def test_routes_and_fallback_lists_apply(kinds):
    factories.routing_rule(team=kinds.team, name="coding", default_model=kinds.model)
    bump_version()
    routed = wait_for(lambda: (r := post(kinds, {"model": "route:coding", "input": "hi"})).status_code == 200 and r)
    assert "route=route:coding" in routed.headers["x-tollgate-route"]
    # The OpenAI channel fails once: the fallback list moves on to Claude, translated (native → translated).
    httpx.post(f"{kinds.simulator.url}/_sim/faults",   # the live channel's key (tests.factories.channel)
               json={"key": "sk-sim-test-channel", "fault": "status:500", "count": 1})
    r = post(kinds, {"model": "gpt-4o-mini", "models": ["claude-sonnet-4-5"], "input": "hi", "stream": True})
    assert r.status_code == 200
    assert events(r)[-1]["response"]["model"] == "anthropic/claude-sonnet-4-5"
    assert "model=anthropic/claude-sonnet-4-5" in r.headers["x-tollgate-route"]
    assert "HTTP 500" in r.headers["x-tollgate-route"]


def test_limits_apply_in_openai_shape(live):
    _, broke = factories.api_key()   # a team with no balance
    r = httpx.post(f"{live.base_url}/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                   headers={"Authorization": f"Bearer {broke}"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_quota"
    r = httpx.post(f"{live.base_url}/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                   headers={"Authorization": "Bearer sk-tg-wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5"])
def test_a_client_that_leaves_mid_stream_is_billed_for_what_it_got(kinds, model):
    body = {"model": model, "input": "[[sim:tokens=60]] [[sim:chunk_delay_ms=50]] long", "stream": True}
    with httpx.stream("POST", f"{kinds.base_url}/responses", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {kinds.secret}"}) as r:
        lines = r.iter_lines()
        first = next(orjson.loads(line[5:]) for line in lines if line.startswith("data:"))
        deltas = 0
        for line in lines:
            deltas += '"response.output_text.delta"' in line
            if deltas == 5:
                break
    record = wait_for(lambda: UsageRecord.objects.filter(
        request_id="req_" + first["response"]["id"].removeprefix("resp_"), status_code=499).first(), timeout=10)
    assert record is not None and record.completion_tokens >= 1 and record.cost > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_custom_tool_reaches_claude_as_a_function_and_comes_back_custom(kinds, stream):
    patch = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
    r = post(kinds, {"model": "claude-sonnet-4-5", "tools": [patch], "input": "fix it", "stream": stream})
    body = events(r)[-1]["response"] if stream else r.json()
    call = next(i for i in body["output"] if i["type"] == "custom_tool_call")
    assert call["name"] == "apply_patch" and isinstance(call["input"], str) and call["input"]
    sent = sim_requests(kinds, "/v1/messages")[-1]["body"]
    assert sent["tools"][0]["input_schema"]["required"] == ["input"]
    follow = post(kinds, {"model": "claude-sonnet-4-5", "tools": [patch], "input": [
        {"role": "user", "content": "fix it"}, call,
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done"}]})
    assert follow.status_code == 200, follow.text
    assert follow.json()["output"][-1]["type"] == "message"


def test_a_strange_hosted_tool_name_cannot_break_the_route_header(kinds):
    r = post(kinds, {"model": "claude-sonnet-4-5", "input": "hi", "tools": [WEATHER, {"type": "x\u0000\u00e9\ny"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-tollgate-route"].endswith("translated=dropped hosted tools x???y")


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini3_call_signature_goes_back_with_the_call(kinds, stream):
    model = factories.CatalogModelFactory(public_id="google/gemini-3-pro-preview", upstream_name="gemini-3-pro-preview",
                                          aliases=["gemini-3-pro-preview"])
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=kinds.simulator.url, kind=Channel.GEMINI, name="g3",
                      api_key="sim-gemini-3")
    bump_version()
    first = wait_for(lambda: (r := post(kinds, {"model": "gemini-3-pro-preview", "input": "Weather in Paris?",
                                                "tools": [WEATHER], "store": False, "stream": stream}))
                     .status_code == 200 and r)
    output = events(first)[-1]["response"]["output"] if stream else first.json()["output"]
    signed = next(i for i in output if i["type"] == "reasoning")
    call = next(i for i in output if i["type"] == "function_call")
    assert signed["encrypted_content"].startswith(f"tgcall:{call['call_id']}:")
    signature = signed["encrypted_content"].split(":", 2)[2]
    assert signature and signature != "skip_thought_signature_validator"
    follow = post(kinds, {"model": "gemini-3-pro-preview", "tools": [WEATHER], "input": [
        {"role": "user", "content": "Weather in Paris?"}, *output,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "18 C"}]})
    assert follow.status_code == 200, follow.text
    model_turn = sim_requests(kinds, "/v1beta/models")[-1]["body"]["contents"][1]
    assert model_turn["role"] == "model"
    assert any(part.get("thoughtSignature") == signature for part in model_turn["parts"])
