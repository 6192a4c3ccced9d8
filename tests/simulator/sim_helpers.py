"""Helpers shared by the simulator tests (a plain module: conftest modules are not importable by name)."""

KEY = "sk-sim-test"


def raw_chat(http, body, key=KEY, headers=None):
    return http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})})


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
