"""Bad input is a 400, never a 500, and a 500 never leaks a hold (issue 11).

- A seeded generator of malformed bodies (a wrong type for every field of chat and messages, deep nesting,
  huge numbers, NUL bytes, bad UTF-8, broken chunked encodings) against a live gateway: every answer is below
  500, an error is JSON in the route's format with the request id, and no hold or concurrency slot is left.
- In-process: whatever raises after the reservation, the answer is a JSON 500 `internal_error` in the
  route's format, the call is recorded and its holds and slots are back at once (not after the 900 s sweep).
"""
import asyncio
import copy
import json
import random
import socket

import httpx
import orjson
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from billing import limits, usage_journal
from gateway_site import shared_cache
from routing.catalog import bump_version
from routing.relay import pipeline, views
from routing.relay.formats import checks
from tests import factories
from tests.conftest import in_process_cleanup, in_process_setup, make_live_setup, wait_for

CHAT, MESSAGES, EMBEDDINGS = "/v1/chat/completions", "/v1/messages", "/v1/embeddings"
MODEL, EMBED = "openai/gpt-4o-mini", "openai/test-embedding"
SEED = 11


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Each key's owner is a user with a password: PBKDF2 would cost ~0.3 s per key on this suite's clock."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def nested(levels: int, kind=list):
    value = "x"
    for _ in range(levels):
        value = [value] if kind is list else {"a": value}
    return value


# --- what is left of a team's and a key's reservations ------------------------------------------------------

def leftovers(team_id: int, key_id: int) -> dict:
    """Every hold and slot still taken (all zero once every request has settled or been released)."""
    client = shared_cache.sync_client()
    return {"holds": client.hlen(limits.HOLDS_DATA), "sweep": client.zcard(limits.HOLDS),
            "held": int(client.get(f"tg:held:team:{team_id}") or 0),
            "slots": int(client.get(f"tg:cc:key:{key_id}") or 0)}


NOTHING_LEFT = {"holds": 0, "sweep": 0, "held": 0, "slots": 0}


# --- the generator ----------------------------------------------------------------------------------------

WRONG = [5, -1, 0, 1.5, True, False, "x", "", "\u0000", [], [5], ["x"], [{}], [[]], {}, {"a": 1}, {"type": 5},
         {"include_usage": 5}, 2**63, -2**63 - 1, 10**30, 1.7e308, "a\u0000b" * 10,
         nested(100), nested(100, dict), nested(60), nested(60, dict)]

CHAT_BASE = {"model": MODEL, "max_tokens": 5, "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "hi"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    {"role": "user", "content": "go on"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "temperature": 0.5, "top_p": 1, "stop": ["\n\n"], "user": "u1", "seed": 1,
    "response_format": {"type": "text"}, "metadata": {"k": "v"},
    "presence_penalty": 0, "frequency_penalty": 0, "n": 1, "parallel_tool_calls": True, "logit_bias": {}}
CHAT_PATHS = [("model",), ("messages",), ("messages", 0), ("messages", 1, "role"), ("messages", 1, "content"),
              ("messages", 1, "content", 0), ("messages", 1, "content", 0, "type"),
              ("messages", 1, "content", 0, "text"), ("messages", 1, "content", 1, "image_url"),
              ("messages", 2, "tool_calls"), ("messages", 2, "tool_calls", 0),
              ("messages", 2, "tool_calls", 0, "function"), ("messages", 2, "tool_calls", 0, "function", "name"),
              ("messages", 2, "tool_calls", 0, "function", "arguments"), ("messages", 3, "tool_call_id"),
              ("messages", 4, "name"), ("tools",), ("tools", 0), ("tools", 0, "function"),
              ("tools", 0, "function", "parameters"), ("tool_choice",), ("temperature",), ("top_p",),
              ("max_tokens",), ("max_completion_tokens",), ("n",), ("seed",), ("stop",), ("stream",),
              ("stream_options",), ("response_format",), ("user",),
              ("metadata",), ("logit_bias",), ("models",), ("parallel_tool_calls",), ("presence_penalty",),
              ("frequency_penalty",), ("reasoning_effort",), ("logprobs",), ("top_logprobs",)]

