"""Anthropic Messages as Claude Code 2.1 sends it: the inbound format accepts every field (a 400 only for a
wrong type of a field the gateway reads), translates for other providers, and the Anthropic adapter relays
it natively (the client's body untouched, ids ours, usage with cache reads and writes)."""
import asyncio

import httpx
import orjson
import pytest

from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.base import UpstreamFormatError
from routing.catalog import bump_version
from routing.models import Channel
from routing.relay import errors
from routing.relay.formats import anthropic as fmt
from tests import factories

ADAPTER = AnthropicAdapter()
BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
         "mid-conversation-system-2026-04-07,effort-2025-11-24")
READ = {"name": "Read", "description": "Reads a file.", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
    "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}


def claude_code_body(**changes) -> dict:
    """The shape of Claude Code 2.1's first request (captured; texts shortened)."""
    body = {
        "model": "claude-opus-4-8",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                         {"type": "text", "text": "hello there"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\n cwd: /tmp/x",
                                            "cache_control": {"type": "ephemeral"}}]},
        ],
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
                   {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be helpful.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "tools": [READ, {"name": "DeferredToolPlaceholder", "description": "never call this",
                         "input_schema": {"type": "object", "properties": {}}, "defer_loading": True},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "metadata": {"user_id": orjson.dumps({"device_id": "d1", "session_id": "s1"}).decode()},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "stream": True,
    }
    body.update(changes)
    return body


# --- inbound: accepted, and translated to the canonical request ------------------------------------------------
def test_claude_code_request_is_accepted_and_translated():
    canonical = fmt.to_canonical(claude_code_body())
    system, user, mid = canonical["messages"]
    assert system == {"role": "system", "content": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be helpful.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    assert user["role"] == "user" and [p["text"] for p in user["content"]][1] == "hello there"
    # the mid-conversation system turn stays where it was, its cache breakpoint on
    assert mid == {"role": "system", "content": [{"type": "text", "text": "# Environment\n cwd: /tmp/x",
                                                  "cache_control": {"type": "ephemeral"}}]}
    # the client's own tools become functions; Anthropic's server tool has no equivalent elsewhere
    assert [t["function"]["name"] for t in canonical["tools"]] == ["Read", "DeferredToolPlaceholder"]
    assert canonical["reasoning_effort"] == "medium"          # output_config.effort, the nearest equivalent
    assert canonical["thinking"] == {"type": "adaptive", "display": "omitted"}   # kept for Anthropic channels
    assert canonical["stream"] is True and canonical["max_tokens"] == 64000
    assert canonical["user"].startswith('{"device_id"')
    assert "context_management" not in canonical and "output_config" not in canonical


@pytest.mark.parametrize(("thinking", "output_config", "effort"), [
    ({"type": "adaptive"}, None, "high"),                        # Anthropic's default effort
    ({"type": "adaptive"}, {"effort": "low"}, "low"),
    ({"type": "adaptive"}, {"effort": "max"}, "high"),
    ({"type": "enabled", "budget_tokens": 2048}, None, "low"),
    ({"type": "enabled", "budget_tokens": 20000}, None, "high"),
    ({"type": "disabled"}, {"effort": "high"}, None),
    (None, {"effort": "xhigh"}, "high"),
    (None, None, None),
])
def test_thinking_and_effort_become_reasoning_effort(thinking, output_config, effort):
    body = {"model": "m", "max_tokens": 30000, "messages": [{"role": "user", "content": "hi"}]}
    if thinking:
        body["thinking"] = thinking
    if output_config:
        body["output_config"] = output_config
    assert fmt.to_canonical(body).get("reasoning_effort") == effort


def test_unknown_fields_and_betas_are_never_a_400():
    body = claude_code_body(speed="fast", container="c1", inference_geo="us", some_future_field={"x": [1]},
                            cache_control={"type": "ephemeral"}, service_tier="auto")
    body["messages"][0]["content"][1]["citations"] = None
    body["messages"][0]["future_flag"] = True
    assert fmt.to_canonical(body)["messages"]


@pytest.mark.parametrize(("change", "field"), [
    ({"thinking": {"type": 5}}, "thinking.type"),
    ({"thinking": "adaptive"}, "thinking"),
    ({"thinking": {"type": "enabled", "budget_tokens": "big"}}, "thinking.budget_tokens"),
    ({"output_config": "high"}, "output_config"),
    ({"output_config": {"effort": 3}}, "output_config.effort"),
    ({"system": [{"type": "text", "text": "x", "cache_control": "5m"}]}, "system[0].cache_control"),
    ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "system", "content": 5}]}, "messages[0].content"),
])
def test_wrong_types_of_fields_read_are_a_400_naming_the_field(change, field):
    with pytest.raises(errors.RelayError) as exc:
        fmt.to_canonical(claude_code_body(**change))
    assert exc.value.status == 400 and field in exc.value.message and exc.value.param in (field, None)


