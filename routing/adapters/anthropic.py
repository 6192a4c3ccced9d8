"""Anthropic Messages upstreams (POST /v1/messages).

Where the formats do not map 1:1:
- `response_format: json_schema` becomes a forced tool (`structured_output__<schema name>`) whose input schema is
  the JSON schema; its tool_use is turned back into text content (and its input_json_delta fragments into text
  deltas), finish reason `stop`. When a forced tool is impossible (the client also gives tools, or extended
  thinking is on, which Anthropic refuses with a forced tool) the schema goes into a system instruction, as
  `json_object` always does.
- `reasoning_effort` low/medium/high → `thinking.budget_tokens` 1024/4096/16384, capped below `max_tokens`
  (without `max_tokens` the default 4096 is raised by the budget, so thinking leaves room for the answer);
  dropped when it cannot be honoured (budget under 1024, a forced tool_choice). A `thinking` field (set by the
  Anthropic inbound route) passes through as it is. Any thinking is dropped when the tool loop in progress has
  no signed thinking block to send back (Anthropic rejects that), and with thinking on temperature/top_p are
  left out (Anthropic only accepts their defaults).
- Thinking signatures travel as the non-standard `message.thinking_signature`; images as base64 or url sources;
  other media parts (audio, video) are not sent."""
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.utils.translation import gettext_lazy as _

from routing.adapters.base import (
    Adapter,
    Capabilities,
    Event,
    Finish,
    NativeChunk,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    UpstreamFormatError,
    UpstreamRequest,
    Usage,
    UsageEvent,
)
from routing.adapters.canonical import (
    append_turn,
    completion,
    data_url,
    error_of,
    json_object,
    load_json,
    max_tokens_of,
    parts_of,
    sse_json,
    stops_of,
    tool_call,
)

# --- Anthropic ---------------------------------------------------------------------------------------------
VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS: dict[str | None, int] = {"low": 1024, "medium": 4096, "high": 16384}   # by reasoning_effort, if any
JSON_TOOL_PREFIX = "structured_output__"
JSON_INSTRUCTION = "Respond with a single valid JSON object only: no other text and no code fences."
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def _text(text: str) -> list[dict]:
    return [{"type": "text", "text": text}] if text else []


def _blocks(content) -> list[dict]:
    """OpenAI content → text and image blocks (Anthropic refuses empty text blocks)."""
    blocks = []
    for part in parts_of(content):
        if part.get("type") == "text":
            text = _text(part.get("text") or "")
            if text and isinstance(part.get("cache_control"), dict):  # a cache breakpoint set by the client
                text[0]["cache_control"] = part["cache_control"]
            blocks += text
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url") or ""
            inline = data_url(url)
            source = ({"type": "base64", "media_type": inline[0], "data": inline[1]} if inline
                      else {"type": "url", "url": url})
            blocks.append({"type": "image", "source": source})
    return blocks


def _assistant_blocks(message: dict) -> list[dict]:
    blocks = []
    if message.get("reasoning_content") and message.get("thinking_signature"):
        blocks.append({"type": "thinking", "thinking": message["reasoning_content"],
                       "signature": message["thinking_signature"]})
    blocks += _blocks(message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
                       "input": json_object(fn.get("arguments"))})
    return blocks


def _messages(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """(system blocks, messages): system/developer turns are hoisted; tool results become user tool_result
    blocks; consecutive same-role turns are merged (Anthropic wants roles to alternate)."""
    system: list[dict] = []
    turns: list[dict] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):  # wherever it stood (a mid-conversation system turn too)
            system += [b for b in _blocks(message.get("content")) if b["type"] == "text"]
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            content = message.get("content")
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id") or "",
                                     "content": content if isinstance(content, str) else _blocks(content)}]
        else:
            role, blocks = "user", _blocks(message.get("content"))
        append_turn(turns, role, "content", blocks)
    return system, turns



