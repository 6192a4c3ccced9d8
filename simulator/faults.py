"""Fault grammar, per-request fault plans and faults scripted per upstream API key.

A fault spec is a comma-separated list of `kind[:arg]`:

  status:N          reply with HTTP N in the provider's error shape (429 carries Retry-After)
  quota             out of credit: OpenAI 429 insufficient_quota, Anthropic 400 credit balance, Gemini 429
  context_length    400 prompt too long
  model_not_found   404 unknown model
  content_filter    reply cut in half, stopped by the content filter (content_filter / refusal / SAFETY)
  broken_json       a JSON-mode reply (OpenAI response_format) that is not valid JSON: fenced in markdown,
                    a trailing comma and its closing brace missing (the HTTP body itself stays valid)
  delay:MS          wait MS milliseconds before answering
  timeout[:S]       hang S seconds (default 120, or until the client goes away), then answer
  break[:K]         stream: drop the connection after K frames; plain: drop it halfway through the body
  stream_error[:K]  stream: after K frames send an error frame and end; plain: 500 (Anthropic: 529 overloaded)
  invalid_json      the body (stream: the second frame) is not valid JSON
  truncate          a complete HTTP response whose body is cut in half
  empty             200 with an empty body
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple


class Fault(NamedTuple):
    kind: str
    arg: int | None = None


# kind -> (argument required, default argument)
KINDS = {
    "status": (True, None),
    "delay": (True, None),
    "timeout": (False, 120),
    "break": (False, 0),
    "stream_error": (False, 0),
    "quota": (False, None),
    "context_length": (False, None),
    "model_not_found": (False, None),
    "content_filter": (False, None),
    "broken_json": (False, None),
    "invalid_json": (False, None),
    "truncate": (False, None),
    "empty": (False, None),
}
WAITS = frozenset({"delay", "timeout"})
ERRORS = frozenset({"status", "quota", "context_length", "model_not_found"})
OUTPUT = frozenset({"break", "stream_error", "invalid_json", "truncate", "empty"})


@lru_cache(maxsize=256)
def parse(spec: str) -> tuple[Fault, ...]:
    """Parse a fault spec; raises ValueError."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, arg = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(KINDS)})")
        required, default = KINDS[kind]
        if not arg and required:
            raise ValueError(f"fault {kind!r} needs an argument, e.g. {kind}:500")
        try:
            fault = Fault(kind, int(arg) if arg else default)
        except ValueError:
            raise ValueError(f"fault {kind!r} takes an integer, not {arg!r}") from None
        if kind == "status" and not 400 <= fault.arg <= 599:
            raise ValueError("fault 'status' takes an HTTP error status, 400 to 599")
        out.append(fault)
    return tuple(out)


class Plan:
    """What a request's faults do, by phase: before answering, instead of answering, while sending."""

    __slots__ = ("wait", "error", "output")

    def __init__(self, found: tuple[Fault, ...]):
        self.wait = sum(f.arg / 1000 if f.kind == "delay" else f.arg for f in found if f.kind in WAITS)  # seconds
        self.error = next((f for f in found if f.kind in ERRORS), None)
        self.output = next((f for f in found if f.kind in OUTPUT), None)


@dataclass
class Rule:
    key: str  # "*" matches every key
    fault: str
    remaining: int | None  # None: until cleared


class Script:
    """Faults scripted per API key, so a gateway channel fails whatever the prompt."""

    def __init__(self):
        self.rules: list[Rule] = []

    def add(self, key: str, spec: str, count: int | None) -> Rule:
        if not isinstance(key, str) or not key or not isinstance(spec, str):
            raise ValueError('"key" (an API key, or "*") and "fault" must be non-empty strings')
        parse(spec)  # reject bad specs now rather than on the next request
        if count is not None and (type(count) is not int or count < 1):
            raise ValueError("count must be a positive integer or null")
        rule = Rule(key, spec, count)
        self.rules.append(rule)
        return rule

    def take(self, key: str) -> tuple[Fault, ...]:
        for rule in self.rules:
            if rule.key == key or rule.key == "*":
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return parse(rule.fault)
        return ()

    def clear(self, key: str | None = None) -> None:
        self.rules = [r for r in self.rules if key is not None and r.key != key]