# --- the Anthropic adapter's translation keeps the cache breakpoints ------------------------------------------
def test_translated_to_anthropic_system_turns_hoisted_with_their_cache_control():
    canonical = fmt.to_canonical(claude_code_body(stream=False))
    upstream = ADAPTER.to_upstream(canonical, upstream_model="claude-sonnet-4-5", base_url="https://a.example",
                                   api_key="k", stream=False)
    body = orjson.loads(upstream.body)
    assert [b.get("cache_control") for b in body["system"]] == [
        None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"}]
    assert body["system"][-1]["text"].startswith("# Environment")
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["thinking"] == {"type": "adaptive", "display": "omitted"}


# --- native relay ------------------------------------------------------------------------------------------------
class Headers(dict):
    def get(self, name, default=None):
        return super().get(name.lower(), default)


def test_native_request_forwards_the_body_untouched_but_the_model():
    payload = claude_code_body(some_future_field={"a": 1})
    req = ADAPTER.native_request("anthropic", payload, upstream_model="claude-sonnet-4-5",
                                 base_url="https://api.anthropic.com/v1", api_key="sk-ant-channel", stream=True,
                                 headers=Headers({"anthropic-beta": BETAS, "anthropic-version": "2023-06-01",
                                                  "x-api-key": "sk-tg-client"}))
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers == {"x-api-key": "sk-ant-channel", "anthropic-version": "2023-06-01",
                           "anthropic-beta": BETAS, "content-type": "application/json"}
    assert orjson.loads(req.body) == {**payload, "model": "claude-sonnet-4-5"}
    assert payload["model"] == "claude-opus-4-8"   # the caller's payload is not changed (a retry reuses it)
    plain = ADAPTER.native_request("anthropic", {"model": "x", "max_tokens": 5, "messages": []},
                                   upstream_model="u", base_url="http://sim", api_key="k", stream=False,
                                   headers=Headers())
    assert "anthropic-beta" not in plain.headers and plain.headers["anthropic-version"] == "2023-06-01"
    assert "stream" not in orjson.loads(plain.body)


UPSTREAM_USAGE = {"input_tokens": 12, "output_tokens": 40, "cache_read_input_tokens": 300,
                  "cache_creation_input_tokens": 150,
                  "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50}}


def test_native_answer_rewrites_ids_and_reads_usage_with_cache_parts():
    upstream = {"id": "msg_upstream", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "thinking", "thinking": "", "signature": "sig"},
                            {"type": "text", "text": "I'll read it."},
                            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/x"}}],
                "stop_reason": "tool_use", "stop_sequence": None, "usage": UPSTREAM_USAGE,
                "context_management": {"applied_edits": []}}
    body, usage, finish = ADAPTER.native_answer("anthropic", orjson.dumps(upstream), response_id="msg_ours",
                                                model="anthropic/claude-sonnet-4-5")
    out = orjson.loads(body)
    assert out == {**upstream, "id": "msg_ours", "model": "anthropic/claude-sonnet-4-5"}
    assert finish == "tool_calls"
    assert usage.prompt_tokens == 12 + 300 + 150 and usage.completion_tokens == 40
    assert usage.cached_tokens == 300
    # the writes: 5-minute and 1-hour apart where the Usage knows both (billing's field), in total otherwise
    assert usage.cache_write_tokens + getattr(usage, "cache_write_1h_tokens", 0) == 150
    for bad in (b"nope", b'{"type": "error"}', b'{"type": "message", "content": null}'):
        with pytest.raises(UpstreamFormatError):
            ADAPTER.native_answer("anthropic", bad, response_id="msg_x", model="m")


def sse(event: dict) -> list[bytes]:
    return [b"event: " + event["type"].encode(), b"data: " + orjson.dumps(event)]


STREAM = [
    {"type": "message_start", "message": {"id": "msg_upstream", "type": "message", "role": "assistant",
                                          "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                          "usage": {**UPSTREAM_USAGE, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                  "signature": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCkgIARAB"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                  "name": "Read", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                          "partial_json": '{"file_path": "/x"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 40}, "context_management": {"applied_edits": []}},
    {"type": "message_stop"},
]


def native_chunks(lines: list[bytes]) -> list:
    async def run():
        async def source():
            for line in lines:
                yield line
        return [c async for c in ADAPTER.native_stream("anthropic", source(), response_id="msg_ours",
                                                       model="anthropic/claude-sonnet-4-5")]
    return asyncio.run(run())


def test_native_stream_passes_every_event_with_ids_rewritten():
    lines = [line for event in STREAM for line in sse(event)]
    chunks = native_chunks([b": keep-alive", *lines])
    assert len(chunks) == len(STREAM)
    first = chunks[0].data
    assert first.startswith(b"event: message_start\ndata: ") and first.endswith(b"\n\n")
    start = orjson.loads(first.split(b"data: ", 1)[1])
    assert start["message"]["id"] == "msg_ours" and start["message"]["model"] == "anthropic/claude-sonnet-4-5"
    # every other event byte for byte (thinking, its signature, the tool call, context_management)
    for event, chunk in zip(STREAM[1:], chunks[1:], strict=True):
        assert chunk.data == b"\n".join(sse(event)) + b"\n\n"
    delta = chunks[-2]
    assert delta.finish == "tool_calls" and delta.usage.completion_tokens == 40
    assert delta.usage.cached_tokens == 300 and delta.usage.prompt_tokens == 462
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])


def test_native_stream_errors_and_truncation_raise():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamFormatError, match="overloaded_error"):
        native_chunks([*sse(STREAM[0]), *sse(error)])
    with pytest.raises(UpstreamFormatError, match="message_stop"):
        native_chunks([line for event in STREAM[:-1] for line in sse(event)])


