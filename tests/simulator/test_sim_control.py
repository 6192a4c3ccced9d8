"""The /_sim control endpoints, and the app used in-process (no server)."""

import asyncio

import orjson
import pytest

from simulator.app import create_app
from tests.simulator.sim_helpers import KEY


@pytest.mark.live
def test_health(sim):
    assert sim.get("/_sim/health").json() == {"ok": True}
    assert sim.get("/_sim/nothing").status_code == 404


@pytest.mark.live
def test_request_log_masks_keys_and_keeps_the_body(sdk, sim):
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "first"}])
    sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "second"}],
                                temperature=0.5, metadata={"trace": "t1"}, extra_headers={"x-custom": "yes"})
    sim.get("/v1/models", headers={"Authorization": "Bearer sk-another-1234"})
    log = sim.get("/_sim/requests", params={"limit": 2}).json()["requests"]
    assert [(r["method"], r["path"]) for r in log] == [("POST", "/v1/chat/completions"), ("GET", "/v1/models")]
    chat, models = log
    assert chat["headers"]["authorization"] == "***" + KEY[-4:] and models["headers"]["authorization"] == "***1234"
    assert KEY not in orjson.dumps(log).decode()
    assert chat["headers"]["x-custom"] == "yes"
    assert chat["body"] == {"model": "gpt-4o", "messages": [{"role": "user", "content": "second"}],
                            "temperature": 0.5, "metadata": {"trace": "t1"}}
    assert len(sim.get("/_sim/requests").json()["requests"]) == 3
    assert sim.delete("/_sim/requests").json() == {"ok": True}
    assert sim.get("/_sim/requests").json() == {"requests": []}
    assert sim.get("/_sim/requests", params={"limit": "x"}).status_code == 400


def _call(app, method, path, body=None, key=KEY):
    """Drive the ASGI app in-process for one plain (non-streamed) request: (status, parsed body)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": orjson.dumps(body) if body is not None else b"", "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [(b"authorization", f"Bearer {key}".encode())]
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_factory_apps_are_independent_and_the_log_is_bounded():
    app, other = create_app(history=3), create_app()
    for i in range(5):
        status, reply = _call(app, "POST", "/v1/chat/completions",
                              {"model": "m", "messages": [{"role": "user", "content": f"message {i}"}]})
        assert status == 200
        assert reply["choices"][0]["message"]["content"].startswith(f"Simulated reply to: message {i}")
    log = _call(app, "GET", "/_sim/requests")[1]["requests"]
    assert [r["body"]["messages"][0]["content"] for r in log] == ["message 2", "message 3", "message 4"]
    assert _call(other, "GET", "/_sim/requests")[1] == {"requests": []}
    assert _call(app, "POST", "/_sim/faults", {"key": "*", "fault": "status:500"})[0] == 200
    assert _call(app, "GET", "/v1/models")[0] == 500 and _call(other, "GET", "/v1/models")[0] == 200
