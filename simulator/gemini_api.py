"""Gemini wire format: POST /v1beta/models/{model}:generateContent and :streamGenerateContent (?alt=sse for SSE,
else a streamed JSON array)."""

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs

import orjson

from . import content
from .core import (
    ANY,
    BOOLEAN,
    DICT,
    INVALID_KEY,
    STRING,
    ApiError,
    Invalid,
    ListOf,
    MapOf,
    Obj,
    Provider,
    Reply,
    Scalar,
    call,
    enum,
    is_base64,
    json_tokens,
    number,
    pick_tool,
    refused_media,
    say,
)
from .tokens import IMAGE_TOKENS, MEDIA_TOKENS, MESSAGE_OVERHEAD, count_tokens

PREFIX = "/v1beta/models/"
SIGNING_MODELS = "gemini-3"  # models whose function calls carry a thoughtSignature that must come back
_PROTO = "type.googleapis.com/google.ai.generativelanguage.v1beta."
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}").fullmatch

# --- request schema: protobuf JSON (camelCase or snake_case keys, null = absent, unknown names rejected) ---


def _obj(name, fields, required=()):
    return Obj(fields, required, name=name, proto=True)


_INT = Scalar((int, float), "integer", check=lambda v: type(v) is int or v.is_integer())
_INT64 = Scalar((int, str), "integer", check=lambda v: type(v) is int or v.lstrip("-").isdigit())  # may be a string
_BYTES = Scalar((str,), "bytes", check=is_base64)
_TYPES = ("TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
SCHEMA = _obj("Schema", {})  # OpenAPI subset: no additionalProperties, $schema, $ref, const, oneOf...
SCHEMA.fields.update({
    "type": enum(*_TYPES, *(t.lower() for t in _TYPES), name="Type"), "format": STRING, "title": STRING,
    "description": STRING, "nullable": BOOLEAN, "enum": ListOf(STRING), "maxItems": _INT64, "minItems": _INT64,
    "properties": MapOf(SCHEMA), "required": ListOf(STRING), "minProperties": _INT64, "maxProperties": _INT64,
    "minLength": _INT64, "maxLength": _INT64, "pattern": STRING, "example": ANY, "anyOf": ListOf(SCHEMA),
    "propertyOrdering": ListOf(STRING), "default": ANY, "items": SCHEMA, "minimum": number(), "maximum": number(),
})
_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult")
_PART = _obj("Part", {
    "text": STRING, "thought": BOOLEAN, "thoughtSignature": _BYTES, "executableCode": DICT,
    "codeExecutionResult": DICT, "videoMetadata": DICT, "partMetadata": DICT, "mediaResolution": DICT,
    "inlineData": _obj("Blob", {"mimeType": STRING, "data": _BYTES}, ("mimeType", "data")),
    "fileData": _obj("FileData", {"mimeType": STRING, "fileUri": STRING}, ("fileUri",)),
    "functionCall": _obj("FunctionCall", {"id": STRING, "name": STRING, "args": DICT}, ("name",)),
    "functionResponse": _obj("FunctionResponse", {
        "id": STRING, "name": STRING, "response": DICT, "willContinue": BOOLEAN, "parts": ListOf(DICT),
        "scheduling": enum("SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT",
                           name="FunctionResponse.Scheduling")}, ("name", "response")),
})
_CONTENT = _obj("Content", {"role": STRING, "parts": ListOf(_PART)})
_CATEGORIES = ("UNSPECIFIED", "DEROGATORY", "TOXICITY", "VIOLENCE", "SEXUAL", "MEDICAL", "DANGEROUS", "HARASSMENT",
               "HATE_SPEECH", "SEXUALLY_EXPLICIT", "DANGEROUS_CONTENT", "CIVIC_INTEGRITY")
_THRESHOLDS = ("HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
               "BLOCK_NONE", "OFF")
REQUEST = _obj("GenerateContentRequest", {
    "model": STRING, "contents": ListOf(_CONTENT), "systemInstruction": _CONTENT, "cachedContent": STRING,
    "generationConfig": _obj("GenerationConfig", {
        "stopSequences": ListOf(STRING), "responseMimeType": STRING, "responseSchema": SCHEMA,
        "responseJsonSchema": ANY, "candidateCount": Scalar((int,), "integer", lo=1, hi=8),
        "maxOutputTokens": _INT, "temperature": number(0, 2), "topP": number(0, 1), "topK": _INT, "seed": _INT,
        "presencePenalty": number(), "frequencyPenalty": number(), "responseLogprobs": BOOLEAN, "logprobs": _INT,
        "enableEnhancedCivicAnswers": BOOLEAN, "speechConfig": DICT, "imageConfig": DICT,
        "responseModalities": ListOf(enum("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO",
                                          name="GenerationConfig.Modality")),
        "mediaResolution": enum("MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM",
                                "MEDIA_RESOLUTION_HIGH", name="GenerationConfig.MediaResolution"),
        "thinkingConfig": _obj("ThinkingConfig", {
            "includeThoughts": BOOLEAN, "thinkingBudget": _INT,
            "thinkingLevel": enum("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH",
                                  name="ThinkingConfig.ThinkingLevel")}),
    }),
    "tools": ListOf(_obj("Tool", {
        "functionDeclarations": ListOf(_obj("FunctionDeclaration", {
            "name": STRING, "description": STRING, "parameters": SCHEMA, "parametersJsonSchema": ANY,
            "response": SCHEMA, "responseJsonSchema": ANY,
            "behavior": enum("UNSPECIFIED", "BLOCKING", "NON_BLOCKING", name="FunctionDeclaration.Behavior")},
            ("name",))),
        **dict.fromkeys(("googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "computerUse",
                         "fileSearch", "googleMaps"), DICT)})),
    "toolConfig": _obj("ToolConfig", {"retrievalConfig": DICT, "functionCallingConfig": _obj("FunctionCallingConfig", {
        "mode": enum("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED", name="FunctionCallingConfig.Mode"),
        "allowedFunctionNames": ListOf(STRING)})}),
    "safetySettings": ListOf(_obj("SafetySetting", {
        "category": enum(*(f"HARM_CATEGORY_{c}" for c in _CATEGORIES), name="HarmCategory"),
        "threshold": enum(*_THRESHOLDS, name="SafetySetting.HarmBlockThreshold")}, ("category", "threshold"))),
})

_SCALARS = {"string": "TYPE_STRING", "integer": "TYPE_INT32", "number": "TYPE_FLOAT", "boolean": "TYPE_BOOL",
            "bytes": "TYPE_BYTES", "dictionary": "type.googleapis.com/google.protobuf.Struct"}


def _where(path) -> str:
    """'contents[0].parts[1].inline_data', as Google names fields."""
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def _semantic(where, text):
    return ApiError(400, f"* GenerateContentRequest.{where}: {text}\n")


def _violation(e: Invalid) -> ApiError:
    where, node, kind = _where(e.path), e.node, e.kind
    if kind == "missing":
        return _semantic(f"{where}.{e.value}" if where else e.value, f"{e.value} is not specified")
    if kind in ("min", "max"):
        return _semantic(where, f"{e.path[-1]} must be in the range [{node.lo}, {node.hi}]")
    if kind == "extra":
        at = f" at '{where}'" if where else ""
        message = f'Invalid JSON payload received. Unknown name "{e.value}"{at}: Cannot find field.'
    else:  # type, enum, format; a list is named after its items
        node = getattr(node, "item", node)
        name = getattr(node, "name", None)
        proto = _PROTO + name if name else _SCALARS.get(getattr(node, "kind", None), "TYPE_MESSAGE")
        value = orjson.dumps(e.value).decode()[:100]
        message = (f"Invalid value at '{where}' ({proto}), "
                   + (f"Base64 decoding failed for {value}" if proto == "TYPE_BYTES" else value))
    violation = {"field": where, "description": message} if where else {"description": message}
    return ApiError(400, message, details=[{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                           "fieldViolations": [violation]}])


def _check(req, model) -> dict:
    if not isinstance(req.json, dict):
        raise ApiError(400, "Invalid JSON payload received. Expected an object.")
    try:
        body = REQUEST(req.json, ())
    except Invalid as e:
        raise _violation(e) from None
    contents = body.get("contents")
    if not contents:
        raise _semantic("contents", "contents is not specified")
    for i, c in enumerate(contents):
        if c.get("role", "user") not in ("user", "model"):
            raise ApiError(400, "Please use a valid role: user, model.")
        _check_parts(c, f"contents[{i}]", model)
    if "systemInstruction" in body:
        _check_parts(body["systemInstruction"], "system_instruction", model)
    for i, tool in enumerate(body.get("tools") or ()):
        for j, decl in enumerate(tool.get("functionDeclarations") or ()):
            if "parameters" in decl and "parametersJsonSchema" in decl:
                raise _semantic(f"tools[{i}].function_declarations[{j}]", "parameters and parameters_json_schema "
                                "cannot both be set.")
            if not _FUNCTION_NAME(decl["name"]):
                raise _semantic(f"tools[{i}].function_declarations[{j}].name", "Invalid function name. Must start "
                                "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                                "dots (.), colons (:), or dashes (-), with a maximum length of 64.")
    if model.startswith(SIGNING_MODELS):
        _check_signatures(contents)
    return body


def _check_parts(c, where, model):
    if not c.get("parts"):
        raise _semantic(f"{where}.parts", "contents.parts must not be empty.")
    for j, part in enumerate(c["parts"]):
        data = [k for k in _DATA if k in part]
        if len(data) > 1:
            raise ApiError(400, f"Invalid JSON payload received. Oneof field 'data' is already set. "
                           f"Cannot set '{data[1]}'")
        if not data:
            raise _semantic(f"{where}.parts[{j}].data", "required oneof field 'data' must have one initialized field")
        refused = refused_media(model, (part.get("inlineData") or part.get("fileData") or {}).get("mimeType", ""))
        if refused:
            raise ApiError(400, f"{refused} input modality is not enabled for models/{model}")


def _check_signatures(contents):
    """In the current turn (after the last user message that is not only function responses), a model step whose
    function calls got their responses must carry the thoughtSignature on its first functionCall part."""
    turn = max((i for i, c in enumerate(contents)
                if c.get("role", "user") == "user" and any("functionResponse" not in p for p in c["parts"])),
               default=-1)
    for i in range(turn + 1, len(contents) - 1):
        calls = [p for p in contents[i]["parts"] if "functionCall" in p]
        if contents[i].get("role") == "model" and calls and "thoughtSignature" not in calls[0]:
            name = calls[0]["functionCall"]["name"]
            raise ApiError(400, "Function call is missing a thought_signature in functionCall parts. This is required "
                           "for tools to work correctly, and missing thought_signature may lead to degraded model "
                           f"performance. Additional data, function call `default_api:{name}` , position {i + 1}. "
                           "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")


# --- generateContent ------------------------------------------------------------------------------

def _part_tokens(part) -> int:
    if "text" in part:
        return count_tokens(part["text"])
    media = part.get("inlineData") or part.get("fileData")
    if media:
        return IMAGE_TOKENS if media.get("mimeType", "").startswith("image/") else MEDIA_TOKENS
    fn = part.get("functionCall") or part.get("functionResponse")
    return count_tokens(fn["name"]) + json_tokens(fn.get("args") or fn.get("response") or {}) if fn else 0


def prompt_tokens(body) -> int:
    contents = [*body["contents"], body["systemInstruction"]] if "systemInstruction" in body else body["contents"]
    total = sum(MESSAGE_OVERHEAD + sum(map(_part_tokens, c["parts"])) for c in contents)
    return total + (json_tokens(body["tools"]) if body.get("tools") else 0)


def _text(c) -> str:
    """The words of a content: its text parts and the values in its function responses."""
    return " ".join(p["text"] if "text" in p else " ".join(map(str, p["functionResponse"]["response"].values()))
                    for p in c["parts"] if "text" in p or "functionResponse" in p)


_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "filter": "SAFETY", "tool": "STOP"}
_BLOCKED = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]


