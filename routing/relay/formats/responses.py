"""The OpenAI Responses inbound format (/v1/responses, what Codex CLI and `client.responses` speak): a Responses
request → canonical (OpenAI chat) request, a canonical answer → a Response object, canonical events → the
typed Responses SSE events (with `sequence_number`), and errors in OpenAI's shape.

Translation keeps what a chat-completions, Anthropic or Gemini channel can do and drops the rest, never with
a 400 for something the client cannot change: hosted tool types (`web_search`, `file_search`, …, which Codex
sends on every request) are dropped and named in X-Tollgate-Route (`dropped_tools=`), unless `tool_choice`
forces one of them: then only a channel that speaks Responses natively serves the call (`forced_hosted_tool`),
and a clear 400 naming the tool when the route has none; a `namespace` tool's functions are flattened (`ns__name` when a
name is taken) and their calls come back with their `namespace`; a freeform `custom` tool becomes a function
of one string argument, `input`, and its calls come back as custom_tool_call items. A reasoning item's
`encrypted_content` that this gateway made carries the provider's thinking signature, so Claude's thinking
round-trips; a Gemini 3 function call's signature travels the same way, in a reasoning item before the call."""
import time

import orjson

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.relay import errors
from routing.relay.formats import checks

ID_PREFIX = "resp_"
SIGNATURE_PREFIX = "tgsig:"      # our encrypted_content: a provider's thinking signature, not OpenAI's blob
CALL_SIGNATURE_PREFIX = "tgcall:"   # … or Gemini's signature of one function call: "tgcall:<call_id>:<signature>"
HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                          "file_search", "computer", "computer_use_preview", "code_interpreter", "image_generation",
                          "local_shell", "shell", "mcp", "apply_patch", "tool_search"})
_ROLES = ("user", "assistant", "system", "developer")
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def error_response(err: errors.RelayError, request_id: str):
    return errors.openai_response(err, request_id)


