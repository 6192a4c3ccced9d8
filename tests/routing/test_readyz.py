"""/readyz: ready while the relay can serve — one dependency down is "degraded" (200: the relay fails soft, and a
load balancer must not pull every instance), both down is 503."""
import orjson
import pytest
from django.test import Client

from gateway_site import shared_cache
from routing.relay import views


def cut(*_args, **_kwargs):
    raise ConnectionError("down")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("down, status, code", [((), "ok", 200), (("cache",), "degraded", 200),
                                                (("database",), "degraded", 200),
                                                (("cache", "database"), "unavailable", 503)])
def test_readiness_by_what_is_down(monkeypatch, down, status, code):
    if "cache" in down:
        monkeypatch.setattr(shared_cache, "ping", cut)
    if "database" in down:
        monkeypatch.setattr(views, "_check_db", cut)
    response = Client().get("/readyz")
    body = orjson.loads(response.content)
    assert (response.status_code, body["status"]) == (code, status)
    for name in ("cache", "database"):
        assert body["checks"][name] is (name not in down)


def test_a_redis_error_under_a_direct_call_is_a_503_in_the_routes_format(transactional_db, simulator, settings,
                                                                          monkeypatch, tmp_path):
    """Redis dropping mid-request where a view talks to it directly (not through the limit layer's fallback)
    answers a 503 the client can retry, in the route's format — not a 500."""
    import redis
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from routing.relay import pipeline
    from tests.conftest import in_process_cleanup, in_process_setup

    live = in_process_setup(simulator, settings, monkeypatch, tmp_path)

    async def dropped(*_args, **_kwargs):
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(pipeline.RelayCall, "open_upstream", dropped)
    monkeypatch.setattr(shared_cache.outage, "failed", lambda exc: None)   # no probe loop in this test
    answers = {}

    async def run():
        try:
            client = AsyncClient()
            for path in ("/v1/chat/completions", "/v1/messages"):
                answers[path] = await client.post(
                    path, content_type="application/json", headers={"Authorization": f"Bearer {live.secret}"},
                    data=orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "hi"}]}))
        finally:
            await in_process_cleanup()

    async_to_sync(run)()
    openai, anthropic = answers["/v1/chat/completions"], answers["/v1/messages"]
    assert openai.status_code == anthropic.status_code == 503
    assert openai.headers["retry-after"] == "5"
    assert orjson.loads(openai.content)["error"]["code"] == "service_unavailable"
    assert orjson.loads(anthropic.content)["error"]["type"] == "overloaded_error"
