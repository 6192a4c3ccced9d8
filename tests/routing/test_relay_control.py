"""Relay defects met while building the control plane, each over real HTTP (a live gateway in front of the
simulated upstream): output types, video input, GET /v1/models/{id}, x-ratelimit-* headers on every limited
answer, /v1/key's effective limit, /v1/generation's finish_reason, ASCII route headers, and a 403 that
leaves no traceback in the log."""
import concurrent.futures
import logging
import time
import uuid

import httpx
import openai
import pytest
from django.conf import global_settings

from accounts import roles
from billing.models import TeamBillingPolicy, UsageRecord
from billing.money import combined_multiplier, usage_cost
from gateway_site import shared_cache
from keys.services import key_limits_set
from routing import tokens
from routing.catalog import bump_version
from routing.forms import CatalogModelForm
from routing.services import model_upsert, routing_rule_upsert
from tests import factories
from tests.conftest import wait_for
from tests.servers import free_port

EMBED = "openai/test-embedding"
VIDEO = {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def post(live, path, body, secret=None):
    return httpx.post(f"{live.base_url}{path}", json=body, headers=bearer(secret or live.secret), timeout=20)


def chat(live, model="openai/gpt-4o-mini", content="hello", secret=None, **extra):
    return post(live, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": content}],
                                            **extra}, secret)


def served(live, public_id):
    """Wait until the gateway's snapshot (reloaded within 0.5 s of bump_version) lists a model."""
    bump_version()

    def listed():
        data = httpx.get(f"{live.base_url}/models", headers=bearer(live.secret)).json()["data"]
        return public_id in [m["id"] for m in data]

    assert wait_for(listed), f"the gateway never served {public_id}"


def model_with_channel(live, public_id, *, kind="openai", **fields):
    model = factories.CatalogModelFactory(public_id=public_id, upstream_name="gpt-4o-mini", **fields)
    factories.PriceFactory(model=model)
    base = f"{live.simulator.url}/v1" if kind == "openai" else live.simulator.url
    factories.channel(models=[model], base_url=base, kind=kind, name=public_id)
    return model


def assert_unsupported(resp, says):
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsupported_capability", error
    assert says in error["message"], error["message"]


def early_in_the_minute():
    """Rate counters are per minute: start a rate test with enough of the minute left."""
    assert wait_for(lambda: time.time() % 60 < 40, timeout=25)


# --- output type -----------------------------------------------------------------------------------------

def test_output_type_is_checked(live):
    model_with_channel(live, EMBED, output_modalities=["embeddings"], supports_tools=False)
    model_with_channel(live, "google/test-gemini", kind="gemini", output_modalities=["text"])
    served(live, EMBED)
    served(live, "google/test-gemini")

    assert_unsupported(chat(live, EMBED), f"{EMBED}: no text output")
    messages = post(live, "/messages", {"model": EMBED, "max_tokens": 10,
                                        "messages": [{"role": "user", "content": "hi"}]})
    assert messages.status_code == 400, messages.text
    assert messages.json()["error"]["code"] == "unsupported_capability"
    for chat_model in ("openai/gpt-4o-mini", "google/test-gemini"):
        assert_unsupported(post(live, "/embeddings", {"model": chat_model, "input": "hello"}),
                           f"{chat_model}: no embeddings output")
    ok = post(live, "/embeddings", {"model": EMBED, "input": ["hello", "world"]})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["data"]) == 2 and ok.json()["model"] == EMBED
    assert chat(live).status_code == 200


# --- video input -----------------------------------------------------------------------------------------

