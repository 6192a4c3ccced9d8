"""OpenAI wire format: /v1/chat/completions, /v1/embeddings, /v1/models."""

import base64
import secrets
import struct
import time

import orjson

from . import content
from .core import INVALID_KEY, ApiError, Provider, Reply, pick_tool, say
from .core import call as call_tool
from .tokens import IMAGE_TOKENS, MEDIA_TOKENS, MESSAGE_OVERHEAD, count_tokens

MODELS = {
    "gpt-4o-mini": "openai",
    "gpt-4o": "openai",
    "gpt-4.1": "openai",
    "o3-mini": "openai",
    "gpt-5": "openai",
    "deepseek-chat": "deepseek",
    "deepseek-reasoner": "deepseek",
    "text-embedding-3-small": "openai",
}
FINGERPRINT = "fp_sim0001"
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")  # these reject max_tokens
EMBEDDING_DIM = 8
_CREATED = 1_700_000_000


# --- errors -------------------------------------------------------------------------------------

def _bad(param, message, code="invalid_value"):
    return ApiError(400, message, param=param, code=code)


def _missing(param):
    return _bad(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def _invalid_value(param, value, allowed):
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return _bad(param, f"Invalid value: '{value}'. Supported values are: {listed}.")


_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal", list: "an array",
               dict: "an object"}


def _check_type(param, value, types, expected):
    if not isinstance(value, types) or (type(value) is bool and bool not in types):
        got = _TYPE_NAMES.get(type(value), "null")
        raise _bad(param, f"Invalid type for '{param}': expected {expected}, but got {got} instead.", "invalid_type")
    return value


def _get(obj, key, param, types, expected, required=True):
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(param)
        return None
    return _check_type(param, value, types, expected)


# --- request validation: one checker per documented field, called as check(param, value, body) ---

def _of(types, expected):
    return lambda param, value, body: _check_type(param, value, types, expected)


def _number(lo, hi, integer=False):
    types, what = ((int,), "integer") if integer else ((int, float), "decimal")
    expected = "an integer" if integer else "a decimal"

    def check(param, value, body):
        _check_type(param, value, types, expected)
        if lo is not None and value < lo:
            raise _bad(param, f"Invalid '{param}': {what} below minimum value. Expected a value >= {lo}, "
                       f"but got {value} instead.", f"{what}_below_min_value")
        if hi is not None and value > hi:
            raise _bad(param, f"Invalid '{param}': {what} above maximum value. Expected a value <= {hi}, "
                       f"but got {value} instead.", f"{what}_above_max_value")

    return check


def _enum(*allowed):
    def check(param, value, body):
        if value not in allowed:
            raise _invalid_value(param, value, allowed)

    return check


def _typed(param, obj, kinds):
    """Check `{type: K, K: {name, ...}}`: the shape of tools, tool calls and named tool choices."""
    _check_type(param, obj, (dict,), "an object")
    kind = _get(obj, "type", f"{param}.type", (str,), "a string")
    if kind not in kinds:
        raise _invalid_value(f"{param}.type", kind, kinds)
    spec = _get(obj, kind, f"{param}.{kind}", (dict,), "an object")
    _get(spec, "name", f"{param}.{kind}.name", (str,), "a string")
    return kind, spec


_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLE_PARTS = {"user": ("text", "image_url", "input_audio", "file"), "assistant": ("text", "refusal")}
_PARTS = {"text": (str, ()), "refusal": (str, ()), "image_url": (dict, ("url",)),
          "input_audio": (dict, ("data", "format")), "file": (dict, ())}


def _check_messages(param, messages, body):
    _check_type(param, messages, (list,), "an array")
    if not messages:
        raise _bad(param, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                   "but got an empty array instead.", "empty_array")
    for i, message in enumerate(messages):
        _check_message(f"messages[{i}]", message)


def _check_message(p, m):
    _check_type(p, m, (dict,), "an object")
    role = _get(m, "role", f"{p}.role", (str,), "a string")
    if role not in _ROLES:
        raise _invalid_value(f"{p}.role", role, _ROLES)
    calls = _get(m, "tool_calls", f"{p}.tool_calls", (list,), "an array", required=False)
    optional = role == "function" or (role == "assistant" and bool(calls or m.get("function_call")))
    parts = _get(m, "content", f"{p}.content", (str, list), "one of a string or array", required=not optional)
    if isinstance(parts, list):
        allowed = _ROLE_PARTS.get(role, ("text",))
        for j, part in enumerate(parts):
            q = f"{p}.content[{j}]"
            _check_type(q, part, (dict,), "an object")
            kind = _get(part, "type", f"{q}.type", (str,), "a string")
            if kind not in allowed:
                raise _invalid_value(f"{q}.type", kind, allowed)
            types, required = _PARTS[kind]
            value = _get(part, kind, f"{q}.{kind}", (types,), _TYPE_NAMES[types])
            for key in required:
                _get(value, key, f"{q}.{kind}.{key}", (str,), "a string")
    if role == "tool":
        _get(m, "tool_call_id", f"{p}.tool_call_id", (str,), "a string")
    if role == "function":
        _get(m, "name", f"{p}.name", (str,), "a string")
    for j, call in enumerate(calls or ()):
        kind, spec = _typed(f"{p}.tool_calls[{j}]", call, ("function", "custom"))
        _get(call, "id", f"{p}.tool_calls[{j}].id", (str,), "a string")
        field = "arguments" if kind == "function" else "input"
        _get(spec, field, f"{p}.tool_calls[{j}].{kind}.{field}", (str,), "a string")


