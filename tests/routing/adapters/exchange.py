"""Send an adapter's UpstreamRequest over real HTTP (aiohttp, as the relay does) and read the answer back
through the same adapter."""
import asyncio
from dataclasses import dataclass, field

import aiohttp
import httpx
import orjson

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, UsageEvent

KEY = "sk-sim-adapter-test"
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
       "rkJggg==")
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"], "additionalProperties": False}}}


@dataclass
class Result:
    status: int
    body: bytes = b""                                 # the raw answer (plain, or an error)
    raw_lines: list = field(default_factory=list)     # the raw SSE lines (stream)
    events: list = field(default_factory=list)        # canonical events (stream)
    data: dict | None = None                          # canonical response (plain)
    usage: object = None

    def json(self) -> dict:
        return orjson.loads(self.body)

    # --- a stream's events folded into what a client would see ---
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ReasoningDelta))

    def signatures(self) -> list:
        return [e.signature for e in self.events if isinstance(e, ReasoningDelta) and e.signature]

    def tool_calls(self) -> dict[int, dict]:
        calls: dict[int, dict] = {}
        for e in self.events:
            if isinstance(e, ToolCallDelta):
                call = calls.setdefault(e.index, {"id": e.id, "name": e.name, "arguments": "",
                                                  "signature": e.signature})
                call["arguments"] += e.arguments
        return calls

    def finishes(self) -> list[str]:
        return [e.reason for e in self.events if isinstance(e, Finish)]

    def answer(self, stream: bool) -> tuple[str, list[dict], str]:
        """(text, tool calls as {id, name, arguments, …}, finish reason) of a plain answer or of a stream."""
        if stream:
            return self.text(), list(self.tool_calls().values()), self.finishes()[-1]
        choice = self.data["choices"][0]
        calls = [{"id": c["id"], **c["function"]} for c in choice["message"].get("tool_calls") or ()]
        return choice["message"]["content"], calls, choice["finish_reason"]

    def errors(self) -> list:
        return [e for e in self.events if isinstance(e, StreamError)]

    def last_usage(self):
        usages = [e.usage for e in self.events if isinstance(e, UsageEvent)]
        return usages[-1] if usages else None


async def _lines(resp, record):
    async for raw in resp.content:  # as routing/relay/views.py reads upstream streams
        line = raw.rstrip(b"\r\n")
        if line:
            record.append(line)
            yield line


async def _send(adapter, upstream, stream):
    headers = {**upstream.headers, "x-sim-chunk-delay-ms": "0"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        async with session.post(upstream.url, data=upstream.body, headers=headers) as resp:
            result = Result(resp.status)
            if resp.status >= 400 or not stream:
                result.body = await resp.read()
                if resp.status < 400:
                    result.data, result.usage = adapter.from_upstream(result.body)
                return result
            async for event in adapter.stream_events(_lines(resp, result.raw_lines)):
                result.events.append(event)
            result.usage = result.last_usage()
            return result


def call(adapter, sim, request: dict, *, model: str, stream: bool = False, key: str = KEY,
         base_url: str | None = None) -> Result:
    upstream = adapter.to_upstream(request, upstream_model=model, base_url=base_url or sim.url, api_key=key,
                                   stream=stream)
    return asyncio.run(_send(adapter, upstream, stream))


def post_raw(adapter, sim, request: dict, *, model: str, edit, base_url: str | None = None) -> httpx.Response:
    """to_upstream's request with its JSON body changed by `edit` (to show what the simulator refuses)."""
    upstream = adapter.to_upstream(request, upstream_model=model, base_url=base_url or sim.url, api_key=KEY,
                                   stream=False)
    body = orjson.loads(upstream.body)
    edit(body)
    return httpx.post(upstream.url, content=orjson.dumps(body), headers=upstream.headers, timeout=10)


def last_request_body(sim) -> dict:
    return httpx.get(f"{sim.url}/_sim/requests?limit=1", timeout=5).json()["requests"][-1]["body"]


def sse_data(lines) -> list[dict]:
    return [orjson.loads(line[5:]) for line in lines if line.startswith(b"data:")]


async def aiter_lines(lines):
    for line in lines:
        yield line


def events_of(adapter, frames: list[dict]) -> list:
    """An adapter's canonical events for SSE `data:` frames given as dicts (no network)."""
    lines = [b"data: " + orjson.dumps(f) for f in frames]

    async def collect():
        return [e async for e in adapter.stream_events(aiter_lines(lines))]
    return asyncio.run(collect())
