"""Prompt-token counts from real tokenizers whose data ships in the repository (routing/tokenizer_data/,
README there; nothing is downloaded at run time):

- "openai": o200k_base, the gpt-4o / o-series / gpt-4.1 / gpt-5 tokenizer, through tiktoken;
- "anthropic": the Claude tokenizer Anthropic published (npm @anthropic-ai/tokenizer), through tiktoken;
- "gemini": o200k_base calibrated against Gemma's tokenizer (which Gemini shares): Gemma spends a token on
  each newline (o200k folds newlines into the indentation after them) and fewer tokens on Chinese.

They decide context-length skips and, with billing, the hold; real counts still come from the upstream.
Exact counts cost ~0.2 ms for a 4 KB prompt and ~8 ms for 100 KB (tests/routing/test_tokens.py), so on the
relay's path a text longer than EXACT_CHARS is counted from evenly spread samples and scaled by length
(within ~2 %, ~1.5 ms at any size); count_prompt_tokens (count_tokens endpoints) counts every character."""
import base64
import functools
import gzip
import hashlib
import unicodedata
from pathlib import Path

import orjson
import tiktoken

DATA = Path(__file__).resolve().parent / "tokenizer_data"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # tiktoken's expected hash
# o200k_base's pre-tokenizer, as tiktoken_ext.openai_public defines it.
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
FAMILIES = ("openai", "anthropic", "gemini")
# Gemini from o200k (calibrated on the corpus of tests/routing/test_tokens.py against Gemma's tokenizer):
# GEMINI_SCALE × o200k tokens, plus GEMINI_NEWLINE per newline, less GEMINI_CJK_DISCOUNT per CJK character.
GEMINI_SCALE = 1.05
GEMINI_NEWLINE = 1.2
GEMINI_CJK_DISCOUNT = 0.07

CHARS_PER_TOKEN = 3           # the router's no-scan shortcut: a body of N bytes rarely holds more than N/3 tokens
EXACT_CHARS = 24_000          # longer texts are sampled on the relay's path
SAMPLES, SAMPLE_CHARS = 8, 2_000
MESSAGE_OVERHEAD = 3          # OpenAI's per-message framing (<|im_start|>role … <|im_end|>)
REPLY_PRIMING = 3
TOOL_OVERHEAD = 8
IMAGE_TOKENS = 1_000          # a high-detail 1024² image is ~765 (OpenAI) to ~1,600 (Anthropic) tokens


def _without_python_ranks(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    # The Rust core keeps its own copy of the ranks; the Python dict (~25 MB for o200k) is only read by
    # methods this module never calls (pinned tiktoken).
    encoding._mergeable_ranks = {}
    return encoding


@functools.cache
def o200k() -> tiktoken.Encoding:
    raw = gzip.decompress((DATA / "o200k_base.tiktoken.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != O200K_SHA256:
        raise RuntimeError("routing/tokenizer_data/o200k_base.tiktoken.gz is not o200k_base")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    return _without_python_ranks(tiktoken.Encoding("o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=ranks,
                                                   special_tokens={}))


@functools.cache
def claude() -> tiktoken.Encoding:
    spec = orjson.loads(gzip.decompress((DATA / "claude.json.gz").read_bytes()))
    # @anthropic-ai/tokenizer's "tiktoken lite" ranks: "<ignored> <first rank> <base64 token> …"
    _, first, *pieces = spec["bpe_ranks"].split(" ")
    ranks = {base64.b64decode(token): int(first) + i for i, token in enumerate(pieces)}
    return _without_python_ranks(tiktoken.Encoding("claude", pat_str=spec["pat_str"], mergeable_ranks=ranks,
                                                   special_tokens=spec["special_tokens"]))


def family_of(provider: str) -> str:
    """The tokenizer family of a catalog provider (routing.models.CatalogModel.provider)."""
    provider = (provider or "").lower()
    if provider == "anthropic":
        return "anthropic"
    return "gemini" if provider in ("google", "gemini", "vertex") else "openai"


def warm() -> None:
    """Load o200k (~0.3 s) before serving, so the first request does not pay it."""
    o200k()


def cjk_chars(text: str) -> int:
    # A BMP CJK character is 3 UTF-8 bytes; counted from the encoded length, in C, not per character.
    return (len(text.encode("utf-8", "surrogatepass")) - len(text)) // 2 if not text.isascii() else 0


# Counts of the short texts calls repeat (system prompts, the same question, tool names) kept: a dict lookup
# instead of the tokenizer (~15 µs for one sentence). Bounded: at most _MEMO_SIZE texts of _MEMO_CHARS each.
_memo: dict[tuple[str, str], int] = {}
_MEMO_CHARS, _MEMO_SIZE = 1024, 4096


def count_text(text: str, family: str = "openai") -> int:
    """The tokenizer's exact count (Gemini: calibrated) of the whole text."""
    if not text:
        return 0
    if len(text) > _MEMO_CHARS:
        return _count_text(text, family)
    key = (family, text)
    count = _memo.get(key)
    if count is None:
        count = _count_text(text, family)
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()   # a cheap bound: the texts that repeat are back after a few calls
        _memo[key] = count
    return count


def _count_text(text: str, family: str) -> int:
    if family == "anthropic":
        return len(claude().encode(unicodedata.normalize("NFKC", text), disallowed_special=()))
    count = len(o200k().encode_ordinary(text))
    if family == "gemini":
        return max(1, round(count * GEMINI_SCALE + text.count("\n") * GEMINI_NEWLINE
                            - cjk_chars(text) * GEMINI_CJK_DISCOUNT))
    return count


def text_tokens(text: str, family: str = "openai", exact: bool = False) -> int:
    """count_text, or for a long text on the relay's path, SAMPLES slices spread evenly, scaled by length."""
    if exact or len(text) <= EXACT_CHARS:
        return count_text(text, family)
    step = (len(text) - SAMPLE_CHARS) / (SAMPLES - 1)
    sampled = sum(count_text(text[int(i * step):int(i * step) + SAMPLE_CHARS], family) for i in range(SAMPLES))
    return round(sampled * len(text) / (SAMPLES * SAMPLE_CHARS))


def _content_tokens(content, family: str, exact: bool) -> int:
    if isinstance(content, str):
        return text_tokens(content, family, exact)
    total = 0
    for part in content or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            total += text_tokens(text, family, exact) if isinstance(text, str) else 0
        elif kind in ("image_url", "input_audio", "file", "video_url"):
            total += IMAGE_TOKENS
    return total


def _json_tokens(value, family: str, exact: bool) -> int:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text_tokens(text, family, exact)


def estimate_prompt_tokens(request: dict, family: str = "openai", exact: bool = False) -> int:
    """The prompt's tokens in a canonical (chat completions) request: messages with their framing, tool calls
    and tool definitions."""
    total = REPLY_PRIMING
    for message in request.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"), family, exact)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += (_json_tokens(function.get("name") or "", family, exact)
                          + _json_tokens(function.get("arguments") or "", family, exact) + TOOL_OVERHEAD)
    for tool in request.get("tools") or ():
        total += _json_tokens(tool, family, exact) + TOOL_OVERHEAD
    return total


def count_prompt_tokens(request: dict, family: str = "openai") -> int:
    """Every character counted (count_tokens endpoints: Anthropic's uses family="anthropic")."""
    return estimate_prompt_tokens(request, family, exact=True)


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
