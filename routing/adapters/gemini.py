"""Gemini upstreams (POST /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse).

Where the formats do not map 1:1:
- Gemini function calls have no ids: `call_<hex>` ids are made up, and tool results are sent back by the
  function name looked up from the assistant turn that made the call, as `functionResponse.response =
  {"result": <the content, parsed when it is a JSON object or array>}`.
- Gemini 3 signs its function calls: the `thoughtSignature` travels on the canonical tool call as the
  non-standard `thought_signature` and goes back on its functionCall part. A Gemini 3 request whose history has
  unsigned calls (a conversation begun on another provider) gets Google's documented placeholder signature
  on the first call of each turn. Signatures on text parts are not kept (Gemini does not require them).
- JSON schemas (`responseSchema`, function `parameters`) are cut down to the OpenAPI subset Gemini accepts:
  local `$ref`s inlined, `type: [T, "null"]` → `nullable`, unknown keys (additionalProperties, $schema,
  strict…) dropped. Tools without parameters are declared without `parameters`.
- `reasoning_effort` low/medium/high → `thinkingBudget` 1024/8192/24576 (an Anthropic-route `thinking` budget is
  used as it is), with `includeThoughts` so thought summaries come back as `reasoning_content`.
- `n` → `candidateCount`: one choice per candidate; a stream carries candidate 0 only."""
import mimetypes
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.utils.translation import gettext_lazy as _

from routing.adapters.base import (
    Adapter,
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
    text_of,
    tool_call,
)

SIGNING_MODELS = "gemini-3"
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's placeholder for calls it did not sign
THINKING_BUDGETS: dict[str | None, int] = {"low": 1024, "medium": 8192, "high": 24576}   # by reasoning_effort, if any
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(
    ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "OTHER", "IMAGE_SAFETY"),
    "content_filter")}
_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                          "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                          "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                          "maximum"})


def gemini_schema(schema, defs: dict | None = None, depth: int = 0):
    """A JSON schema → Gemini's OpenAPI-subset Schema."""
    if not isinstance(schema, dict) or depth > 32:
        return {}
    defs = {**(schema.get("$defs") or {}), **(schema.get("definitions") or {})} if defs is None else defs
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return gemini_schema(defs[ref.rsplit("/", 1)[-1]], defs, depth + 1)
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            if len(kinds) < len(value):
                out["nullable"] = True
            value = kinds[0] if kinds else "null"
        if key not in _SCHEMA_KEYS or (key == "enum" and not all(isinstance(v, str) for v in value)):
            continue
        if key == "properties":
            value = {name: gemini_schema(v, defs, depth + 1) for name, v in value.items()}
        elif key == "items":
            value = gemini_schema(value, defs, depth + 1)
        elif key == "anyOf":
            value = [gemini_schema(v, defs, depth + 1) for v in value]
        out[key] = value
    return out


def _text(text: str) -> list[dict]:
    return [{"text": text}] if text else []


def _media(url: str, fallback_mime: str) -> dict:
    inline = data_url(url)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"mimeType": mimetypes.guess_type(urlsplit(url).path)[0] or fallback_mime, "fileUri": url}}


def _parts(content) -> list[dict]:
    parts = []
    for part in parts_of(content):
        kind = part.get("type")
        if kind == "text":
            parts += _text(part.get("text") or "")
        elif kind in ("image_url", "video_url"):
            url = (part.get(kind) or {}).get("url") or ""
            parts.append(_media(url, "image/jpeg" if kind == "image_url" else "video/mp4"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}",
                                         "data": audio.get("data") or ""}})
    return parts


def _model_parts(message: dict, signing: bool) -> list[dict]:
    parts = _text(text_of(message.get("content")))
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        call_part = {"name": fn.get("name") or "", "args": json_object(fn.get("arguments"))}
        part: dict[str, Any] = {"functionCall": call_part}
        signature = call.get("thought_signature") or (SKIP_SIGNATURE if signing and i == 0 else None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict, names: dict) -> dict:
    content = message.get("content")
    text = content if isinstance(content, str) else text_of(content)
    try:
        result = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = text
    if not isinstance(result, (dict, list)):
        result = text
    name = names.get(message.get("tool_call_id")) or message.get("name") or ""
    return {"functionResponse": {"name": name, "response": {"result": result}}}


def _contents(messages: list[dict], signing: bool) -> tuple[list[dict], list[dict]]:
    """(system parts, contents); consecutive same-role contents merged (parallel calls and their results)."""
    names = {call.get("id"): (call.get("function") or {}).get("name")
             for m in messages if m.get("role") == "assistant" for call in m.get("tool_calls") or ()}
    system: list[dict] = []
    contents: list[dict] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system += _text(text_of(message.get("content")))
            continue
        if role == "assistant":
            role, parts = "model", _model_parts(message, signing)
        elif role == "tool":
            role, parts = "user", [_function_response(message, names)]
        else:
            role, parts = "user", _parts(message.get("content"))
        append_turn(contents, role, "parts", parts)
    return system, contents


