"""Plumbing shared by the app and the provider modules: errors, requests, directives, a small request-schema
language (each provider words the violations its own way) and what the simulated model says."""

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache

import orjson

from . import content, faults
from .tokens import count_tokens, pieces


class ApiError(Exception):
    """An error reply; each provider renders it in its own wire shape."""

    def __init__(self, status, message, *, param=None, code=None, type=None, headers=(), details=()):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers, self.details = list(headers), list(details)


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
    broken_json: bool = False  # set by the broken_json fault: a JSON-mode reply that does not parse
    tool: str | None = None  # [[sim:tool=NAME]]: call only that tool, when offered (none: answer in text)


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
            elif name == "tool":
                changes["tool"] = value
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
    if any(f.kind == "broken_json" for f in found):
        changes["broken_json"] = True
    return (replace(DEFAULT_OPTIONS, **changes) if changes else DEFAULT_OPTIONS), found


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "json", "key", "options", "id")

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.body = method, path, query, body
        self.headers = headers  # {lowercase header name: value}, both str
        self.json = None
        self.key = None  # the API key, once authenticated
        self.options = DEFAULT_OPTIONS
        self.id = ""  # the request id the reply carries


@dataclass(frozen=True)
class Provider:
    """One upstream wire format: its routes, how it authenticates and how it renders errors."""

    name: str
    routes: dict  # (method, path) -> handler(Request) -> Reply, raising ApiError
    prefix_routes: tuple  # ((method, path prefix, handler), ...)
    api_key: Callable  # Request -> str, raising ApiError (401...) when missing or INVALID_KEY, or headers are wrong
    error: Callable  # (ApiError, Request) -> Reply
    fault_error: Callable  # (Fault, Request) -> ApiError, for status/quota/context_length/model_not_found
    stream_error: Callable  # () -> bytes, one SSE frame carrying a mid-stream error
    json_error: str  # the message for a body that is not JSON
    id_header: bytes = b"x-request-id"  # the response header carrying the request id


def new_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


def json_tokens(obj) -> int:
    return count_tokens(orjson.dumps(obj).decode())


def is_base64(text: str) -> bool:
    """Standard or URL-safe base64, padded or not (a `data:` URL prefix is not)."""
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def refused_media(model: str, mime: str) -> str | None:
    """The modality a capability-limited test model refuses: "*no-vision*" takes no image, "*-novideo" no video."""
    if mime.startswith("image/") and "no-vision" in model:
        return "Image"
    if mime.startswith("video/") and model.endswith("-novideo"):
        return "Video"
    return None


# --- what the simulated model says ------------------------------------------------------------------

@dataclass(slots=True)
class Output:
    """One-token pieces of the text, or of a tool call's JSON arguments, and why the model stopped."""

    pieces: list
    finish: str = "stop"  # stop | stop_sequence | length | filter | tool
    stop: str | None = None  # the stop sequence that ended the text
    tool: str | None = None  # the called tool
    args: dict | None = None  # and its arguments