def test_catalog_form_accepts_video_input_and_the_relay_honours_it(live):
    form = CatalogModelForm(data={
        "public_id": "google/test-video", "display_name": "Video model", "provider": "google",
        "upstream_name": "gemini-2.5-flash", "aliases": "", "context_length": 100_000, "max_output_tokens": 1000,
        "input_modalities": ["text", "image", "video"], "output_modalities": ["text"], "supports_tools": "on",
        "supports_json_schema": "on", "supports_vision": "on", "enabled": "on"})
    assert form.is_valid(), form.errors
    model = model_upsert(**form.upsert_fields())
    assert model.input_modalities == ["text", "image", "video"]
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind="gemini", name="video")
    served(live, "google/test-video")

    content = [{"type": "text", "text": "what happens in this clip?"}, VIDEO]
    resp = chat(live, "google/test-video", content)
    assert resp.status_code == 200, resp.text
    assert_unsupported(chat(live, "openai/gpt-4o-mini", content), "no video input")


# --- GET /v1/models/{id} ---------------------------------------------------------------------------------

def test_models_retrieve_with_a_slash_an_alias_and_unknown_ids(live):
    client = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)
    model = client.models.retrieve("openai/gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o-mini", "model", "openai")
    assert model.created > 0
    assert client.models.retrieve("gpt-4o-mini").id == "openai/gpt-4o-mini"     # an alias names the model
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no/such-model")
    assert exc.value.body["code"] == "model_not_found" and exc.value.body["type"] == "invalid_request_error"
    assert "no/such-model" in exc.value.body["message"]

    # Filtered like the list: a key limited to another model does not see this one.
    _, limited = factories.api_key(team=live.team, allowed_models=["openai/some-other-model"])
    resp = httpx.get(f"{live.base_url}/models/openai/gpt-4o-mini", headers=bearer(limited))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert resp.headers["x-request-id"] == resp.json()["error"]["request_id"]
    resp = httpx.post(f"{live.base_url}/models/openai/gpt-4o-mini", headers=bearer(live.secret))
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"
    assert httpx.get(f"{live.base_url}/models/openai/gpt-4o-mini").status_code == 401


# --- x-ratelimit-*, /v1/key, /v1/generation ----------------------------------------------------------------

def rate(resp) -> tuple:
    h = resp.headers
    return h.get("x-ratelimit-limit-requests"), h.get("x-ratelimit-remaining-requests")


