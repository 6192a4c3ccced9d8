"""A team owner's day in the console, in a real browser against a live gateway: sign in, create a key and see
its secret once, call the relay with it (OpenAI SDK), find the call in the logs and on the dashboard chart,
switch to 中文. The operator's catalog too. Screenshots of the main pages go to docs/screenshots/."""
import datetime
import os
import random
from pathlib import Path

import httpx
import openai
import pytest
from django.utils import timezone

from accounts import roles
from billing.models import UsageRecord
from billing.services import balance_credit, usage_reconcile
from tests import factories
from tests.billing.factories import UsageRecordFactory
from tests.browser.conftest import sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def shot(page, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def seed_history(team, keys, model_ids) -> None:
    """Two weeks of earlier traffic, so the dashboard has a shape (the test's own call lands today)."""
    rng, now, rows = random.Random(6), timezone.now(), []
    for day in range(13, -1, -1):
        for _ in range(rng.randint(6, 14) + (13 - day)):
            key, model, failed = rng.choice(keys), rng.choice(model_ids), rng.random() < 0.05
            prompt, completion = rng.randint(200, 2500), rng.randint(40, 700)
            rows.append(UsageRecordFactory.build(
                request_id="req_" + os.urandom(12).hex(), team=team, api_key=key, key_mask=key.mask,
                requested_model=model, served_model="" if failed else model,
                status_code=502 if failed else 200, error_code="upstream_unavailable" if failed else "",
                prompt_tokens=0 if failed else prompt, completion_tokens=0 if failed else completion,
                cost=0 if failed else prompt * 3 + completion * 12, latency_ms=rng.randint(300, 2400),
                ttfb_ms=rng.randint(120, 500), sdk="OpenAI-Python 1.51.0", path="/v1/chat/completions",
                created_at=min(now - datetime.timedelta(days=day, hours=rng.random() * 20),
                               now - datetime.timedelta(minutes=30))))
    UsageRecord.objects.bulk_create(rows)


def test_owner_journey(live, page):
    base, team, owner = live.server.url, live.team, live.key.owner
    team.name, owner.username, live.key.group.name = "Acme AI", "alice", "production"
    team.save(update_fields=["name"])
    owner.save(update_fields=["username"])
    live.key.group.save(update_fields=["name"])
    other_key, _ = factories.api_key(team=team, owner=owner, group=live.key.group, name="support-bot")
    live.key.name = "backend"
    live.key.save(update_fields=["name"])
    seed_history(team, [live.key, other_key],
                 ["openai/gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
    balance_credit(team=team, amount=50_000_000, reason="Invoice 2026-11", created_by=owner,
                   idempotency_key="browser-topup")
    usage_reconcile()

    page.goto(f"{base}/console/login/")
    shot(page, "sign-in")
    sign_in(page, base, owner.username, PASSWORD)
    assert page.url.endswith(f"/console/t/{team.slug}/")
    assert page.locator("[data-testid=nav]").inner_text().split("\n")[:2] == ["Dashboard", "API keys"]

    # Create a key: its secret is on the page once, with ready-to-paste snippets.
    page.click("nav >> text=API keys")
    page.fill("input[name=name]", "browser-test")
    page.click("[data-testid=create-key] button[type=submit]")
    secret = page.locator("[data-testid=secret]").inner_text().strip()
    assert secret.startswith("sk-tg-")
    assert f'api_key="{secret}"' in page.locator("#snippet-openai").inner_text()
    page.click("button[data-tab=snippet-claude]")
    assert f"ANTHROPIC_AUTH_TOKEN={secret}" in page.locator("#snippet-claude").inner_text()
    page.click("button[data-tab=snippet-openai]")
    shot(page, "keys-new-secret")
    page.reload()
    assert page.locator("[data-testid=secret]").count() == 0
    assert secret not in page.content()
    assert "sk-tg-…" + secret[-4:] in page.content()  # only the mask is left

    # Call the relay with it, as a user would.
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)
    completion = client.chat.completions.create(model="openai/gpt-4o-mini",
                                                messages=[{"role": "user", "content": "Hello from the browser test "
                                                           "[[sim:reasoning=7]] [[sim:cached=3]]"}])
    request_id = "req_" + completion.id.removeprefix("chatcmpl-")
    assert wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exists())

    # The request is in the logs, and its detail page has the troubleshooting fields.
    page.click("nav >> text=Request logs")
    row = page.locator("[data-testid=logs] tr", has_text=request_id)
    assert row.count() == 1 and "200" in row.inner_text()
    shot(page, "logs")
    row.locator("a.rid").click()
    for text in (request_id, "openai/gpt-4o-mini", "/v1/chat/completions", "platform", "OpenAI"):
        assert text in page.content(), text
    assert secret not in page.content()
    # Each part of the usage: the simulator reported 3 cached prompt tokens and 7 reasoning tokens.
    assert page.locator("[data-testid=cache-read]").inner_text() == "3"
    assert page.locator("[data-testid=reasoning]").inner_text() == "7"
    shot(page, "log-detail")

    # A failed call whose error text carries a provider key pasted by mistake → a ticket opened from the
    # logs: the troubleshooting fields come pre-filled, and no secret reaches the page or the ticket.
    leaked = "sk-proj-" + "Zq7Lm2" * 7
    failed = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                        json={"model": f"gpt-4o-mini {leaked}", "messages": [{"role": "user", "content": "hi"}]})
    failed_id = failed.headers["x-request-id"]
    assert failed.status_code == 404
    assert wait_for(lambda: UsageRecord.objects.filter(request_id=failed_id).exists())
    page.click("nav >> text=Request logs")
    page.locator("[data-testid=logs] tr", has_text=failed_id).locator("a.rid").click()
    page.click("text=Open a ticket")
    for text in (failed_id, "404", "model_not_found", "/v1/chat/completions", "sk-tg-…" + secret[-4:]):
        assert text in page.content(), text
    assert leaked not in page.content() and secret not in page.content()
    page.fill("input[name=subject]", f"Model not found with {leaked}")
    page.click("[data-testid=open-ticket] button[type=submit]")
    page.wait_for_load_state()
    assert failed_id in page.content() and "REDACTED" in page.content()
    assert leaked not in page.content() and secret not in page.content()
    shot(page, "ticket")

    # And on today's bar of the dashboard's chart.
    page.click("nav >> text=Dashboard")
    today = page.locator(f"[data-testid=chart-requests] g.day[data-day='{timezone.now().date().isoformat()}']")
    total_today = UsageRecord.objects.filter(team=team, created_at__date=timezone.now().date()).count()
    assert int(today.get_attribute("data-value")) == total_today >= 1
    shot(page, "dashboard")

    page.click("nav >> text=Billing")
    assert "Invoice 2026-11" in page.content()
    shot(page, "billing")

    # 中文: the whole console follows, and the choice is kept for the user.
    page.click("[data-testid=language] button[value=zh-hans]")
    page.wait_for_load_state()
    nav = page.locator("[data-testid=nav]").inner_text()
    assert "仪表盘" in nav and "API 密钥" in nav and "请求日志" in nav and "账单" in nav
    page.click("nav >> text=仪表盘")
    shot(page, "dashboard-zh")
    page.click("[data-testid=language] button[value=en]")
    assert "Dashboard" in page.locator("[data-testid=nav]").inner_text()


