"""The OpenAI inbound format: request validation, and rendering canonical events as OpenAI chunks (used when
the channel is not OpenAI-compatible; OpenAI channels are passed through byte for byte)."""
import time

import orjson

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, UsageEvent
from routing.relay import errors


def validate_chat(payload: dict) -> dict:
    messages = payload.get("messages")
    if messages is None:
        raise errors.missing_field("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_value("messages", "expected a non-empty array of message objects.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.invalid_value(f"messages[{i}]", "each message needs a string `role`.")
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise errors.invalid_value("stream", "expected true or false.")
    models = payload.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise errors.invalid_value("models", "expected an array of model ids (an ordered fallback list).")
    return payload


def usage_dict(usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


class ChunkRenderer:
    """Canonical events → OpenAI `chat.completion.chunk` SSE lines."""

    def __init__(self, *, chunk_id: str, model: str, include_usage: bool):
        self.base = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self.include_usage = include_usage
        self.started = False
        self.usage = None

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
            call = {"index": event.index, "function": {"arguments": event.arguments}}
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
            out.append(b"data: " + orjson.dumps(dict(self.base, choices=[], usage=usage_dict(self.usage))) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        chunk = dict(self.base, choices=[{"index": 0, "delta": {}, "finish_reason": "error"}],
                     error={"message": err.message, "type": err.type, "code": err.code, "request_id": request_id})
        return [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: [DONE]\n\n"]