def generate(req) -> Reply:
    model, _, method = req.path.removeprefix(PREFIX).partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        raise ApiError(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                       f"{method or 'this method'}. Call ListModels to see the list of available models and their "
                       "supported methods.")
    body = _check(req, model)
    options, contents = req.options, body["contents"]
    cfg = body.get("generationConfig") or {}
    after_result = any("functionResponse" in p for p in contents[-1]["parts"])
    source = contents[-1] if after_result else next(
        (c for c in reversed(contents) if c.get("role", "user") == "user"), contents[-1])
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = calling.get("allowedFunctionNames")
    functions = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()
                 if not allowed or d["name"] in allowed]
    tool = pick_tool(functions, off=calling.get("mode") == "NONE" or after_result, prefer=options.tool)
    if tool is not None:
        out = call(tool, "parameters" if "parameters" in tool else "parametersJsonSchema")
        part = {"functionCall": {"name": out.tool, "args": out.args}}
        if model.startswith(SIGNING_MODELS):
            part["thoughtSignature"] = base64.b64encode(hashlib.sha256(orjson.dumps(part)).digest()).decode()
        parts, steps, spent = [part], [[part]], count_tokens(out.tool) + len(out.pieces)
    else:
        text = content.reply_text(_text(source), options.tokens)
        if cfg.get("responseMimeType") == "application/json":
            schema = cfg.get("responseSchema") or cfg.get("responseJsonSchema")
            text = orjson.dumps(content.sample(schema) if schema else {"reply": text}).decode()
        limit = cfg.get("maxOutputTokens")  # an int32, which JSON may spell 64.0
        out = say(text, options, None if limit is None else int(limit), cfg.get("stopSequences"))
        parts, spent = [{"text": "".join(out.pieces)}], len(out.pieces)
        steps = [[{"text": p}] for p in out.pieces] or [parts]  # streamed: a chunk per token
    n, prompt, thoughts = cfg.get("candidateCount", 1), prompt_tokens(body), options.reasoning
    if thoughts and (cfg.get("thinkingConfig") or {}).get("includeThoughts"):  # a thought summary comes first
        thought = {"text": content.reply_text(_text(source), min(thoughts, 12), lead="Thinking about:"),
                   "thought": True}
        parts, steps = [thought, *parts], [[thought], *steps]
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": spent * n,
             "totalTokenCount": prompt + spent * n + thoughts}
    if options.cached:
        usage["cachedContentTokenCount"] = min(options.cached, prompt)
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    finish = {"finishReason": _FINISH[out.finish]}
    if out.finish == "filter":
        finish["safetyRatings"] = _BLOCKED
    head = {"modelVersion": model, "responseId": secrets.token_urlsafe(17)}

    def response(parts, end, so_far=None):
        candidate = {"content": {"parts": parts, "role": "model"}, **(finish if end else {})}
        meta = usage if end else {"promptTokenCount": prompt, "candidatesTokenCount": so_far * n,
                                  "totalTokenCount": prompt + so_far * n}
        candidates = [{**candidate, "index": i} for i in range(n)]
        return orjson.dumps({"candidates": candidates, "usageMetadata": meta, **head})

    if method == "generateContent":
        return Reply(response(parts, True))
    chunks = [response(step, k == len(steps), k) for k, step in enumerate(steps, 1)]
    if b"alt=sse" in req.query:
        return Reply(events=[b"data: " + c + b"\r\n\r\n" for c in chunks], content_type=b"text/event-stream")
    return Reply(events=[b"[" + chunks[0], *(b",\r\n" + c for c in chunks[1:]), b"]"])


