"""The relay's error table over real HTTP: a live gateway process in front of the simulated upstream.

Every error answers JSON in OpenAI's shape with the request id in both the `X-Request-Id` header and
`error.request_id`, never HTML or a traceback; every failure after authentication leaves a usage record.
"""
import time
import uuid

import httpx
import orjson
import pytest
from django.utils import timezone

from billing.models import UsageRecord
from keys.services import api_key_revoke
from routing.catalog import bump_version
from tests import factories
from tests.conftest import make_live_setup, wait_for
from tests.servers import free_port

CHAT = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"
UNSET = object()
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"}


# --- helpers --------------------------------------------------------------------------------------

def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def chat(live, text="hi", *, server=None, headers=None, timeout=15, **body):
    payload = {"model": MODEL, "messages": [{"role": "user", "content": text}], **body}
    return httpx.post((server or live.server).url + CHAT, json=payload,
                      headers=headers if headers is not None else bearer(live.secret), timeout=timeout)


def raw_post(live, content, *, path=CHAT, server=None, headers=None):
    return httpx.post((server or live.server).url + path, content=content,
                      headers={**bearer(live.secret), "Content-Type": "application/json", **(headers or {})},
                      timeout=15)


def assert_clean(text: str) -> None:
    """No stack trace, no HTML page, on any relay answer."""
    low = text.lower()
    for marker in ("traceback", "<html", "<!doctype", "<body", 'file "/', "exception value"):
        assert marker not in low, f"{marker!r} in response body: {text[:500]}"


def assert_error(resp, status, type_, code, param=UNSET) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers["content-type"]
    assert_clean(resp.text)
    request_id = resp.headers.get("x-request-id", "")
    assert request_id.startswith("req_") and len(request_id) == 28, request_id
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == (type_, code), error
    assert error["request_id"] == request_id
    assert error["message"]
    if param is not UNSET:
        assert error["param"] == param
    return error


def assert_recorded(resp, status, code, **fields) -> UsageRecord:
    """The usage record of an authenticated failure: flushed from the journal in the background."""
    request_id = resp.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first(), timeout=5)
    assert record is not None, f"no usage record for {request_id}"
    assert (record.status_code, record.error_code) == (status, code)
    for name, value in fields.items():
        assert getattr(record, name) == value, (name, getattr(record, name), value)
    return record


def wait_catalog(live, public_id, server=None):
    """A model created in this test is served once the gateway's snapshot reloads (local TTL 0.5 s)."""
    url = (server or live.server).url + "/v1/models"

    def seen():
        return public_id in [m["id"] for m in httpx.get(url, headers=bearer(live.secret)).json()["data"]]

    assert wait_for(seen, timeout=5), f"gateway never served {public_id}"


def upstream_requests_with(simulator, marker: str) -> list[dict]:
    seen = httpx.get(f"{simulator.url}/_sim/requests", params={"limit": 200}).json()["requests"]
    return [r for r in seen if marker in orjson.dumps(r["body"]).decode()]


@pytest.fixture(scope="module")
def small_gateway(gateway_factory):
    """A gateway with a 2000-byte body limit and a 1 s upstream timeout (the 413 and 504 rows)."""
    return gateway_factory(TOLLGATE_MAX_BODY_BYTES="2000", TOLLGATE_UPSTREAM_TIMEOUT="1")


@pytest.fixture
def small(transactional_db, small_gateway, simulator):
    return make_live_setup(small_gateway, simulator)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Each key's owner is a user with a password: PBKDF2 would cost ~0.3 s per key on this suite's clock."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- 400 ------------------------------------------------------------------------------------------

INVALID_JSON = {"truncated": b'{"model": "openai/gpt-4o-mini", "messages": [', "text": b"not json at all",
                "array": b'[{"model": "openai/gpt-4o-mini"}]', "empty": b"", "scalar": b'"a string"'}


def test_body_that_is_not_a_json_object_is_invalid_json(live):
    for case, content in INVALID_JSON.items():
        resp = raw_post(live, content)
        error = assert_error(resp, 400, "invalid_request_error", "invalid_json", param=None)
        assert "JSON" in error["message"], case
        assert_recorded(resp, 400, "invalid_json", served_model="")


