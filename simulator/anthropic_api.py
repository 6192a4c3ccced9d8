"""Anthropic wire format: POST /v1/messages and /v1/messages/count_tokens."""

import hashlib
import itertools
import re
import time
from collections import OrderedDict

import orjson

from . import content
from .core import (
    BOOLEAN,
    DICT,
    INVALID_KEY,
    STRING,
    ApiError,
    Either,
    Invalid,
    ListOf,
    Obj,
    Provider,
    Reply,
    Scalar,
    Tagged,
    call,
    enum,
    integer,
    is_base64,
    json_tokens,
    new_id,
    nullable,
    number,
    pick_tool,
    refused_media,
    say,
)
from .tokens import IMAGE_TOKENS, MEDIA_TOKENS, MESSAGE_OVERHEAD, count_tokens, pieces

VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")  # the last is what the pinned SDK sends
THINKING_TOKENS = 16  # length of a thinking block unless [[sim:reasoning=N]] says otherwise
DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_SERVER_TOOL = re.compile(r"[a-z_]+_\d{8}").fullmatch  # web_search_20250305, bash_20250124...

# --- request schema: what the official SDK's request types allow -----------------------------------

_CACHE = nullable(Obj({"type": enum("ephemeral"), "ttl": enum("5m", "1h")}, ("type",)))
_B64 = Scalar((str,), "string", check=is_base64)
_TEXT = Obj({"text": STRING, "cache_control": _CACHE, "citations": nullable(ListOf(DICT))}, ("text",))
_URL, _FILE = Obj({"url": STRING}, ("url",)), Obj({"file_id": STRING}, ("file_id",))
_IMAGE = Obj({"source": Tagged({
    "base64": Obj({"media_type": enum("image/jpeg", "image/png", "image/gif", "image/webp"), "data": _B64},
                  ("media_type", "data")),
    "url": _URL, "file": _FILE}), "cache_control": _CACHE}, ("source",))
_DOCUMENT = Obj({"source": Tagged({
    "base64": Obj({"media_type": enum("application/pdf"), "data": _B64}, ("media_type", "data")),
    "text": Obj({"media_type": enum("text/plain"), "data": STRING}, ("media_type", "data")),
    "content": Obj({"content": Either(STRING, ListOf(DICT))}, ("content",)),
    "url": _URL, "file": _FILE}),
    "title": nullable(STRING), "context": nullable(STRING), "citations": nullable(DICT), "cache_control": _CACHE},
    ("source",))
_LOOSE = dict.fromkeys(("search_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
                        "code_execution_tool_result", "bash_code_execution_tool_result", "tool_search_tool_result",
                        "text_editor_code_execution_tool_result", "container_upload"))  # server-side blocks
_BLOCK = Tagged({
    "text": _TEXT, "image": _IMAGE, "document": _DOCUMENT,
    "tool_use": Obj({"id": STRING, "name": STRING, "input": DICT, "cache_control": _CACHE, "caller": DICT},
                    ("id", "name", "input")),
    "tool_result": Obj({"tool_use_id": STRING, "is_error": BOOLEAN, "cache_control": _CACHE, "content": Either(
        STRING, ListOf(Tagged({"text": _TEXT, "image": _IMAGE, "document": _DOCUMENT, "search_result": None,
                                "tool_reference": None})))},
        ("tool_use_id",)),
    "thinking": Obj({"thinking": STRING, "signature": STRING}, ("thinking", "signature")),
    "redacted_thinking": Obj({"data": STRING}, ("data",)),
    **_LOOSE,
})
# role "system": a system turn in the middle of the conversation, text only, under a beta (Claude Code 2.1 sends
# it with per-turn-control-2026-07-01, the API names it mid-conversation-system-2026-04-07)
_OUTPUT_CONFIG = Obj({"effort": nullable(enum("low", "medium", "high", "xhigh", "max")),
                      "format": nullable(Tagged({"json_schema": Obj({"schema": DICT}, ("schema",))}))})