def _check_tools(param, tools, body):
    _check_type(param, tools, (list,), "an array")
    for i, tool in enumerate(tools):
        kind, spec = _typed(f"tools[{i}]", tool, ("function", "custom"))
        if kind == "function":
            _get(spec, "parameters", f"tools[{i}].function.parameters", (dict,), "an object", required=False)


def _check_tool_choice(param, choice, body):
    if not body.get("tools"):
        raise _bad(param, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid_value(param, choice, ("none", "auto", "required"))
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        _get(choice, "allowed_tools", f"{param}.allowed_tools", (dict,), "an object")
    else:
        _typed(param, choice, ("function", "custom"))


def _check_stop(param, stop, body):
    if isinstance(stop, str):
        return
    _check_type(param, stop, (list,), "one of a string or array")
    if len(stop) > 4:
        raise _bad(param, f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
                   f"array with length {len(stop)} instead.", "array_above_max_length")
    for i, item in enumerate(stop):
        _check_type(f"stop[{i}]", item, (str,), "a string")


def _check_response_format(param, fmt, body):
    _check_type(param, fmt, (dict,), "an object")
    kind = _get(fmt, "type", f"{param}.type", (str,), "a string")
    if kind not in ("text", "json_object", "json_schema"):
        raise _invalid_value(f"{param}.type", kind, ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        schema = _get(fmt, "json_schema", f"{param}.json_schema", (dict,), "an object")
        _get(schema, "name", f"{param}.json_schema.name", (str,), "a string")


def _check_stream_options(param, opts, body):
    _check_type(param, opts, (dict,), "an object")
    if body.get("stream") is not True:
        raise _bad(param, "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    _get(opts, "include_usage", f"{param}.include_usage", (bool,), "a boolean", required=False)


_positive_int = _number(1, None, integer=True)


def _check_max_tokens(param, value, body):
    _positive_int(param, value, body)
    model = body.get("model")
    if isinstance(model, str) and model.startswith(REASONING_PREFIXES):
        raise ApiError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                       "Use 'max_completion_tokens' instead.", param=param, code="unsupported_parameter")


_OBJECT, _ARRAY = _of((dict,), "an object"), _of((list,), "an array")
_BOOL, _STR = _of((bool,), "a boolean"), _of((str,), "a string")
_CHECKS = {
    "model": _STR, "messages": _check_messages, "audio": _OBJECT,
    "frequency_penalty": _number(-2, 2), "function_call": _of((str, dict), "one of a string or object"),
    "functions": _ARRAY, "logit_bias": _OBJECT, "logprobs": _BOOL, "max_completion_tokens": _positive_int,
    "max_tokens": _check_max_tokens, "metadata": _OBJECT, "modalities": _ARRAY, "moderation": _OBJECT,
    "n": _number(1, 128, integer=True), "parallel_tool_calls": _BOOL, "prediction": _OBJECT,
    "presence_penalty": _number(-2, 2), "prompt_cache_key": _STR, "prompt_cache_options": _OBJECT,
    "prompt_cache_retention": _enum("in_memory", "24h"),
    "reasoning_effort": _enum("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    "response_format": _check_response_format, "safety_identifier": _STR, "seed": _number(None, None, integer=True),
    "service_tier": _enum("auto", "default", "flex", "scale", "priority", "fast"), "stop": _check_stop,
    "store": _BOOL, "stream": _BOOL, "stream_options": _check_stream_options, "temperature": _number(0, 2),
    "tool_choice": _check_tool_choice, "tools": _check_tools, "top_logprobs": _number(0, 20, integer=True),
    "top_p": _number(0, 1), "user": _STR, "verbosity": _enum("low", "medium", "high"),
    "web_search_options": _OBJECT,
}


def _check_body(body, checks, required):
    if not isinstance(body, dict):
        raise _bad(None, "Invalid type for request body: expected an object.", "invalid_type")
    for key, value in body.items():
        check = checks.get(key)
        if check is None:
            raise _bad(key, f"Unrecognized request argument supplied: {key}", None)
        if value is not None:  # the schema's optional fields are nullable
            check(key, value, body)
    for key in required:
        if body.get(key) is None:
            raise _missing(key)


# --- chat completions -----------------------------------------------------------------------------

def _text(parts) -> str:
    if isinstance(parts, str):
        return parts
    return " ".join(p.get("text") or p.get("refusal") or "" for p in parts or ())


def prompt_tokens(messages, tools) -> int:
    total = 0
    for m in messages:
        parts = m.get("content")
        total += MESSAGE_OVERHEAD + count_tokens(_text(parts))
        if isinstance(parts, list):
            total += sum(IMAGE_TOKENS if p["type"] == "image_url" else MEDIA_TOKENS
                         for p in parts if p["type"] not in ("text", "refusal"))
        for call in m.get("tool_calls") or ():
            spec = call[call["type"]]
            total += count_tokens(spec["name"]) + count_tokens(spec.get("arguments") or spec.get("input") or "")
    if tools:  # tool definitions are part of the prompt, as upstream
        total += count_tokens(orjson.dumps(tools).decode())
    return total


def _tool_to_call(body, options):
    """The function tool the simulated model calls, or None to answer with text."""
    choice = body.get("tool_choice") or "auto"
    functions = [t["function"] for t in body.get("tools") or () if t["type"] == "function"]
    named = choice["function"]["name"] if isinstance(choice, dict) and choice["type"] == "function" else None
    return pick_tool(functions, named, off=choice == "none" or body["messages"][-1]["role"] == "tool",
                     prefer=options.tool)


_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "filter": "content_filter",
           "tool": "tool_calls"}


def _answer(body, options) -> str:
    messages = body["messages"]
    last = messages[-1]
    source = last if last["role"] == "tool" else next((m for m in reversed(messages) if m["role"] == "user"), {})
    text = content.reply_text(_text(source.get("content")), options.tokens)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        text = orjson.dumps(content.sample(fmt["json_schema"].get("schema") or {"type": "object"})).decode()
    elif fmt.get("type") == "json_object":
        text = orjson.dumps({"reply": text}).decode()
    else:
        return text
    if options.broken_json:   # what weaker models write: a fence, a trailing comma, no closing brace
        text = "```json\n" + text[:-1] + ",\n```" if text.endswith("}") else "```json\n" + text
    return text


def _sse(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chat_completions(req) -> Reply:
    body = req.json
    _check_body(body, _CHECKS, ("model", "messages"))
    options = req.options
    n = body.get("n") or 1
    prompt = prompt_tokens(body["messages"], body.get("tools"))
    tool = _tool_to_call(body, options)
    if tool is not None:
        out = call_tool(tool, "parameters")
        call = {"id": "call_" + secrets.token_hex(12), "type": "function",
                "function": {"name": out.tool, "arguments": "".join(out.pieces)}}
        completion = count_tokens(out.tool) + len(out.pieces)
    else:
        stop = body.get("stop") or ()
        out = say(_answer(body, options), options, body.get("max_completion_tokens") or body.get("max_tokens"),
                  [stop] if isinstance(stop, str) else stop)
        call, completion = None, len(out.pieces)
    parts, finish = out.pieces, _FINISH[out.finish]
    completion += options.reasoning
    usage = {
        "prompt_tokens": prompt, "completion_tokens": completion * n, "total_tokens": prompt + completion * n,
        "prompt_tokens_details": {"cached_tokens": min(options.cached, prompt), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": options.reasoning * n, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }
    head = {"id": "chatcmpl-" + secrets.token_hex(14), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "service_tier": "default", "system_fingerprint": FINGERPRINT}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(events=_chunks(head, parts, call, finish, n, usage if include_usage else None),
                     content_type=b"text/event-stream")
    message = {"role": "assistant", "content": None if call else "".join(parts), "refusal": None, "annotations": []}
    if call:
        message["tool_calls"] = [call]
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
    return Reply(orjson.dumps({**head, "choices": choices, "usage": usage}))


def _chunks(head, parts, call, finish, n, usage) -> list[bytes]:
    """The SSE frames of a streamed completion; with usage, every chunk has "usage": null plus a final usage chunk."""
    base = {**head, "object": "chat.completion.chunk"}
    if usage is not None:
        base["usage"] = None

    def chunk(index, delta, finish_reason=None):
        return _sse({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}]})

    frames = []
    for i in range(n):
        frames.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
        if call:
            fn = call["function"]
            frames.append(chunk(i, {"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                    "function": {"name": fn["name"], "arguments": ""}}]}))
            frames += [chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts]
        else:
            frames += [chunk(i, {"content": p}) for p in parts]
        frames.append(chunk(i, {}, finish))  # as upstream: the finish_reason comes on an empty delta
    if usage is not None:
        frames.append(_sse({**base, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


# --- embeddings and models ------------------------------------------------------------------------

_EMBEDDING_CHECKS = {"model": _STR, "input": _of((str, list), "one of a string or array"),
                     "dimensions": _positive_int, "encoding_format": _enum("float", "base64"), "user": _STR}


def _bad_input():
    return _bad("input", "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.")


def embeddings(req) -> Reply:
    body = req.json
    _check_body(body, _EMBEDDING_CHECKS, ("model", "input"))
    raw = body["input"]
    items = [raw] if isinstance(raw, str) or (raw and all(type(t) is int for t in raw)) else raw
    if not items:
        raise _bad_input()
    dim, fmt = body.get("dimensions") or EMBEDDING_DIM, body.get("encoding_format") or "float"
    data, total = [], 0
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            text, used = item, count_tokens(item)
        elif isinstance(item, list) and item and all(type(t) is int for t in item):  # token ids
            text, used = " ".join(map(str, item)), len(item)
        else:
            raise _bad_input()
        vector = content.embedding(text, dim)
        if fmt == "base64":
            vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
        total += used
    return Reply(orjson.dumps({"object": "list", "data": data, "model": body["model"],
                               "usage": {"prompt_tokens": total, "total_tokens": total}}))


def _model(model_id):
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": MODELS.get(model_id, "system")}


_MODEL_LIST = orjson.dumps({"object": "list", "data": [_model(m) for m in MODELS]})


def list_models(req) -> Reply:
    return Reply(_MODEL_LIST)


def get_model(req) -> Reply:
    return Reply(orjson.dumps(_model(req.path.removeprefix("/v1/models/"))))  # any model exists


# --- provider glue --------------------------------------------------------------------------------

def api_key(req) -> str:
    scheme, _, key = req.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", code="invalid_api_key")
    if key == INVALID_KEY:
        raise ApiError(401, f"Incorrect API key provided: {key[:3]}*****{key[-4:]}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    return key


def error(e: ApiError, req=None) -> Reply:
    kind = e.type or ("invalid_request_error" if e.status < 500 else "server_error")
    body = {"error": {"message": e.message, "type": kind, "param": e.param, "code": e.code}}
    return Reply(orjson.dumps(body), status=e.status, headers=e.headers)


_STATUS_ERRORS = {  # status -> (type, code, message), as upstream sends them
    400: (None, None, "Simulated bad request."),
    401: (None, "invalid_api_key", "Incorrect API key provided. You can find your API key at "
                                   "https://platform.openai.com/account/api-keys."),
    402: ("insufficient_quota", "insufficient_balance", "Insufficient Balance"),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} in organization org-sim on requests "
                                             "per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s."),
    500: (None, None, "The server had an error while processing your request. Sorry about that!"),
    502: (None, None, "Bad gateway."),
    503: (None, None, "The server is overloaded or not ready yet."),
}


def fault_error(fault, req) -> ApiError:
    model = (req.json.get("model") if isinstance(req.json, dict) else None) or "unknown"
    kind, status = fault.kind, fault.arg
    if kind == "model_not_found" or (kind == "status" and status == 404):
        return ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")
    if kind == "context_length":
        return ApiError(400, "This model's maximum context length is 128000 tokens. However, your messages "
                        "resulted in 131072 tokens. Please reduce the length of the messages.",
                        param="messages", code="context_length_exceeded")
    if kind == "quota":
        return ApiError(429, "You exceeded your current quota, please check your plan and billing details. For more "
                        "information on this error, read the docs: "
                        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                        type="insufficient_quota", code="insufficient_quota")
    if kind != "status":  # stream_error on a plain request
        status = 500
    kind, code, message = _STATUS_ERRORS.get(status, (None, None, f"Simulated HTTP {status} error."))
    headers = [(b"retry-after", b"1")] if status == 429 else ()
    return ApiError(status, message.format(model=model), type=kind, code=code, headers=headers)


def stream_error() -> bytes:
    return _sse({"error": {"message": "The server had an error while processing your request. Sorry about that!",
                           "type": "server_error", "param": None, "code": None}})


PROVIDER = Provider(
    name="openai",
    routes={
        ("POST", "/v1/chat/completions"): chat_completions,
        ("POST", "/v1/embeddings"): embeddings,
        ("GET", "/v1/models"): list_models,
    },
    prefix_routes=(("GET", "/v1/models/", get_model),),
    api_key=api_key,
    error=error,
    fault_error=fault_error,
    stream_error=stream_error,
    json_error="We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
               "HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)",
)
