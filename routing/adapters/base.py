"""The one interface every provider adapter implements (one module per provider, one registry line).

The canonical request and response are OpenAI Chat Completions shapes (the lingua franca); streams are
translated into the small event union below, so SSE parsing lives once per upstream format and rendering
once per inbound format (routing/relay/formats/).

A provider is one module with an `Adapter` subclass and one line in routing/adapters/registry.py. The subclass
implements the abstract methods, declares what it can do beyond chat (`Capabilities`), and lists its own
error codes: `classify` turns an upstream error into what the relay does next (next channel, next model, or
return it to the client), the one table both the relay and the circuit breaker read."""
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0          # everything the model read, cached included (OpenAI's meaning)
    completion_tokens: int = 0      # reasoning included
    cached_tokens: int = 0          # cache reads (part of prompt_tokens)
    reasoning_tokens: int = 0       # part of completion_tokens
    cache_write_tokens: int = 0     # 5-minute cache writes (part of prompt_tokens): Anthropic ephemeral_5m
    cache_write_1h_tokens: int = 0  # 1-hour cache writes (part of prompt_tokens): Anthropic ephemeral_1h


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict
    body: bytes


# --- canonical stream events ----------------------------------------------------------------------------
@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str = ""
    signature: str | None = None    # Anthropic thinking signature / Gemini thoughtSignature, when sent


@dataclass(slots=True)
class ToolCallDelta:
    index: int                      # OpenAI tool-call index: counts tool calls from 0
    id: str | None = None           # set on the first delta of a call
    name: str | None = None         # set on the first delta of a call
    arguments: str = ""             # a fragment of the JSON arguments string
    signature: str | None = None    # Gemini thoughtSignature carried on the functionCall part


@dataclass(slots=True)
class UsageEvent:
    usage: Usage


@dataclass(slots=True)
class Finish:
    reason: str                     # OpenAI finish_reason: stop | length | tool_calls | content_filter


@dataclass(slots=True)
class StreamError:
    message: str
    type: str = "upstream_error"


Event = TextDelta | ReasoningDelta | ToolCallDelta | UsageEvent | Finish | StreamError


@dataclass(slots=True)
class NativeChunk:
    """One piece of a natively relayed stream (the client speaks the provider's own format): the bytes to send
    (whole SSE events, ids and model rewritten to the gateway's), the usage or finish reason it carried, and
    `done` on the provider's terminal frame."""
    data: bytes
    usage: Usage | None = None
    finish: str | None = None       # OpenAI finish_reason words: stop | length | tool_calls | content_filter
    done: bool = False


class UpstreamFormatError(ValueError):
    """The upstream answered something that is not its own wire format (bad JSON, missing fields)."""


