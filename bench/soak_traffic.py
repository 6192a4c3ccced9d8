"""The soak's clients (bench/soak.py): mixed streaming and non-streaming requests in two formats, upstream
faults asked of the simulator through `[[sim:…]]` directives in the prompt, and a fuzzer's malformed bodies."""
import asyncio
import json
import random
import time

import httpx
import orjson

from bench.soak_books import Outcome

CHAT_MODELS = ["openai/gpt-4o-mini", "google/gemini-2.5-flash", "anthropic/claude-haiku-4-5"]
MESSAGES_MODELS = ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"]
PASTED_SECRET = "sk-live-" + "a" * 40     # a key pasted where the model goes: never stored as it is

# (weight, directive): what the simulated upstream does to the request (simulator/faults.py grammar);
# "absurd usage" asks for reported counts no model could produce, which the gateway must clamp.
FAULTS = [
    (50, ""),
    (5, "[[sim:fault=status:429]]"),
    (5, "[[sim:fault=status:500]]"),
    (3, "[[sim:fault=status:503]]"),
    (3, "[[sim:fault=timeout:6]]"),        # past the soak's 3 s upstream timeout
    (6, "[[sim:fault=break:3]]"),          # a stream cut after 3 frames (a plain body cut halfway)
    (3, "[[sim:fault=stream_error:2]]"),
    (2, "[[sim:fault=invalid_json]]"),
    (2, "[[sim:fault=truncate]]"),
    (2, "[[sim:fault=empty]]"),
    (4, "[[sim:fault=delay:300]]"),
    (3, "[[sim:reasoning=3000000000]]"),   # absurd usage
    (2, "[[sim:cached=2000000000]]"),
    (2, "[[sim:tokens=400]]"),
]


def _nested(depth: int, leaf):
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def _nested_list(depth: int, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def fuzz_bodies() -> list[tuple[str, bytes]]:
    """(path, body) pairs a careless or hostile client sends; each must get a 4xx, never a 500."""
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    msgs = {"model": "anthropic/claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}

    def j(obj) -> bytes:
        return json.dumps(obj).encode()     # orjson refuses more than 255 levels

    cases = [
        ("chat", j({**chat, "model": "\u0000"})),
        ("chat", j({**chat, "model": "openai/gpt-4o-mini\u0000"})),
        ("chat", j({**chat, "messages": [{"role": "user", "content": "a\u0000b"}]})),
        ("chat", j({**chat, "user": "\u0000" * 10})),
        ("chat", b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x\x00"}]}'),
        ("chat", j({**chat, "metadata": _nested(300, "x")})),
        ("chat", j({**chat, "messages": [{"role": "user", "content": _nested_list(600, "x")}]})),
        ("chat", j({**chat, "messages": [{"role": "assistant", "tool_calls": "x"}]})),
        ("chat", j({**chat, "max_tokens": -1})),
        ("chat", j({**chat, "max_tokens": 10 ** 30})),
        ("chat", j({**chat, "temperature": {}})),
        ("chat", j({**chat, "messages": "x"})),
        ("chat", j({**chat, "model": PASTED_SECRET})),
        ("chat", b"{not json"),
        ("chat", b""),
        ("chat", b"[1, 2, 3]"),
        ("chat", b"{" * 5000),
        ("chat", j({**chat, "n": 10 ** 9})),
        ("messages", j({**msgs, "system": 5})),
        ("messages", j({**msgs, "stop_sequences": 1.5})),
        ("messages", j({**msgs, "temperature": {}})),
        ("messages", j({**msgs, "messages": [{"role": "user", "content": [5, None, "x"]}]})),
        ("messages", j({**msgs, "metadata": _nested(300, {})})),
        ("messages", j({**msgs, "model": "\u0000"})),
        ("messages", j({**msgs, "max_tokens": "ten"})),
        ("messages", j({**msgs, "messages": [{"role": "user", "content": [{"type": "text", "text": "\u0000"}]}]})),
        ("messages", b'{"model": "\x00", "max_tokens": 5}'),
    ]
    return cases


class Client:
    def __init__(self, base_url: str, secret: str, rng: random.Random):
        self.base_url, self.rng = base_url, rng
        self.headers = {"Authorization": f"Bearer {secret}", "x-api-key": secret, "content-type": "application/json",
                        "anthropic-version": "2023-06-01"}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5),
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        self.fuzz = fuzz_bodies()

    async def close(self) -> None:
        await self.http.aclose()

    def _fault(self) -> str:
        weights, directives = zip(*FAULTS)
        return self.rng.choices(directives, weights=weights)[0]

    async def one(self) -> Outcome:
        """One request of a kind picked at random."""
        pick = self.rng.random()
        if pick < 0.1:
            path, body = self.rng.choice(self.fuzz)
            return await self._send("fuzz", path, body, stream=False)
        stream = self.rng.random() < 0.5
        prompt = f"Soak request {self.rng.randrange(10 ** 9)}. {self._fault()}"
        if pick < 0.6:
            body = {"model": self.rng.choice(CHAT_MODELS), "stream": stream, "max_tokens": 60,
                    "messages": [{"role": "user", "content": prompt}]}
            if stream:
                body["stream_options"] = {"include_usage": True}
            return await self._send("chat-stream" if stream else "chat", "chat", orjson.dumps(body), stream=stream)
        body = {"model": self.rng.choice(MESSAGES_MODELS), "stream": stream, "max_tokens": 60,
                "messages": [{"role": "user", "content": prompt}]}
        return await self._send("messages-stream" if stream else "messages", "messages", orjson.dumps(body),
                                stream=stream)

    async def _send(self, kind: str, path: str, body: bytes, *, stream: bool) -> Outcome:
        url = f"{self.base_url}/v1/{'messages' if path == 'messages' else 'chat/completions'}"
        # A kept-alive connection stays with the worker that accepted it: closing one in four spreads the
        # clients over both workers (each then sees the outages with traffic of its own).
        headers = {**self.headers, "connection": "close"} if self.rng.random() < 0.25 else self.headers
        started = time.monotonic()
        status, request_id, complete, internal, detail = 0, None, False, False, ""
        try:
            async with self.http.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
                request_id = response.headers.get("x-request-id")
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                complete = status == 200 and answer_complete(data, stream=stream, path=path)
                internal = status >= 500 and not error_shaped(data)
                internal = internal or status == 500
                detail = "" if status == 200 else data[:300].decode(errors="replace")
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
        return Outcome(kind, status, request_id, complete, (time.monotonic() - started) * 1000, internal, detail)


def answer_complete(data: bytes, *, stream: bool, path: str) -> bool:
    """The client got a whole answer: a JSON object, or a stream that reached its terminal frame."""
    if not stream:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        return isinstance(body, dict) and ("choices" in body or "content" in body)
    if path == "messages":
        return b"event: message_stop" in data and b"event: error" not in data
    return b"data: [DONE]" in data and b'"error"' not in data


def error_shaped(data: bytes) -> bool:
    """A JSON error body in one of the API shapes (OpenAI's {"error": {...}}, Anthropic's {"type": "error"})."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


async def run(base_url: str, secret: str, *, seconds: float, concurrency: int, seed: int) -> list[Outcome]:
    """`concurrency` clients sending back to back for `seconds`."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + seconds

    async def worker(n: int):
        client = Client(base_url, secret, random.Random(seed * 1000 + n))
        try:
            while time.monotonic() < deadline:
                outcomes.append(await client.one())
                if outcomes[-1].status == 0:
                    await asyncio.sleep(0.05)   # the server is down or restarting: do not spin
        finally:
            await client.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return outcomes