# output_config on a message: that turn's effort (beta per-turn-control-2026-07-01)
_MESSAGE = Obj({"role": enum("user", "assistant", "system"), "content": Either(STRING, ListOf(_BLOCK)),
                "output_config": _OUTPUT_CONFIG}, ("role", "content"))
SYSTEM_TURN_BETAS = ("mid-conversation-system-", "per-turn-control-")
_TOOL = Tagged({"custom": Obj({
    "name": Scalar((str,), "string", pattern=r"[a-zA-Z0-9_-]{1,128}"), "description": STRING,
    "input_schema": Obj({"type": enum("object"), "properties": nullable(DICT), "required": nullable(ListOf(STRING))},
                        ("type",), extra=True),
    "cache_control": _CACHE, "strict": BOOLEAN, "eager_input_streaming": nullable(BOOLEAN),
    "allowed_callers": ListOf(STRING), "defer_loading": BOOLEAN, "input_examples": ListOf(DICT)},
    ("name", "input_schema"))}, default="custom", loose=_SERVER_TOOL)
_PARALLEL = {"disable_parallel_tool_use": BOOLEAN}
_DISPLAY = {"display": nullable(enum("summarized", "omitted"))}
_COMMON = {
    "model": STRING, "messages": ListOf(_MESSAGE), "system": Either(STRING, ListOf(Tagged({"text": _TEXT}))),
    "tools": ListOf(_TOOL), "cache_control": _CACHE, "speed": nullable(enum("standard", "fast")),
    "tool_choice": Tagged({"auto": Obj(_PARALLEL), "any": Obj(_PARALLEL), "none": Obj({}),
                           "tool": Obj({**_PARALLEL, "name": STRING}, ("name",))}),
    "thinking": Tagged({"enabled": Obj({"budget_tokens": integer(lo=1024), **_DISPLAY}, ("budget_tokens",)),
                        "adaptive": Obj(dict(_DISPLAY)), "disabled": Obj({}), "between_tools": Obj({})}),
    "output_config": _OUTPUT_CONFIG,
    "context_management": nullable(Obj({"edits": ListOf(DICT)})),  # clear_thinking_20251015, clear_tool_uses_…
}
COUNT_TOKENS = Obj(_COMMON, ("model", "messages"))
CREATE = Obj({
    **_COMMON, "max_tokens": integer(lo=0), "stream": BOOLEAN, "stop_sequences": ListOf(STRING),
    "temperature": number(0, 1), "top_p": number(0, 1), "top_k": integer(lo=0),
    "metadata": Obj({"user_id": nullable(STRING)}), "service_tier": enum("auto", "standard_only"),
    "container": nullable(Either(STRING, DICT)), "diagnostics": nullable(DICT), "inference_geo": nullable(STRING),
}, ("model", "max_tokens", "messages"))

_WORDS = {"string": "a valid string", "integer": "a valid integer", "number": "a valid number",
          "boolean": "a valid boolean", "dictionary": "a valid dictionary", "null": "None", "any": "any value"}


def _bad(message):
    return ApiError(400, message)


def _wording(e: Invalid) -> str:
    """Pydantic's wording, as the API answers: "messages.0.content.0.image.source.base64.data: ..."."""
    path, node, value, kind = list(e.path), e.node, e.value, e.kind
    if kind == "extra":
        path.append(value)
        text = "Extra inputs are not permitted"
    elif kind == "missing":
        path.append(value)
        text = "Field required"
    elif kind == "type":
        text = "Input should be " + ("a valid list" if isinstance(node, ListOf) else
                                     _WORDS.get(getattr(node, "kind", "dictionary"), "a valid dictionary"))
    elif kind == "enum":
        quoted = [f"'{c}'" for c in node.choices]
        text = "Input should be " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])
    elif kind in ("min", "max"):
        text = (f"Input should be greater than or equal to {node.lo}" if kind == "min" else
                f"Input should be less than or equal to {node.hi}")
    elif kind == "pattern":
        text = f"String should match pattern '^{node.pattern.pattern}$'"
    elif kind == "tag":
        tags = ", ".join(f"'{t}'" for t in node.variants)
        text = f"Input tag '{value}' found using 'type' does not match any of the expected tags: {tags}"
    else:
        text = "Invalid base64 data" if kind == "format" else "Unable to extract tag using discriminator 'type'"
    where = ".".join(map(str, path))
    return f"{where}: {text}" if where else text


