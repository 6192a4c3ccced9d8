"""OpenAI and OpenAI-compatible upstreams (OpenAI, DeepSeek, any compatible base URL): a passthrough."""
import orjson

from routing.adapters.base import Adapter, UpstreamRequest, Usage


def usage_from(data: dict | None) -> Usage | None:
    if not data:
        return None
    details = data.get("prompt_tokens_details") or {}
    # DeepSeek reports cache hits as prompt_cache_hit_tokens.
    cached = details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0
    return Usage(data.get("prompt_tokens") or 0, data.get("completion_tokens") or 0, cached)


class OpenAIAdapter(Adapter):
    kind = "openai"

    def to_upstream(self, payload, *, upstream_model, base_url, api_key, stream):
        body = dict(payload, model=upstream_model)
        if stream:
            # Always ask for usage so streams are billed from real counts; the relay strips the usage chunk
            # again when the client did not ask for it.
            body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        return UpstreamRequest(
            url=f"{base_url}/chat/completions",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            body=orjson.dumps(body),
        )

    def from_upstream(self, body):
        data = orjson.loads(body)
        if not isinstance(data, dict) or "choices" not in data:
            raise ValueError("the upstream answer has no choices")
        return data, usage_from(data.get("usage")) or Usage()

    def stream_events(self, line):
        if not line.startswith(b"data:"):
            return None, None  # SSE comments and blank keep-alives
        if b'"usage":{' in line:
            data = orjson.loads(line[5:])
            return line, usage_from(data.get("usage"))
        return line, None