INVALID_FIELDS = {
    "no-model": ({"messages": [{"role": "user", "content": "hi"}]}, "missing_field", "model"),
    "no-messages": ({"model": MODEL}, "missing_field", "messages"),
    "messages-empty": ({"model": MODEL, "messages": []}, "invalid_value", "messages"),
    "messages-string": ({"model": MODEL, "messages": "hello"}, "invalid_value", "messages"),
    "messages-object": ({"model": MODEL, "messages": {"role": "user", "content": "hi"}}, "invalid_value", "messages"),
    "stream-string": ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
                      "invalid_value", "stream"),
    "stream-int": ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": 1},
                   "invalid_value", "stream"),
}


def test_invalid_request_fields(live, simulator):
    responses, markers = {}, []
    for case, (body, code, param) in INVALID_FIELDS.items():
        markers.append(uuid.uuid4().hex)
        resp = responses[case] = raw_post(live, orjson.dumps({**body, "user": markers[-1]}))
        error = assert_error(resp, 400, "invalid_request_error", code, param=param)
        assert f"'{param}'" in error["message"], case
    for case, resp in responses.items():
        assert_recorded(resp, 400, INVALID_FIELDS[case][1])
    for marker in markers:
        assert upstream_requests_with(simulator, marker) == []  # refused before any upstream call


# --- 401 ------------------------------------------------------------------------------------------

def test_unknown_or_missing_key_is_refused(live):
    cases = [(bearer("sk-tg-" + "x" * 40), "Incorrect API key"),
             ({"x-api-key": "sk-tg-" + "y" * 40}, "Incorrect API key"),
             ({}, "No API key provided"), ({"Authorization": "Bearer"}, "No API key provided"),
             ({"x-api-key": ""}, "No API key provided"), ({"Authorization": f"Basic {live.secret}"}, "No API key")]
    for headers, says in cases:
        resp = chat(live, headers=headers)
        error = assert_error(resp, 401, "invalid_request_error", "invalid_api_key", param=None)
        assert says in error["message"], (headers, error["message"])
        assert "x" * 20 not in resp.text and "y" * 20 not in resp.text and live.secret not in resp.text


def test_revoked_key_is_refused_and_the_message_says_so(live):
    key, secret = factories.api_key(team=live.team)
    api_key_revoke(api_key=key)  # (a revocation reaching a process that cached the key: tests/keys)
    for headers in (bearer(secret), {"x-api-key": secret}):
        resp = chat(live, headers=headers)
        error = assert_error(resp, 401, "invalid_request_error", "invalid_api_key", param=None)
        assert "revoked" in error["message"] and key.mask in error["message"]
        assert "expired" not in error["message"]
        assert secret not in resp.text


def test_expired_key_is_refused_and_the_message_says_so(live):
    key, secret = factories.api_key(team=live.team, expires_at=timezone.now() - timezone.timedelta(minutes=1))
    for headers in (bearer(secret), {"x-api-key": secret}):
        resp = chat(live, headers=headers)
        error = assert_error(resp, 401, "invalid_request_error", "invalid_api_key", param=None)
        assert "expired" in error["message"] and key.mask in error["message"]
        assert "revoked" not in error["message"]
    _, fresh = factories.api_key(team=live.team, expires_at=timezone.now() + timezone.timedelta(hours=1))
    assert chat(live, headers=bearer(fresh)).status_code == 200


def test_both_key_headers_are_accepted(live):
    for headers in (bearer(live.secret), {"authorization": f"bearer {live.secret}"}, {"x-api-key": live.secret}):
        resp = chat(live, headers=headers)
        assert resp.status_code == 200, (headers.keys(), resp.text)
        assert resp.json()["choices"][0]["message"]["content"]
        assert resp.headers["x-request-id"].startswith("req_")


# --- 403 / 404 ------------------------------------------------------------------------------------

def test_model_not_allowed_for_key_group_or_team(live):
    other = "openai/some-other-model"
    _, by_key = factories.api_key(team=live.team, allowed_models=[other])
    _, by_group = factories.api_key(group=factories.KeyGroupFactory(team=live.team, allowed_models=[other]))
    _, by_team = factories.api_key(team=factories.TeamFactory(allowed_models=[other]))
    for where, secret in (("key", by_key), ("group", by_group), ("team", by_team)):
        resp = chat(live, headers=bearer(secret))
        error = assert_error(resp, 403, "permission_error", "model_not_allowed", param="model")
        assert MODEL in error["message"], where
        assert_recorded(resp, 403, "model_not_allowed", requested_model=MODEL, served_model="")


