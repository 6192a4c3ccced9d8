"""The OpenAI adapter: translations on representative inputs, then over real HTTP against the simulator."""
import asyncio

import orjson
import pytest

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
from routing.adapters.openai import OpenAIAdapter, usage_from
from tests.routing.adapters import exchange
from tests.routing.adapters.exchange import PNG, WEATHER, call, last_request_body, post_raw, sse_data

ADAPTER = OpenAIAdapter()
MODEL, REASONING = "gpt-4o-mini", "o3-mini"


def body_of(request, *, model=MODEL, stream=False) -> dict:
    upstream = ADAPTER.to_upstream(request, upstream_model=model, base_url="https://api.openai.com/v1", api_key="k",
                                   stream=stream)
    return orjson.loads(upstream.body)


def user(text="Hi"):
    return {"messages": [{"role": "user", "content": text}]}


def events_of(frames: list[dict], *, done=True) -> list:
    """exchange.events_of, with the `data: [DONE]` line an OpenAI stream ends with."""
    lines = [b"data: " + orjson.dumps(f) for f in frames] + ([b"data: [DONE]"] if done else [])
    return asyncio.run(_drain(lines))


def chunk(delta=None, finish=None, **extra) -> dict:
    """One chat.completion.chunk frame with a single choice."""
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta or {},
                                                            "finish_reason": finish}], **extra}


async def _drain(lines):
    return [e async for e in ADAPTER.stream_events(exchange.aiter_lines(lines))]


# --- request translation -------------------------------------------------------------------------------------
def test_url_headers_and_body():
    upstream = ADAPTER.to_upstream({**user(), "model": "my-alias", "models": ["a", "b"], "temperature": 0.3},
                                   upstream_model="gpt-4.1", base_url="https://api.deepseek.com", api_key="sk-o",
                                   stream=False)
    assert upstream.url == "https://api.deepseek.com/chat/completions"
    assert upstream.headers == {"Authorization": "Bearer sk-o", "Content-Type": "application/json"}
    # the upstream model replaces the client's alias; the gateway's fallback list is not an upstream parameter
    assert orjson.loads(upstream.body) == {**user(), "model": "gpt-4.1", "temperature": 0.3}


@pytest.mark.parametrize("model", ["o1", "o1-mini", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini",
                                   "gpt-5.1-codex"])
def test_reasoning_models_get_max_completion_tokens(model):
    body = body_of({**user(), "max_tokens": 50}, model=model)
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    # the client's own max_completion_tokens wins, and max_tokens is still not sent
    body = body_of({**user(), "max_tokens": 50, "max_completion_tokens": 70}, model=model)
    assert body["max_completion_tokens"] == 70 and "max_tokens" not in body


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "deepseek-chat", "deepseek-reasoner", "chatgpt-4o-latest"])
def test_other_models_keep_max_tokens(model):
    body = body_of({**user(), "max_tokens": 50}, model=model)
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body
    body = body_of({**user(), "max_completion_tokens": 60}, model=model)
    assert body["max_completion_tokens"] == 60 and "max_tokens" not in body


def test_the_rewrite_follows_the_upstream_model_not_the_alias():
    """A client alias that looks like a reasoning model does not matter: the model sent upstream does."""
    assert body_of({**user(), "model": "o3", "max_tokens": 5}, model="gpt-4o")["max_tokens"] == 5
    assert body_of({**user(), "model": "fast", "max_tokens": 5}, model="o3")["max_completion_tokens"] == 5