def _blocks(c) -> list:
    return [{"type": "text", "text": c}] if isinstance(c, str) else c


def _check(req, schema) -> dict:
    if not isinstance(req.json, dict):
        raise _bad("Input should be a valid dictionary")
    try:
        body = schema(req.json, ())
    except Invalid as e:
        raise _bad(_wording(e)) from None
    messages = body["messages"]
    if not messages:
        raise _bad("messages: at least one message is required")
    for i, m in enumerate(messages):
        if m["role"] == "system":
            _check_system_turn(req, i, _blocks(m["content"]))
    if messages[0]["role"] != "user":
        raise _bad('messages: first message must use the "user" role')
    pending = []  # tool_use ids of the previous assistant message
    for i, m in enumerate(messages):
        blocks = _blocks(m["content"])
        if m["role"] == "system":
            continue
        if not any(b["type"] != "text" or b["text"] for b in blocks) and not (i == len(messages) - 1
                                                                               and m["role"] == "assistant"):
            raise _bad(f"messages.{i}: all messages must have non-empty content except for the optional final "
                       "assistant message")
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        if missing := [p for p in pending if p not in results]:
            raise _bad(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                       f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                       "in the next message.")
        for j, b in enumerate(blocks):
            if b["type"] == "tool_result" and b["tool_use_id"] not in pending:
                raise _bad(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                           f"{b['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                           "block in the previous message.")
            media = b["source"].get("media_type", "image/*") if b["type"] == "image" else ""
            if refused_media(body["model"], media):
                raise _bad(f"messages.{i}.content.{j}: {body['model']} does not support image input.")
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"] if m["role"] == "assistant" else []
    _check_thinking(body)
    return body


def _check_system_turn(req, i, blocks):
    betas = req.headers.get("anthropic-beta", "")
    if not any(beta in betas for beta in SYSTEM_TURN_BETAS):
        raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
    for j, b in enumerate(blocks):
        if b["type"] != "text":
            raise _bad(f"messages.{i}.content.{j}.type: a system message may only contain text blocks")


_WITH_THINKING = (("temperature", lambda v: v == 1, "may only be set to 1"),
                  ("top_k", lambda v: False, "must be unset"),
                  ("top_p", lambda v: v >= 0.95, "must be greater than or equal to 0.95 or unset"))


def _check_thinking(body):
    thinking = body.get("thinking") or {}
    if thinking.get("type") not in ("enabled", "adaptive"):
        return
    if "max_tokens" in body and "budget_tokens" in thinking and body["max_tokens"] <= thinking["budget_tokens"]:
        raise _bad(f"`max_tokens` must be greater than `thinking.budget_tokens`. "
                   f"{DOCS}#max-tokens-and-context-window-size")
    for field, ok, rule in _WITH_THINKING:
        if field in body and not ok(body[field]):
            raise _bad(f"`{field}` {rule} when thinking is enabled. {DOCS}#feature-compatibility")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise _bad(f"Thinking may not be enabled when tool_choice forces tool use. "
                   f"{DOCS}#extended-thinking-with-tool-use")
    messages = body["messages"]
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if last is not None and last < len(messages) - 1:  # a tool loop continues after the final assistant turn
        blocks = _blocks(messages[last]["content"])
        if any(b["type"] == "tool_use" for b in blocks) and blocks[0]["type"] not in ("thinking", "redacted_thinking"):
            raise _bad(f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                       f"`{blocks[0]['type']}`. When `thinking` is enabled, a final `assistant` message must start "
                       "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
                       "We recommend you include thinking blocks from previous turns. To avoid this requirement, "
                       f"disable `thinking`. {DOCS}")


# --- messages -------------------------------------------------------------------------------------

def _text(c) -> str:
    """The words of a content: its text blocks and the content of its tool results."""
    if isinstance(c, str):
        return c
    return " ".join(b["text"] if b["type"] == "text" else _text(b.get("content") or "")
                    for b in c if b["type"] in ("text", "tool_result"))


def _tokens(c) -> int:
    if isinstance(c, str):
        return count_tokens(c)
    total = 0
    for b in c:
        kind = b["type"]
        if kind == "text":
            total += count_tokens(b["text"])
        elif kind in ("image", "document"):
            total += IMAGE_TOKENS if kind == "image" else MEDIA_TOKENS
        elif kind == "tool_use":
            total += count_tokens(b["name"]) + json_tokens(b["input"])
        elif kind == "tool_result":
            total += _tokens(b.get("content") or "")
        elif kind == "thinking":
            total += count_tokens(b["thinking"])
    return total


# --- prompt caching: a prefix up to a cache_control breakpoint, seen again within its ttl, is read from cache ---
CACHE_TTL = {"5m": 300.0, "1h": 3600.0}
CACHE_ENTRIES = 20_000
_prompt_cache: OrderedDict = OrderedDict()   # (api key, hash of model + prefix) → expiry (monotonic seconds)


def _segments(body) -> list[tuple[int, dict | None]]:
    """The prompt in cache order (tools, system, messages), one (tokens, cache_control) per block."""
    out = [(json_tokens(t), t.get("cache_control")) for t in body.get("tools") or ()]
    system = body.get("system")
    if system:
        out += [(count_tokens(b["text"]) + (MESSAGE_OVERHEAD if j == 0 else 0), b.get("cache_control"))
                for j, b in enumerate(_blocks(system))]
    for m in body["messages"]:
        blocks = _blocks(m["content"])
        out += [(_tokens([b]) + (MESSAGE_OVERHEAD if j == 0 else 0), b.get("cache_control"))
                for j, b in enumerate(blocks)]
    if body.get("cache_control") and out:   # automatic caching: the breakpoint is the last block
        out[-1] = (out[-1][0], out[-1][1] or body["cache_control"])
    return out


def _prefix_hashes(body) -> list[str]:
    """A hash of the prompt up to and including each block (cache_control itself is not content)."""
    h = hashlib.sha256(body["model"].encode())
    out = []
    blocks = [*(body.get("tools") or ()), *(_blocks(body["system"]) if body.get("system") else ())]
    blocks += [{**b, "role": m["role"]} for m in body["messages"] for b in _blocks(m["content"])]
    for b in blocks:
        h.update(orjson.dumps({k: v for k, v in b.items() if k != "cache_control"}, option=orjson.OPT_SORT_KEYS))
        out.append(h.copy().hexdigest())
    return out


def cache_usage(req, body, prompt: int) -> tuple[int, int, int]:
    """(read, 5-minute write, 1-hour write) tokens: the longest prefix cached by an earlier request of the same
    key and model is read; from there to the last breakpoint is written, each stretch with its breakpoint's ttl.
    (No minimum cacheable length, unlike the real API: a test prompt can be short.)"""
    segments = _segments(body)
    marks = [i for i, (_, cc) in enumerate(segments) if cc]
    if not marks:
        return 0, 0, 0
    now = time.monotonic()
    hashes = _prefix_hashes(body)
    totals = list(itertools.accumulate(n for n, _ in segments))
    read_to = -1
    for i in range(marks[-1], -1, -1):
        key = (req.key, hashes[i])
        if _prompt_cache.get(key, 0) > now:
            read_to = i
            break
    writes = {"5m": 0, "1h": 0}
    start = read_to
    for i in marks:
        ttl = segments[i][1].get("ttl") or "5m"
        if i > start:
            writes[ttl if ttl in writes else "5m"] += totals[i] - (totals[start] if start >= 0 else 0)
            start = i
        _prompt_cache[(req.key, hashes[i])] = now + CACHE_TTL.get(ttl, 300.0)
        _prompt_cache.move_to_end((req.key, hashes[i]))
    while len(_prompt_cache) > CACHE_ENTRIES:
        _prompt_cache.popitem(last=False)
    read = min(totals[read_to] if read_to >= 0 else 0, prompt)
    w5 = min(writes["5m"], prompt - read)
    return read, w5, min(writes["1h"], prompt - read - w5)


def input_tokens(body) -> int:
    total = sum(MESSAGE_OVERHEAD + _tokens(m["content"]) for m in body["messages"])
    if body.get("system"):
        total += MESSAGE_OVERHEAD + _tokens(body["system"])
    if body.get("tools"):
        total += json_tokens(body["tools"])
    return total


_STOP_REASONS = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "filter": "refusal",
                 "tool": "tool_use"}