def test_ratelimit_headers_on_successes_streams_and_429s(live):
    key, secret = factories.api_key(team=live.team, name="rated")
    key_limits_set(target=key, rpm_limit=3)
    early_in_the_minute()
    first = chat(live, secret=secret)
    assert first.status_code == 200, first.text
    assert rate(first) == ("3", "2")
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    with httpx.stream("POST", f"{live.base_url}/chat/completions", headers=bearer(secret), timeout=20,
                      json={"model": "openai/gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as stream:
        assert stream.status_code == 200
        assert rate(stream) == ("3", "1")
        stream.read()
    assert rate(chat(live, secret=secret)) == ("3", "0")
    refused = chat(live, secret=secret)
    assert refused.status_code == 429, refused.text
    assert rate(refused) == ("3", "0") and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    # Anthropic's route shows them too.
    anthropic = post(live, "/messages", {"model": "openai/gpt-4o-mini", "max_tokens": 5,
                                         "messages": [{"role": "user", "content": "hi"}]}, secret)
    assert anthropic.status_code == 429 and rate(anthropic) == ("3", "0")


def test_ratelimit_headers_on_a_402(live):
    key, secret = factories.api_key(team=live.team, name="poor")
    key_limits_set(target=key, rpm_limit=100, tpm_limit=1_000_000, budget_limit=1, budget_period="day")
    early_in_the_minute()
    resp = chat(live, content="word " * 2000, secret=secret)
    assert resp.status_code == 402, resp.text
    assert rate(resp) == ("100", "100")     # refused: this request is not counted
    assert resp.headers["x-ratelimit-limit-tokens"] == "1000000"


def key_info(live, secret):
    return httpx.get(f"{live.base_url}/key", headers=bearer(secret)).json()["data"]


def test_key_shows_the_effective_limit_and_its_source(live):
    group = factories.KeyGroupFactory(team=live.team, name="prod")
    key, secret = factories.api_key(group=group, name="effective")
    key_limits_set(target=key, budget_limit=5_000_000, budget_period="month", rpm_limit=60)
    key_limits_set(target=group, budget_limit=2_000_000, budget_period="day", rpm_limit=30)
    info = wait_for(lambda: (i := key_info(live, secret))["limit_source"] == "key group" and i)
    assert info["limit"] == 2.0 and info["limit_remaining"] == 2.0 and info["limit_reset"] == "day"
    assert info["rate_limit"] == {"requests": 30, "interval": "1m"} and info["rate_limit_source"] == "key group"
    assert {(b["source"], b["limit"]) for b in info["limits"]} == {("key", 5.0), ("key group", 2.0)}

    TeamBillingPolicy.objects.update_or_create(team=live.team, defaults={"monthly_cap": 1_000_000})
    bump_version()
    info = wait_for(lambda: (i := key_info(live, secret))["limit_source"] == "team" and i)
    assert info["limit"] == 1.0 and info["limit_reset"] == "month"

    spender = chat(live, content="[[sim:tokens=20]] hi", secret=secret)
    assert spender.status_code == 200
    request_id = spender.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    info = wait_for(lambda: (i := key_info(live, secret))["limit_remaining"] < 1.0 and i)
    assert info["limit_remaining"] == (1_000_000 - record.cost) / 1_000_000


def test_generation_fills_finish_reason(live):
    ok = chat(live, content="[[sim:tokens=5]] hi")
    failed = chat(live, content="[[sim:fault=status:503]] hi")
    assert (ok.status_code, failed.status_code) == (200, 502)
    cut = chat(live, content="[[sim:tokens=20]] hi", max_tokens=3)                   # the upstream's own reason
    streamed = chat(live, content="[[sim:tokens=20]] hi", max_tokens=3, stream=True)  # passed through
    assert (cut.status_code, streamed.status_code) == (200, 200)
    for resp, finish in ((ok, "stop"), (failed, "error"), (cut, "length"), (streamed, "length")):
        request_id = resp.headers["x-request-id"]
        assert wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exists())
        gen = httpx.get(f"{live.base_url}/generation", params={"id": request_id}, headers=bearer(live.secret))
        assert gen.json()["data"]["finish_reason"] == finish


# --- ASCII headers -----------------------------------------------------------------------------------------

def test_route_header_is_ascii_and_the_stored_route_matches(live):
    routing_rule_upsert(team=live.team, name="default", default_model=live.model)
    bump_version()
    resp = wait_for(lambda: (r := chat(live, "auto")).status_code == 200 and r)
    raw = dict(resp.headers.raw)[b"x-tollgate-route"]
    assert raw.isascii() and b"?" not in raw, raw
    assert b"route=auto -> route:default" in raw
    request_id = resp.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record.route == "auto -> route:default"


# --- a 403 leaves no traceback in the log -------------------------------------------------------------------

def test_a_console_403_is_logged_without_a_traceback(transactional_db, client, caplog):
    member = factories.MembershipFactory(role=roles.MEMBER)
    client.force_login(member.user)
    with caplog.at_level(logging.WARNING):
        resp = client.get(f"/console/t/{member.team.slug}/members/")
    assert resp.status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage().startswith("Forbidden") and record.exc_info is None
    assert "Traceback" not in caplog.text


def test_relay_and_console_403s_write_no_traceback_to_the_gateway_log(live, settings):
    start = len(live.server.log())
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS   # the gateway checks the password
    _, limited = factories.api_key(team=live.team, allowed_models=["openai/some-other-model"])
    marker = uuid.uuid4().hex
    resp = chat(live, content=marker, secret=limited)
    assert resp.status_code == 403
    member = factories.MembershipFactory(team=live.team, role=roles.MEMBER)
    member.user.set_password("pw-for-the-403-test")
    member.user.save()
    with httpx.Client(base_url=live.server.url, follow_redirects=False, timeout=20) as browser:
        login = browser.get("/console/login/")
        token = browser.cookies["csrftoken"]
        signed_in = browser.post("/console/login/", data={"username": member.user.username,
                                                           "password": "pw-for-the-403-test",
                                                           "csrfmiddlewaretoken": token},
                                 headers={"Referer": f"{live.server.url}/console/login/"})
        assert login.status_code == 200 and signed_in.status_code == 302, signed_in.text[:500]
        forbidden = browser.get(f"/console/t/{live.team.slug}/members/")
        assert forbidden.status_code == 403
    log = wait_for(lambda: (text := live.server.log()[start:]).count("Forbidden") >= 2 and text, timeout=5)
    assert log, live.server.log()[-2000:]
    assert "Traceback" not in log and "PermissionDenied" not in log, log[-3000:]


# --- the hold covers the priciest candidate ------------------------------------------------------------------

def test_hold_is_priced_at_the_most_expensive_candidate(live):
    """route:pricey: a cheap default on a dead channel, a backup costing 25x: while the backup serves, the
    team's hold covers the backup's worst case (it used to be the default's, so a fallback could overspend)."""
    cheap = factories.CatalogModelFactory(public_id="test/cheap-default", upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=cheap)
    factories.channel(models=[cheap], base_url=f"http://127.0.0.1:{free_port()}/v1", name="dead")
    dear = factories.CatalogModelFactory(public_id="test/dear-backup", upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=dear, input_per_m=3_750_000, output_per_m=15_000_000)
    factories.channel(models=[dear], base_url=f"{live.simulator.url}/v1", name="dear")
    routing_rule_upsert(team=live.team, name="pricey", default_model=cheap, backup_models=[dear.public_id])
    served(live, "test/dear-backup")
    body = {"model": "route:pricey", "max_tokens": 1000,
            "messages": [{"role": "user", "content": "[[sim:fault=delay:1500]] [[sim:tokens=5]] hi"}]}
    prompt = tokens.estimate_prompt_tokens(body)
    worst = {m: usage_cost(prompt_tokens=prompt, completion_tokens=1000, cached_tokens=0, price=m.prices.get(),
                           multiplier_ppm=combined_multiplier(1_000_000, None)) for m in (cheap, dear)}
    assert worst[dear] > 10 * worst[cheap]

    held_key = f"tg:held:team:{live.team.pk}"
    redis = shared_cache.sync_client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, live, "/chat/completions", body)
        held = wait_for(lambda: int(redis.get(held_key) or 0), timeout=5)
        resp = pending.result()
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "test/dear-backup" and "connection error" in resp.headers["x-tollgate-route"]
    assert held == worst[dear]
    assert wait_for(lambda: int(redis.get(held_key) or 0) == 0)   # given back once settled