def translated() -> dict:
    """A request the Anthropic or Gemini inbound route translated, with the fields only those providers know."""
    return {"_translated": True, "thinking": {"type": "enabled", "budget_tokens": 2000}, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "reasoning_content": "Let me check.", "thinking_signature": "sig-a",
         "tool_calls": [{"id": "call_1", "type": "function", "thought_signature": "c2ln",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "tool_calls": [
            {"id": "call_2", "type": "function", "thought_signature": "c2lnMg==",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
    ]}


def test_a_translated_request_loses_the_fields_openai_would_reject():
    body = body_of(translated())
    assert "_translated" not in body and "thinking" not in body
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}]


def test_a_native_request_passes_through_untouched():
    """Without `_translated` (the OpenAI inbound route) nothing is stripped: e.g. DeepSeek's reasoning_content."""
    request = {key: value for key, value in translated().items() if key != "_translated"}
    assert body_of(request) == {**request, "model": MODEL}


def test_to_upstream_leaves_the_callers_request_as_it_was():
    request = translated()
    body_of(request, model=REASONING)
    body_of({**request, "max_tokens": 9}, model=REASONING, stream=True)
    assert request == translated()


def test_streams_always_ask_for_usage():
    body = body_of({**user(), "stream": True}, stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # the client's other stream options are kept; its include_usage: false is overridden (the relay strips the
    # usage chunk again for such a client)
    body = body_of({**user(), "stream": True, "stream_options": {"include_usage": False, "include_obfuscation": False}},
                   stream=True)
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert "stream_options" not in body_of(user())


def test_tools_images_and_response_format_pass_through():
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]
    request = {**user(content), "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False,
               "response_format": {"type": "json_object"}, "seed": 3, "n": 2, "user": "u-1", "stop": ["END"]}
    assert body_of(request) == {**request, "model": MODEL}


def test_embeddings_request_and_answer():
    upstream = ADAPTER.embeddings_request({"model": "emb", "models": ["x"], "input": ["a", "b"], "dimensions": 8},
                                          upstream_model="text-embedding-3-small", base_url="http://h/v1", api_key="k")
    assert upstream.url == "http://h/v1/embeddings" and upstream.headers["Authorization"] == "Bearer k"
    assert orjson.loads(upstream.body) == {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8}
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
              "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    assert ADAPTER.embeddings_from_upstream(orjson.dumps(answer)) == (answer, Usage(prompt_tokens=4))
    for body in (b"nope", b"[]", b'{"object": "list"}'):
        with pytest.raises(UpstreamFormatError):
            ADAPTER.embeddings_from_upstream(body)


# --- response translation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, usage", [
    ({"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}, Usage(19, 10)),
    ({"prompt_tokens": 1117, "completion_tokens": 46, "prompt_tokens_details": {"cached_tokens": 1024},
      "completion_tokens_details": {"reasoning_tokens": 30}}, Usage(1117, 46, 1024, 30)),
    # DeepSeek reports cache hits beside the prompt count
    ({"prompt_tokens": 100, "completion_tokens": 20, "prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 20},
     Usage(100, 20, 80)),
    ({"prompt_tokens": 5, "completion_tokens": None, "prompt_tokens_details": None}, Usage(5, 0)),
])
def test_usage_from(raw, usage):
    assert usage_from(raw) == usage


def test_usage_from_nothing_is_none():
    assert usage_from(None) is None and usage_from({}) is None


def test_from_upstream_keeps_the_answer_and_reads_its_usage():
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi", "reasoning_content": "hmm"},
         "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                              "prompt_tokens_details": {"cached_tokens": 1}}}
    assert ADAPTER.from_upstream(orjson.dumps(answer)) == (answer, Usage(3, 2, 1))
    assert ADAPTER.from_upstream(b'{"choices": []}') == ({"choices": []}, Usage())


@pytest.mark.parametrize("body", [b"not json", b"[]", b'"text"', b"{}", b'{"choices": null}', b'{"choices": {}}'])
def test_from_upstream_rejects_what_is_not_a_completion(body):
    with pytest.raises(UpstreamFormatError):
        ADAPTER.from_upstream(body)


# --- the byte passthrough (the OpenAI inbound route) ------------------------------------------------------------
def test_passthrough_forwards_data_lines_and_drops_the_rest():
    line = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}'
    assert ADAPTER.passthrough(line) == (line, None)
    assert ADAPTER.passthrough(b"data: [DONE]") == (b"data: [DONE]", None)
    for other in (b": OPENROUTER PROCESSING", b"", b"event: ping", b"id: 7", b"retry: 1000"):
        assert ADAPTER.passthrough(other) == (None, None)


def test_passthrough_reads_usage_only_from_the_usage_chunk():
    usage_line = (b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":149,"completion_tokens":60,'
                  b'"total_tokens":209,"prompt_tokens_details":{"cached_tokens":128}}}')
    assert ADAPTER.passthrough(usage_line) == (usage_line, Usage(149, 60, 128))
    null_usage = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}'
    assert ADAPTER.passthrough(null_usage) == (null_usage, None)


def test_passthrough_reads_usage_written_with_spaces():
    """An upstream that writes JSON with spaces (json.dumps defaults, as several OpenAI-compatible servers do) is
    billed from its usage chunk too; the line goes on in compact form."""
    line = b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}'
    out, usage = ADAPTER.passthrough(line)
    assert usage == Usage(9, 3)
    assert orjson.loads(out[6:]) == orjson.loads(line[6:])


