"""Offline prompt-token estimates (no tokenizer download): conservative on purpose, since they decide
context-length skips and, with billing, the worst-case hold. Real counts always come from the upstream."""
CHARS_PER_TOKEN = 3          # English averages ~4 characters a token; 3 over-estimates, CJK is ~1–1.5
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 1_000          # a high-detail 1024² image is ~765 (OpenAI) to ~1,600 (Anthropic) tokens


def _content_tokens(content) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    total = 0
    for part in content or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            total += text_tokens(part.get("text", ""))
        elif kind in ("image_url", "input_audio", "file", "video_url"):
            total += IMAGE_TOKENS
    return total


def text_tokens(text: str) -> int:
    if not text:
        return 0
    # Non-ASCII text (CJK in particular) is closer to one token per character.
    wide = sum(1 for ch in text if ord(ch) > 0x2E7F) if not text.isascii() else 0
    return (len(text) - wide) // CHARS_PER_TOKEN + wide + 1


def estimate_prompt_tokens(request: dict) -> int:
    total = 3
    for message in request.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or ():
            total += text_tokens(str((call.get("function") or {}).get("arguments", ""))) + 8
    for tool in request.get("tools") or ():
        total += text_tokens(str(tool)) + 8
    return total


def has_images(request: dict) -> bool:
    return any(isinstance(m, dict) and isinstance(m.get("content"), list)
               and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
               for m in request.get("messages") or ())


def has_video(request: dict) -> bool:
    return any(isinstance(m, dict) and isinstance(m.get("content"), list)
               and any(isinstance(p, dict) and p.get("type") == "video_url" for p in m["content"])
               for m in request.get("messages") or ())


def wants_json_schema(request: dict) -> bool:
    fmt = request.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"


def max_output_tokens(request: dict, default: int) -> int:
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else default
