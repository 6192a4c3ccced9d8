"""The native Gemini inbound format (/v1beta/models/{model}:generateContent and :streamGenerateContent, what
Gemini CLI and the `google-genai` SDK speak): GenerateContentRequest → canonical (OpenAI-shaped) request,
canonical answer → GenerateContentResponse, canonical events → Gemini SSE chunks, errors in Google's shape.

Where the formats do not map 1:1:
- The model and whether to stream come from the URL, not the body (the view adds `model` to the payload).
- Function calls may have no ids: `call_<content>_<part>` ids are made up, and a functionResponse is matched to
  its call by id, else by name (the earliest unanswered call of that name). A call's `thoughtSignature` travels
  on the canonical tool call as `thought_signature` (Gemini channels want it back).
- `parameters` (Google's OpenAPI subset, upper-case types) become JSON schemas; `parametersJsonSchema` is one.
- `thinkingConfig` budget/level → a `thinking` budget (Claude's; OpenAI-compatible channels leave it), thought parts ↔
  `reasoning_content`, a thought part's `thoughtSignature` ↔ Claude's thinking signature.
- Built-in tools (googleSearch, codeExecution, …), safetySettings and cachedContent only reach Gemini channels
  (natively); a translation leaves them out.
- Streamed tool calls arrive in argument fragments from other providers; Gemini sends each whole, so they go
  out on the last chunk with the finish reason and the usage."""
import orjson
from django.http import HttpResponse

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, UsageEvent
from routing.adapters.canonical import json_object
from routing.relay import errors
from routing.relay.formats import checks

ID_PREFIX = "req_"   # a responseId is the request id: /v1/generation?id= finds it as it is
# Google's canonical error codes (google.rpc.Code) for our statuses.
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# Looked up by what a payload holds (None when it is absent): keys typed `str | None`.
TO_GEMINI_FINISH: dict[str | None, str] = {
    "stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
THINKING_LEVELS: dict[str | None, str] = {"MINIMAL": "low", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
THINKING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
CALLING_MODES: dict[str | None, str] = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
_PART_STRINGS = ("text", "thoughtSignature")
_CONFIG_NUMBERS = ("temperature", "topP", "presencePenalty", "frequencyPenalty")
_CONFIG_COUNTS = (("maxOutputTokens", 1), ("candidateCount", 1), ("topK", 0))


# --- errors ----------------------------------------------------------------------------------------------
def error_body(err: errors.RelayError, request_id: str) -> dict:
    """Google's error shape, with our code and the request id in an ErrorInfo detail."""
    metadata = {"request_id": request_id, **({"param": err.param} if err.param else {})}
    return {"error": {"code": err.status, "message": err.message,
                      "status": STATUS.get(err.status, "INTERNAL" if err.status >= 500 else "FAILED_PRECONDITION"),
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": err.code,
                                   "domain": "tollgate", "metadata": metadata}]}}


def error_response(err: errors.RelayError, request_id: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(error_body(err, request_id)), status=err.status,
                            content_type="application/json")
    response["X-Request-Id"] = request_id
    for name, value in (err.headers or {}).items():
        response[name] = value
    return response


# --- the request as protobuf JSON allows it -------------------------------------------------------------
# Google parses requests as protobuf JSON: snake_case names are as good as camelCase, and a lone object stands
# for a list of one (its own curl examples send `"parts": {"text": …}`). The translation reads one spelling, so
# a copy is normalized; what it walks into is listed here (function args, responses and schemas are the
# caller's data: their keys stay as they are). A native request goes out as the client sent it.
_WALK = {
    "request": {"contents": (True, "content"), "systemInstruction": (False, "content"),
                "generationConfig": (False, "config"), "tools": (True, "tool"), "toolConfig": (False, "toolConfig"),
                "safetySettings": (True, ""), "generateContentRequest": (False, "request")},
    "content": {"parts": (True, "part")},
    "part": {key: (False, "") for key in ("inlineData", "fileData", "functionCall", "functionResponse")},
    "config": {"thinkingConfig": (False, "")},
    "tool": {"functionDeclarations": (True, "")},
    "toolConfig": {"functionCallingConfig": (False, "")},
}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def normalized(value, kind: str = "request"):
    """A request (or a part of one, `kind`) with camelCase names, lists where a lone object was sent and no
    null fields."""
    if not isinstance(value, dict):
        return value
    walk = _WALK.get(kind, {})
    out = {}
    for key, item in value.items():
        if item is None:
            continue   # null is absent, as protobuf JSON reads it
        key = _camel(key) if "_" in key else key
        if key in walk:
            many, inner = walk[key]
            if many:
                item = [normalized(v, inner) for v in (item if isinstance(item, list) else [item])]
            else:
                item = normalized(item, inner)
        out[key] = item
    return out


