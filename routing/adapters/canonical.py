"""Helpers on canonical (OpenAI-shaped) data and on provider JSON, shared by the adapters."""
import re
import time

import orjson

from routing.adapters.base import UpstreamFormatError, Usage

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(.*)", re.S)


def data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 data) of a `data:…;base64,…` URL, else None."""
    match = _DATA_URL.fullmatch(url or "")
    return (match[1] or "application/octet-stream", match[2]) if match else None


def parts_of(content) -> list[dict]:
    """A message content (string, parts or None) as a list of OpenAI parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [p for p in content or () if isinstance(p, dict)]


def text_of(content) -> str:
    return "\n".join(p.get("text") or "" for p in parts_of(content) if p.get("type") == "text")


def json_object(text) -> dict:
    """Tool-call arguments (a JSON string) as an object; anything else as {}."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def load_json(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFormatError(f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UpstreamFormatError("the answer is not a JSON object")
    return data


def sse_json(line: bytes) -> dict | None:
    """The JSON object of an SSE `data:` line; None for other lines (event names, comments)."""
    return load_json(line[5:]) if line.startswith(b"data:") else None


def tool_call(call_id: str, name: str, args) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": orjson.dumps(args).decode()}}


def completion(response_id, model, choices: list[dict], usage: Usage) -> dict:
    """An OpenAI `chat.completion` (the relay sets its own id and model)."""
    return {"id": response_id or "", "object": "chat.completion", "created": int(time.time()), "model": model or "",
            "choices": choices, "usage": {
                "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}}


def max_tokens_of(request: dict) -> int | None:
    return request.get("max_completion_tokens") or request.get("max_tokens")


def stops_of(request: dict) -> list[str]:
    stop = request.get("stop")
    return [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]


def error_of(body: bytes) -> dict:
    """The `error` object of an error body (a JSON list of errors too), {} when there is none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {"message": str(err)} if err else {}

def append_turn(turns: list[dict], role: str, key: str, items: list) -> None:
    """Add a turn's blocks/parts; both providers want alternating roles, so a same-role turn is merged."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key] += items
    else:
        turns.append({"role": role, key: items})