def create(req) -> Reply:
    body = _check(req, CREATE)
    options, messages = req.options, body["messages"]
    prompt = input_tokens(body)
    cached, write_5m, write_1h = cache_usage(req, body, prompt)
    cached = max(cached, min(options.cached, prompt - write_5m - write_1h))
    last = _blocks(messages[-1]["content"])
    after_result = messages[-1]["role"] == "user" and any(b["type"] == "tool_result" for b in last)
    source = last if after_result else next((m["content"] for m in reversed(messages) if m["role"] == "user"))
    blocks, used = [], 0  # (block, its one-token pieces); output tokens so far
    thinking = body.get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        used = min(options.reasoning or THINKING_TOKENS, thinking.get("budget_tokens", body["max_tokens"]),
                   body["max_tokens"])
        text = content.reply_text(_text(source), used, lead="Simulated thinking about:")
        omitted = thinking.get("display") == "omitted"
        signature = hashlib.sha256(text.encode()).hexdigest()
        blocks.append(({"type": "thinking", "thinking": "" if omitted else text, "signature": signature},
                       [] if omitted else pieces(text)))
    choice = body.get("tool_choice") or {"type": "auto"}
    tools = [t for t in body.get("tools") or () if t.get("type") in (None, "custom")]
    tool = pick_tool(tools, choice.get("name"), off=choice["type"] == "none" or after_result, prefer=options.tool)
    if tool is not None:
        out = call(tool, "input_schema")
        if choice["type"] == "auto":  # unforced, Claude says what it is about to do
            preamble = f"I'll use the {out.tool} tool."
            blocks.append(({"type": "text", "text": preamble}, pieces(preamble)))
            used += len(blocks[-1][1])
        blocks.append(({"type": "tool_use", "id": new_id("toolu_"), "name": out.tool, "input": out.args},
                       out.pieces))
    else:
        fmt = (body.get("output_config") or {}).get("format")
        text = orjson.dumps(content.sample(fmt["schema"])).decode() if fmt else content.reply_text(
            _text(source), options.tokens)
        out = say(text, options, body["max_tokens"] - used, body.get("stop_sequences"))
        if out.pieces:
            blocks.append(({"type": "text", "text": "".join(out.pieces)}, out.pieces))
    used += len(out.pieces)
    usage = {"input_tokens": prompt - cached - write_5m - write_1h, "cache_creation_input_tokens": write_5m + write_1h,
             "cache_read_input_tokens": cached,
             "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
             "output_tokens": used, "service_tier": "standard"}
    message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
               "content": [b for b, _ in blocks], "stop_reason": _STOP_REASONS[out.finish],
               "stop_sequence": out.stop, "usage": usage}
    if body.get("stream"):
        return Reply(events=_events(message, blocks), content_type=b"text/event-stream; charset=utf-8")
    return Reply(orjson.dumps(message))


