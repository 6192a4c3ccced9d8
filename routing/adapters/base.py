"""The one interface every provider adapter implements (one module per provider, one registry line)."""
from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict
    body: bytes


class Adapter:
    kind = ""

    def to_upstream(self, payload: dict, *, upstream_model: str, base_url: str, api_key: str,
                    stream: bool) -> UpstreamRequest:
        raise NotImplementedError

    def from_upstream(self, body: bytes) -> tuple[dict, Usage]:
        """A whole (non-streaming) upstream answer → OpenAI-shaped response dict and its usage."""
        raise NotImplementedError

    def stream_events(self, line: bytes) -> tuple[bytes | None, Usage | None]:
        """One upstream SSE line → (the OpenAI chunk line to forward or None, usage if the line carries it)."""
        raise NotImplementedError
