"""Stored responses (the shared cache, team-scoped): GET, DELETE, input_items, `store: false`,
`previous_response_id` resolved by the gateway (the simulator refuses one), another team's id a 404; and an
OpenAI-compatible channel without /responses served by translation, remembered."""
import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for
from tests.routing.test_responses_relay import events, post, sim_requests


def get(live, path: str, secret: str | None = None, method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"{live.base_url}/responses/{path}", timeout=10,
                         headers={"Authorization": f"Bearer {secret or live.secret}"})


@pytest.fixture
def claude(live):
    model = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", upstream_name="claude-sonnet-4-5",
                                          aliases=["claude-sonnet-4-5"])
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.ANTHROPIC, name="claude",
                      api_key="sim-anthropic")
    bump_version()
    wait_for(lambda: post(live, {"model": "claude-sonnet-4-5", "input": "hi", "store": False}).status_code == 200)
    return live


@pytest.mark.parametrize("stream", [False, True])
def test_a_stored_response_can_be_read_listed_and_deleted(live, stream):
    r = post(live, {"model": "gpt-4o-mini", "input": "remember me", "stream": stream})
    created = events(r)[-1]["response"] if stream else r.json()
    got = get(live, created["id"])
    assert got.status_code == 200 and got.json()["id"] == created["id"]
    assert got.json()["output"] == created["output"]
    items = get(live, f"{created['id']}/input_items").json()
    assert items["object"] == "list" and items["data"][0]["content"][0]["text"] == "remember me"
    deleted = get(live, created["id"], method="DELETE")
    assert deleted.status_code == 200 and deleted.json() == {"id": created["id"], "object": "response.deleted",
                                                             "deleted": True}
    gone = get(live, created["id"])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_store_false_keeps_nothing(live):
    created = post(live, {"model": "gpt-4o-mini", "input": "forget me", "store": False}).json()
    assert created["store"] is False
    assert get(live, created["id"]).status_code == 404


def test_another_teams_response_is_a_404(live):
    created = post(live, {"model": "gpt-4o-mini", "input": "ours"}).json()
    _, other_secret = factories.api_key()
    for method in ("GET", "DELETE"):
        r = get(live, created["id"], secret=other_secret, method=method)
        assert r.status_code == 404 and created["id"] in r.json()["error"]["message"]
    follow = post(live, {"model": "gpt-4o-mini", "input": "more", "previous_response_id": created["id"]})
    assert follow.status_code == 200   # still ours
    r = httpx.post(f"{live.base_url}/responses", timeout=10, headers={"Authorization": f"Bearer {other_secret}"},
                   json={"model": "gpt-4o-mini", "input": "x", "previous_response_id": created["id"]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"
    assert get(live, created["id"]).status_code == 200   # the other team's DELETE removed nothing


@pytest.mark.parametrize("model, path", [("gpt-4o-mini", "/v1/responses"), ("claude-sonnet-4-5", "/v1/messages")])
def test_previous_response_id_sends_the_whole_conversation(claude, model, path):
    first = post(claude, {"model": model, "input": "My name is Ada."}).json()
    httpx.delete(f"{claude.simulator.url}/_sim/requests")
    second = post(claude, {"model": model, "input": "What is my name?", "previous_response_id": first["id"]})
    assert second.status_code == 200, second.text
    assert second.json()["previous_response_id"] == first["id"]
    sent = orjson.dumps(sim_requests(claude, path)[-1]["body"]).decode()
    assert "My name is Ada." in sent and "What is my name?" in sent
    assert first["output"][0]["content"][0]["text"] in sent   # the first answer is part of the history
    assert "previous_response_id" not in sent


def test_an_unknown_previous_response_id_is_a_404(live):
    r = post(live, {"model": "gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"


class _NoResponses(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream without a Responses API (as DeepSeek): 404 on /responses, chat relayed to
    the simulator."""
    upstream = ""
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append(self.path)
        if self.path.endswith("/responses"):
            self._send(404, b'{"error":{"message":"Not Found","type":"invalid_request_error"}}')
            return
        headers = {"Authorization": self.headers["Authorization"], "Content-Type": "application/json"}
        answer = httpx.post(self.upstream + self.path, content=body, timeout=10, headers=headers)
        self._send(answer.status_code, answer.content)

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def channel_without_responses(live):
    """An OpenAI-compatible channel (model `deepseek-chat`) whose upstream has no /responses (a 404), in front
    of the simulator's chat completions; the paths it was asked for in `_NoResponses.seen`."""
    _NoResponses.upstream, _NoResponses.seen = live.simulator.url, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoResponses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        model = factories.CatalogModelFactory(public_id="deepseek/deepseek-chat", upstream_name="deepseek-chat",
                                              aliases=["deepseek-chat"])
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=f"http://127.0.0.1:{server.server_port}/v1", name="compat")
        bump_version()
        wait_for(lambda: "deepseek/deepseek-chat" in httpx.get(
            f"{live.base_url}/models", headers={"Authorization": f"Bearer {live.secret}"}).text)
        yield
    finally:
        server.shutdown()


def test_a_channel_without_responses_is_served_by_translation_and_remembered(live):
    with channel_without_responses(live):
        first = post(live, {"model": "deepseek-chat", "input": "hello"})
        assert first.status_code == 200, first.text
        assert first.json()["output"][0]["content"][0]["text"]
        assert _NoResponses.seen == ["/v1/responses", "/v1/chat/completions"]
        second = post(live, {"model": "deepseek-chat", "input": "again", "stream": True})
        assert events(second)[-1]["type"] == "response.completed"
        assert _NoResponses.seen[2:] == ["/v1/chat/completions"]   # remembered: no second try of /responses


def test_input_tokens_are_counted_offline(live):
    import openai

    c = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)
    short = c.responses.input_tokens.count(model="gpt-4o-mini", input="hi")
    longer = c.responses.input_tokens.count(model="gpt-4o-mini", input="hi " * 50, instructions="Be brief.")
    assert short.object == "response.input_tokens" and 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(openai.NotFoundError):
        c.responses.input_tokens.count(model="no-such-model", input="hi")


def test_a_stored_response_expires(live):
    from gateway_site import shared_cache
    from routing.relay.responses_views import STORE_TTL_SECONDS

    created = post(live, {"model": "gpt-4o-mini", "input": "for a while"}).json()
    ttl = shared_cache.sync_client().ttl("tg:responses:" + created["id"])   # the gateway's Redis (REDIS_URL)
    assert STORE_TTL_SECONDS - 60 < ttl <= STORE_TTL_SECONDS == 30 * 86400


def test_a_bad_input_after_a_previous_response_is_a_400(live):
    created = post(live, {"model": "gpt-4o-mini", "input": "first"}).json()
    r = post(live, {"model": "gpt-4o-mini", "input": 5, "previous_response_id": created["id"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    only_history = post(live, {"model": "gpt-4o-mini", "previous_response_id": created["id"]})
    assert only_history.status_code == 200   # no new input: the model answers the stored conversation
