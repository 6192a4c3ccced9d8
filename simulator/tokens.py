"""A tiny deterministic tokenizer: a run of word characters is one token, and so is each other
non-space character (punctuation, and each CJK character, which real tokenizers split finely)."""

import re

_WORD = r"[^\W\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+|\S"
_TOKEN = re.compile(_WORD)
_PIECE = re.compile(rf"\s*(?:{_WORD})")

IMAGE_TOKENS = 85  # OpenAI's flat cost of a low-detail image
MEDIA_TOKENS = 100  # audio and file parts
MESSAGE_OVERHEAD = 4


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def pieces(text: str) -> list[str]:
    """Split text into one-token pieces (each with its leading whitespace); they join back to text."""
    out = _PIECE.findall(text)
    rest = len(text) - sum(map(len, out))  # trailing whitespace
    if rest:
        if out:
            out[-1] += text[-rest:]
        else:
            out.append(text)
    return out
