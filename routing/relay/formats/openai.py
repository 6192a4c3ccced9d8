"""The OpenAI inbound format: request validation, and rendering canonical events as OpenAI chunks (used when
the channel is not OpenAI-compatible; OpenAI channels are passed through byte for byte)."""
import time
from collections.abc import Callable
from typing import Any

import orjson

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.adapters.registry import adapter_for
from routing.relay import errors, plugins
from routing.relay.formats import checks

_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_TOKEN_COUNTS = (("max_tokens", 1), ("max_completion_tokens", 1), ("n", 1), ("top_logprobs", 0))
_OBJECTS = ("stream_options", "response_format", "metadata", "logit_bias", "prediction", "audio")
_STRINGS = ("user", "reasoning_effort", "service_tier")
_BOOLEANS = ("parallel_tool_calls", "logprobs", "store")


def _validate_message(field: str, message) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise errors.invalid_value(field, "each message needs a string `role`.")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        for j, part in enumerate(checks.objects(f"{field}.content", content)):
            checks.optional(part, "type", (str,), "a string", f"{field}.content[{j}].type")
            checks.optional(part, "text", (str,), "a string", f"{field}.content[{j}].text")
    for key in ("name", "tool_call_id", "reasoning_content"):
        if key in message:   # most messages have none of these
            checks.optional(message, key, (str,), "a string", f"{field}.{key}")
    calls = message.get("tool_calls")
    if calls is not None:
        for j, call in enumerate(checks.objects(f"{field}.tool_calls", calls)):
            fn = checks.optional(call, "function", (dict,), "an object", f"{field}.tool_calls[{j}].function")
            if fn is not None:
                checks.optional(fn, "name", (str,), "a string", f"{field}.tool_calls[{j}].function.name")
                checks.optional(fn, "arguments", (str,), "a string", f"{field}.tool_calls[{j}].function.arguments")