def test_allowed_model_may_be_called_by_its_alias(live):
    group = factories.KeyGroupFactory(team=live.team, allowed_models=[MODEL])
    _, secret = factories.api_key(group=group, allowed_models=[MODEL, "openai/some-other-model"])
    resp = chat(live, headers=bearer(secret), model="gpt-4o-mini")
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == MODEL


def test_unknown_model_is_model_not_found(live):
    resp = chat(live, model="no/such-model")
    error = assert_error(resp, 404, "invalid_request_error", "model_not_found", param="model")
    assert "no/such-model" in error["message"]
    assert_recorded(resp, 404, "model_not_found", requested_model="no/such-model")


def unknown_endpoint(live, method, path, hint):
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    resp = httpx.request(method, live.server.url + path, content=body if method == "POST" else None,
                         headers={**bearer(live.secret), "Content-Type": "application/json"}, timeout=15)
    error = assert_error(resp, 404, "invalid_request_error", "unknown_endpoint", param=None)
    assert f"{live.server.url}/v1" in error["message"], path
    assert hint in error["message"], (path, error["message"])
    assert path in error["message"]
    assert live.secret not in resp.text


def test_unknown_endpoint_under_v1_names_the_right_base_url(live):
    for method, path, hint in [("POST", "/v1/v1/chat/completions", "added another /v1"),
                               ("GET", "/v1/v1/models", "added another /v1"),
                               ("POST", "/v1/foo", "/v1/chat/completions"),
                               ("GET", "/v1/embeddings/x", "/v1/chat/completions"),
                               ("GET", "/models", "start with /v1")]:
        unknown_endpoint(live, method, path, hint)


def test_post_without_v1_names_the_right_base_url(live):
    """What an SDK sends when its base URL lacks /v1: POST {server}/chat/completions with a bearer key."""
    unknown_endpoint(live, "POST", "/chat/completions", "start with /v1")


def test_wrong_method_answers_json_405_even_to_a_browser(live):
    for method, path, allowed in [("GET", CHAT, "POST"), ("HEAD", CHAT, "POST"), ("PUT", CHAT, "POST"),
                                  ("DELETE", CHAT, "POST"), ("POST", "/v1/models", "GET")]:
        resp = httpx.request(method, live.server.url + path, headers=BROWSER, timeout=15)
        assert resp.status_code == 405, (method, path)
        assert resp.headers["allow"] == allowed
        assert resp.headers["content-type"].startswith("application/json")
        if method == "HEAD":
            continue
        error = assert_error(resp, 405, "invalid_request_error", "method_not_allowed")
        assert f"{live.server.url}/v1" in error["message"]
        assert allowed in error["message"] and method in error["message"]


# --- 413 ------------------------------------------------------------------------------------------

def test_body_over_the_limit_is_request_too_large(small):
    resp = chat(small, "x" * 3000)
    error = assert_error(resp, 413, "invalid_request_error", "request_too_large")
    assert "2000 bytes" in error["message"]
    assert_recorded(resp, 413, "request_too_large")
    assert chat(small, "x" * 100).status_code == 200  # the same gateway takes a body under the limit


def test_chunked_body_over_the_limit_is_request_too_large(small):
    """Without Content-Length (Transfer-Encoding: chunked) the limit still answers 413 in JSON."""
    for size in (2500, 50_000):
        body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * size}]})

        def chunks(body=body):
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000]

        resp = httpx.post(small.server.url + CHAT, content=chunks(),
                          headers={**bearer(small.secret), "Content-Type": "application/json"}, timeout=15)
        assert "content-length" not in resp.request.headers
        error = assert_error(resp, 413, "invalid_request_error", "request_too_large")
        assert "2000 bytes" in error["message"]
        assert_recorded(resp, 413, "request_too_large")


# --- 502 / 504 ------------------------------------------------------------------------------------