def test_operator_catalog(transactional_db, gateway, page):
    price = factories.PriceFactory(model__public_id="openai/gpt-4o-mini", model__display_name="GPT-4o mini")
    for public_id, name, prices in [("anthropic/claude-sonnet-4-5", "Claude Sonnet 4.5", (3_000_000, 15_000_000)),
                                    ("deepseek/deepseek-chat", "DeepSeek V3.2", (280_000, 420_000))]:
        model = factories.CatalogModelFactory(public_id=public_id, display_name=name, provider=public_id.split("/")[0])
        factories.PriceFactory(model=model, input_per_m=prices[0], output_per_m=prices[1],
                               cached_input_per_m=prices[0] // 10)
    factories.channel(models=[price.model], base_url="http://127.0.0.1:9/v1", name="openai-main",
                      api_key="sk-proj-operatorUPSTREAMsecret0000000000")
    operator = factories.StaffRoleFactory(role=roles.OPERATOR, user__username="operator").user
    sign_in(page, gateway.url, operator.username, PASSWORD)
    page.goto(f"{gateway.url}/console/operator/catalog/")
    table = page.locator("[data-testid=catalog]").inner_text()
    assert "openai/gpt-4o-mini" in table and "$0.15" in table and "$15.00" in table
    shot(page, "operator-catalog")
    page.goto(f"{gateway.url}/console/operator/channels/")
    assert "operatorUPSTREAMsecret" not in page.content() and "…0000" in page.content()