# --- stream translation -----------------------------------------------------------------------------------------
def test_stream_events_text_reasoning_tools_finish_and_usage():
    frames = [
        chunk({"role": "assistant", "content": ""}, usage=None),
        chunk({"reasoning_content": "Think"}, usage=None),     # DeepSeek
        chunk({"reasoning": " more"}, usage=None),             # OpenRouter
        chunk({"content": "Hi"}, usage=None),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}, usage=None),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}, usage=None),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "now", "arguments": "{}"}}]}, usage=None),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}, usage=None),
        chunk({}, "tool_calls", usage=None),
        {"object": "chat.completion.chunk", "choices": [], "usage": {
            "prompt_tokens": 20, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 3}}},
    ]
    events = exchange.Result(200, events=events_of(frames))  # the events folded as a client sees them
    assert events.events == [
        ReasoningDelta("Think"), ReasoningDelta(" more"), TextDelta("Hi"),
        ToolCallDelta(0, "call_a", "get_weather", ""), ToolCallDelta(0, None, None, '{"ci'),
        ToolCallDelta(1, "call_b", "now", "{}"), ToolCallDelta(0, None, None, 'ty":"Oslo"}'),
        Finish("tool_calls"), UsageEvent(Usage(20, 9, 4, 3))]
    assert events.tool_calls() == {0: {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Oslo"}',
                                       "signature": None},
                                   1: {"id": "call_b", "name": "now", "arguments": "{}", "signature": None}}


def test_stream_skips_comments_and_stops_at_done():
    lines = [b": OPENROUTER PROCESSING", b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}',
             b"event: message", b"data:[DONE]", b'data: {"choices":[{"index":0,"delta":{"content":"after"}}]}']
    assert asyncio.run(_drain(lines)) == [TextDelta("a")]


def test_stream_error_chunk_and_broken_streams():
    error = {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
    assert events_of([chunk({"content": "a"}), error], done=False) == [
        TextDelta("a"), StreamError("The server had an error while processing your request.")]
    with pytest.raises(UpstreamFormatError):
        events_of([chunk({"content": "a"}), chunk({}, "stop")], done=False)
    with pytest.raises(UpstreamFormatError):
        asyncio.run(_drain([b"data: {oops", b"data: [DONE]"]))


def test_error_detail():
    body = orjson.dumps({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this "
                                              "model. Use 'max_completion_tokens' instead.",
                                   "type": "invalid_request_error", "param": "max_tokens",
                                   "code": "unsupported_parameter"}})
    assert ADAPTER.error_detail(400, body) == (orjson.loads(body)["error"]["message"], "unsupported_parameter",
                                               "max_tokens")
    no_code = orjson.dumps({"error": {"message": "Rate limit reached", "type": "requests", "code": None}})
    assert ADAPTER.error_detail(429, no_code) == ("Rate limit reached", None, None)
    # OpenRouter's numeric codes come back as strings; an error given as a string is its message
    assert ADAPTER.error_detail(402, b'{"error":{"code":402,"message":"Insufficient credits"}}') == (
        "Insufficient credits", "402", None)
    assert ADAPTER.error_detail(500, b'{"error":"upstream crashed"}') == ("upstream crashed", None, None)
    for body in (b"<html>bad gateway</html>", b"", b"[]", b'{"error": null}', b'{"detail": "x"}'):
        assert ADAPTER.error_detail(502, body) == ("HTTP 502", None, None)


# --- over real HTTP against the simulator ---------------------------------------------------------------------
SCENARIOS = {
    "text": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
             "max_tokens": 100, "temperature": 0.5, "stop": ["NEVER"]},
    "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
              "tool_choice": "required"},
    "image": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe this"}, {"type": "image_url", "image_url": {"url": PNG}}]}]},
}


def openai_call(sim, request, *, model=MODEL, stream=False, **kwargs):
    request = {**request, "stream": True} if stream else request
    return call(ADAPTER, sim, request, model=model, stream=stream, base_url=f"{sim.url}/v1", **kwargs)