def say(text: str, options: Options, limit: int | None = None, stops=()) -> Output:
    """Text cut before the first stop sequence, halved by the content_filter fault, then cut to `limit` tokens."""
    stop = None
    if stops:
        found = [(text.find(s), s) for s in stops if s and s in text]
        if found:
            at, stop = min(found)
            text = text[:at]
    parts, finish = pieces(text), "stop_sequence" if stop else "stop"
    if options.content_filter:
        parts, finish = parts[: len(parts) // 2], "filter"
    if limit is not None and len(parts) > limit:
        parts, finish = parts[:limit], "length"
    return Output(parts, finish, stop if finish == "stop_sequence" else None)


def call(tool: dict, schema_key: str) -> Output:
    """A call of `tool` with arguments sampled from its schema (`tool[schema_key]`)."""
    schema = tool.get(schema_key)
    args = content.sample(schema) if schema else {}
    return Output(pieces(orjson.dumps(args).decode()), "tool", tool=tool["name"], args=args)


def pick_tool(tools: list, name: str | None = None, off: bool = False, prefer: str | None = None) -> dict | None:
    """The tool the simulated model calls: the named one, else the first; None when off or there are none.
    `prefer` ([[sim:tool=NAME]]) narrows an unforced choice to that one tool, no call when it is not offered: a
    client with many tools, such as Claude Code, is steered to a harmless one, or to none."""
    if off or not tools:
        return None
    if name is None:
        return tools[0] if prefer is None else next((t for t in tools if t["name"] == prefer), None)
    return next((t for t in tools if t["name"] == name), {"name": name})


# --- request schemas --------------------------------------------------------------------------------

class Invalid(Exception):
    """A body that breaks its schema: kind (type, enum, min, max, pattern, format, extra, missing, tag, notag),
    path (keys, list indices and union tags down to the failing node), that node, and the offending value
    (for extra/missing: the key)."""

    def __init__(self, kind, path, node=None, value=None):
        super().__init__(kind)
        self.kind, self.path, self.node, self.value = kind, path, node, value


class Scalar:
    """A value of some JSON types, optionally among `choices`, within [lo, hi], matching `pattern` or `check`."""

    def __init__(self, types, kind, *, choices=None, lo=None, hi=None, pattern=None, check=None, name=None):
        self.types, self.kind, self.choices, self.lo, self.hi = types, kind, choices, lo, hi
        self.pattern, self.check, self.name = pattern and re.compile(pattern), check, name
        self.no_bool = int in types and bool not in types  # True is an int to isinstance(), not to JSON

    def __call__(self, value, path):
        if not isinstance(value, self.types) or (self.no_bool and type(value) is bool):
            raise Invalid("type", path, self, value)
        if self.choices is not None and value not in self.choices:
            raise Invalid("enum", path, self, value)
        if self.lo is not None and value < self.lo:
            raise Invalid("min", path, self, value)
        if self.hi is not None and value > self.hi:
            raise Invalid("max", path, self, value)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise Invalid("pattern", path, self, value)
        if self.check is not None and not self.check(value):
            raise Invalid("format", path, self, value)
        return value


class ListOf:
    types = (list,)

    def __init__(self, item):
        self.item, self.name = item, getattr(item, "name", None)

    def __call__(self, value, path):
        if not isinstance(value, list):
            raise Invalid("type", path, self, value)
        return [self.item(v, (*path, i)) for i, v in enumerate(value)]


class MapOf:
    """An object with free keys and values of one schema."""

    types = (dict,)

    def __init__(self, item):
        self.item, self.name = item, getattr(item, "name", None)

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise Invalid("type", path, self, value)
        return {k: self.item(v, (*path, k)) for k, v in value.items()}


@lru_cache(maxsize=512)
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


@lru_cache(maxsize=512)
def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class Obj:
    """An object with known fields. `extra`: unknown keys are kept; `proto`: protobuf JSON, where keys may be
    camelCase or snake_case (normalized to camelCase, reported in snake_case) and null means absent."""

    types = (dict,)

    def __init__(self, fields, required=(), *, name=None, extra=False, proto=False):
        self.fields, self.required, self.name, self.extra, self.proto = fields, required, name, extra, proto

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise Invalid("type", path, self, value)
        out = {}
        for sent, item in value.items():
            key = sent
            if self.proto:
                if item is None:
                    continue
                key = camel(sent)
            node = self.fields.get(key)
            if node is not None:
                out[key] = node(item, (*path, snake(key) if self.proto else key))
            elif self.extra:
                out[key] = item
            else:
                raise Invalid("extra", path, self, sent)
        for key in self.required:
            if key not in out:
                raise Invalid("missing", path, self, snake(key) if self.proto else key)
        return out


class Tagged:
    """An object whose "type" names its variant: {tag: Obj, or None to accept that variant as it is}. `default`
    stands for a missing or null tag; tags passing `loose` are accepted as they are."""

    types = (dict,)

    def __init__(self, variants, default=None, loose=None):
        self.variants, self.default, self.loose = variants, default, loose
        for node in variants.values():
            if node is not None:
                node.fields.setdefault("type", NULLABLE_STRING)

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise Invalid("type", path, self, value)
        tag = value.get("type")
        tag = self.default if tag is None else tag
        if isinstance(tag, str) and tag in self.variants:
            node = self.variants[tag]
            return value if node is None else node(value, (*path, tag))
        if isinstance(tag, str) and self.loose is not None and self.loose(tag):
            return value
        raise Invalid("notag" if tag is None else "tag", path, self, tag)


class Either:
    """The first of `nodes` whose JSON type fits the value."""

    def __init__(self, *nodes):
        self.nodes, self.types = nodes, tuple(t for n in nodes for t in n.types)

    def __call__(self, value, path):
        for node in self.nodes:
            if isinstance(value, node.types) and not (getattr(node, "no_bool", False) and type(value) is bool):
                return node(value, path)
        raise Invalid("type", path, self.nodes[0], value)


STRING, BOOLEAN = Scalar((str,), "string"), Scalar((bool,), "boolean")
DICT, ANY = Scalar((dict,), "dictionary"), Scalar((object,), "any")
NULL = Scalar((type(None),), "null")
NULLABLE_STRING = Either(STRING, NULL)


def integer(lo=None, hi=None) -> Scalar:
    return Scalar((int,), "integer", lo=lo, hi=hi)


def number(lo=None, hi=None) -> Scalar:
    return Scalar((int, float), "number", lo=lo, hi=hi)


def enum(*choices, name=None) -> Scalar:
    return Scalar((str,), "string", choices=choices, name=name)


def nullable(node):
    return Either(node, NULL)