MESSAGES_BASE = {"model": MODEL, "max_tokens": 5, "system": [{"type": "text", "text": "be brief"}],
                 "messages": [
                     {"role": "user", "content": [
                         {"type": "text", "text": "hi"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                     {"role": "assistant", "content": [
                         {"type": "thinking", "thinking": "hm", "signature": "sig"},
                         {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
                     {"role": "user", "content": [
                         {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                         {"type": "document", "source": {"type": "text", "data": "doc"}}]}],
                 "tools": [{"name": "f", "description": "a tool", "input_schema": {"type": "object"}}],
                 "tool_choice": {"type": "auto"}, "temperature": 0.5, "top_p": 1, "top_k": 5,
                 "stop_sequences": ["\n\nHuman:"], "metadata": {"user_id": "u1"},
                 "thinking": {"type": "enabled", "budget_tokens": 1024}}
MESSAGES_PATHS = [("model",), ("max_tokens",), ("system",), ("system", 0), ("system", 0, "text"), ("messages",),
                  ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"), ("messages", 0, "content", 0),
                  ("messages", 0, "content", 0, "type"), ("messages", 0, "content", 0, "text"),
                  ("messages", 0, "content", 1, "source"), ("messages", 1, "content"), ("messages", 1, "content", 0),
                  ("messages", 1, "content", 0, "thinking"), ("messages", 1, "content", 0, "signature"),
                  ("messages", 1, "content", 1, "input"), ("messages", 1, "content", 1, "name"),
                  ("messages", 1, "content", 1, "id"), ("messages", 2, "content", 0),
                  ("messages", 2, "content", 0, "content"), ("messages", 2, "content", 0, "content", 0),
                  ("messages", 2, "content", 0, "tool_use_id"), ("messages", 2, "content", 1, "source"),
                  ("tools",), ("tools", 0), ("tools", 0, "name"), ("tools", 0, "input_schema"), ("tool_choice",),
                  ("tool_choice", "type"), ("temperature",), ("top_p",), ("top_k",), ("stop_sequences",),
                  ("metadata",), ("metadata", "user_id"), ("thinking",), ("thinking", "budget_tokens"), ("stream",)]


EMBEDDINGS_BASE = {"model": EMBED, "input": ["hello", "world"], "dimensions": 8, "encoding_format": "float",
                   "user": "u1"}
EMBEDDINGS_PATHS = [("model",), ("input",), ("input", 0), ("dimensions",), ("encoding_format",), ("user",)]


def embeddings_model(live) -> None:
    """An embeddings model on the simulator's channel, once the gateway serves it."""
    model = factories.CatalogModelFactory(public_id=EMBED, upstream_name="text-embedding-3-small",
                                          output_modalities=["embeddings"], supports_tools=False)
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", name="embed")
    bump_version()

    def listed():
        data = httpx.get(f"{live.server.url}/v1/models", headers={"Authorization": f"Bearer {live.secret}"}).json()
        return EMBED in [m["id"] for m in data["data"]]

    assert wait_for(listed), "the gateway never served the embeddings model"


def with_value(base: dict, path: tuple, value) -> dict:
    body = copy.deepcopy(base)
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def malformed_bodies(rng: random.Random, base: dict, paths: list, count: int) -> list[bytes]:
    """Every path with a few wrong values each, then random pairs of them, as JSON bytes (the standard
    library's encoder: orjson refuses integers past 64 bits)."""
    out = []
    for path in paths:
        for value in rng.sample(WRONG, 3):
            out.append(json.dumps(with_value(base, path, value)).encode())
    while len(out) < count:
        body = base
        for path in rng.sample(paths, 2):
            try:
                body = with_value(body, path, rng.choice(WRONG))
            except (KeyError, IndexError, TypeError):   # the first change removed what the second path walks
                pass
        out.append(json.dumps(body).encode())
    return out


RAW = [b'{"model": "\xff\xfe", "messages": []}', b'{"model": "a\x00b"}', b"\x00" * 16, b'{"max_tokens": 1e400}',
       b'{"model": 1' + b"0" * 400 + b"}", b"[" * 2000 + b"]" * 2000,
       b'{"messages": ' + b"[" * 1000 + b"]" * 1000 + b"}",
       b'{"model": "' + MODEL.encode() + b'", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
       b'{"a": "\xc3\x28"}', b'{"model": "x",, }', b"\xef\xbb\xbf{}"]


def assert_error_shape(resp, path: str) -> None:
    request_id = resp.headers.get("x-request-id", "")
    assert request_id.startswith("req_"), (resp.status_code, resp.headers)
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:300]
    body = resp.json()
    if path == MESSAGES:
        assert body["type"] == "error" and body["request_id"] == request_id, body
        assert body["error"]["type"] and body["error"]["message"], body
    else:
        assert body["error"]["request_id"] == request_id and body["error"]["message"], body
        assert body["error"]["type"] and body["error"]["code"], body


def chunked(server_url: str, secret: str, path: str, raw: bytes) -> bytes:
    host, port = server_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     .encode() + raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.live
def test_malformed_bodies_are_4xx_in_the_routes_format_and_leave_no_hold(transactional_db, gateway, simulator):
    live = make_live_setup(gateway, simulator, max_concurrency=50)
    embeddings_model(live)
    rng = random.Random(SEED)
    cases = [(CHAT, b) for b in malformed_bodies(rng, CHAT_BASE, CHAT_PATHS, 200)]
    cases += [(MESSAGES, b) for b in malformed_bodies(rng, MESSAGES_BASE, MESSAGES_PATHS, 200)]
    cases += [(EMBEDDINGS, b) for b in malformed_bodies(rng, EMBEDDINGS_BASE, EMBEDDINGS_PATHS, 40)]
    cases += [(path, raw) for raw in RAW for path in (CHAT, MESSAGES, EMBEDDINGS)]
    statuses, refused, server_errors = {}, 0, []
    with httpx.Client(base_url=live.server.url, timeout=30,
                      headers={"Authorization": f"Bearer {live.secret}", "Content-Type": "application/json"}) as http:
        resp = http.post(CHAT, content=orjson.dumps(CHAT_BASE))
        assert resp.status_code == 200, resp.text   # the base bodies are valid: each case breaks one or two fields
        assert http.post(MESSAGES, content=orjson.dumps(MESSAGES_BASE)).status_code == 200
        assert http.post(EMBEDDINGS, content=orjson.dumps(EMBEDDINGS_BASE)).status_code == 200
        for path, content in cases:
            resp = http.post(path, content=content)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if resp.status_code >= 500:
                server_errors.append((path, content[:400], resp.text[:300]))
                continue
            assert resp.headers.get("x-request-id", "").startswith("req_")
            if resp.status_code >= 400:
                refused += 1
                assert_error_shape(resp, path)
    assert server_errors == [], f"{len(server_errors)} bodies answered 5xx: {server_errors}"
    assert refused > len(cases) // 2, statuses   # most cases are refused (some wrong values are allowed ones)

    for path in (CHAT, MESSAGES):   # broken chunked bodies: a JSON 400, not granian's plain-text 500
        for raw in (b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX\r\n"):
            head, _, body = chunked(live.server.url, live.secret, path, raw).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), (path, raw, head, body)
            assert b"content-type: application/json" in head.lower() and b"x-request-id: req_" in head.lower()
            error = orjson.loads(body)
            assert (error["type"] == "error") if path == MESSAGES else ("error" in error and "code" in error["error"])

    # Every hold and slot is back: the team's available balance is its balance, the key's slots are free.
    assert wait_for(lambda: leftovers(live.team.id, live.key.id) == NOTHING_LEFT, timeout=5), \
        leftovers(live.team.id, live.key.id)


HI = [{"role": "user", "content": "hi"}]
# The bodies of issue 11 that were 500s: each a 400 that names its field.
NAMED = [
    (MESSAGES, {"system": 5, "messages": HI}, "system"),
    (MESSAGES, {"stop_sequences": 1.5, "messages": HI}, "stop_sequences"),
    (MESSAGES, {"temperature": {}, "messages": HI}, "temperature"),
    (MESSAGES, {"messages": [{"role": "user", "content": ["x", 3]}]}, "messages[0].content[0]"),
    (MESSAGES, {"messages": [{"role": "assistant", "content": [7]}]}, "messages[0].content[0]"),
    (MESSAGES, {"metadata": nested(300, dict), "messages": HI}, "metadata"),
    (MESSAGES, {"thinking": {"type": "enabled", "budget_tokens": "x"}, "messages": HI}, "thinking.budget_tokens"),
    (MESSAGES, {"tool_choice": {"type": []}, "messages": HI}, "tool_choice.type"),
    (CHAT, {"messages": [{"role": "user", "content": nested(600)}]}, "messages"),
    (CHAT, {"messages": [{"role": "assistant", "content": "x", "tool_calls": "x"}]}, "messages[0].tool_calls"),
    (CHAT, {"metadata": nested(300, dict), "messages": HI}, "metadata"),
    (CHAT, {"stream": True, "stream_options": 5, "messages": HI}, "stream_options"),
    (CHAT, {"max_tokens": 10**12, "messages": HI}, "max_tokens"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
]


@pytest.mark.live
def test_the_bodies_that_were_500s_are_400s_naming_the_field(live):
    for path, fields, field in NAMED:
        resp = httpx.post(live.server.url + path, content=json.dumps({"model": MODEL, "max_tokens": 5, **fields}),
                          headers={"Authorization": f"Bearer {live.secret}", "Content-Type": "application/json"},
                          timeout=15)
        assert resp.status_code == 400, (path, field, resp.text)
        assert_error_shape(resp, path)
        error = resp.json()["error"]
        assert f"'{field}'" in error["message"], (field, error)
        if path == CHAT:
            assert error["param"] == field
    assert wait_for(lambda: leftovers(live.team.id, live.key.id) == NOTHING_LEFT, timeout=5)


def test_depth_limit_is_enforced_by_a_walk_without_recursion():
    checks.depth({"a": nested(checks.MAX_DEPTH - 1)})
    checks.depth({"a": nested(checks.MAX_DEPTH - 1, dict)})
    for kind in (list, dict):
        with pytest.raises(Exception) as raised:
            checks.depth({"a": nested(checks.MAX_DEPTH, kind)})
        assert (raised.value.status, raised.value.param) == (400, "a")
    with pytest.raises(Exception) as raised:
        checks.depth({"ok": 1, "deep": nested(5000)})   # far past Python's recursion limit
    assert raised.value.param == "deep"


# --- in-process: an unexpected exception after the reservation --------------------------------------------

@pytest.fixture
def relay_setup(transactional_db, simulator, settings, monkeypatch, tmp_path):
    return in_process_setup(simulator, settings, monkeypatch, tmp_path, max_concurrency=2)


def _boom(*args, **kwargs):
    raise RuntimeError("a bug after the reservation")


async def _boom_async(*args, **kwargs):
    raise RuntimeError("a bug after the reservation")


@pytest.mark.parametrize("where", ["after-upstream", "instead-of-upstream"])
def test_an_unexpected_exception_after_the_reservation_releases_holds_and_is_recorded(relay_setup, where):
    live = relay_setup
    headers = {"Authorization": f"Bearer {live.secret}"}
    chat = orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    messages = orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    results = {}

    async def run():
        client = AsyncClient()
        try:
            with pytest.MonkeyPatch.context() as patch:
                if where == "after-upstream":
                    patch.setattr(views, "_complete_response", _boom)
                else:
                    patch.setattr(pipeline.RelayCall, "open_upstream", _boom_async)
                # More failures than the key's concurrency limit (2): a leaked slot would make the third a 429.
                results["failed"] = [
                    await client.post(path, data=data, content_type="application/json", headers=headers)
                    for path, data in ((CHAT, chat), (MESSAGES, messages)) * 3]
            for _ in range(200):   # the settles leave in the background (batched): wait for them, here
                if leftovers(live.team.id, live.key.id) == NOTHING_LEFT:
                    break
                await asyncio.sleep(0.01)
            results["left"] = leftovers(live.team.id, live.key.id)
            results["after"] = await client.post(CHAT, data=chat, content_type="application/json", headers=headers)
            results["journal"] = list(usage_journal.journal.pending)
        finally:
            await in_process_cleanup()

    async_to_sync(run)()

    assert results["left"] == NOTHING_LEFT
    for resp, path in zip(results["failed"], [CHAT, MESSAGES] * 3):
        assert resp.status_code == 500, resp.content
        assert_error_shape(resp, path)
        error = orjson.loads(resp.content)["error"]
        assert error["code"] == "internal_error"
        assert error["type"] == ("api_error" if path == MESSAGES else "server_error")
        assert "bug" not in resp.content.decode()          # no exception text reaches the client
    assert results["after"].status_code == 200, results["after"].content
    recorded = {r["request_id"]: r for r in results["journal"]}
    for resp in results["failed"]:
        record = recorded[resp.headers["x-request-id"]]
        assert (record["status_code"], record["error_code"]) == (500, "internal_error")


def test_an_unexpected_exception_mid_stream_ends_it_with_an_error_event_and_releases_holds(relay_setup):
    live = relay_setup
    headers = {"Authorization": f"Bearer {live.secret}"}
    stream = orjson.dumps({"model": MODEL, "max_tokens": 5, "stream": True,
                           "messages": [{"role": "user", "content": "hi [[sim:tokens=5]]"}]})
    results = {}

    async def run():
        client = AsyncClient()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(views.anthropic_format.EventRenderer, "render", _boom)
                resp = await client.post(MESSAGES, data=stream, content_type="application/json", headers=headers)
                results["status"], results["request_id"] = resp.status_code, resp.headers["x-request-id"]
                results["body"] = b"".join([chunk async for chunk in resp.streaming_content])
            for _ in range(200):   # the settle leaves in the background (batched)
                if leftovers(live.team.id, live.key.id) == NOTHING_LEFT:
                    break
                await asyncio.sleep(0.01)
            results["left"] = leftovers(live.team.id, live.key.id)
            results["journal"] = list(usage_journal.journal.pending)
        finally:
            await in_process_cleanup()

    async_to_sync(run)()

    assert results["status"] == 200          # the headers went out before the first event
    events = [line for line in results["body"].split(b"\n") if line.startswith(b"data: ")]
    last = orjson.loads(events[-1][6:])
    assert last["type"] == "error" and last["error"]["code"] == "internal_error", results["body"]
    assert last["request_id"] == results["request_id"]
    assert results["left"] == NOTHING_LEFT
    record = {r["request_id"]: r for r in results["journal"]}[results["request_id"]]
    assert (record["status_code"], record["error_code"]) == (500, "internal_error")
