"""OpenAI and OpenAI-compatible upstreams (OpenAI, DeepSeek, any compatible base URL).

On the OpenAI inbound route this is a byte passthrough (`passthrough`): the hot path does not parse chunks
it can forward. `stream_events` parses into canonical events for the other inbound formats."""
from collections.abc import AsyncIterator
from contextvars import ContextVar

import orjson
from django.utils.translation import gettext_lazy as _

from routing.adapters.base import (
    Adapter,
    Capabilities,
    Event,
    Finish,
    NativeChunk,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
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


def _strip_foreign_fields(body: dict, upstream_model: str, base_url: str) -> None:
    """A request translated from another inbound format may carry fields OpenAI would reject: Anthropic's
    thinking and its signatures, a reasoning_effort for a model that does not reason (gpt-4o refuses it), and
    cache_control on content parts (OpenRouter takes those; OpenAI itself does not)."""
    body.pop("thinking", None)
    if not upstream_model.startswith(_COMPLETION_TOKENS_PREFIXES):
        body.pop("reasoning_effort", None)
    keep_cache_control = "openrouter" in base_url
    messages = []
    for message in body.get("messages") or ():
        if "thinking_signature" in message or "reasoning_content" in message:
            message = {k: v for k, v in message.items() if k not in ("thinking_signature", "reasoning_content")}
        if not keep_cache_control and isinstance(message.get("content"), list):
            message = {**message, "content": [{k: v for k, v in part.items() if k != "cache_control"}
                                              if isinstance(part, dict) else part for part in message["content"]]}
        if message.get("tool_calls"):  # a new dict: the caller's message keeps its signatures for a retry
            message = {**message, "tool_calls": [{k: v for k, v in c.items() if k != "thought_signature"}
                                                 for c in message["tool_calls"]]}
        messages.append(message)
    body["messages"] = messages


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value) -> int:
    return value if type(value) is int and value >= 0 else 0


def responses_usage(data: dict | None) -> Usage | None:
    """A Responses API `usage` (input/output tokens and their details) as our Usage."""
    if not isinstance(data, dict):
        return None
    inputs, outputs = _obj(data.get("input_tokens_details")), _obj(data.get("output_tokens_details"))
    return Usage(_count(data.get("input_tokens")), _count(data.get("output_tokens")),
                 _count(inputs.get("cached_tokens")), _count(outputs.get("reasoning_tokens")),
                 _count(inputs.get("cache_write_tokens")))


def responses_finish(response: dict) -> str:
    """A Response object's end in OpenAI chat words (stop | length | tool_calls | content_filter)."""
    reason = _obj(response.get("incomplete_details")).get("reason")
    if reason == "max_output_tokens":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    if any(isinstance(i, dict) and i.get("type") == "function_call" for i in response.get("output") or ()):
        return "tool_calls"
    return "stop"


# Base URLs of OpenAI-compatible upstreams without a Responses API (answered 404 on /responses): their Responses
# calls are translated through chat completions. Remembered per process, keyed by base URL (a base URL that has
# no /responses has none for any key).
_NO_RESPONSES: set[str] = set()
_TERMINAL_EVENTS = (b"response.completed", b"response.incomplete")
# The base URL of this request's native Responses attempt, and whether an upstream refused the format (a 404
# that is not an unknown model): a context variable, so concurrent requests do not see each other's.
_native_base: ContextVar[str | None] = ContextVar("native_responses_base", default=None)
_refused: ContextVar[bool] = ContextVar("native_responses_refused", default=False)