def test_native_stream_reencodes_a_data_field_split_over_lines():
    joined = b'data: {"type": "ping",\n "x": 1}'   # what sse_lines makes of two data: lines
    chunks = native_chunks([*sse(STREAM[0]), b"event: ping", joined, *sse(STREAM[-1])])
    assert chunks[1].data == b'event: ping\ndata: {"type":"ping","x":1}\n\n'


def test_translation_notes_say_what_a_non_anthropic_channel_cannot_carry():
    body = claude_code_body()
    body["messages"].append({"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"},
                                                               {"type": "text", "text": "ok"}]})
    fmt.to_canonical(body)
    assert fmt.translation_notes(body) == [
        "dropped server tools web_search", "dropped context_management",
        "thinking adaptive -> reasoning_effort=medium", "dropped redacted_thinking blocks"]
    plain = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
             "output_config": {"effort": "low"}}
    assert fmt.translation_notes(plain) == ["effort -> reasoning_effort=low"]
    assert fmt.translation_notes({**plain, "output_config": None}) == []


# --- content blocks of today's Messages API the translation reads: search results and text documents --------
SEARCH_RESULT = {"type": "search_result", "source": "https://docs.example/limits", "title": "Rate limits",
                 "content": [{"type": "text", "text": "Each key group has an rpm limit."}],
                 "citations": {"enabled": True}}
TEXT_DOCUMENT = {"type": "document", "title": "notes",
                 "source": {"type": "text", "media_type": "text/plain", "data": "The parrot is named Pickles."}}


def search_result_body(**changes) -> dict:
    """A tool that returns search results (Anthropic's search_result blocks: `source` is a string), then the
    user's own search result and a plain-text document."""
    body = {"model": "m", "max_tokens": 200, "messages": [
        {"role": "user", "content": "What are the limits? [[sim:tool=none]]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "search",
                                           "input": {"q": "limits"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [SEARCH_RESULT]},
            dict(SEARCH_RESULT, source="handbook", title="Budgets",
                 content=[{"type": "text", "text": "Budgets are daily or monthly."}]),
            TEXT_DOCUMENT, {"type": "text", "text": "Answer from these. [[sim:tool=none]]"}]}],
        "tools": [{"name": "search", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]}
    body.update(changes)
    return body


