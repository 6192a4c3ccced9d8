"""Quotas and rate limits over real HTTP, on real PostgreSQL + Redis, shared across gateway processes."""
import asyncio
import time

import anthropic
import httpx
import openai
import pytest
from django.db.models import Sum

from billing.models import UsageRecord
from keys.services import key_limits_set
from routing.catalog import bump_version
from tests import factories
from tests.conftest import make_live_setup, wait_for

# A price of 1 micro-unit a token makes costs easy to read: cost = prompt + completion tokens.
ONE_PER_TOKEN = dict(input_per_m=1_000_000, output_per_m=1_000_000, cached_input_per_m=500_000)


@pytest.fixture
def priced(live):
    live.model.prices.update(**ONE_PER_TOKEN)
    bump_version()
    wait_for(lambda: chat(live).status_code == 200)
    return live


def chat(live, content="hi", key=None, base=None, **extra):
    return httpx.post(f"{base or live.base_url}/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {key or live.secret}"},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": content}],
                            **extra})


def spent(key) -> int:
    return UsageRecord.objects.filter(api_key=key).aggregate(s=Sum("cost"))["s"] or 0


async def _burst(url, secret, body, n):
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*[client.post(url, json=body, headers={"Authorization": f"Bearer {secret}"})
                                      for _ in range(n)])


@pytest.mark.parametrize("max_tokens", [10, None])
def test_200_concurrent_requests_against_a_budget_that_covers_10(priced, max_tokens):
    key, secret = factories.api_key(team=priced.team, name="burst")
    # Answers as long as the worst case, so the budget really covers ~10 requests whatever the timing.
    answer = max_tokens or 1024
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": f"[[sim:tokens={answer}]] go"}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    # One request's worst case: the prompt estimate + max_tokens (or the default allowance of 1,024).
    from routing import tokens
    worst = tokens.estimate_prompt_tokens(body) + (max_tokens or 1024)
    budget = 10 * worst
    key_limits_set(target=key, budget_limit=budget, budget_period="day")
    responses = asyncio.run(_burst(f"{priced.base_url}/chat/completions", secret, body, 200))
    statuses = [r.status_code for r in responses]
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}, set(statuses)
    assert served >= 10
    refused = [r for r in responses if r.status_code == 402]
    assert refused, "the budget must stop most of the 200"
    error = refused[0].json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "key 'burst' daily budget" in error["message"] and "resets at" in error["message"]
    wait_for(lambda: UsageRecord.objects.filter(api_key=key, status_code=200).count() == served, timeout=10)
    # Holds bound the spend: at most the budget plus one request's worst case (the last hold is clipped).
    assert spent(key) <= budget + worst


