"""The Anthropic inbound format (/v1/messages, what Claude Code and the `anthropic` SDK speak): Anthropic
request → canonical (OpenAI-shaped) request, canonical answer → Anthropic message, canonical events →
Anthropic SSE, and errors in Anthropic's shape."""

from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpResponse

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.relay import errors
from routing.relay.formats import checks

STOP_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                     "content_filter": "refusal"}
# Our error table's types → Anthropic's error types (its clients switch on these).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               408: "timeout_error",
               413: "request_too_large", 429: "rate_limit_error", 502: "api_error", 503: "overloaded_error",
               504: "timeout_error"}


def error_body(err: errors.RelayError, request_id: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(err.status, "api_error"), "message": err.message,
                                       "code": err.code}, "request_id": request_id}


def error_response(err: errors.RelayError, request_id: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(error_body(err, request_id)), status=err.status,
                            content_type="application/json")
    response["X-Request-Id"] = response["request-id"] = request_id
    for name, value in (err.headers or {}).items():
        response[name] = value
    return response


# --- request ---------------------------------------------------------------------------------------------
def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") if b.get("type") == "text" else _search_result_text(b)
                   for b in content or () if isinstance(b, dict) and b.get("type") in ("text", "search_result"))


def _search_result_text(block: dict) -> str:
    """A search_result block (a tool's or the user's cited source: `source` is its URL or name) as plain text for a
    provider without them."""
    head = " ".join(str(block.get(k)) for k in ("title", "source") if isinstance(block.get(k), str) and block[k])
    return f"[{head}]\n{_text_of(block.get('content'))}\n" if head else f"{_text_of(block.get('content'))}\n"


def _document_text(block: dict) -> str:
    """The text a document block carries (a plain-text source's `data`, a content source's text blocks), or a
    placeholder for one a text-only translation cannot carry (a PDF, a file id)."""
    source = block.get("source") or {}
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        text = source["data"]
    elif source.get("type") == "content":
        text = _text_of(source.get("content"))
    else:
        text = _text_of([source])
    return text or "[document]"


def _image_part(block: dict) -> dict:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = source.get("url", "")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content) -> list[dict]:
    """One Anthropic user turn → OpenAI messages: tool results first (as role tool), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools, parts = [], []
    for block in content:
        kind = block.get("type")
        if kind == "tool_result":
            result = block.get("content")
            text = _text_of(result) if not isinstance(result, str) else result
            if block.get("is_error"):
                text = f"[tool error] {text}"
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
        elif kind == "text":
            parts.append(_text_part(block))
        elif kind == "image":
            parts.append(_image_part(block))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block)})
        elif kind == "search_result":
            parts.append({"type": "text", "text": _search_result_text(block)})
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_message(content) -> dict:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    message: dict = {"role": "assistant", "content": _text_of(content) or None}
    calls = [{"id": b.get("id", ""), "type": "function",
              "function": {"name": b.get("name", ""), "arguments": orjson.dumps(b.get("input") or {}).decode()}}
             for b in content if b.get("type") == "tool_use"]
    if calls:
        message["tool_calls"] = calls
    thinking = [b for b in content if b.get("type") == "thinking"]
    if thinking:
        message["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        message["thinking_signature"] = thinking[-1].get("signature")
    return message


def _text_part(block: dict) -> dict:
    """A text block as a canonical text part; its cache_control stays on (OpenRouter and the Anthropic adapter
    read it, other upstreams ignore it)."""
    part = {"type": "text", "text": block.get("text", "")}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _system_content(content):
    """A system prompt (top-level or a mid-conversation system turn) as canonical content."""
    if isinstance(content, str):
        return content
    return [_text_part(b) for b in content if b.get("type", "text") == "text" and b.get("text")]


# Anthropic's effort levels → the canonical (OpenAI) reasoning_effort every provider adapter understands.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
ADAPTIVE_EFFORT = "high"   # Anthropic's default effort when adaptive thinking names none


def _reasoning_effort(thinking, output_config) -> str | None:
    """The nearest canonical reasoning_effort: an explicit effort wins, then the thinking budget; adaptive
    thinking without an effort is Anthropic's default (high); disabled or absent thinking, none."""
    effort = (output_config or {}).get("effort")
    kind = (thinking or {}).get("type")
    if kind == "disabled":
        return None
    if effort in EFFORTS:
        return EFFORTS[effort]
    if kind == "enabled":
        budget = int(thinking.get("budget_tokens") or 0)
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return ADAPTIVE_EFFORT if kind == "adaptive" else None