# --- provider glue --------------------------------------------------------------------------------

def api_key(req) -> str:
    key = req.headers.get("x-goog-api-key") or (
        parse_qs(req.query.decode("latin-1")).get("key", [""])[0] if b"key=" in req.query else "")
    if not key:
        raise ApiError(403, "Method doesn't allow unregistered callers (callers without established identity). "
                       "Please use API Key or other form of API consumer identity to call this API.")
    if key == INVALID_KEY:
        message = "API key not valid. Please pass a valid API key."
        raise ApiError(400, message, details=[
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}])
    return key


_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _error_body(status, message, details=()) -> dict:
    error = {"code": status, "message": message,
             "status": _STATUS.get(status, "FAILED_PRECONDITION" if status < 500 else "UNKNOWN")}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error(e: ApiError, req) -> Reply:
    return Reply(orjson.dumps(_error_body(e.status, e.message, e.details)), status=e.status, headers=e.headers)


_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
         "authentication credential.",
    403: "The caller does not have permission",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}


def fault_error(fault, req) -> ApiError:
    model = req.path.removeprefix(PREFIX).partition(":")[0]
    kind, status = fault.kind, fault.arg
    if kind == "model_not_found" or (kind == "status" and status == 404):
        return ApiError(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                        "generateContent. Call ListModels to see the list of available models and their supported "
                        "methods.")
    if kind == "context_length":
        return ApiError(400, "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).")
    if kind == "quota":
        return ApiError(429, "You exceeded your current quota, please check your plan and billing details. For more "
                        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                        details=[{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "10"}]}, _RETRY])
    if kind != "status":  # stream_error on a plain request
        status = 500
    return ApiError(status, _MESSAGES.get(status, f"Simulated HTTP {status} error."),
                    details=[_RETRY] if status == 429 else ())


def stream_error() -> bytes:
    return b"data: " + orjson.dumps(_error_body(500, _MESSAGES[500])) + b"\r\n\r\n"


PROVIDER = Provider(
    name="gemini",
    routes={},
    prefix_routes=(("POST", PREFIX, generate),),
    api_key=api_key,
    error=error,
    fault_error=fault_error,
    stream_error=stream_error,
    json_error="Invalid JSON payload received. Unexpected token.",
)
