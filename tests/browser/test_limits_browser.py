"""Limits set in the console reach a running gateway (no restart): a team admin sets rpm 2 on a key group, and the
third relay call of that minute with a key of the group is a 429 with Retry-After and x-ratelimit-* headers. A
budget set on a key shows, with its spend and what is left, on the key list."""
import time
from pathlib import Path

import httpx
import pytest

from accounts import roles
from billing.models import UsageRecord
from billing.money import money_display
from gateway_site import shared_cache
from keys import auth
from tests import factories
from tests.browser.conftest import sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chat(live, secret, served: list):
    response = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                          timeout=10)
    if response.status_code == 200:
        served.append(response.headers["x-request-id"])
    return response


def published(api_key):
    raw = shared_cache.get(auth.cache_key(api_key.secret_hash))
    return auth._decode(raw) if raw else None


def seconds_left_in_minute() -> float:
    return 60 - time.time() % 60


def test_admin_sets_group_rpm_and_a_key_budget_in_the_console(live, page):
    base, team, group = live.server.url, live.team, live.key.group
    admin = factories.MembershipFactory(team=team, role=roles.ADMIN).user
    served = []  # request ids of the calls that were served (and so cost something)

    # The gateway serves the key before any limit exists (its context is cached in the running process).
    first = chat(live, live.secret, served)
    assert first.status_code == 200, first.text
    assert "x-ratelimit-limit-requests" not in first.headers

    sign_in(page, base, admin.username, PASSWORD)
    page.goto(f"{base}/console/t/{team.slug}/key-groups/{group.pk}/")
    page.fill("input[name=rpm_limit]", "2")
    page.click("[data-testid=group-settings] button[type=submit]")
    page.wait_for_load_state()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "key-groups-limits.png"), full_page=True)
    row = page.locator("[data-testid=groups] tr", has_text=group.name)
    assert row.count() == 1 and "2" in row.locator("td.num").first.inner_text()
    assert wait_for(lambda: (ctx := published(live.key)) and ctx.group_limits[2] == 2, timeout=2)

    # Rate windows are calendar minutes: start the burst with time to spare in this one.
    assert wait_for(lambda: seconds_left_in_minute() >= 12, timeout=15, interval=0.2)
    minute = int(time.time() // 60)
    # Until the process's local copy of the key expires (≤ 0.5 s) calls pass without the limit: they are not
    # counted against it. The first call that carries the group's limit is call 1 of the minute.
    counted = wait_for(lambda: (r := chat(live, live.secret, served)).headers.get("x-ratelimit-limit-requests") == "2"
                       and r, timeout=2, interval=0.02)
    assert counted and counted.status_code == 200, "the new limit did not reach the running gateway in time"
    assert counted.headers["x-ratelimit-remaining-requests"] == "1"
    second = chat(live, live.secret, served)
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-requests"] == "0"
    third = chat(live, live.secret, served)
    assert int(time.time() // 60) == minute, "the burst straddled a minute boundary"
    assert third.status_code == 429, third.text
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert f"key group '{group.name}'" in third.json()["error"]["message"]
    retry_after = int(third.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert third.headers["x-ratelimit-limit-requests"] == "2"
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-ratelimit-reset-requests"].endswith("s")

    # A budget set on the key shows on the key list, with what the key spent today and what is left.
    assert wait_for(lambda: UsageRecord.objects.filter(request_id__in=served).count() == len(served) >= 3)
    spent_today = sum(UsageRecord.objects.filter(api_key=live.key).values_list("cost", flat=True))
    assert spent_today > 0
    page.goto(f"{base}/console/t/{team.slug}/keys/{live.key.pk}/")
    page.fill("input[name=budget_limit]", "5")
    page.select_option("select[name=budget_period]", "day")
    page.click("[data-testid=key-settings] button[type=submit]")
    page.wait_for_load_state()
    page.screenshot(path=str(SHOTS / "key-detail-limits.png"), full_page=True)
    effective = page.locator("[data-testid=effective-budget]").inner_text()
    assert "left of $5.00" in effective and "from the key" in effective
    page.goto(f"{base}/console/t/{team.slug}/keys/?q={live.key.mask[-4:]}")
    row = page.locator("[data-testid=keys] tbody tr")
    assert row.count() == 1
    assert row.locator("[data-testid=spend]").inner_text().split("\n")[0] == money_display(spent_today)
    assert "today" in row.locator("[data-testid=spend]").inner_text()
    remaining = row.locator("[data-testid=remaining]").inner_text()
    assert money_display(5_000_000 - spent_today) in remaining and "of $5.00" in remaining
    # The table fits a 1280 px wide window without scrolling sideways.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(SHOTS / "keys-spend.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    scroller = page.locator("[data-testid=keys]").locator("xpath=..")
    assert page.evaluate("(el) => el.scrollWidth <= el.clientWidth", scroller.element_handle())