# --- tools -------------------------------------------------------------------------------------------
class Tools:
    """The request's tools as a chat-completions channel can take them: function tools, namespaces flattened,
    custom tools as functions of one string, hosted tools dropped (named in `dropped`). `origin` maps a
    canonical function name back to its (namespace, name); `custom` holds the canonical names of custom tools."""

    def __init__(self, tools):
        self.functions: list[dict] = []
        self.dropped: list[str] = []
        self.origin: dict[str, tuple[str | None, str]] = {}
        self.canonical_name: dict[tuple[str | None, str], str] = {}
        self.custom: set[str] = set()
        for tool in tools or ():
            kind = tool.get("type")
            if kind == "function":
                self._add(None, tool)
            elif kind == "custom" and isinstance(tool.get("name"), str):
                self._add(None, _custom_as_function(tool))
                self.custom.add(self.canonical_name[(None, tool["name"])])
            elif kind == "namespace":
                for inner in tool.get("tools") or ():
                    if isinstance(inner, dict) and inner.get("type", "function") == "function":
                        self._add(str(tool.get("name") or ""), inner)
            else:   # a hosted (or freeform custom) tool: named by its type, and its name when it has one
                self.dropped.append(f"{kind}:{tool['name']}" if isinstance(tool.get("name"), str) else str(kind))

    def _add(self, namespace: str | None, tool: dict) -> None:
        name = str(tool.get("name") or "")
        flat = name if name not in self.origin else f"{namespace or 'tool'}__{name}"
        self.origin[flat] = (namespace, name)
        self.canonical_name[(namespace, name)] = flat
        function = {"name": flat, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        self.functions.append({"type": "function", "function": function})

    def name_of(self, namespace: str | None, name: str) -> str:
        return self.canonical_name.get((namespace or None, name), name)

    def call_item_fields(self, canonical_name: str) -> dict:
        """`name` (and `namespace`) of a function_call output item for a canonical tool-call name."""
        namespace, name = self.origin.get(canonical_name, (None, canonical_name))
        return {"name": name, "namespace": namespace} if namespace else {"name": name}


def _custom_as_function(tool: dict) -> dict:
    """A freeform custom tool (its input one string, maybe under a grammar) as a function tool."""
    fmt = found if isinstance(found := tool.get("format"), dict) else {}
    description = str(tool.get("description") or "")
    if fmt.get("type") == "grammar" and fmt.get("definition"):
        description += f"\n\nThe input follows this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
    return {"type": "function", "name": tool["name"], "description": description.strip(), "parameters": {
        "type": "object", "properties": {"input": {"type": "string", "description": "The tool's whole input."}},
        "required": ["input"]}}


def custom_input(arguments: str) -> str:
    """A custom tool's input from the arguments of its canonical function call ({"input": "..."})."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    return str(value.get("input") or "") if isinstance(value, dict) else arguments


def _tool_choice(choice, tools: Tools):
    if choice is None or isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    kind = choice.get("type")
    if kind in ("function", "custom"):
        return {"type": "function", "function": {"name": tools.name_of(choice.get("namespace"),
                                                                       str(choice.get("name") or ""))}}
    if kind == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    return None   # a forced hosted tool (forced_hosted_tool): only a native channel serves the call


def forced_hosted_tool(payload: dict) -> str | None:
    """The hosted tool `tool_choice` forces, which translation cannot carry: one named by its type, or
    "required" (or allowed_tools "required") over hosted tools only. Such a call is served only by a channel
    that speaks Responses natively (the relay skips the others, RelayCall.forced_tool); None otherwise."""
    choice = payload.get("tool_choice")
    tools = Tools(payload.get("tools") if isinstance(payload.get("tools"), list) else None)
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in HOSTED_TOOLS or (isinstance(kind, str) and kind in tools.dropped):
            return kind
        if kind != "allowed_tools" or choice.get("mode") != "required":
            return None
        allowed = [t for t in choice.get("tools") or () if isinstance(t, dict)]
        if allowed and all(t.get("type") in HOSTED_TOOLS for t in allowed):
            return str(allowed[0]["type"])
        return None
    if choice == "required" and tools.dropped and not tools.functions:
        return tools.dropped[0]
    return None


# --- input ---------------------------------------------------------------------------------------------
def _parts(content, role: str) -> list[dict] | str:
    if isinstance(content, str):
        return content
    parts: list[dict] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url") or (part.get("file_id") and f"file:{part['file_id']}") or ""
            image = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            parts.append({"type": "text", "text": f"[file {part.get('filename') or part.get('file_id') or ''}]"})
    if role != "user" and all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(value) -> str:
    """A function_call_output's `output`: a string, or a list of content parts (their text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text") or "" for p in value if isinstance(p, dict))
    return orjson.dumps(value).decode() if value is not None else ""


def _assistant(messages: list[dict]) -> dict:
    """The assistant message the next output items belong to (consecutive items make one turn)."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not last.get("_closed"):
        return last
    message = {"role": "assistant", "content": None}
    messages.append(message)
    return message


def _call_signatures(items) -> dict[str, str]:
    """call id → the provider's signature of that call, from our reasoning items (Gemini 3 wants it back)."""
    found = {}
    for item in items:
        encrypted = item.get("encrypted_content") if item.get("type") == "reasoning" else None
        if isinstance(encrypted, str) and encrypted.startswith(CALL_SIGNATURE_PREFIX):
            call_id, _, signature = encrypted.removeprefix(CALL_SIGNATURE_PREFIX).partition(":")
            found[call_id] = signature
    return found


def _messages(items, tools: Tools) -> list[dict]:
    messages: list[dict] = []
    signatures = _call_signatures(items)
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            content = _parts(item.get("content"), role)
            if role == "assistant":
                message = _assistant(messages)
                text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
                message["content"] = (message["content"] or "") + text
                if message.get("tool_calls"):
                    message["_closed"] = True
            else:
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            message = _assistant(messages)
            name = tools.name_of(item.get("namespace"), str(item.get("name") or ""))
            call = {"id": str(item.get("call_id") or item.get("id") or ""), "type": "function",
                    "function": {"name": name, "arguments": str(item.get("arguments") or "{}")}}
            if call["id"] in signatures:
                call["thought_signature"] = signatures[call["id"]]
            message.setdefault("tool_calls", []).append(call)
        elif kind == "custom_tool_call":
            message = _assistant(messages)
            message.setdefault("tool_calls", []).append({
                "id": str(item.get("call_id") or ""), "type": "function",
                "function": {"name": tools.name_of(None, str(item.get("name") or "")),
                             "arguments": orjson.dumps({"input": str(item.get("input") or "")}).decode()}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                             "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            summary = "".join(s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict))
            encrypted = item.get("encrypted_content") or ""
            if (summary and not encrypted.startswith(CALL_SIGNATURE_PREFIX)) or encrypted.startswith(SIGNATURE_PREFIX):
                message = _assistant(messages)
                message["reasoning_content"] = (message.get("reasoning_content") or "") + summary
                if encrypted.startswith(SIGNATURE_PREFIX):
                    message["thinking_signature"] = encrypted.removeprefix(SIGNATURE_PREFIX)
        # Other item types (item_reference, hosted tool calls and their outputs) have no chat equivalent.
    for message in messages:
        message.pop("_closed", None)
    return messages


# --- validation ----------------------------------------------------------------------------------------
def _validate_items(items) -> None:
    for i, item in enumerate(checks.objects("input", items)):
        at = f"input[{i}]"
        kind = checks.optional(item, "type", (str,), "a string", f"{at}.type") or "message"
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise errors.invalid_value(f"{at}.role", "expected one of `user`, `assistant`, `system`, `developer`.")
            content = item.get("content")
            if not isinstance(content, str):
                for j, part in enumerate(checks.objects(f"{at}.content", content)):
                    checks.optional(part, "type", (str,), "a string", f"{at}.content[{j}].type")
                    checks.optional(part, "text", (str,), "a string", f"{at}.content[{j}].text")
                    checks.optional(part, "image_url", (str,), "a string", f"{at}.content[{j}].image_url")
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments", "namespace"):
                checks.optional(item, key, (str,), "a string", f"{at}.{key}")
            if not item.get("name"):
                raise errors.missing_field(f"{at}.name")
        elif kind == "custom_tool_call":
            for key in ("call_id", "name", "input"):
                checks.optional(item, key, (str,), "a string", f"{at}.{key}")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            checks.optional(item, "call_id", (str,), "a string", f"{at}.call_id")
        elif kind == "reasoning":
            checks.optional(item, "summary", (list,), "an array", f"{at}.summary")
            checks.optional(item, "encrypted_content", (str,), "a string", f"{at}.encrypted_content")


def _validate_tool(tool: dict, at: str) -> None:
    kind = checks.optional(tool, "type", (str,), "a string", f"{at}.type")
    checks.optional(tool, "name", (str,), "a string", f"{at}.name")
    checks.optional(tool, "parameters", (dict,), "an object", f"{at}.parameters")
    if kind in ("function", "namespace") and not tool.get("name"):
        raise errors.missing_field(f"{at}.name")


def _validate(payload: dict) -> None:
    checks.depth(payload)
    model = payload.get("model")
    if model is None:
        raise errors.missing_field("model")
    checks.of_type("model", model, (str,), "a string")
    value = payload.get("input")
    if value is None or value == "" or value == []:
        raise errors.missing_field("input")
    checks.of_type("input", value, (str, list), "a string or an array of input items")
    if isinstance(value, list):
        _validate_items(value)
    checks.optional(payload, "instructions", (str,), "a string")
    for key in ("stream", "store", "parallel_tool_calls", "background"):
        checks.optional(payload, key, (bool,), "a boolean")
    for key in ("temperature", "top_p"):
        checks.number(payload, key)
    checks.integer(payload, "max_output_tokens", 1, checks.MAX_TOKENS)
    for key in ("previous_response_id", "prompt_cache_key", "user", "safety_identifier", "service_tier"):
        checks.optional(payload, key, (str,), "a string")
    for key in ("reasoning", "text", "metadata", "client_metadata", "stream_options"):
        checks.optional(payload, key, (dict,), "an object")
    checks.strings(payload, "include", single=False)
    checks.strings(payload, "models", single=False)
    tools = payload.get("tools")
    if tools is not None:
        for i, tool in enumerate(checks.objects("tools", tools)):
            _validate_tool(tool, f"tools[{i}]")
            if tool.get("type") == "namespace":
                for j, inner in enumerate(checks.objects(f"tools[{i}].tools", tool.get("tools") or [])):
                    _validate_tool(inner, f"tools[{i}].tools[{j}]")
    checks.optional(payload, "tool_choice", (str, dict), "a string or an object")
    reasoning = payload.get("reasoning") or {}
    checks.optional(reasoning, "effort", (str,), "a string", "reasoning.effort")
    fmt = checks.optional(payload.get("text") or {}, "format", (dict,), "an object", "text.format")
    if fmt is not None and fmt.get("type") == "json_schema":
        checks.optional(fmt, "schema", (dict,), "an object", "text.format.schema")


# --- request -------------------------------------------------------------------------------------------
def input_items(payload: dict) -> list[dict]:
    """`input` as a list of items (a string is one user message)."""
    value = payload.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value or ())


def to_canonical(payload: dict) -> dict:
    """Validate a Responses request and translate it to the canonical chat request (fields chat has no word
    for are left out: `store`, `include`, `client_metadata`, `previous_response_id` — the view resolved it)."""
    _validate(payload)
    tools = Tools(payload.get("tools"))
    messages = _messages(input_items(payload), tools)
    if payload.get("instructions"):
        messages.insert(0, {"role": "system", "content": payload["instructions"]})
    if not messages:
        raise errors.invalid_value("input", "no message, function call or function call output to answer.")
    canonical: dict = {"model": payload["model"], "messages": messages, "_translated": True}
    if isinstance(payload.get("models"), list):   # the gateway's own ordered fallback list (OpenRouter's)
        canonical["models"] = payload["models"]
    if payload.get("provider") is not None:       # OpenRouter's provider preferences, for the router
        canonical["provider"] = payload["provider"]
    for key in ("stream", "temperature", "top_p", "prompt_cache_key"):
        if payload.get(key) is not None:
            canonical[key] = payload[key]
    if payload.get("max_output_tokens") is not None:
        canonical["max_tokens"] = payload["max_output_tokens"]
    user = payload.get("safety_identifier") or payload.get("user")
    if user:
        canonical["user"] = user
    effort = (payload.get("reasoning") or {}).get("effort")
    if effort in ("low", "medium", "high"):
        canonical["reasoning_effort"] = effort
    elif effort in ("xhigh", "max"):
        canonical["reasoning_effort"] = "high"
    choice = _tool_choice(payload.get("tool_choice"), tools)
    if tools.functions:
        canonical["tools"] = tools.functions
        if choice is not None:
            canonical["tool_choice"] = choice
        if isinstance(payload.get("parallel_tool_calls"), bool):
            canonical["parallel_tool_calls"] = payload["parallel_tool_calls"]
    fmt = (payload.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        schema = {"name": str(fmt.get("name") or "response"), "schema": fmt.get("schema") or {"type": "object"}}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        canonical["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.get("type") == "json_object":
        canonical["response_format"] = {"type": "json_object"}
    return canonical


def dropped_tools(payload: dict) -> list[str]:
    """The hosted tool types translation leaves out (for X-Tollgate-Route)."""
    return Tools(payload.get("tools")).dropped if isinstance(payload.get("tools"), list) else []


def with_native_cost(data: bytes, cost: float | None) -> bytes:
    """Left as it is: the Responses views patch a native answer's final event themselves (its cost with the
    previous_response_id it continues, responses_views._native_patch)."""
    return data


def translation_notes(payload: dict) -> list[str]:
    """What a call translated for a channel without the Responses API could not carry (X-Tollgate-Route)."""
    dropped = dropped_tools(payload)
    return ["dropped hosted tools " + ",".join(dropped)] if dropped else []


# --- answer --------------------------------------------------------------------------------------------
def usage_body(usage, cost: float | None = None) -> dict:
    body = {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}
    if cost is not None:
        body["cost"] = cost
    return body


def response_object(call, payload: dict, *, status: str, output: list, usage=None, finish: str = "",
                    error: dict | None = None) -> dict:
    """A Response object (what `responses.create` returns and the stream's lifecycle events carry)."""
    reasoning = found if isinstance(found := payload.get("reasoning"), dict) else {}
    text = found if isinstance(found := payload.get("text"), dict) else {}
    incomplete = _INCOMPLETE.get(finish) if status == "incomplete" else None
    return {
        "id": ID_PREFIX + call.hex_id, "object": "response", "created_at": int(call.created), "status": status,
        "background": False, "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": payload.get("instructions"), "max_output_tokens": payload.get("max_output_tokens"),
        "model": call.model.public_id if call.model is not None else payload.get("model"),
        "output": output, "parallel_tool_calls": payload.get("parallel_tool_calls") is not False,
        "previous_response_id": payload.get("previous_response_id"),
        "prompt_cache_key": payload.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": payload.get("store") is not False, "temperature": payload.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity", "medium")},
        "tool_choice": payload.get("tool_choice", "auto"), "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p", 1.0), "truncation": payload.get("truncation") or "disabled",
        "usage": usage_body(usage, _cost(call, usage)) if usage is not None else None,
        "user": payload.get("user"), "metadata": payload.get("metadata") or {},
        "completed_at": int(time.time()) if status == "completed" else None,
    }


def _cost(call, usage) -> float | None:
    cost_now = getattr(call, "cost_now", None)
    return cost_now(usage) if cost_now is not None else None


def _wants_encrypted(payload: dict) -> bool:
    return "reasoning.encrypted_content" in (payload.get("include") or ())


def reasoning_item(item_id: str, text: str, signature: str | None, payload: dict) -> dict:
    item = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}] if text else []}
    if signature and (_wants_encrypted(payload) or payload.get("store") is not False):
        item["encrypted_content"] = SIGNATURE_PREFIX + signature
    return item


