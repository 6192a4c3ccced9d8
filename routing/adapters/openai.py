"""OpenAI and OpenAI-compatible upstreams (OpenAI, DeepSeek, any compatible base URL).

On the OpenAI inbound route this is a byte passthrough (`passthrough`): the hot path does not parse chunks
it can forward. `stream_events` parses into canonical events for the other inbound formats."""
import orjson
from django.utils.translation import gettext_lazy as _

from routing.adapters.base import (
    Adapter,
    Capabilities,
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    UpstreamFormatError,
    UpstreamRequest,
    Usage,
    UsageEvent,
)

# Models that reject `max_tokens` and want `max_completion_tokens` (reasoning models).
_COMPLETION_TOKENS_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def usage_from(data: dict | None) -> Usage | None:
    if not data:
        return None
    details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    # DeepSeek reports cache hits as prompt_cache_hit_tokens.
    cached = details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0
    # OpenAI bills no cache writes; OpenRouter-style upstreams report them as cache_write_tokens.
    return Usage(data.get("prompt_tokens") or 0, data.get("completion_tokens") or 0, cached,
                 completion_details.get("reasoning_tokens") or 0, details.get("cache_write_tokens") or 0)


def _strip_foreign_fields(body: dict) -> None:
    """A request translated from another inbound format may carry fields OpenAI would reject."""
    body.pop("thinking", None)
    messages = []
    for message in body.get("messages") or ():
        if "thinking_signature" in message or "reasoning_content" in message:
            message = {k: v for k, v in message.items() if k not in ("thinking_signature", "reasoning_content")}
        if message.get("tool_calls"):  # a new dict: the caller's message keeps its signatures for a retry
            message = {**message, "tool_calls": [{k: v for k, v in c.items() if k != "thought_signature"}
                                                 for c in message["tool_calls"]]}
        messages.append(message)
    body["messages"] = messages


def _compact(line: bytes) -> bytes:
    """A `data:` line as `data: <compact JSON>` (left as it is when it is not JSON: [DONE], garbage)."""
    payload = line[5:].strip()
    try:
        return b"data: " + orjson.dumps(orjson.loads(payload))
    except orjson.JSONDecodeError:
        return line if payload != b"[DONE]" else b"data: [DONE]"


class OpenAIAdapter(Adapter):
    kind = "openai"
    label = _("OpenAI-compatible")
    capabilities = Capabilities(embeddings=True, passthrough=True)
    account_codes = frozenset({"invalid_api_key", "insufficient_quota"})
    model_codes = frozenset({"context_length_exceeded", "content_filter", "content_policy_violation",
                             "model_not_found"})

    def to_upstream(self, request, *, upstream_model, base_url, api_key, stream):
        body = dict(request, model=upstream_model)
        body.pop("models", None)  # the gateway's fallback list, not an upstream parameter
        if body.pop("_translated", False):
            _strip_foreign_fields(body)
        if "max_tokens" in body and upstream_model.startswith(_COMPLETION_TOKENS_PREFIXES):
            body.setdefault("max_completion_tokens", body.pop("max_tokens"))
            body.pop("max_tokens", None)
        if stream:
            # Always ask for usage so streams are billed from real counts; the relay strips the usage chunk
            # again when the client did not ask for it.
            body["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
        return UpstreamRequest(
            url=f"{base_url}/chat/completions",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            body=orjson.dumps(body),
        )

    def from_upstream(self, body):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamFormatError("the answer was not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamFormatError("the answer has no choices")
        return data, usage_from(data.get("usage")) or Usage()

    def embeddings_request(self, request, *, upstream_model, base_url, api_key) -> UpstreamRequest:
        body = dict(request, model=upstream_model)
        body.pop("models", None)
        return UpstreamRequest(url=f"{base_url}/embeddings",
                               headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
                               body=orjson.dumps(body))

    def embeddings_from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamFormatError("the answer was not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamFormatError("the answer has no data")
        return data, usage_from(data.get("usage")) or Usage()

    def passthrough(self, line: bytes) -> tuple[bytes | None, Usage | None]:
        """One SSE line → (the line to forward or None, usage if the line carries it). No parse unless usage.

        The relay matches bytes of compact JSON in what it forwards (ids, usage, finish reasons): a chunk
        that is not compact (pretty-printed, `": "` separators, several data lines) is re-encoded first, so
        only such upstreams pay a parse."""
        if not line.startswith(b"data:"):
            return None, None  # SSE comments and blank keep-alives
        if not line.startswith(b"data: {") or b', "' in line or b"\n" in line or (
                b'": ' in line and line.count(b'": ') != line.count(b'\\": ')):  # a string's \": is text
            line = _compact(line)
        if b'"usage":{' in line:
            data = orjson.loads(line[5:])
            return line, usage_from(data.get("usage"))
        return line, None

    async def stream_events(self, lines):
        done = False
        async for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise UpstreamFormatError(f"invalid JSON in stream ({exc})") from None
            if chunk.get("error"):
                yield StreamError(str(chunk["error"].get("message", "upstream error")))
                return
            usage = usage_from(chunk.get("usage"))
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    yield ReasoningDelta(reasoning)
                if delta.get("content"):
                    yield TextDelta(delta["content"])
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    yield ToolCallDelta(call.get("index", 0), call.get("id"), fn.get("name"),
                                        fn.get("arguments") or "")
                if choice.get("finish_reason"):
                    yield Finish(choice["finish_reason"])
            if usage:
                yield UsageEvent(usage)
        if not done:
            raise UpstreamFormatError("the stream ended before [DONE]")

    def error_detail(self, status, body):
        try:
            err = orjson.loads(body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            err = {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        code = err.get("code")
        return str(err.get("message") or f"HTTP {status}"), (str(code) if code else None), err.get("param")