def _event(obj) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _events(message, blocks) -> list[bytes]:
    """message_start, then per block content_block_start / _delta... / _stop (a ping after the first start, as
    upstream), then message_delta and message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    frames = [_event({"type": "message_start", "message": start})]
    for i, (block, parts) in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            opened, deltas = {**block, "text": ""}, [{"type": "text_delta", "text": p} for p in parts]
        elif kind == "thinking":
            opened = {**block, "thinking": "", "signature": ""}
            deltas = [*({"type": "thinking_delta", "thinking": p} for p in parts),
                      {"type": "signature_delta", "signature": block["signature"]}]
        else:
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *parts]]
        frames.append(_event({"type": "content_block_start", "index": i, "content_block": opened}))
        if i == 0:
            frames.append(_event({"type": "ping"}))
        frames += [_event({"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        frames.append(_event({"type": "content_block_stop", "index": i}))
    if not blocks:
        frames.append(_event({"type": "ping"}))
    frames.append(_event({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                             "stop_sequence": message["stop_sequence"]},
                          "usage": {"output_tokens": usage["output_tokens"]}}))
    frames.append(_event({"type": "message_stop"}))
    return frames


def count(req) -> Reply:
    return Reply(orjson.dumps({"input_tokens": input_tokens(_check(req, COUNT_TOKENS))}))


# --- provider glue --------------------------------------------------------------------------------

def api_key(req) -> str:
    key = req.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, key = req.headers.get("authorization", "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise ApiError(401, "x-api-key header is required", type="authentication_error")
    if key == INVALID_KEY:
        raise ApiError(401, "invalid x-api-key", type="authentication_error")
    version = req.headers.get("anthropic-version")
    if version is None:
        raise _bad("anthropic-version: header is required")
    if version not in VERSIONS:
        raise _bad(f'anthropic-version: "{version}" is not a valid version')
    return key


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
          504: "timeout_error", 529: "overloaded_error"}


def error(e: ApiError, req) -> Reply:
    kind = e.type or _TYPES.get(e.status, "invalid_request_error" if e.status < 500 else "api_error")
    body = {"type": "error", "error": {"type": kind, "message": e.message}, "request_id": req.id}
    return Reply(orjson.dumps(body), status=e.status, headers=e.headers)


_MESSAGES = {
    400: "Simulated bad request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
         "purchase credits.",
    403: "Your API key does not have permission to use the specified resource.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed the rate limit for your organization of 50 requests per minute. For details, "
         "refer to: https://docs.claude.com/en/api/rate-limits.",
    500: "Internal server error",
    504: "Request timed out",
    529: "Overloaded",
}


def fault_error(fault, req) -> ApiError:
    kind, status = fault.kind, fault.arg
    if kind == "model_not_found" or (kind == "status" and status == 404):
        model = (req.json.get("model") if isinstance(req.json, dict) else None) or "unknown"
        return ApiError(404, f"model: {model}")
    if kind == "context_length":
        return _bad("prompt is too long: 210000 tokens > 200000 maximum")
    if kind == "quota":  # Anthropic answers an empty balance with a 400
        return _bad(_MESSAGES[402])
    if kind != "status":  # stream_error on a plain request
        status = 529
    headers = [(b"retry-after", b"1")] if status == 429 else ()
    return ApiError(status, _MESSAGES.get(status, f"Simulated HTTP {status} error."), headers=headers)


def stream_error() -> bytes:
    return _event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


PROVIDER = Provider(
    name="anthropic",
    routes={("POST", "/v1/messages"): create, ("POST", "/v1/messages/count_tokens"): count},
    prefix_routes=(),
    api_key=api_key,
    error=error,
    fault_error=fault_error,
    stream_error=stream_error,
    json_error="There was an error parsing the body of your request: it is not valid JSON.",
    id_header=b"request-id",
)