def call_signature_item(item_id: str, call_id: str, signature: str) -> dict:
    """A reasoning item that carries a provider's signature of the function call after it."""
    return {"id": item_id, "type": "reasoning", "summary": [],
            "encrypted_content": f"{CALL_SIGNATURE_PREFIX}{call_id}:{signature}"}


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def function_item(item_id: str, call_id: str, name_fields: dict, arguments: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, **name_fields,
            "arguments": arguments}


def custom_item(item_id: str, call_id: str, name: str, tool_input: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name,
            "input": tool_input}


def call_item(tools: Tools, item_id: str, call_id: str, canonical_name: str, arguments: str,
              status: str = "completed") -> dict:
    """The output item of a canonical tool call: a function_call, or a custom_tool_call for a custom tool."""
    if canonical_name in tools.custom:
        return custom_item("ctc" + item_id.removeprefix("fc"), call_id, canonical_name, custom_input(arguments),
                           status)
    return function_item(item_id, call_id, tools.call_item_fields(canonical_name), arguments, status)


def _status(finish: str) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


def complete(call, data: dict, usage) -> dict:
    """A canonical chat.completion → the Response object."""
    payload = call.payload or {}
    tools = Tools(payload.get("tools") if isinstance(payload.get("tools"), list) else [])
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish = str(choice.get("finish_reason") or "stop")
    output, n = [], 0
    if message.get("reasoning_content") or message.get("thinking_signature"):
        output.append(reasoning_item(f"rs_{call.hex_id}_{n}", message.get("reasoning_content") or "",
                                     message.get("thinking_signature"), payload))
        n += 1
    if message.get("content"):
        output.append(message_item(f"msg_{call.hex_id}_{n}", str(message["content"])))
        n += 1
    for tool_call in message.get("tool_calls") or ():
        fn = tool_call.get("function") or {}
        if tool_call.get("thought_signature"):
            output.append(call_signature_item(f"rs_{call.hex_id}_{n}", str(tool_call.get("id") or ""),
                                              tool_call["thought_signature"]))
            n += 1
        output.append(call_item(tools, f"fc_{call.hex_id}_{n}", str(tool_call.get("id") or f"call_{call.hex_id}_{n}"),
                                str(fn.get("name") or ""), fn.get("arguments") or "{}"))
        n += 1
    return response_object(call, payload, status=_status(finish), output=output, usage=usage, finish=finish)