# --- validation -------------------------------------------------------------------------------------------
def _validate_parts(field: str, content) -> None:
    checks.of_type(field, content, (dict,), "an object (a Content)")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise errors.invalid_value(f"{field}.parts", "expected a non-empty array of parts.")
    for j, part in enumerate(checks.objects(f"{field}.parts", parts)):
        at = f"{field}.parts[{j}]"
        for key in _PART_STRINGS:
            checks.optional(part, key, (str,), "a string", f"{at}.{key}")
        checks.optional(part, "thought", (bool,), "a boolean", f"{at}.thought")
        for key, inner in (("inlineData", ("mimeType", "data")), ("fileData", ("mimeType", "fileUri")),
                           ("functionCall", ("id", "name")), ("functionResponse", ("id", "name"))):
            value = checks.optional(part, key, (dict,), "an object", f"{at}.{key}")
            for name in inner if value is not None else ():
                checks.optional(value, name, (str,), "a string", f"{at}.{key}.{name}")
        checks.optional(part.get("functionCall") or {}, "args", (dict,), "an object", f"{at}.functionCall.args")
        checks.optional(part.get("functionResponse") or {}, "response", (dict,), "an object",
                        f"{at}.functionResponse.response")


def _integral(obj: dict, keys) -> None:
    """Protobuf JSON takes 64.0 for an integer field: such a number becomes the integer (in the normalized copy)."""
    for key in keys:
        if type(obj.get(key)) is float and obj[key].is_integer():
            obj[key] = int(obj[key])


def _validate_config(config: dict) -> None:
    _integral(config, ("maxOutputTokens", "candidateCount", "topK", "seed"))
    _integral(found if isinstance(found := config.get("thinkingConfig"), dict) else {}, ("thinkingBudget",))
    for key in _CONFIG_NUMBERS:
        checks.number(config, key, f"generationConfig.{key}")
    for key, lo in _CONFIG_COUNTS:
        checks.integer(config, key, lo, checks.MAX_TOKENS, f"generationConfig.{key}")
    checks.integer(config, "seed", -checks.MAX_INT64 - 1, checks.MAX_INT64, "generationConfig.seed")
    checks.strings(config, "stopSequences", single=False, field="generationConfig.stopSequences")
    checks.optional(config, "responseMimeType", (str,), "a string", "generationConfig.responseMimeType")
    checks.optional(config, "responseSchema", (dict,), "an object", "generationConfig.responseSchema")
    thinking = checks.optional(config, "thinkingConfig", (dict,), "an object", "generationConfig.thinkingConfig")
    if thinking is not None:
        checks.integer(thinking, "thinkingBudget", -1, checks.MAX_TOKENS, "generationConfig.thinkingConfig."
                                                                           "thinkingBudget")
        checks.optional(thinking, "includeThoughts", (bool,), "a boolean",
                        "generationConfig.thinkingConfig.includeThoughts")
        checks.optional(thinking, "thinkingLevel", (str,), "a string", "generationConfig.thinkingConfig.thinkingLevel")