def test_upstream_503_or_invalid_json_is_upstream_unavailable(live):
    for fault, says in (("status:503", "HTTP 503"), ("status:500", "HTTP 500"), ("invalid_json", "not valid JSON"),
                        ("empty", "not valid JSON")):
        resp = chat(live, f"[[sim:fault={fault}]] hello")
        error = assert_error(resp, 502, "upstream_error", "upstream_unavailable")
        assert says in error["message"], (fault, error["message"])
        assert "sk-sim" not in resp.text
        assert_recorded(resp, 502, "upstream_unavailable", requested_model=MODEL, served_model="")


def test_channel_on_a_closed_port_is_upstream_unavailable(live):
    model = factories.CatalogModelFactory(public_id="test/closed-port", upstream_name="gpt-4o-mini")
    factories.channel(models=[model], base_url=f"http://127.0.0.1:{free_port()}/v1", name="closed")
    bump_version()
    wait_catalog(live, "test/closed-port")
    started = time.monotonic()
    resp = chat(live, model="test/closed-port")
    assert time.monotonic() - started < 5
    error = assert_error(resp, 502, "upstream_error", "upstream_unavailable")
    assert "connection error" in error["message"]
    assert_recorded(resp, 502, "upstream_unavailable", requested_model="test/closed-port")


def test_upstream_that_hangs_is_upstream_timeout(small):
    started = time.monotonic()
    resp = chat(small, "[[sim:fault=timeout]] hello", timeout=30)
    elapsed = time.monotonic() - started
    error = assert_error(resp, 504, "upstream_error", "upstream_timeout")
    assert "1 s" in error["message"]
    assert 0.9 <= elapsed < 5, elapsed
    assert_recorded(resp, 504, "upstream_timeout")


def test_upstream_client_error_passes_through_without_retry(live, simulator):
    """A 400 from the upstream is the client's own mistake: passed on as is, no second channel tried.
    A 503 on the same two-channel model does go to the second channel (so the count below can tell)."""
    model = factories.CatalogModelFactory(public_id="test/two-channels", upstream_name="gpt-4o-mini")
    factories.channel(models=[model], base_url=f"{simulator.url}/v1", api_key="sk-sim-first-channel", name="a")
    factories.channel(models=[model], base_url=f"{simulator.url}/v1", api_key="sk-sim-second-channel", name="b")
    bump_version()
    wait_catalog(live, "test/two-channels")

    marker = uuid.uuid4().hex
    resp = chat(live, f"[[sim:fault=context_length]] {marker}", model="test/two-channels")
    error = assert_error(resp, 400, "invalid_request_error", "context_length_exceeded", param="messages")
    assert "maximum context length" in error["message"]
    assert len(upstream_requests_with(simulator, marker)) == 1
    assert_recorded(resp, 400, "context_length_exceeded")

    marker = uuid.uuid4().hex
    resp = chat(live, f"[[sim:fault=status:503]] {marker}", model="test/two-channels")
    # Every candidate failed: 503 listing the attempts (one failed upstream alone is a 502).
    error = assert_error(resp, 503, "upstream_error", "no_available_channel")
    assert error["message"].count("HTTP 503") == 2
    assert len(upstream_requests_with(simulator, marker)) == 2


def test_mid_stream_break_ends_with_an_error_chunk_and_done(live):
    with httpx.stream("POST", live.server.url + CHAT, headers=bearer(live.secret), timeout=15,
                      json={"model": MODEL, "stream": True,
                            "messages": [{"role": "user", "content": "[[sim:fault=break:3]] [[sim:tokens=20]] go"}]}
                      ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        request_id = resp.headers["x-request-id"]
        text = resp.read().decode()
    assert_clean(text)
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len(chunks) >= 2                       # some content got through before the break
    assert all("error" not in c for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "error"
    assert (last["error"]["type"], last["error"]["code"]) == ("upstream_error", "upstream_unavailable")
    assert last["id"] == "chatcmpl-" + request_id.removeprefix("req_")
    assert {c["id"] for c in chunks} == {last["id"]} and {c["model"] for c in chunks} == {MODEL}
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first(), timeout=5)
    assert record is not None
    assert (record.status_code, record.error_code, record.stream) == (502, "upstream_unavailable", True)
