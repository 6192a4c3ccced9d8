"""Plumbing shared by the app and the provider modules."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import faults


class ApiError(Exception):
    """An error reply; each provider renders it in its own wire shape."""

    def __init__(self, status, message, *, param=None, code=None, type=None, headers=()):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = list(headers)


@dataclass(slots=True)
class Reply:
    body: bytes = b""
    events: list[bytes] | None = None  # SSE frames, sent one by one; None means a plain body
    status: int = 200
    headers: list = field(default_factory=list)
    content_type: bytes = b"application/json"


@dataclass(frozen=True, slots=True)
class Options:
    """Per-request knobs, set by `[[sim:NAME=N]]` directives in the body (and x-sim-chunk-delay-ms)."""

    tokens: int | None = None  # exact completion length
    cached: int = 0  # cached prompt tokens to report
    reasoning: int = 0  # reasoning tokens to add
    chunk_delay_ms: int = 15  # between SSE frames
    content_filter: bool = False  # set by the content_filter fault


DEFAULT_OPTIONS = Options()
INVALID_KEY = "sk-sim-invalid"  # every provider rejects this key with its own 401

_DIRECTIVE = re.compile(rb"\[\[sim:(\w+)=([^\]]*)\]\]")
_NUMERIC = frozenset({"tokens", "cached", "reasoning", "chunk_delay_ms"})


def _count(name, value) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number


def read_directives(body: bytes, header_faults: str | None, header_delay: str | None):
    """(Options, faults) from the body's directives and the x-sim-fault / x-sim-chunk-delay-ms headers."""
    specs, changes = [], {}
    if b"[[sim:" in body:  # fast path: most requests carry no directive
        for name, value in _DIRECTIVE.findall(body):
            name, value = name.decode(), value.decode()
            if name == "fault":
                specs.append(value)
            elif name in _NUMERIC:
                changes[name] = _count(name, value)
            else:
                raise ValueError(f"unknown simulator directive {name!r}")
    if header_delay is not None:
        changes["chunk_delay_ms"] = _count("x-sim-chunk-delay-ms", header_delay)
    if header_faults:
        specs.insert(0, header_faults)
    found = tuple(f for spec in specs for f in faults.parse(spec))
    if any(f.kind == "content_filter" for f in found):
        changes["content_filter"] = True
    return (replace(DEFAULT_OPTIONS, **changes) if changes else DEFAULT_OPTIONS), found


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "json", "key", "options")

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.body = method, path, query, body
        self.headers = headers  # {lowercase header name: value}, both str
        self.json = None
        self.key = None  # the API key, once authenticated
        self.options = DEFAULT_OPTIONS


@dataclass(frozen=True)
class Provider:
    """One upstream wire format: its routes, how it authenticates and how it renders errors."""

    name: str
    routes: dict  # (method, path) -> handler(Request) -> Reply, raising ApiError
    prefix_routes: tuple  # ((method, path prefix, handler), ...)
    api_key: Callable  # Request -> str, raising ApiError(401) when missing or INVALID_KEY
    error: Callable  # ApiError -> Reply
    fault_error: Callable  # (Fault, Request) -> ApiError, for status/quota/context_length/model_not_found
    stream_error: Callable  # () -> bytes, one SSE frame carrying a mid-stream error
