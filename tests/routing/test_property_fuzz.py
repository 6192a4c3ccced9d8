"""Property-based fuzzing (hypothesis) of what clients and upstreams send (issue 11).

- Every inbound format's `to_canonical`: any JSON object is either a canonical request or a 400 RelayError —
  never another exception — and every adapter turns any canonical request it accepted into an upstream
  request without raising (a crash there would be a 500 after the reservation).
- Every adapter's parsers of upstream bytes (whole answers, SSE streams, error bodies, OpenAI passthrough
  lines): garbage raises UpstreamFormatError (the relay's "invalid answer"), nothing else.
"""
import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.adapters.base import UpstreamFormatError
from routing.adapters.registry import ADAPTERS
from routing.relay import errors
from routing.relay.formats import FORMATS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=12)
# (orjson reads a JSON integer beyond 64 bits as a float: no client sends a bigger int)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

# A valid request of each format, so mutations land deep in its structure instead of failing at the top.
VALID = {
    "openai": {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
               "max_tokens": 10, "stream": True},
    "anthropic": {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                               {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                                  "input": {}}]},
                               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                             "content": "ok"}]}],
                  "tools": [{"name": "f", "input_schema": {"type": "object"}}]},
    "responses": {"model": "m", "input": [{"type": "message", "role": "user",
                                           "content": [{"type": "input_text", "text": "hi"}]}],
                  "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                  "instructions": "be brief", "stream": True},
    "gemini": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
               "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}],
               "generationConfig": {"maxOutputTokens": 10}},
    "openrouter": {"model": "m", "models": ["m2"], "route": "fallback",
                   "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "stream": True},
}


def paths(value, prefix=()):
    """Every place in a JSON value (dict keys and list indexes), as a tuple path."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, prefix + (i,))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw, base):
    places = list(paths(base))[1:]
    body = base
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(body))[1:] or [()]
        body = replaced(body, draw(st.sampled_from(places)), draw(json_values))
    if draw(st.booleans()):
        body = {**body, draw(st.text(max_size=10)): draw(json_values)}   # an unknown field
    return body if isinstance(body, dict) else base


def _translate_and_send(fmt: str, payload: dict) -> None:
    try:
        canonical = FORMATS[fmt].to_canonical(payload)
    except errors.RelayError as err:
        assert 400 <= err.status < 500, err
        return
    for adapter in ADAPTERS.values():
        adapter.to_upstream(canonical, upstream_model="m", base_url="http://upstream.test/v1", api_key="k",
                            stream=bool(canonical.get("stream")))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FUZZ
@given(data=st.data())
def test_any_body_is_a_request_or_a_400(fmt, data):
    base = VALID.get(fmt, {"model": "m"})
    _translate_and_send(fmt, data.draw(mutated(base)))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FUZZ
@given(body=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_json_object_is_a_request_or_a_400(fmt, body):
    _translate_and_send(fmt, body)


# --- upstream bytes ----------------------------------------------------------------------------------------
frames = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: b"data: " + orjson.dumps(v)),
    st.sampled_from([b"data: [DONE]", b"event: message_stop", b": keep-alive", b"data: {", b"data:"]),
)


def _drain(adapter, lines: list[bytes]) -> None:
    async def feed():
        for line in lines:
            yield line

    async def run():
        async for _ in adapter.stream_events(feed()):
            pass

    try:
        asyncio.run(run())
    except UpstreamFormatError:
        pass


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@FUZZ
@given(lines=st.lists(frames, max_size=8))
def test_stream_parsers_take_any_bytes(kind, lines):
    _drain(ADAPTERS[kind], lines)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@FUZZ
@given(body=st.binary(max_size=60) | json_values.map(orjson.dumps), status=st.integers(400, 599))
def test_answer_and_error_parsers_take_any_bytes(kind, body, status):
    adapter = ADAPTERS[kind]
    try:
        adapter.from_upstream(body)
    except UpstreamFormatError:
        pass
    message, code, param = adapter.error_detail(status, body)
    assert isinstance(message, str)
    assert adapter.classify(status, body) in ("channel", "model", "fatal")


@FUZZ
@given(line=frames)
def test_openai_passthrough_takes_any_line(line):
    adapter = ADAPTERS["openai"]
    try:
        out, _ = adapter.passthrough(line)
    except (UpstreamFormatError, orjson.JSONDecodeError):
        return
    assert out is None or out.startswith(b"data:")