def test_search_results_and_text_documents_are_accepted_and_translated_as_text():
    canonical = fmt.to_canonical(search_result_body())
    tool, user = canonical["messages"][2:]
    assert tool == {"role": "tool", "tool_call_id": "toolu_1",
                    "content": "[Rate limits https://docs.example/limits]\nEach key group has an rpm limit.\n"}
    assert [p["text"] for p in user["content"]] == [
        "[Budgets handbook]\nBudgets are daily or monthly.\n", "The parrot is named Pickles.",
        "Answer from these. [[sim:tool=none]]"]
    with pytest.raises(errors.RelayError) as exc:   # a wrong type is still a 400 naming the field
        fmt.to_canonical(search_result_body(messages=[{"role": "user", "content": [dict(SEARCH_RESULT, source={})]}]))
    assert exc.value.status == 400 and "messages[0].content[0].source" in exc.value.message


@pytest.mark.live
@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_search_results_reach_claude_untouched_and_other_providers_as_text(live, kind):
    """Through a live gateway: natively the blocks reach the (schema-checking) simulated Anthropic API as sent;
    translated to an OpenAI channel their text, titles and sources reach the chat request."""
    model = live.model.public_id
    if kind == "anthropic":
        claude = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", provider="anthropic",
                                               upstream_name="claude-sonnet-4-5", supports_tools=True)
        factories.PriceFactory(model=claude)
        factories.channel(models=[claude], base_url=live.simulator.url, kind=Channel.ANTHROPIC, name="anthropic")
        bump_version()
        model = claude.public_id
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    body = search_result_body(model=model)
    answer = httpx.post(f"{live.server.url}/v1/messages", json=body, timeout=30,
                        headers={"x-api-key": live.secret, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "message" and answer.json()["model"] == model
    [sent] = [r for r in httpx.get(f"{live.simulator.url}/_sim/requests?limit=5").json()["requests"]
              if r["method"] == "POST"]
    if kind == "anthropic":
        assert sent["path"] == "/v1/messages" and sent["body"]["messages"] == body["messages"]
    else:
        assert sent["path"] == "/v1/chat/completions"
        tool = next(m for m in sent["body"]["messages"] if m["role"] == "tool")
        assert "Rate limits https://docs.example/limits" in tool["content"] and "rpm limit" in tool["content"]
        texts = " ".join(p["text"] for p in sent["body"]["messages"][-1]["content"])
        assert "Budgets handbook" in texts and "Pickles" in texts


# --- a tool choice with server tools, translated ------------------------------------------------------------
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "web_search"}])
def test_a_tool_choice_over_server_tools_alone_is_left_out_of_the_translation(choice):
    """Only server tools: the translation has no tools, so no tool_choice either (OpenAI refuses one without
    tools); forcing the server tool is said in the route header."""
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "news?"}],
            "tools": [WEB_SEARCH], "tool_choice": choice}
    canonical = fmt.to_canonical(body)
    assert "tools" not in canonical and "tool_choice" not in canonical
    forced = ["dropped tool_choice web_search"] if choice["type"] == "tool" else []
    assert fmt.translation_notes(body) == ["dropped server tools web_search", *forced]


def test_forcing_a_server_tool_beside_the_clients_own_leaves_the_choice_to_the_model():
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "news?"}],
            "tools": [READ, WEB_SEARCH], "tool_choice": {"type": "tool", "name": "web_search",
                                                        "disable_parallel_tool_use": True}}
    canonical = fmt.to_canonical(body)
    assert [t["function"]["name"] for t in canonical["tools"]] == ["Read"] and "tool_choice" not in canonical
    own = fmt.to_canonical({**body, "tool_choice": {"type": "tool", "name": "Read", "disable_parallel_tool_use": True}})
    assert own["tool_choice"] == {"type": "function", "function": {"name": "Read"}}
    assert own["parallel_tool_calls"] is False
    assert "dropped tool_choice Read" not in " ".join(fmt.translation_notes({**body, "tool_choice": {
        "type": "tool", "name": "Read"}}))
