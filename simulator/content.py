"""Deterministic generated content shared by every provider: replies, tool arguments, embeddings."""

import hashlib
import math
import re

from .tokens import pieces

DEFAULT_REPLY_TOKENS = 12
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
_MAGIC = re.compile(r"\[\[sim:[^\]]*\]\]")


def reply_text(prompt: str, n_tokens: int | None = None, lead: str = "Simulated reply to:") -> str:
    """'<lead> <first 8 words>', cut or padded to exactly n_tokens tokens."""
    n = DEFAULT_REPLY_TOKENS if n_tokens is None else n_tokens
    words = _MAGIC.sub(" ", prompt).split()[:8]
    parts = pieces(" ".join([lead, *words]))[:n]
    parts += [" " + _FILLER[i % len(_FILLER)] for i in range(n - len(parts))]
    return "".join(parts).lstrip()


def sample(schema: dict, name: str = "value"):
    """A deterministic value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return f"sample_{name}"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample(schema[key][0], name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else kind  # Gemini's schemas say "OBJECT", "STRING"...
    if kind == "object":
        props = schema.get("properties") or {}
        keys = schema.get("required", list(props))
        return {k: sample(props.get(k, {}), k) for k in keys}
    if kind == "array":
        return [sample(schema.get("items", {}), name)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, f"sample_{name}")


def embedding(text: str, dim: int) -> list[float]:
    """A unit vector derived from a hash of the text."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dim)
    vec = [int.from_bytes(raw[i : i + 2], "little") / 32767.5 - 1.0 for i in range(0, 2 * dim, 2)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]
