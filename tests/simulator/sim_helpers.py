"""Helpers shared by the simulator tests (a plain module: conftest modules are not importable by name)."""

import json

KEY = "sk-sim-test"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-sim-chunk-delay-ms": "0"}


def raw_chat(http, body, key=KEY, headers=None):
    return http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})})


def raw_messages(http, body, key=KEY, headers=None, path="/v1/messages"):
    return http.post(path, json=body, headers={"x-api-key": key, **ANTHROPIC_HEADERS, **(headers or {})})


def raw_gemini(http, model, body, method="generateContent", key=KEY, headers=None, query=""):
    """POST /v1beta/models/{model}:{method}{query}, the key in x-goog-api-key unless key is None."""
    auth = {"x-goog-api-key": key} if key else {}
    return http.post(f"/v1beta/models/{model}:{method}{query}", json=body,
                     headers={**auth, "x-sim-chunk-delay-ms": "0", **(headers or {})})


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body."""
    return [line[len("data: "):].rstrip("\r") for line in text.split("\n") if line.startswith("data: ")]


def named_events(text: str) -> list[tuple[str, dict]]:
    """(event name, parsed data) of each frame of an SSE body that names its events (Anthropic's)."""
    out = []
    for frame in filter(None, text.split("\n\n")):
        name, data = frame.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), frame
        out.append((name[len("event: "):], json.loads(data[len("data: "):])))
    return out