# --- stream --------------------------------------------------------------------------------------------
class EventRenderer:
    """Canonical events → the Responses stream: response.created, response.in_progress, then per output
    item output_item.added … (content_part / reasoning_summary_part, their deltas and dones) … output_item.done,
    and response.completed (or .incomplete) with the whole response and its usage; response.failed on a broken
    stream. Every event carries its `sequence_number`."""

    def __init__(self, call, payload: dict):
        self.call, self.payload = call, payload
        self.tools = Tools(payload.get("tools") if isinstance(payload.get("tools"), list) else [])
        self.sequence = 0
        self.started = bool(getattr(call, "native", False))   # a native stream sent its own lifecycle events
        self.output: list[dict] = []     # finished items
        self.item: dict | None = None    # the open item
        self.text = ""                   # the open item's text or arguments so far
        self.signature: str | None = None
        self.tool_index: int | None = None
        self.finish_reason = "stop"
        self.usage: Usage | None = None

    def _event(self, kind: str, body: dict) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **body}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str, **extra) -> dict:
        return response_object(self.call, self.payload, status=status, output=list(self.output), **extra)

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        response = self._response("in_progress")
        return [self._event("response.created", {"response": response}),
                self._event("response.in_progress", {"response": response})]

    def _where(self) -> dict:
        assert self.item is not None   # only while an item is open
        return {"item_id": self.item["id"], "output_index": len(self.output)}

    def _open(self, item: dict) -> list[bytes]:
        out = self._close()
        self.item, self.text, self.signature = item, "", None
        out.append(self._event("response.output_item.added", {"output_index": len(self.output), "item": item}))
        where = self._where()
        if item["type"] == "message":
            out.append(self._event("response.content_part.added", {
                **where, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [],
                                                      "logprobs": []}}))
        elif item["type"] == "reasoning":
            out.append(self._event("response.reasoning_summary_part.added", {
                **where, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}))
        return out

    def _close(self) -> list[bytes]:
        item = self.item
        if item is None:
            return []
        where, out, text = self._where(), [], self.text
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(self._event("response.output_text.done", {**where, "content_index": 0, "text": text,
                                                                 "logprobs": []}))
            out.append(self._event("response.content_part.done", {**where, "content_index": 0, "part": part}))
            done = message_item(item["id"], text)
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            out.append(self._event("response.reasoning_summary_text.done", {**where, "summary_index": 0,
                                                                            "text": text}))
            out.append(self._event("response.reasoning_summary_part.done", {**where, "summary_index": 0,
                                                                            "part": part}))
            done = reasoning_item(item["id"], text, self.signature, self.payload)
        elif item["type"] == "custom_tool_call":   # its input is known once the JSON arguments are whole
            tool_input = custom_input(text)
            out.append(self._event("response.custom_tool_call_input.delta", {**where, "delta": tool_input}))
            out.append(self._event("response.custom_tool_call_input.done", {**where, "input": tool_input}))
            done = {**item, "status": "completed", "input": tool_input}
        else:
            out.append(self._event("response.function_call_arguments.done", {**where, "arguments": text,
                                                                             "name": item["name"]}))
            done = {**item, "status": "completed", "arguments": text}
        out.append(self._event("response.output_item.done", {"output_index": len(self.output), "item": done}))
        self.output.append(done)
        self.item = None
        return out

    def _signature_item(self, call_id: str, signature: str) -> list[bytes]:
        """A finished reasoning item carrying the signature of the call about to open."""
        out = self._close()
        item = call_signature_item(self._item_id("rs"), call_id, signature)
        out.append(self._event("response.output_item.added", {"output_index": len(self.output), "item": item}))
        out.append(self._event("response.output_item.done", {"output_index": len(self.output), "item": item}))
        self.output.append(item)
        return out

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.call.hex_id}_{len(self.output) + (self.item is not None)}"

    def render(self, event) -> list[bytes]:
        out = self._start() if not isinstance(event, UsageEvent) else []
        if isinstance(event, TextDelta):
            if self.item is None or self.item["type"] != "message":
                out += self._open(message_item(self._item_id("msg"), "", "in_progress") | {"content": []})
            self.text += event.text
            out.append(self._event("response.output_text.delta", {**self._where(), "content_index": 0,
                                                                  "delta": event.text, "logprobs": []}))
        elif isinstance(event, ReasoningDelta):
            if self.item is None or self.item["type"] != "reasoning":
                out += self._open({"id": self._item_id("rs"), "type": "reasoning", "summary": []})
            if event.text:
                self.text += event.text
                out.append(self._event("response.reasoning_summary_text.delta", {
                    **self._where(), "summary_index": 0, "delta": event.text}))
            if event.signature:
                self.signature = event.signature
        elif isinstance(event, ToolCallDelta):
            if event.id is not None or self.tool_index != event.index or self.item is None \
                    or self.item["type"] not in ("function_call", "custom_tool_call"):
                call_id = event.id or f"call_{self.call.hex_id}_{event.index}"
                if event.signature:
                    out += self._signature_item(call_id, event.signature)
                out += self._open(call_item(self.tools, self._item_id("fc"), call_id, event.name or "", "",
                                            "in_progress"))
                self.tool_index = event.index
            assert self.item is not None   # open, or opened just above
            if event.arguments:
                self.text += event.arguments
                if self.item["type"] == "function_call":
                    out.append(self._event("response.function_call_arguments.delta", {**self._where(),
                                                                                      "delta": event.arguments}))
        elif isinstance(event, Finish):
            self.finish_reason = event.reason or "stop"
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            raise errors.upstream_unavailable(f"the stream broke: {event.message}")
        return out

    def finish_response(self) -> dict:
        return self._response(_status(self.finish_reason), usage=self.usage, finish=self.finish_reason)

    def finish(self) -> list[bytes]:
        out = self._start() + self._close()
        response = self.finish_response()
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return out

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        out = self._start()
        response = self._response("failed", usage=self.usage)
        # The Response error's `code` is one of OpenAI's few; ours (e.g. upstream_unavailable) goes in `type`.
        code = "rate_limit_exceeded" if err.status == 429 else "server_error"
        response["error"] = {"code": code, "message": err.message, "type": err.code, "request_id": request_id}
        out.append(self._event("response.failed", {"response": response}))
        return out


def renderer(call, payload: dict) -> EventRenderer:
    return EventRenderer(call, payload)