def _validate_tools(payload: dict) -> None:
    for i, tool in enumerate(checks.objects("tools", payload.get("tools") or [])):
        declarations = tool.get("functionDeclarations")
        for j, fn in enumerate(checks.objects(f"tools[{i}].functionDeclarations", declarations or [])):
            at = f"tools[{i}].functionDeclarations[{j}]"
            if not isinstance(fn.get("name"), str) or not fn["name"]:
                raise errors.invalid_value(f"{at}.name", "expected the function's name (a non-empty string).")
            checks.optional(fn, "description", (str,), "a string", f"{at}.description")
            checks.optional(fn, "parameters", (dict,), "an object", f"{at}.parameters")
    calling = checks.optional(payload.get("toolConfig") or {}, "functionCallingConfig", (dict,), "an object",
                              "toolConfig.functionCallingConfig")
    if calling is not None:
        checks.optional(calling, "mode", (str,), "a string", "toolConfig.functionCallingConfig.mode")
        checks.strings(calling, "allowedFunctionNames", single=False,
                       field="toolConfig.functionCallingConfig.allowedFunctionNames")


def validate(payload: dict) -> list:
    """Every field the translation reads, by type: a 400 naming the field, never a 500 further down."""
    checks.depth(payload)
    contents = payload.get("contents")
    if contents is None:
        raise errors.missing_field("contents")
    if not isinstance(contents, list) or not contents:
        raise errors.invalid_value("contents", "expected a non-empty array of contents.")
    for i, content in enumerate(contents):
        _validate_parts(f"contents[{i}]", content)
        if content.get("role") not in (None, "user", "model"):
            raise errors.invalid_value(f"contents[{i}].role", "expected `user` or `model`.")
    system = payload.get("systemInstruction")
    if system is not None and not isinstance(system, str):
        _validate_parts("systemInstruction", system)
    for key in ("generationConfig", "toolConfig"):
        checks.optional(payload, key, (dict,), "an object")
    _validate_config(payload.get("generationConfig") or {})
    checks.optional(payload, "tools", (list,), "an array")
    checks.optional(payload, "safetySettings", (list,), "an array")
    _validate_tools(payload)
    return contents


# --- request ----------------------------------------------------------------------------------------------
_SHAPES = {"type": str, "properties": dict, "items": dict, "anyOf": list, "required": list, "enum": list,
           "description": str, "format": str}


def json_schema(schema, depth: int = 0):
    """Google's OpenAPI-subset Schema (types in upper case, `nullable`) → a JSON schema."""
    if not isinstance(schema, dict) or depth > checks.MAX_DEPTH:
        return {}
    out = {}
    for key, value in schema.items():
        if key in _SHAPES and not isinstance(value, _SHAPES[key]):
            continue   # malformed: left out rather than sent to a provider that would choke on it
        if key == "type":
            value = value.lower()
        elif key == "properties":
            value = {name: json_schema(v, depth + 1) for name, v in value.items()}
        elif key == "items":
            value = json_schema(value, depth + 1)
        elif key == "anyOf":
            value = [json_schema(v, depth + 1) for v in value]
        elif key in ("nullable", "propertyOrdering"):
            continue
        out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _media_part(mime: str, url: str) -> dict:
    if mime.startswith("video/"):
        return {"type": "video_url", "video_url": {"url": url}}
    if mime.startswith("audio/") and url.startswith("data:"):
        return {"type": "input_audio", "input_audio": {"data": url.partition(",")[2],
                                                       "format": mime.removeprefix("audio/")}}
    if mime.startswith("image/") or not mime:
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url}} if url.startswith("data:") else \
        {"type": "text", "text": f"[file {url}]"}


def _user_part(part: dict) -> dict | None:
    if "text" in part:
        return {"type": "text", "text": part["text"]}
    if part.get("inlineData"):
        blob = part["inlineData"]
        mime = blob.get("mimeType") or "application/octet-stream"
        return _media_part(mime, f"data:{mime};base64,{blob.get('data') or ''}")
    if part.get("fileData"):
        return _media_part(part["fileData"].get("mimeType") or "", part["fileData"].get("fileUri") or "")
    return None


def _result_text(response: dict) -> str:
    """A functionResponse's `response` as the tool message's content: a lone string result as it is (Gemini
    CLI sends {"output": "…"}), anything else as JSON."""
    if len(response) == 1:
        (value,) = response.values()
        if isinstance(value, str):
            return value
    return orjson.dumps(response).decode()


