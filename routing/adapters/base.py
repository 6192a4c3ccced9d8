"""The one interface every provider adapter implements (one module per provider, one registry line).

The canonical request and response are OpenAI Chat Completions shapes (the lingua franca); streams are
translated into the small event union below, so SSE parsing lives once per upstream format and rendering
once per inbound format (routing/relay/formats/)."""
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0          # everything the model read, cached included (OpenAI's meaning)
    completion_tokens: int = 0      # reasoning included
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0     # Anthropic cache_creation_input_tokens


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


class UpstreamFormatError(ValueError):
    """The upstream answered something that is not its own wire format (bad JSON, missing fields)."""


class Adapter:
    kind = ""

    def to_upstream(self, request: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        """Canonical (OpenAI-shaped) request → the provider's HTTP request."""
        raise NotImplementedError

    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        """A whole (non-streaming) provider answer → OpenAI-shaped response dict and its usage.
        Raises UpstreamFormatError when the body is not a valid answer."""
        raise NotImplementedError

    def stream_events(self, lines: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        """The provider's SSE lines (stripped of line endings) → canonical events. Raises
        UpstreamFormatError on garbage; a stream that ends without its terminal frame raises too."""
        raise NotImplementedError

    def error_detail(self, status: int, body: bytes) -> tuple[str, str | None, str | None]:
        """The provider's error body → (message, code, param), for errors passed on to the client."""
        raise NotImplementedError