def _is_custom_tool(tool: dict) -> bool:
    """A tool the client runs itself (no type, or "custom"); server tools (web_search_20250305, bash_…) are
    run by Anthropic and have no equivalent elsewhere."""
    return tool.get("type") in (None, "custom") and "name" in tool


def _forces_server_tool(payload: dict) -> bool:
    """tool_choice forces one of the request's server tools (one Anthropic runs: web_search_…, bash_…)."""
    choice = payload.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return False
    return any(not _is_custom_tool(t) and choice.get("name") in (t.get("name"), t.get("type"))
               for t in payload.get("tools") or () if isinstance(t, dict))


def _tool_choice(choice: dict):
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    modes: dict[str | None, str] = {"auto": "auto", "any": "required", "none": "none"}
    return modes.get(kind, "auto")


def _validate_blocks(field: str, content) -> None:
    """A string, or an array of content blocks (objects with a string `type`); the fields a block's type
    uses are checked for theirs."""
    if isinstance(content, str):
        return
    for j, block in enumerate(checks.objects(field, content)):
        at = f"{field}[{j}]"
        kind = checks.optional(block, "type", (str,), "a string", f"{at}.type")
        for key in ("text", "thinking", "signature", "id", "name", "tool_use_id"):
            checks.optional(block, key, (str,), "a string", f"{at}.{key}")
        # a search_result's source is its URL or name (a string); an image's or a document's, an object
        checks.optional(block, "source", (str,) if kind == "search_result" else (dict,),
                        "a string" if kind == "search_result" else "an object", f"{at}.source")
        checks.optional(block, "input", (dict,), "an object", f"{at}.input")
        checks.optional(block, "cache_control", (dict,), "an object", f"{at}.cache_control")
        if kind in ("tool_result", "search_result") and block.get("content") is not None:
            _validate_blocks(f"{at}.content", block["content"])


def _validate(payload: dict) -> None:
    """Every field the translation reads, by type (before anything is reserved: a 400, never a 500)."""
    checks.depth(payload)
    for i, message in enumerate(payload["messages"]):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant", "system"):  # system: a mid-conversation system turn (beta)
            raise errors.invalid_value(f"messages[{i}].role", "expected `user`, `assistant` or `system`.")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise errors.invalid_value(f"messages[{i}].content", "expected a string or an array of blocks.")
        _validate_blocks(f"messages[{i}].content", content)
    if payload.get("system") is not None:
        of = checks.of_type("system", payload["system"], (str, list), "a string or an array of text blocks")
        _validate_blocks("system", of)
    for key in ("temperature", "top_p"):
        checks.number(payload, key)
    checks.integer(payload, "top_k", 0, checks.MAX_TOKENS)
    checks.strings(payload, "stop_sequences", single=False)
    tools = payload.get("tools")
    if tools is not None:
        for i, tool in enumerate(checks.objects("tools", tools)):
            checks.optional(tool, "name", (str,), "a string", f"tools[{i}].name")
            checks.optional(tool, "description", (str,), "a string", f"tools[{i}].description")
            checks.optional(tool, "input_schema", (dict,), "an object", f"tools[{i}].input_schema")
    choice = checks.optional(payload, "tool_choice", (dict,), "an object")
    if choice is not None:
        checks.optional(choice, "type", (str,), "a string", "tool_choice.type")
        checks.optional(choice, "name", (str,), "a string", "tool_choice.name")
    metadata = checks.optional(payload, "metadata", (dict,), "an object")
    if metadata is not None:
        checks.optional(metadata, "user_id", (str,), "a string", "metadata.user_id")
    thinking = checks.optional(payload, "thinking", (dict,), "an object")
    if thinking is not None:
        checks.optional(thinking, "type", (str,), "a string", "thinking.type")
        checks.integer(thinking, "budget_tokens", 0, checks.MAX_TOKENS, "thinking.budget_tokens")
    output_config = checks.optional(payload, "output_config", (dict,), "an object")
    if output_config is not None:
        checks.optional(output_config, "effort", (str,), "a string", "output_config.effort")