class _Calls:
    """The ids of function calls, so their responses find them (by id, else by name in call order)."""

    def __init__(self):
        self.open: list[tuple[str, str]] = []   # (id, name) of calls not answered yet

    def add(self, call: dict, at: str) -> str:
        call_id = call.get("id") or f"call_{at}"
        self.open.append((call_id, call.get("name") or ""))
        return call_id

    def answer(self, response: dict) -> str:
        wanted = response.get("id")
        match = next((c for c in self.open if c[0] == wanted), None) if wanted else None
        match = match or next((c for c in self.open if c[1] == response.get("name")), None)
        if match is None:
            return wanted or f"call_{response.get('name') or 'unknown'}"
        self.open.remove(match)
        return match[0]


def _model_message(content: dict, index: int, calls: _Calls) -> dict:
    text, thoughts, tool_calls, signature = [], [], [], None
    for j, part in enumerate(content["parts"]):
        if part.get("functionCall"):
            fn = part["functionCall"]
            arguments = orjson.dumps(fn.get("args") or {}).decode()
            call = {"id": calls.add(fn, f"{index}_{j}"), "type": "function",
                    "function": {"name": fn.get("name") or "", "arguments": arguments}}
            if part.get("thoughtSignature"):
                call["thought_signature"] = part["thoughtSignature"]
            tool_calls.append(call)
        elif part.get("thought"):
            thoughts.append(part.get("text") or "")
            signature = part.get("thoughtSignature") or signature
        elif "text" in part:
            text.append(part["text"])
    message: dict = {"role": "assistant", "content": "".join(text) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
        if signature:   # Claude's thinking signature, sent as a thought part's (it must come back with it)
            message["thinking_signature"] = signature
    return message


def _user_messages(content: dict, calls: _Calls) -> list[dict]:
    """One user content → tool messages (its function responses, first) and a user message (the rest)."""
    tools: list[dict] = []
    parts: list[dict] = []
    for part in content["parts"]:
        if part.get("functionResponse"):
            response = part["functionResponse"]
            tools.append({"role": "tool", "tool_call_id": calls.answer(response),
                          "content": _result_text(response.get("response") or {})})
        elif (converted := _user_part(part)) is not None:
            parts.append(converted)
    user: list[dict] | str = parts
    if parts and all(p["type"] == "text" for p in parts):
        user = "\n\n".join(p["text"] for p in parts)   # plain text: every provider takes a string
    return tools + ([{"role": "user", "content": user}] if parts else [])


def _system_text(system) -> str:
    if isinstance(system, str):
        return system
    return "\n\n".join(p["text"] for p in system["parts"] if isinstance(p.get("text"), str) and not p.get("thought"))


def _tools(payload: dict) -> list[dict]:
    out = []
    for tool in payload.get("tools") or ():
        for fn in tool.get("functionDeclarations") or ():
            schema = fn.get("parametersJsonSchema") if isinstance(fn.get("parametersJsonSchema"), dict) else \
                json_schema(fn.get("parameters")) or {"type": "object", "properties": {}}
            out.append({"type": "function", "function": {"name": fn["name"], "description": fn.get("description") or "",
                                                         "parameters": schema}})
    return out


def _tool_choice(payload: dict):
    calling = (payload.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = CALLING_MODES.get(calling.get("mode"))
    names = calling.get("allowedFunctionNames") or []
    if mode == "required" and len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}
    return mode


def thinking_budget(thinking: dict) -> int | None:
    """A thinkingConfig as a thinking budget in tokens (at least Claude's least, 1024); None when it is off."""
    level = THINKING_LEVELS.get(thinking.get("thinkingLevel"))
    budget = thinking.get("thinkingBudget")
    if level:
        return THINKING_BUDGETS[level]
    if budget is None or budget == 0:
        return None   # not asked for, or off
    if budget < 0:
        return THINKING_BUDGETS["medium"]   # -1: the model decides (dynamic thinking)
    return max(budget, THINKING_BUDGETS["low"])


def _generation(canonical: dict, config: dict) -> None:
    for ours, theirs in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                         ("n", "candidateCount"), ("seed", "seed"), ("presence_penalty", "presencePenalty"),
                         ("frequency_penalty", "frequencyPenalty")):
        if config.get(theirs) is not None:
            canonical[ours] = config[theirs]
    if config.get("stopSequences"):
        canonical["stop"] = config["stopSequences"]
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") if isinstance(config.get("responseJsonSchema"), dict) else \
            json_schema(config.get("responseSchema"))
        canonical["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}} \
            if schema else {"type": "json_object"}
    # Thinking goes on as a budget (Claude takes it; OpenAI-compatible channels drop it): not as
    # `reasoning_effort`, which a non-reasoning OpenAI model refuses, and Gemini CLI always sends a budget.
    budget = thinking_budget(config.get("thinkingConfig") or {})
    if budget:
        canonical["thinking"] = {"type": "enabled", "budget_tokens": budget}


def to_canonical(payload: dict) -> dict:
    """Validate a GenerateContentRequest (`model` set by the view from the URL) and translate it to the
    canonical OpenAI shape."""
    payload = normalized(payload)
    contents = validate(payload)
    messages: list[dict] = []
    if payload.get("systemInstruction"):
        system = _system_text(payload["systemInstruction"])
        if system:
            messages.append({"role": "system", "content": system})
    calls = _Calls()
    for i, content in enumerate(contents):
        if content.get("role") == "model":
            messages.append(_model_message(content, i, calls))
        else:
            messages.extend(_user_messages(content, calls))
    canonical: dict = {"model": payload.get("model"), "messages": messages, "_translated": True,
                       **checks.fallback(payload)}
    _generation(canonical, payload.get("generationConfig") or {})
    if tools := _tools(payload):
        canonical["tools"] = tools
        if choice := _tool_choice(payload):
            canonical["tool_choice"] = choice
    return canonical


_DROPPED_FIELDS = ("cachedContent", "safetySettings")


def with_native_cost(data: bytes, cost: float | None) -> bytes:
    """A native answer, or its last stream frame, with what the call cost (`usageMetadata.cost`, as a
    translated answer has it)."""
    if cost is None:
        return data
    sse = data.startswith(b"data: ")
    frame = orjson.loads(data[6:] if sse else data)
    if isinstance(frame.get("usageMetadata"), dict):
        frame["usageMetadata"]["cost"] = cost
    return b"data: " + orjson.dumps(frame) + b"\r\n\r\n" if sse else orjson.dumps(frame)


def translation_notes(payload: dict) -> list[str]:
    """What a call translated for a non-Gemini channel could not carry as sent, in the words of X-Tollgate-Route
    (a native call carries everything; a valid payload, after to_canonical)."""
    payload = normalized(payload)
    builtin = sorted({key for tool in payload.get("tools") or () if isinstance(tool, dict)
                      for key, value in tool.items() if key != "functionDeclarations" and value is not None})
    notes = ["dropped built-in tools " + ",".join(builtin)] if builtin else []
    notes += [f"dropped {field}" for field in _DROPPED_FIELDS if payload.get(field)]
    return notes


def count_request(payload: dict) -> dict:
    """A countTokens body ({"contents"} or {"generateContentRequest": {…}}) as a GenerateContentRequest."""
    payload = normalized(payload)
    inner = checks.optional(payload, "generateContentRequest", (dict,), "an object")
    return {**inner, "model": payload.get("model")} if inner is not None else payload


# --- response ---------------------------------------------------------------------------------------------
def usage_metadata(usage, cost: float | None = None) -> dict:
    meta = {"promptTokenCount": usage.prompt_tokens,
            "candidatesTokenCount": max(usage.completion_tokens - usage.reasoning_tokens, 0),
            "totalTokenCount": usage.prompt_tokens + usage.completion_tokens}
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if cost is not None:
        meta["cost"] = cost   # OpenRouter's `usage.cost`, in the deployment currency
    return meta


def _call_part(call: dict) -> dict:
    fn = call.get("function") or {}
    part = {"functionCall": {"name": fn.get("name") or "", "args": json_object(fn.get("arguments"))}}
    if call.get("id"):
        part["functionCall"]["id"] = call["id"]   # echoed back on its functionResponse
    if call.get("thought_signature"):
        part["thoughtSignature"] = call["thought_signature"]
    return part


def _candidate(choice: dict) -> dict:
    message = choice.get("message") or {}
    parts = []
    if message.get("reasoning_content"):
        parts.append({"text": message["reasoning_content"], "thought": True})
        if message.get("thinking_signature"):
            parts[-1]["thoughtSignature"] = message["thinking_signature"]
    if message.get("content"):
        parts.append({"text": message["content"]})
    parts += [_call_part(call) for call in message.get("tool_calls") or ()]
    return {"content": {"role": "model", "parts": parts or [{"text": ""}]},
            "finishReason": TO_GEMINI_FINISH.get(choice.get("finish_reason"), "STOP"),
            "index": choice.get("index", 0)}


def complete(call, data: dict, usage) -> dict:
    """A canonical chat.completion → GenerateContentResponse (one candidate per choice)."""
    return {"candidates": [_candidate(c) for c in data.get("choices") or ()] or [_candidate({})],
            "usageMetadata": usage_metadata(usage, call.cost_now(usage)),
            "modelVersion": call.model.public_id, "responseId": ID_PREFIX + call.hex_id}


def sse(frame: dict) -> bytes:
    return b"data: " + orjson.dumps(frame) + b"\r\n\r\n"


class ChunkRenderer:
    """Canonical events → Gemini SSE: a GenerateContentResponse per chunk (the new parts only), the last with
    the finish reason, the whole function calls and usageMetadata."""

    def __init__(self, call):
        self.call = call
        self.head = {"modelVersion": call.model.public_id, "responseId": ID_PREFIX + call.hex_id}
        self.calls: dict[int, dict] = {}     # OpenAI tool-call index → the call being assembled
        self.finish_reason = "stop"
        self.usage = None

    def _frame(self, parts: list[dict], end: dict | None = None) -> dict:
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0, **(end or {})}
        return {"candidates": [candidate], **self.head}

    def _chunk(self, parts: list[dict]) -> bytes:
        return sse(self._frame(parts))

    def render(self, event) -> list[bytes]:
        if isinstance(event, TextDelta):
            return [self._chunk([{"text": event.text}])] if event.text else []
        if isinstance(event, ReasoningDelta):
            part = {"text": event.text, "thought": True}
            if event.signature:
                part["thoughtSignature"] = event.signature
            return [self._chunk([part])] if event.text or event.signature else []
        if isinstance(event, ToolCallDelta):
            call = self.calls.setdefault(event.index, {"id": "", "type": "function",
                                                       "function": {"name": "", "arguments": ""}})
            call["id"] = event.id or call["id"]
            call["function"]["name"] = event.name or call["function"]["name"]
            call["function"]["arguments"] += event.arguments
            if event.signature:
                call["thought_signature"] = event.signature
        elif isinstance(event, Finish):
            self.finish_reason = event.reason or "stop"
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            raise errors.upstream_unavailable(f"the stream broke: {event.message}")
        return []

    def finish(self) -> list[bytes]:
        parts = [_call_part(self.calls[i]) for i in sorted(self.calls)]
        end = {"finishReason": TO_GEMINI_FINISH.get(self.finish_reason, "STOP")}
        chunk = self._frame(parts or [{"text": ""}], end)
        if self.usage is not None:
            chunk["usageMetadata"] = usage_metadata(self.usage, self.call.cost_now(self.usage))
        return [sse(chunk)]

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        return [sse(error_body(err, request_id))]


def renderer(call, payload: dict) -> ChunkRenderer:
    return ChunkRenderer(call)


def json_array(chunks):
    """SSE frames (`data: {…}\\r\\n\\r\\n`, several to a chunk) → the JSON array Gemini streams without
    `alt=sse`: `[{…}` then `,\\r\\n{…}` per frame, and `]` at the end."""
    async def frames():
        first = True
        async for chunk in chunks:
            out = []
            for frame in chunk.split(b"\r\n\r\n" if b"\r\n\r\n" in chunk else b"\n\n"):
                frame = frame.strip()
                if not frame.startswith(b"data:"):
                    continue
                out.append((b"[" if first else b",\r\n") + frame[5:].strip())
                first = False
            if out:
                yield b"".join(out)
        yield b"[]" if first else b"]"

    return frames()