# --- upstream errors -----------------------------------------------------------------------------------------
NEXT_CHANNEL, NEXT_MODEL, FATAL = "channel", "model", "fatal"   # Adapter.classify: what the relay does next
# Statuses that say the channel's own account is unusable (credentials, billing, permissions).
ACCOUNT_STATUSES = frozenset({401, 402, 403})


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """An upstream's error answer, parsed once: what it said and what the relay does about it."""
    status: int
    message: str
    code: str | None
    param: str | None
    outcome: str            # NEXT_CHANNEL | NEXT_MODEL | FATAL


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do beyond chat completions (the relay asks these, never the adapter's kind)."""
    embeddings: bool = False      # embeddings_request / embeddings_from_upstream (POST /v1/embeddings)
    passthrough: bool = False     # speaks OpenAI Chat Completions itself: `passthrough` forwards its SSE lines
                                  # byte for byte and its answers' usage is kept as sent
    cache_control: bool = False   # reports prompt-cache writes (Usage.cache_write_tokens)


class Adapter(ABC):
    kind: ClassVar[str] = ""
    label: ClassVar = ""          # the channel kind's name in the console (lazily translated)
    capabilities: ClassVar[Capabilities] = Capabilities()
    # The provider's error codes (as error_detail returns them): the channel's account is unusable (the
    # breaker opens at once) / the channel is unusable for now / this model cannot serve the request.
    account_codes: ClassVar[frozenset[str]] = frozenset()
    channel_codes: ClassVar[frozenset[str]] = frozenset()
    model_codes: ClassVar[frozenset[str]] = frozenset({"context_length_exceeded"})
    # Inbound formats (routing/relay/formats: "anthropic", "responses", "gemini") this provider speaks itself:
    # such a call is forwarded as the client sent it (fields the gateway does not know included), not translated.
    native_formats: ClassVar[frozenset[str]] = frozenset()

    def outcome(self, status: int, code: str | None) -> str:
        """429, 5xx, 401/402/403 and the channel's own credential, balance or overload codes: the next channel;
        404 and "this model cannot" codes (context length, moderation, unknown model): the next model; any
        other 4xx is the client's own mistake (every channel would repeat it)."""
        if status == 429 or status >= 500 or status in ACCOUNT_STATUSES or code in self.account_codes \
                or code in self.channel_codes:
            return NEXT_CHANNEL
        if status == 404 or code in self.model_codes:
            return NEXT_MODEL
        return FATAL

    def error(self, status: int, body: bytes) -> UpstreamError:
        """The upstream's error answer, parsed once, with its classification."""
        message, code, param = self.error_detail(status, body)
        return UpstreamError(status, message, code, param, self.outcome(status, code))

    def classify(self, status: int, body: bytes) -> str:
        """NEXT_CHANNEL | NEXT_MODEL | FATAL for an upstream error answer (as LiteLLM's get_error_class)."""
        return self.error(status, body).outcome

    @abstractmethod
    def to_upstream(self, request: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        """Canonical (OpenAI-shaped) request → the provider's HTTP request."""
        raise NotImplementedError

    @abstractmethod
    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        """A whole (non-streaming) provider answer → OpenAI-shaped response dict and its usage.
        Raises UpstreamFormatError when the body is not a valid answer."""
        raise NotImplementedError

    @abstractmethod
    def stream_events(self, lines: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        """The provider's SSE lines (stripped of line endings) → canonical events. Raises
        UpstreamFormatError on garbage; a stream that ends without its terminal frame raises too."""
        raise NotImplementedError

    @abstractmethod
    def error_detail(self, status: int, body: bytes) -> tuple[str, str | None, str | None]:
        """The provider's error body → (message, code, param), for errors passed on to the client."""
        raise NotImplementedError

    # --- optional capabilities (declared in `capabilities`) ---------------------------------------------
    def embeddings_request(self, request: dict, *, upstream_model: str, base_url: str,
                           api_key: str) -> UpstreamRequest:
        """capabilities.embeddings: an OpenAI embeddings request → the provider's HTTP request."""
        raise NotImplementedError(f"{self.kind} channels have no embeddings API")

    def embeddings_from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        """capabilities.embeddings: the provider's embeddings answer → OpenAI-shaped dict and its usage."""
        raise NotImplementedError(f"{self.kind} channels have no embeddings API")

    def passthrough(self, line: bytes) -> tuple[bytes | None, Usage | None]:
        """capabilities.passthrough: one SSE line → (the line to forward or None, its usage if it has one)."""
        raise NotImplementedError(f"{self.kind} streams are translated, not passed through")

    # --- native relay (declared in `native_formats`) -------------------------------------------------------
    def speaks_natively(self, fmt: str, channel) -> bool:
        """Whether this channel takes the inbound format `fmt` as it is (an adapter may decide per channel)."""
        return fmt in self.native_formats

    def native_request(self, fmt: str, payload: dict, *, upstream_model: str, base_url: str, api_key: str,
                       stream: bool, headers) -> UpstreamRequest:
        """The client's own request (format `fmt`) → the provider's HTTP request, changed only where it must
        be (the model's upstream name, credentials); `headers.get(name)` reads the inbound request's headers."""
        raise NotImplementedError(f"{self.kind} channels do not speak {fmt} natively")

    def native_answer(self, fmt: str, body: bytes, *, response_id: str, model: str) -> tuple[bytes, Usage, str]:
        """A whole native answer → (the body to return, with our id and model; its usage; its finish reason).
        Raises UpstreamFormatError when the body is not a valid answer."""
        raise NotImplementedError(f"{self.kind} channels do not speak {fmt} natively")

    def native_stream(self, fmt: str, lines: AsyncIterator[bytes], *, response_id: str,
                      model: str) -> AsyncIterator[NativeChunk]:
        """The provider's SSE lines → the chunks to send as they are (ids rewritten), with usage and finish
        reason read on the way. Raises UpstreamFormatError on garbage or a stream without its terminal frame."""
        raise NotImplementedError(f"{self.kind} channels do not speak {fmt} natively")