def _tool(fn: dict) -> dict:
    tool = {"name": fn.get("name") or "", "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        tool["description"] = fn["description"]
    return tool


def _forces_tool(choice) -> bool:
    return choice == "required" or isinstance(choice, dict)


def _thinking(request: dict, max_tokens: int | None) -> dict | None:
    thinking = request.get("thinking")
    if not isinstance(thinking, dict):
        budget = THINKING_BUDGETS.get(request.get("reasoning_effort"))
        if budget is None or _forces_tool(request.get("tool_choice")):
            return None
        budget = min(budget, max_tokens - 1) if max_tokens else budget
        if budget < MIN_THINKING_BUDGET:
            return None
        thinking = {"type": "enabled", "budget_tokens": budget}
    if thinking.get("type") in ("enabled", "adaptive"):
        last = next((m for m in reversed(request.get("messages") or ()) if m.get("role") == "assistant"), None)
        if last and last.get("tool_calls") and not last.get("thinking_signature"):
            return None  # the tool loop in progress must start with a signed thinking block
    return thinking


def _response_format(fmt, *, can_force: bool) -> tuple[dict | None, str | None]:
    """(forced JSON tool, system instruction) for response_format."""
    kind = (fmt or {}).get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return None, JSON_INSTRUCTION
    if kind != "json_schema":
        return None, None
    spec = fmt.get("json_schema") or {}
    schema = spec.get("schema") or {"type": "object"}
    if not can_force:
        return None, f"{JSON_INSTRUCTION} It must match this JSON schema: {orjson.dumps(schema).decode()}"
    name = JSON_TOOL_PREFIX + re.sub(r"[^a-zA-Z0-9_-]", "_", spec.get("name") or "response")[:64]
    tool = {"name": name, "description": "Give your final answer by calling this tool with it as the input.",
            "input_schema": {"type": "object", **schema}}
    return tool, None


def _tool_choice(choice, parallel, json_tool) -> dict | None:
    if json_tool:
        out = {"type": "tool", "name": json_tool["name"]}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    elif choice == "auto" or parallel is False:
        out = {"type": "auto"}
    else:
        return None  # Anthropic's default: auto
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _finish(stop_reason, has_calls: bool) -> str:
    reason = FINISH.get(stop_reason, "stop")
    return "stop" if reason == "tool_calls" and not has_calls else reason  # only the JSON tool was called


def _usage(raw: dict) -> Usage:
    read, write = raw.get("cache_read_input_tokens") or 0, raw.get("cache_creation_input_tokens") or 0
    # The writes by duration (cache_control ttl "5m" / "1h"); without the breakdown every write is a 5-minute one.
    creation = found if isinstance(found := raw.get("cache_creation"), dict) else {}
    write_1h = creation.get("ephemeral_1h_input_tokens") or 0
    write_5m = (creation.get("ephemeral_5m_input_tokens") or 0) if creation else write
    thinking = (raw.get("output_tokens_details") or {}).get("thinking_tokens") or 0
    return Usage(prompt_tokens=(raw.get("input_tokens") or 0) + read + max(write, write_5m + write_1h),
                 completion_tokens=raw.get("output_tokens") or 0, cached_tokens=read, cache_write_tokens=write_5m,
                 cache_write_1h_tokens=write_1h, reasoning_tokens=thinking)


def _is_json_tool(name) -> bool:
    return isinstance(name, str) and name.startswith(JSON_TOOL_PREFIX)


def _messages_url(base_url: str) -> str:
    return f"{base_url.rstrip('/').removesuffix('/v1')}/v1/messages"


def _event_bytes(event_line: bytes | None, data_line: bytes) -> bytes:
    """One whole SSE event for the client (a data field that sse_lines joined over lines is re-encoded: a
    newline inside a data line would end the event early)."""
    if b"\n" in data_line:
        data_line = b"data: " + orjson.dumps(orjson.loads(data_line[5:]))
    return (event_line + b"\n" if event_line else b"") + data_line + b"\n\n"


class AnthropicAdapter(Adapter):
    kind = "anthropic"
    label = _("Anthropic Messages")
    capabilities = Capabilities(cache_control=True)
    native_formats = frozenset({"anthropic"})   # /v1/messages is forwarded as the client sent it
    account_codes = frozenset({"authentication_error", "permission_error", "billing_error"})
    channel_codes = frozenset({"overloaded_error"})
    model_codes = frozenset({"context_length_exceeded", "not_found_error"})

    def to_upstream(self, request: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        asked = max_tokens_of(request)
        thinking = _thinking(request, asked)
        max_tokens = asked or DEFAULT_MAX_TOKENS + ((thinking or {}).get("budget_tokens") or 0)
        system, messages = _messages(request.get("messages") or [])
        body = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
        tools = [_tool(t["function"]) for t in request.get("tools") or () if t.get("function")]
        thinking_on = thinking is not None and thinking.get("type") in ("enabled", "adaptive")
        json_tool, instruction = _response_format(request.get("response_format"),
                                                  can_force=not tools and not thinking_on)
        system += _text(instruction or "")
        if system:
            body["system"] = system
        if json_tool:
            tools.append(json_tool)
        if tools:
            body["tools"] = tools
            choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"), json_tool)
            if choice:
                body["tool_choice"] = choice
        if thinking:
            body["thinking"] = thinking
        if stops := [s for s in stops_of(request) if s.strip()]:
            body["stop_sequences"] = stops
        if request.get("temperature") is not None and not thinking_on:
            body["temperature"] = min(max(float(request["temperature"]), 0.0), 1.0)
        if request.get("top_p") is not None and not thinking_on:
            body["top_p"] = request["top_p"]
        if request.get("user"):
            body["metadata"] = {"user_id": str(request["user"])}
        if stream:
            body["stream"] = True
        return UpstreamRequest(url=_messages_url(base_url), body=orjson.dumps(body), headers={
            "x-api-key": api_key, "anthropic-version": VERSION, "content-type": "application/json"})

    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        data = load_json(body)
        if data.get("type") != "message" or not isinstance(data.get("content"), list):
            raise UpstreamFormatError("the answer is not an Anthropic message")
        text, calls, thinking, signature = [], [], [], None
        for block in data["content"]:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                text.append(block.get("text") or "")
            elif kind == "tool_use" and _is_json_tool(block.get("name")):
                text.append(orjson.dumps(block.get("input") or {}).decode())
            elif kind == "tool_use":
                calls.append(tool_call(block.get("id") or "", block.get("name") or "", block.get("input") or {}))
            elif kind == "thinking":
                thinking.append(block.get("thinking") or "")
                signature = block.get("signature") or signature
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["reasoning_content"] = "".join(thinking)
            message["thinking_signature"] = signature
        usage = _usage(data.get("usage") or {})
        choice = {"index": 0, "message": message, "finish_reason": _finish(data.get("stop_reason"), bool(calls))}
        return completion(data.get("id"), data.get("model"), [choice], usage), usage

    async def stream_events(self, lines: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        raw_usage: dict = {}
        calls = 0
        tool_blocks: dict[object, int | None] = {}  # content block index → tool-call index (None: the JSON tool)
        async for line in lines:
            event = sse_json(line)
            if event is None:   # not a data line
                continue
            kind = event.get("type")
            if kind == "message_start":
                raw_usage.update((event.get("message") or {}).get("usage") or {})
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "text" and block.get("text"):
                    yield TextDelta(block["text"])
                elif block.get("type") == "thinking" and block.get("thinking"):
                    yield ReasoningDelta(block["thinking"])
                elif block.get("type") == "tool_use":
                    if _is_json_tool(block.get("name")):
                        tool_blocks[event.get("index")] = None
                    else:
                        tool_blocks[event.get("index")] = calls
                        yield ToolCallDelta(calls, block.get("id") or "", block.get("name") or "")
                        calls += 1
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                dtype = delta.get("type")
                if dtype == "text_delta" and delta.get("text"):
                    yield TextDelta(delta["text"])
                elif dtype == "input_json_delta" and delta.get("partial_json"):
                    index = tool_blocks.get(event.get("index"))
                    yield (TextDelta(delta["partial_json"]) if index is None
                           else ToolCallDelta(index, arguments=delta["partial_json"]))
                elif dtype == "thinking_delta" and delta.get("thinking"):
                    yield ReasoningDelta(delta["thinking"])
                elif dtype == "signature_delta" and delta.get("signature"):
                    yield ReasoningDelta(signature=delta["signature"])
            elif kind == "message_delta":
                raw_usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                yield Finish(_finish((event.get("delta") or {}).get("stop_reason"), calls > 0))
                yield UsageEvent(_usage(raw_usage))
            elif kind == "message_stop":
                return
            elif kind == "error":
                err = event.get("error") or {}
                yield StreamError(str(err.get("message") or "upstream error"), err.get("type") or "upstream_error")
                return
        raise UpstreamFormatError("the stream ended before message_stop")

    def error_detail(self, status: int, body: bytes) -> tuple[str, str | None, str | None]:
        err = error_of(body)
        message, code = str(err.get("message") or f"HTTP {status}"), err.get("type")
        if "prompt is too long" in message.lower():
            code = "context_length_exceeded"
        elif "credit balance is too low" in message.lower():  # Anthropic answers an empty balance with a 400
            code = "billing_error"
        return message, code, None

    # --- native relay: an Anthropic client (Claude Code, the anthropic SDK) to an Anthropic channel --------
    def native_request(self, fmt: str, payload: dict, *, upstream_model: str, base_url: str, api_key: str,
                       stream: bool, headers) -> UpstreamRequest:
        """The client's body as it is (every field, known to the gateway or not) but the model's upstream name;
        its anthropic-version and anthropic-beta headers go along, with the channel's key."""
        body = {k: v for k, v in payload.items() if k not in ("models", "route")}   # the gateway's fallback list
        body["model"] = upstream_model
        if stream:
            body["stream"] = True
        out = {"x-api-key": api_key, "anthropic-version": headers.get("anthropic-version") or VERSION,
               "content-type": "application/json"}
        if beta := headers.get("anthropic-beta"):
            out["anthropic-beta"] = beta
        return UpstreamRequest(url=_messages_url(base_url), headers=out, body=orjson.dumps(body))

    def native_answer(self, fmt: str, body: bytes, *, response_id: str, model: str) -> tuple[bytes, Usage, str]:
        data = load_json(body)
        if data.get("type") != "message" or not isinstance(data.get("content"), list):
            raise UpstreamFormatError("the answer is not an Anthropic message")
        data["id"], data["model"] = response_id, model
        calls = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in data["content"])
        return orjson.dumps(data), _usage(data.get("usage") or {}), _finish(data.get("stop_reason"), calls)

    async def native_stream(self, fmt: str, lines: AsyncIterator[bytes], *, response_id: str,
                            model: str) -> AsyncIterator[NativeChunk]:
        """Every event as it came (thinking, signatures, server tools, citations...), message_start's id and
        model rewritten; usage and the finish reason read from message_start / message_delta."""
        raw_usage: dict = {}
        calls = False
        event_line = None
        async for line in lines:
            if line.startswith(b"event:"):
                event_line = line
                continue
            event = sse_json(line)
            if event is None:
                continue   # comments
            kind = event.get("type")
            chunk = NativeChunk(b"")
            if kind == "message_start":
                message = event.get("message") or {}
                raw_usage.update(message.get("usage") or {})
                event["message"] = {**message, "id": response_id, "model": model}
                line = b"data: " + orjson.dumps(event)
            elif kind == "content_block_start":
                calls = calls or (event.get("content_block") or {}).get("type") == "tool_use"
            elif kind == "message_delta":
                raw_usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                chunk.finish = _finish((event.get("delta") or {}).get("stop_reason"), calls)
                chunk.usage = _usage(raw_usage)
            elif kind == "message_stop":
                chunk.done = True
            elif kind == "error":
                err = event.get("error") or {}
                raise UpstreamFormatError(f"the upstream stream failed: {err.get('type')}: {err.get('message')}")
            chunk.data = _event_bytes(event_line, line)
            event_line = None
            yield chunk
            if chunk.done:
                return
        raise UpstreamFormatError("the stream ended before message_stop")