def refused_natively() -> bool:
    """Whether a channel refused this request's Responses call as a format it does not speak (the relay then
    serves the call again, translated: that channel is remembered as not speaking it)."""
    return _refused.get()


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
    native_formats = frozenset({"responses"})
    account_codes = frozenset({"invalid_api_key", "insufficient_quota"})
    model_codes = frozenset({"context_length_exceeded", "content_filter", "content_policy_violation",
                             "model_not_found"})

    def to_upstream(self, request: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        _native_base.set(None)
        body = dict(request, model=upstream_model)
        body.pop("models", None)  # the gateway's fallback list, not an upstream parameter
        body.pop("route", None)   # OpenRouter's legacy `route: "fallback"` (of the same list)
        if body.pop("_translated", False):
            _strip_foreign_fields(body, upstream_model, base_url)
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

    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamFormatError("the answer was not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamFormatError("the answer has no choices")
        return data, usage_from(data.get("usage")) or Usage()

    def embeddings_request(self, request: dict, *, upstream_model: str, base_url: str,
                           api_key: str) -> UpstreamRequest:
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

    async def stream_events(self, lines: AsyncIterator[bytes]) -> AsyncIterator[Event]:
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
            if not isinstance(chunk, dict):
                raise UpstreamFormatError("a stream chunk is not a JSON object")
            if chunk.get("error"):
                err = chunk["error"]
                yield StreamError(str(err.get("message", "upstream error") if isinstance(err, dict) else err))
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

    def error_detail(self, status: int, body: bytes) -> tuple[str, str | None, str | None]:
        try:
            err = orjson.loads(body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            err = {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        code = err.get("code")
        return str(err.get("message") or f"HTTP {status}"), (str(code) if code else None), err.get("param")

    # --- the Responses API, natively --------------------------------------------------------------------------
    def speaks_natively(self, fmt: str, channel) -> bool:
        return fmt in self.native_formats and channel.base_url not in _NO_RESPONSES

    def error(self, status: int, body: bytes) -> UpstreamError:
        """A 404 (or 405) to a native Responses call that is not about the model: the base URL has no
        /responses (many OpenAI-compatible servers). Remembered, so its Responses calls are translated from now
        on (the relay serves this one again, translated)."""
        error = super().error(status, body)
        base = _native_base.get()
        if base is not None and status in (404, 405) and error.code != "model_not_found":
            _NO_RESPONSES.add(base)
            _refused.set(True)
        return error

    def native_request(self, fmt: str, payload: dict, *, upstream_model: str, base_url: str, api_key: str,
                       stream: bool, headers) -> UpstreamRequest:
        """The client's Responses request as it sent it, with the upstream's model name. The gateway resolved
        `previous_response_id` into the input already, and its fallback list `models` is not the upstream's."""
        _native_base.set(base_url)
        body = {k: v for k, v in payload.items() if k not in ("models", "route", "previous_response_id")}
        body["model"] = upstream_model
        body["stream"] = stream
        if isinstance(body.get("input"), list):  # reasoning items another provider signed mean nothing here
            body["input"] = [i for i in body["input"] if not (isinstance(i, dict) and i.get("type") == "reasoning"
                                                              and str(i.get("encrypted_content") or "")
                                                              .startswith(("tgsig:", "tgcall:")))]
        out_headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        for name in ("OpenAI-Beta", "OpenAI-Organization", "OpenAI-Project"):
            if headers.get(name):
                out_headers[name] = headers.get(name)
        return UpstreamRequest(url=f"{base_url}/responses", headers=out_headers, body=orjson.dumps(body))

    def native_answer(self, fmt: str, body: bytes, *, response_id: str, model: str) -> tuple[bytes, Usage, str]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamFormatError("the answer was not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("output"), list):
            raise UpstreamFormatError("the answer is not a Response (no output)")
        data["id"], data["model"] = response_id, model
        return orjson.dumps(data), responses_usage(data.get("usage")) or Usage(), responses_finish(data)

    async def native_stream(self, fmt: str, lines: AsyncIterator[bytes], *, response_id: str,
                            model: str) -> AsyncIterator[NativeChunk]:
        """Responses SSE events as they came. Only the lifecycle events (those carrying the Response object) are
        parsed, to put our id and model in; the terminal one (completed or incomplete) carries the usage."""
        event = b""
        async for line in lines:
            if line.startswith(b"event:"):
                event = line
                continue
            if not line.startswith(b"data:"):
                continue
            data = line
            head = (event + b"\n") if event else b""
            event = b""
            if b'"response":{' not in data[:200] and b'"type":"response.failed"' not in data[:200] \
                    and b'"type":"error"' not in data[:100]:
                yield NativeChunk(head + data + b"\n\n")
                continue
            try:
                frame = orjson.loads(data[5:])
            except orjson.JSONDecodeError as exc:
                raise UpstreamFormatError(f"invalid JSON in stream ({exc})") from None
            if not isinstance(frame, dict):
                raise UpstreamFormatError("a stream event is not a JSON object")
            kind = str(frame.get("type") or "")
            if kind in ("response.failed", "error"):
                err = _obj(frame.get("error")) or _obj(_obj(frame.get("response")).get("error"))
                raise UpstreamFormatError(f"the upstream failed the response: {err.get('message') or kind}")
            response = frame.get("response")
            if isinstance(response, dict):
                response["id"], response["model"] = response_id, model
            out = head + b"data: " + orjson.dumps(frame) + b"\n\n"
            if kind.encode() in _TERMINAL_EVENTS and isinstance(response, dict):
                yield NativeChunk(out, usage=responses_usage(response.get("usage")),
                                  finish=responses_finish(response), done=True)
                return
            yield NativeChunk(out)