def validate_chat(payload: dict) -> dict:
    """Check every field the relay reads or forwards for its type (and token counts for their range): bad
    input is a 400 naming the field before anything is reserved, never a 500 further down."""
    messages = payload.get("messages")
    if messages is None:
        raise errors.missing_field("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_value("messages", "expected a non-empty array of message objects.")
    checks.depth(payload)
    for i, message in enumerate(messages):
        _validate_message(f"messages[{i}]", message)
    for key, check in _FIELD_CHECKS:   # in this order (the first bad field is the one named); most are absent
        if key in payload:
            check(payload)
    plugins.parse(payload)   # OpenRouter's plugins, debug, transforms, usage (the relay acts on them)
    return payload


def _models(payload: dict) -> None:
    models = payload["models"]
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise errors.invalid_value("models", "expected an array of model ids (an ordered fallback list).")


def _stream(payload: dict) -> None:
    if not isinstance(payload["stream"], bool):
        raise errors.invalid_value("stream", "expected true or false.")


def _stream_options(payload: dict) -> None:
    options = payload["stream_options"]
    if options is not None:
        checks.optional(options, "include_usage", (bool,), "a boolean", "stream_options.include_usage")


def _tools(payload: dict) -> None:
    tools = payload["tools"]
    if tools is None:
        return
    for i, tool in enumerate(checks.objects("tools", tools)):
        fn = checks.optional(tool, "function", (dict,), "an object", f"tools[{i}].function")
        if fn is not None:   # adapters translate these for other providers
            for key in ("name", "description"):
                checks.optional(fn, key, (str,), "a string", f"tools[{i}].function.{key}")
            checks.optional(fn, "parameters", (dict,), "an object (a JSON schema)", f"tools[{i}].function.parameters")


def _optional(key: str, types: tuple, expected: str) -> tuple[str, Callable[[dict], Any]]:
    return key, lambda payload: checks.optional(payload, key, types, expected)


def _integer(key: str, lo: int, hi: int) -> tuple[str, Callable[[dict], Any]]:
    return key, lambda payload: checks.integer(payload, key, lo, hi)


# validate_chat's checks of top-level fields, each run only when its field is there (a check of an absent field
# passes): a well-formed body skips ~25 calls.
_FIELD_CHECKS: tuple[tuple[str, Callable[[dict], Any]], ...] = (
    ("stream", _stream), ("models", _models),
    *((key, lambda payload, key=key: checks.number(payload, key)) for key in _NUMBERS),
    *(_integer(key, lo, checks.MAX_TOKENS) for key, lo in _TOKEN_COUNTS),
    _integer("seed", -checks.MAX_INT64 - 1, checks.MAX_INT64),
    *(_optional(key, (dict,), "an object") for key in _OBJECTS),
    *(_optional(key, (str,), "a string") for key in _STRINGS),
    *(_optional(key, (bool,), "a boolean") for key in _BOOLEANS),
    ("stream_options", _stream_options),
    ("stop", lambda payload: checks.strings(payload, "stop", single=True)),
    ("tools", _tools),
    _optional("tool_choice", (str, dict), "a string or an object"),
)


def validate_embeddings(payload: dict) -> dict:
    """/v1/embeddings: `input` is a string, an array of strings, or token ids (an array of integers, or of
    arrays of integers)."""
    checks.depth(payload)
    value = payload["input"]
    if not isinstance(value, str):
        checks.of_type("input", value, (list,), "a string or an array")
        for i, item in enumerate(value):
            if isinstance(item, list):
                for j, token in enumerate(item):
                    checks.of_type(f"input[{i}][{j}]", token, (int,), "an integer")
            else:
                checks.of_type(f"input[{i}]", item, (str, int), "a string or an integer")
    checks.integer(payload, "dimensions", 1, checks.MAX_TOKENS)
    for key in ("encoding_format", "user"):
        checks.optional(payload, key, (str,), "a string")
    return payload


def usage_dict(usage, cost: float | None = None) -> dict:
    """OpenAI's usage object, with OpenRouter's additions: cache writes among the prompt's details and
    `cost`, what the call was charged in the deployment currency (when the model has a price)."""
    out = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
           "total_tokens": usage.prompt_tokens + usage.completion_tokens,
           "prompt_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens + usage.cache_write_1h_tokens},
           "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}
    if cost is not None:
        out["cost"] = cost
    return out


class ChunkRenderer:
    """Canonical events → OpenAI `chat.completion.chunk` SSE lines."""

    def __init__(self, *, chunk_id: str, model: str, include_usage: bool,
                 cost: Callable[[Usage], float | None] | None = None):
        self.base = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self.include_usage = include_usage
        self.cost = cost   # usage → its cost (RelayCall.cost_now), for the usage chunk
        self.started = False
        self.usage: Usage | None = None

    def _chunk(self, delta: dict, finish_reason=None) -> bytes:
        body = dict(self.base, choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason}])
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def render(self, event) -> list[bytes]:
        out = []
        if not self.started and not isinstance(event, UsageEvent):
            self.started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(event, TextDelta):
            out.append(self._chunk({"content": event.text}))
        elif isinstance(event, ReasoningDelta):
            if event.text:
                out.append(self._chunk({"reasoning_content": event.text}))
        elif isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
            if event.id:
                call.update(id=event.id, type="function")
                call["function"]["name"] = event.name
            if event.signature:  # Gemini 3 wants it back on the next turn
                call["thought_signature"] = event.signature
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, Finish):
            out.append(self._chunk({}, event.reason))
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamError):
            raise errors.upstream_unavailable(f"the stream broke: {event.message}")
        return out

    def finish(self) -> list[bytes]:
        out = []
        if self.include_usage and self.usage is not None:
            usage = usage_dict(self.usage, self.cost(self.usage) if self.cost else None)
            out.append(b"data: " + orjson.dumps(dict(self.base, choices=[], usage=usage)) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        chunk = dict(self.base, choices=[{"index": 0, "delta": {}, "finish_reason": "error"}],
                     error={"message": err.message, "type": err.type, "code": err.code, "request_id": request_id})
        return [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: [DONE]\n\n"]


# --- the format's registry interface (routing/relay/formats/__init__.py) -------------------------------------
ID_PREFIX = "chatcmpl-"
error_response = errors.openai_response
to_canonical = validate_chat


def with_native_cost(data: bytes, cost: float | None) -> bytes:
    """OpenAI chat is never relayed natively (an OpenAI channel's stream is passed through, with its cost added
    by views._passthrough_stream)."""
    return data


def translation_notes(payload: dict) -> list[str]:
    """An OpenAI request loses nothing the canonical request cannot carry (it is the canonical shape)."""
    return []


def complete(call, data: dict, usage) -> dict:
    """An OpenAI-shaped answer keeps what its upstream sent (usage included, when the upstream speaks OpenAI);
    ids and model become ours."""
    data["id"] = ID_PREFIX + call.hex_id
    data["model"] = call.model.public_id
    if not adapter_for(call.channel.kind).capabilities.passthrough:
        data["usage"] = usage_dict(usage, call.cost_now(usage))
    elif isinstance(data.get("usage"), dict):
        data["usage"]["cost"] = call.cost_now(usage)
    return data


def renderer(call, payload: dict) -> ChunkRenderer:
    return ChunkRenderer(chunk_id=ID_PREFIX + call.hex_id, model=call.model.public_id,
                         include_usage=bool((payload.get("stream_options") or {}).get("include_usage")),
                         cost=call.cost_now)