def _generation_config(request: dict) -> dict:
    temperature = request.get("temperature")
    config = {"maxOutputTokens": max_tokens_of(request),
              "temperature": None if temperature is None else min(max(float(temperature), 0.0), 2.0),
              "topP": request.get("top_p"), "stopSequences": stops_of(request)[:5] or None,
              "candidateCount": request.get("n"), "seed": request.get("seed"),
              "presencePenalty": request.get("presence_penalty"),
              "frequencyPenalty": request.get("frequency_penalty")}
    fmt = found if isinstance(found := request.get("response_format"), dict) else {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if fmt["type"] == "json_schema" and schema:
            config["responseSchema"] = gemini_schema(schema)
    budget = THINKING_BUDGETS.get(request.get("reasoning_effort"))
    thinking = request.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled" and thinking.get("budget_tokens"):
        budget = thinking["budget_tokens"]
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    return {key: value for key, value in config.items() if value is not None}


def _declaration(fn: dict) -> dict:
    declaration = {"name": fn.get("name") or ""}
    if fn.get("description"):
        declaration["description"] = fn["description"]
    parameters = fn.get("parameters") or {}
    if parameters.get("properties") or parameters.get("type", "object") != "object":
        declaration["parameters"] = gemini_schema(parameters)  # Gemini refuses an OBJECT without properties
    return declaration


def _calling_config(choice) -> dict | None:
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    mode = {"none": "NONE", "auto": "AUTO", "required": "ANY"}.get(choice) if isinstance(choice, str) else None
    return {"mode": mode} if mode else None


def _finish(reason, has_calls: bool) -> str:
    if not isinstance(reason, str):
        return "stop"
    return "tool_calls" if has_calls and reason == "STOP" else FINISH.get(reason, "stop")


def _count(meta: dict, key: str) -> int:
    value = meta.get(key)
    return value if type(value) is int else 0   # an upstream's garbage counts as nothing, never a crash


def _usage(meta) -> Usage:
    meta = meta if isinstance(meta, dict) else {}
    thoughts = _count(meta, "thoughtsTokenCount")
    return Usage(prompt_tokens=_count(meta, "promptTokenCount"),
                 completion_tokens=_count(meta, "candidatesTokenCount") + thoughts,
                 cached_tokens=_count(meta, "cachedContentTokenCount"), reasoning_tokens=thoughts)


def _call_id(call: dict) -> str:
    return call.get("id") or f"call_{secrets.token_hex(12)}"


def _choice(candidate: dict, index: int) -> dict:
    text, thoughts, calls = [], [], []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"] or {}
            calls.append(tool_call(_call_id(call), call.get("name") or "", call.get("args") or {}))
            if part.get("thoughtSignature"):
                calls[-1]["thought_signature"] = part["thoughtSignature"]
        elif part.get("thought"):
            thoughts.append(part.get("text") or "")
        elif "text" in part:
            text.append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return {"index": candidate.get("index", index), "message": message,
            "finish_reason": _finish(candidate.get("finishReason"), bool(calls))}


def _request(body: dict, model: str, base_url: str, api_key: str, stream: bool) -> UpstreamRequest:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    base = base_url.rstrip("/").removesuffix("/v1beta")
    return UpstreamRequest(url=f"{base}/v1beta/models/{model}:{method}", body=orjson.dumps(body),
                           headers={"x-goog-api-key": api_key, "content-type": "application/json"})


def _objects(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _native_candidates(data: dict) -> list[dict]:
    return _objects(data.get("candidates"))


def _blocked(data: dict) -> bool:
    feedback = data.get("promptFeedback")
    return not data.get("candidates") and isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _native_finish(data: dict, calls: bool) -> str | None:
    """The finish reason of a native answer or frame (candidate 0), None while it goes on."""
    if _blocked(data):
        return "content_filter"
    candidate = next((c for c in _native_candidates(data) if c.get("index", 0) == 0), None)
    if candidate is None or not candidate.get("finishReason"):
        return None
    return _finish(candidate["finishReason"], calls)


def _has_calls(data: dict) -> bool:
    return any("functionCall" in part for c in _native_candidates(data)
               for part in _objects(_object(c.get("content")).get("parts")))


class GeminiAdapter(Adapter):
    kind = "gemini"
    label = _("Google Gemini")
    account_codes = frozenset({"API_KEY_INVALID", "PERMISSION_DENIED"})
    channel_codes = frozenset({"RESOURCE_EXHAUSTED"})
    model_codes = frozenset({"context_length_exceeded", "NOT_FOUND"})
    native_formats = frozenset({"gemini"})

    def to_upstream(self, request: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        model = upstream_model.removeprefix("models/")
        system, contents = _contents(request.get("messages") or [], model.startswith(SIGNING_MODELS))
        body: dict = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if config := _generation_config(request):
            body["generationConfig"] = config
        if declarations := [_declaration(t["function"]) for t in request.get("tools") or () if t.get("function")]:
            body["tools"] = [{"functionDeclarations": declarations}]
            if calling := _calling_config(request.get("tool_choice")):
                body["toolConfig"] = {"functionCallingConfig": calling}
        return _request(body, model, base_url, api_key, stream)

    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        data = load_json(body)
        candidates = data.get("candidates")
        usage = _usage(data.get("usageMetadata") or {})
        if candidates and isinstance(candidates, list):
            choices = [_choice(c, i) for i, c in enumerate(candidates) if isinstance(c, dict)]
        elif (data.get("promptFeedback") or {}).get("blockReason"):
            choices = [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}]
        else:
            raise UpstreamFormatError("the answer has no candidates")
        return completion(data.get("responseId"), data.get("modelVersion"), choices, usage), usage

    async def stream_events(self, lines: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        calls, finished, usage = 0, False, None
        async for line in lines:
            frame = sse_json(line)
            if frame is None:
                continue
            if frame.get("error"):
                err = frame["error"] if isinstance(frame["error"], dict) else {"message": str(frame["error"])}
                yield StreamError(str(err.get("message") or "upstream error"), err.get("status") or "upstream_error")
                return
            if frame.get("usageMetadata"):
                usage = _usage(frame["usageMetadata"])
            candidates = frame.get("candidates") or []
            if not candidates and (frame.get("promptFeedback") or {}).get("blockReason"):
                finished = True
                yield Finish("content_filter")
            candidate = next((c for c in candidates if c.get("index", 0) == 0), None)
            if candidate is None:
                continue
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    call = part["functionCall"] or {}
                    yield ToolCallDelta(calls, _call_id(call), call.get("name") or "",
                                        orjson.dumps(call.get("args") or {}).decode(), part.get("thoughtSignature"))
                    calls += 1
                elif part.get("text"):
                    yield ReasoningDelta(part["text"]) if part.get("thought") else TextDelta(part["text"])
            if candidate.get("finishReason"):
                finished = True
                yield Finish(_finish(candidate["finishReason"], calls > 0))
        if not finished:
            raise UpstreamFormatError("the stream ended without a finishReason")
        if usage is not None:
            yield UsageEvent(usage)

    def error_detail(self, status: int, body: bytes) -> tuple[str, str | None, str | None]:
        err = error_of(body)
        message, code = str(err.get("message") or f"HTTP {status}"), err.get("status")
        details = [d for d in err.get("details") or () if isinstance(d, dict)]
        lowered = message.lower()
        if any(d.get("reason") == "API_KEY_INVALID" for d in details):
            code = "API_KEY_INVALID"
        elif "token count" in lowered and "exceed" in lowered:
            code = "context_length_exceeded"
        violations = [v for d in details for v in d.get("fieldViolations") or () if isinstance(v, dict)]
        return message, code, (violations[0].get("field") if violations else None)

    # --- native relay: a Gemini client's own request, forwarded as it is ------------------------------------
    def native_request(self, fmt: str, payload: dict, *, upstream_model: str, base_url: str, api_key: str,
                       stream: bool, headers) -> UpstreamRequest:
        # The URL names the model; `models`/`route` are the gateway's fallback list.
        body = {key: value for key, value in payload.items() if key not in ("model", "models", "route")}
        return _request(body, upstream_model.removeprefix("models/"), base_url, api_key, stream)

    def native_answer(self, fmt: str, body: bytes, *, response_id: str, model: str) -> tuple[bytes, Usage, str]:
        data = load_json(body)
        if not isinstance(data.get("candidates"), list) and not _blocked(data):
            raise UpstreamFormatError("the answer has no candidates")
        data["responseId"], data["modelVersion"] = response_id, model
        finish = _native_finish(data, _has_calls(data)) or "stop"
        return orjson.dumps(data), _usage(data.get("usageMetadata")), finish

    async def native_stream(self, fmt: str, lines: AsyncIterator[bytes], *, response_id: str,
                            model: str) -> AsyncIterator[NativeChunk]:
        calls = False
        async for line in lines:
            frame = sse_json(line)
            if frame is None:
                continue
            if frame.get("error"):
                err = frame["error"] if isinstance(frame["error"], dict) else {"message": str(frame["error"])}
                raise UpstreamFormatError(f"the upstream sent an error: {err.get('message') or err}")
            frame["responseId"], frame["modelVersion"] = response_id, model
            calls = calls or _has_calls(frame)
            finish = _native_finish(frame, calls)
            meta = frame.get("usageMetadata")
            yield NativeChunk(b"data: " + orjson.dumps(frame) + b"\r\n\r\n",
                              usage=_usage(meta) if isinstance(meta, dict) else None, finish=finish,
                              done=finish is not None)