def _wait_for_fresh_minute():
    """Rate windows are calendar minutes: a test that counts requests in one must not straddle two, so in
    the last 10 s of a minute it lets that minute pass (time has to pass here by design; at most 11 s)."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_rpm_is_shared_by_two_gateway_processes(priced, gateway_factory):
    other = gateway_factory()
    key, secret = factories.api_key(team=priced.team, name="rpm")
    key_limits_set(target=key, rpm_limit=5)
    _wait_for_fresh_minute()
    results = [chat(priced, key=secret, base=f"{server.url}/v1") for server in (priced.server, other) * 4]
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 5 and statuses.count(429) == 3, statuses
    ok, limited = results[0], next(r for r in results if r.status_code == 429)
    assert ok.headers["x-ratelimit-limit-requests"] == "5"
    assert ok.headers["x-ratelimit-remaining-requests"] == "4"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "5 requests per minute" in error["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_tpm_counts_estimated_then_real_tokens(priced, gateway_factory):
    other = gateway_factory()
    key, secret = factories.api_key(team=priced.team, name="tpm")
    from routing import tokens
    body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50}
    per_request = tokens.estimate_prompt_tokens(body) + 50
    key_limits_set(target=key, tpm_limit=2 * per_request + per_request // 2)
    _wait_for_fresh_minute()
    first = chat(priced, "hello there", key=secret, max_tokens=50)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == str(2 * per_request + per_request // 2)
    # After settling, the real (smaller) count replaces the estimate, so more requests fit than the
    # estimate alone would allow; a burst still runs into the limit across both processes.
    statuses = [chat(priced, "hello there", key=secret, base=f"{s.url}/v1", max_tokens=50).status_code
                for s in (priced.server, other) * 6]
    assert 429 in statuses and statuses.count(200) >= 2


def test_balance_exhausted_is_402_on_openai_and_anthropic_routes(transactional_db, gateway, simulator):
    live = make_live_setup(gateway, simulator)
    live.model.prices.update(**ONE_PER_TOKEN)
    from billing.services import balance_adjust
    balance_adjust(team=live.team, amount=-100 * 1_000_000, reason="drain", created_by=None,
                   idempotency_key="drain")
    bump_version()
    resp = wait_for(lambda: (r := chat(live)).status_code == 402 and r)
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "team balance" in error["message"] and resp.headers["x-request-id"] == error["request_id"]
    client = anthropic.Anthropic(base_url=gateway.url, api_key=live.secret, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 402
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "billing_error"
    assert "team balance" in exc.value.body["error"]["message"]


def test_rate_limit_on_the_anthropic_route(priced):
    key, secret = factories.api_key(team=priced.team, name="anthropic-rpm")
    key_limits_set(target=key, rpm_limit=1)
    _wait_for_fresh_minute()
    client = anthropic.Anthropic(base_url=priced.server.url, api_key=secret, max_retries=0)
    client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    assert exc.value.response.headers["retry-after"]


def test_aborted_stream_is_billed_for_what_it_produced(priced):
    c = openai.OpenAI(base_url=priced.base_url, api_key=priced.secret, max_retries=0)
    stream = c.chat.completions.create(
        model="openai/gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "[[sim:tokens=60]] [[sim:chunk_delay_ms=40]] count"}])
    request_id = stream.response.headers["x-request-id"]
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 8:
            break
    stream.close()
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first(), timeout=10)
    assert record is not None
    assert (record.status_code, record.error_code) == (499, "client_closed_request")
    assert 8 <= record.completion_tokens < 60        # what was produced, not the 60 asked for
    assert record.cost == record.prompt_tokens + record.completion_tokens > 8


def test_key_self_service_and_generation_lookup(priced):
    key, secret = factories.api_key(team=priced.team, name="self")
    key_limits_set(target=key, budget_limit=5_000_000, budget_period="month", rpm_limit=60)
    resp = chat(priced, "[[sim:tokens=7]] hi", key=secret)
    completion_id, request_id = resp.json()["id"], resp.headers["x-request-id"]
    wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exists())
    headers = {"Authorization": f"Bearer {secret}"}
    info = httpx.get(f"{priced.base_url}/key", headers=headers).json()["data"]
    cost = UsageRecord.objects.get(request_id=request_id).cost
    assert info["label"].startswith("self (sk-tg-…")
    assert info["limit"] == 5.0 and info["limit_reset"] == "month"
    assert info["usage"] == info["usage_daily"] == info["usage_monthly"] == cost / 1_000_000
    assert info["limit_remaining"] == (5_000_000 - cost) / 1_000_000
    assert info["rate_limit"] == {"requests": 60, "interval": "1m"}
    for ident in (completion_id, request_id):
        gen = httpx.get(f"{priced.base_url}/generation", params={"id": ident}, headers=headers).json()["data"]
        assert gen["id"] == request_id and gen["tokens_completion"] == 7 and gen["total_cost_micro"] == cost
        assert gen["model"] == "openai/gpt-4o-mini" and gen["streamed"] is False and gen["cancelled"] is False
    # Another team's key cannot see it.
    _, stranger = factories.api_key()
    factories.credit(_key_team(stranger))
    resp = httpx.get(f"{priced.base_url}/generation", params={"id": request_id},
                     headers={"Authorization": f"Bearer {stranger}"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def _key_team(secret):
    from keys.models import ApiKey
    from keys.secrets import hash_secret

    return ApiKey.objects.get(secret_hash=hash_secret(secret)).team


def test_holds_of_a_dead_process_are_swept_and_audited(priced, settings):
    """A reservation that is never settled (its process died) is given back by the sweep task."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from billing import limits
    from billing.tasks import sweep_stale_holds
    from gateway_site import shared_cache

    key, secret = factories.api_key(team=priced.team, name="dead", )
    key_limits_set(target=key, max_concurrency=1, budget_limit=1_000_000, budget_period="day")
    assert chat(priced, key=secret).status_code == 200        # builds the counters
    checks = [limits.Check("conc", f"tg:cc:key:{key.pk}", 1, 1),
              limits.Check("budget", wait_for(lambda: _spent_key(key)), 1_000_000, 500, aux=f"tg:held:key:{key.pk}")]
    settings.TOLLGATE_HOLD_SWEEP_SECONDS = -1                   # already stale when taken
    asyncio.run(limits.reserve(500, 1, checks, "req_dead"))
    client = shared_cache.sync_client()
    assert int(client.get(f"tg:cc:key:{key.pk}")) == 1 and int(client.get(f"tg:held:key:{key.pk}")) == 500
    assert chat(priced, key=secret).status_code == 429          # the dead request still holds the only slot
    with pytest.raises(CommandError):
        call_command("ledger_audit", max_unbilled_age=10**6)
    assert sweep_stale_holds() == 1
    assert int(client.get(f"tg:cc:key:{key.pk}")) == 0 and int(client.get(f"tg:held:key:{key.pk}")) == 0
    assert chat(priced, key=secret).status_code == 200


def _spent_key(key):
    from gateway_site import shared_cache

    keys = shared_cache.sync_client().keys(f"tg:spent:key:{key.pk}:*")
    return keys[0].decode() if keys else None