# --- the demo catalog ---------------------------------------------------------------------------------------

def test_demo_gemini_takes_video_and_its_embedding_model_only_embeds(transactional_db, gateway, simulator):
    from billing.demo import seed_demo

    secret = "sk-tg-relay-demo-key-0000000000000000000000000"
    seed_demo(api_key=secret, owner_password="pw-demo-1", operator_password="pw-demo-2", simulator_url=simulator.url,
              rpm_limit=None)
    bump_version()
    base = f"{gateway.url}/v1"

    def call(path, body):
        return httpx.post(base + path, json=body, headers=bearer(secret), timeout=20)

    content = [{"type": "text", "text": "what happens in this clip?"}, VIDEO]
    resp = wait_for(lambda: (r := call("/chat/completions", {"model": "google/gemini-2.5-flash", "messages": [
        {"role": "user", "content": content}]})).status_code != 404 and r)
    assert resp.status_code == 200, resp.text
    resp = call("/chat/completions", {"model": "deepseek/deepseek-chat",
                                      "messages": [{"role": "user", "content": content}]})
    assert_unsupported(resp, "no video input")
    assert_unsupported(call("/chat/completions", {"model": "openai/text-embedding-3-small",
                                                   "messages": [{"role": "user", "content": "hi"}]}), "no text output")
    assert_unsupported(call("/embeddings", {"model": "google/gemini-2.5-flash", "input": "hi"}), "no embeddings output")
    ok = call("/embeddings", {"model": "openai/text-embedding-3-small", "input": "hi"})
    assert ok.status_code == 200, ok.text