def expected_usage(result) -> Usage:
    """The usage the simulator reported: its answer's, or its stream's usage chunk."""
    raw = orjson.loads(result.body)["usage"] if result.body else sse_data(result.raw_lines[:-1])[-1]["usage"]
    return usage_from(raw)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", [MODEL, REASONING])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_live(sim, scenario, model, stream):
    result = openai_call(sim, SCENARIOS[scenario], model=model, stream=stream)
    assert result.status == 200, result.body
    text, calls, finish = result.answer(stream)
    if scenario == "tools":
        assert finish == "tool_calls" and len(calls) == 1 and calls[0]["id"].startswith("call_")
        assert calls[0]["name"] == "get_weather" and orjson.loads(calls[0]["arguments"])["city"]
    else:
        prompt = "Describe this" if scenario == "image" else "Say hello"
        assert finish == "stop" and not calls and text.startswith(f"Simulated reply to: {prompt}")
    assert result.usage == expected_usage(result) and result.usage.prompt_tokens > 0
    sent = last_request_body(sim)
    if scenario == "text":
        assert (sent.get("max_tokens"), sent.get("max_completion_tokens")) == (
            (None, 100) if model == REASONING else (100, None))


def test_live_stream_passthrough_bills_the_same_usage(sim):
    """The OpenAI route forwards the upstream's bytes; its usage must be what the parsed stream reports."""
    result = openai_call(sim, SCENARIOS["tools"], stream=True)
    forwarded, usages = [], []
    for line in result.raw_lines:
        out, usage = ADAPTER.passthrough(line)
        forwarded += [out] if out is not None else []
        usages += [usage] if usage is not None else []
    assert forwarded == [line for line in result.raw_lines if line.startswith(b"data:")]
    assert usages == [result.usage] and result.usage.completion_tokens > 0


def test_live_cached_and_reasoning_tokens(sim):
    result = openai_call(sim, user("hi [[sim:cached=3]] [[sim:reasoning=5]]"), model="gpt-5")
    assert result.status == 200, result.body
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (3, 5)
    assert result.usage == expected_usage(result)


def test_live_translated_request_is_accepted(sim):
    result = openai_call(sim, translated(), model=REASONING)
    assert result.status == 200, result.body
    assert result.data["choices"][0]["message"]["content"].startswith("Simulated reply to:")


def test_live_simulator_refuses_what_the_adapter_removes(sim):
    """The checks the live tests rely on: max_tokens on a reasoning model and a foreign field are 400s."""
    r = post_raw(ADAPTER, sim, {**user(), "max_tokens": 5}, model=REASONING, base_url=f"{sim.url}/v1",
                 edit=lambda b: b.update(max_tokens=b.pop("max_completion_tokens")))
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    r = post_raw(ADAPTER, sim, user(), model=MODEL, base_url=f"{sim.url}/v1",
                 edit=lambda b: b.update(thinking={"type": "enabled"}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "thinking"


def test_live_errors_read_back(sim):
    result = openai_call(sim, user(), key="sk-sim-invalid")
    assert result.status == 401
    message, code, _ = ADAPTER.error_detail(result.status, result.body)
    assert code == "invalid_api_key" and message
    result = openai_call(sim, user("hi [[sim:fault=status:503]]"))
    assert result.status == 503 and ADAPTER.error_detail(503, result.body)[0] != "HTTP 503"


def test_a_translated_request_loses_what_openai_would_refuse():
    """Claude Code's adaptive thinking becomes reasoning_effort, and its cache_control rides on content parts:
    gpt-4o refuses the first and OpenAI takes neither, but reasoning models keep the effort and an OpenRouter
    base URL keeps cache_control (OpenRouter passes it to Anthropic)."""
    parts = [{"type": "text", "text": "long prefix", "cache_control": {"type": "ephemeral"}}]
    translated = {"messages": [{"role": "user", "content": parts}], "reasoning_effort": "high", "_translated": True}
    plain = body_of(dict(translated))
    assert "reasoning_effort" not in plain
    assert plain["messages"][0]["content"] == [{"type": "text", "text": "long prefix"}]
    assert body_of(dict(translated), model=REASONING)["reasoning_effort"] == "high"
    routed = orjson.loads(ADAPTER.to_upstream(dict(translated), upstream_model="anthropic/claude-sonnet-4.5",
                                              base_url="https://openrouter.ai/api/v1", api_key="k",
                                              stream=False).body)
    assert routed["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert parts[0]["cache_control"] == {"type": "ephemeral"}   # the caller's request is left as it was
    native = body_of({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"})
    assert native["reasoning_effort"] == "low"   # an OpenAI client's own choice is its own