def to_canonical(payload: dict) -> dict:
    """Validate an Anthropic Messages request and translate it to the canonical OpenAI shape."""
    if payload.get("model") is None:
        raise errors.missing_field("model")
    if payload.get("max_tokens") is None:
        raise errors.missing_field("max_tokens")
    max_tokens = payload["max_tokens"]
    if type(max_tokens) is not int or not 1 <= max_tokens <= checks.MAX_TOKENS:
        raise errors.invalid_value("max_tokens", "expected a positive integer.")
    messages = payload.get("messages")
    if messages is None:
        raise errors.missing_field("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_value("messages", "expected a non-empty array of messages.")
    _validate(payload)
    out: list[dict] = []
    system = payload.get("system")
    if system:
        out.append({"role": "system", "content": _system_content(system)})
    for message in messages:   # checked in _validate
        content, role = message["content"], message["role"]
        if role == "system":   # kept in place: OpenAI takes it there, the other adapters hoist it
            out.append({"role": "system", "content": _system_content(content)})
        else:
            out.extend(_user_messages(content) if role == "user" else [_assistant_message(content)])
    canonical: dict = {"model": payload["model"], "messages": out, "max_tokens": payload["max_tokens"],
                       "_translated": True, **checks.fallback(payload)}
    if "stream" in payload:
        if not isinstance(payload["stream"], bool):
            raise errors.invalid_value("stream", "expected true or false.")
        canonical["stream"] = payload["stream"]
    for field in ("temperature", "top_p"):
        if field in payload:
            canonical[field] = payload[field]
    if payload.get("stop_sequences"):
        canonical["stop"] = payload["stop_sequences"]
    tools = [t for t in payload.get("tools") or () if _is_custom_tool(t)]
    if tools:
        canonical["tools"] = [{"type": "function", "function": {
            "name": t.get("name", ""), "description": t.get("description", ""),
            "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}} for t in tools]
    # A tool choice only with the client's own tools: Anthropic's server tools are left out of a translation (so
    # with them alone, or forcing one, the choice goes too: translation_notes says so), and an OpenAI-style
    # upstream refuses a tool_choice without tools.
    if isinstance(payload.get("tool_choice"), dict) and tools and not _forces_server_tool(payload):
        canonical["tool_choice"] = _tool_choice(payload["tool_choice"])
        if payload["tool_choice"].get("disable_parallel_tool_use"):
            canonical["parallel_tool_calls"] = False
    if isinstance(payload.get("metadata"), dict) and payload["metadata"].get("user_id"):
        canonical["user"] = str(payload["metadata"]["user_id"])
    thinking = payload.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive", "disabled"):
        canonical["thinking"] = thinking   # as sent, for Anthropic channels
    effort = _reasoning_effort(thinking, payload.get("output_config"))
    if effort is not None:
        canonical["reasoning_effort"] = effort
    return canonical


def translation_notes(payload: dict) -> list[str]:
    """What a call translated for a non-Anthropic channel could not carry as sent, in the words of
    X-Tollgate-Route (a native call carries everything; a valid payload, after to_canonical)."""
    notes = []
    server = [str(t.get("name") or t.get("type")) for t in payload.get("tools") or ()
              if isinstance(t, dict) and not _is_custom_tool(t)]
    if server:
        notes.append("dropped server tools " + ",".join(server))
    if _forces_server_tool(payload):
        notes.append(f"dropped tool_choice {payload['tool_choice'].get('name')}")
    for field in ("context_management", "container", "mcp_servers"):
        if payload.get(field):
            notes.append(f"dropped {field}")
    kind = (payload.get("thinking") or {}).get("type")
    effort = _reasoning_effort(payload.get("thinking"), payload.get("output_config"))
    if effort is not None:
        notes.append(f"{'thinking ' + kind if kind in ('adaptive', 'enabled') else 'effort'} -> "
                     f"reasoning_effort={effort}")
    blocks = [b for m in payload.get("messages") or () if isinstance(m.get("content"), list) for b in m["content"]]
    if any(b.get("type") == "redacted_thinking" for b in blocks):
        notes.append("dropped redacted_thinking blocks")
    return notes


# --- response --------------------------------------------------------------------------------------------
def usage_body(usage, cost: float | None = None) -> dict:
    """Anthropic's usage object (cache writes by duration too), with `cost` (OpenRouter's field: what the call
    was charged in the deployment currency) when the model has a price."""
    writes = usage.cache_write_tokens + usage.cache_write_1h_tokens
    out = {"input_tokens": max(usage.prompt_tokens - usage.cached_tokens - writes, 0),
           "output_tokens": usage.completion_tokens, "cache_creation_input_tokens": writes,
           "cache_read_input_tokens": usage.cached_tokens,
           "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens,
                              "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens}}
    if cost is not None:
        out["cost"] = cost
    return out


def message_from_canonical(data: dict, usage, *, message_id: str, model: str) -> dict:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": message["reasoning_content"],
                        "signature": message.get("thinking_signature") or ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                        "input": arguments})
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_TO_ANTHROPIC.get(choice.get("finish_reason"), "end_turn"),
            "stop_sequence": None, "usage": usage_body(usage)}


def _sse(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventRenderer:
    """Canonical events → Anthropic SSE (message_start … message_stop)."""

    def __init__(self, *, message_id: str, model: str, cost: Callable[[Usage], float | None] | None = None):
        self.message_id, self.model = message_id, model
        self.cost = cost   # usage → its cost (RelayCall.cost_now), for the last usage
        self.started = False
        self.block_index = -1
        self.block_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}   # OpenAI tool-call index → content block index
        self.stop_reason = "end_turn"
        self.usage: Usage | None = None

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [_sse("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[bytes]:
        if self.block_kind is None:
            return []
        self.block_kind = None
        return [_sse("content_block_stop", {"type": "content_block_stop", "index": self.block_index})]

    def _open_block(self, kind: str, block: dict) -> list[bytes]:
        out = self._close_block()
        self.block_index += 1
        self.block_kind = kind
        out.append(_sse("content_block_start", {"type": "content_block_start", "index": self.block_index,
                                                "content_block": block}))
        return out

    def _delta(self, delta: dict) -> bytes:
        return _sse("content_block_delta", {"type": "content_block_delta", "index": self.block_index,
                                            "delta": delta})

    def render(self, event) -> list[bytes]:
        out = self._start() if not isinstance(event, UsageEvent) else []
        if isinstance(event, TextDelta):
            if self.block_kind != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": event.text}))
        elif isinstance(event, ReasoningDelta):
            if self.block_kind != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if event.text:
                out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
            if event.signature:
                out.append(self._delta({"type": "signature_delta", "signature": event.signature}))
        elif isinstance(event, ToolCallDelta):
            if event.id is not None or event.index not in self.tool_blocks:
                out += self._open_block("tool_use", {"type": "tool_use", "id": event.id or f"toolu_{event.index}",
                                                     "name": event.name or "", "input": {}})
                self.tool_blocks[event.index] = self.block_index
            if event.arguments:
                out.append(self._delta({"type": "input_json_delta", "partial_json": event.arguments}))
        elif isinstance(event, Finish):
            self.stop_reason = STOP_TO_ANTHROPIC.get(event.reason, "end_turn")
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            raise errors.upstream_unavailable(f"the stream broke: {event.message}")
        return out

    def finish(self) -> list[bytes]:
        out = self._start() + self._close_block()
        usage = usage_body(self.usage, self.cost(self.usage) if self.cost else None) \
            if self.usage is not None else {"output_tokens": 0}
        out.append(_sse("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                                          "usage": usage}))
        out.append(_sse("message_stop", {"type": "message_stop"}))
        return out

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        return self._close_block() + [_sse("error", error_body(err, request_id))]


# --- the format's registry interface (routing/relay/formats/__init__.py) -------------------------------------
ID_PREFIX = "msg_"


def with_native_cost(data: bytes, cost: float | None) -> bytes:
    """A native message (its `usage`) or its `message_delta` event (the final usage), with `usage.cost`."""
    if cost is None:
        return data
    if data.startswith(b"{"):
        message = orjson.loads(data)
        if isinstance(message.get("usage"), dict):
            message["usage"]["cost"] = cost
        return orjson.dumps(message)
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data:") and b"message_delta" in line:
            event = orjson.loads(line[5:])
            if event.get("type") == "message_delta" and isinstance(event.get("usage"), dict):
                event["usage"]["cost"] = cost
                lines[i] = b"data: " + orjson.dumps(event)
    return b"\n".join(lines)


def complete(call, data: dict, usage) -> dict:
    message = message_from_canonical(data, usage, message_id=ID_PREFIX + call.hex_id, model=call.model.public_id)
    message["usage"] = usage_body(usage, call.cost_now(usage))
    return message


def renderer(call, payload: dict) -> EventRenderer:
    return EventRenderer(message_id=ID_PREFIX + call.hex_id, model=call.model.public_id, cost=call.cost_now)
