"""The README's "first ten minutes" for a team admin, in a real browser against a live gateway, no restart: create
a key group with a daily budget, a route, a key in that group; call the route with the OpenAI SDK; see the spend
on the key list and in the spend report. Then every control-plane page in English and 中文 (the Chinese
screenshots no other test takes go to docs/screenshots/)."""
import openai
import pytest

from accounts import roles
from billing.models import UsageRecord
from billing.money import money_display
from keys.models import ApiKey, KeyGroup
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's

# Page (URL under the team) → a heading it shows in English and in Chinese, and the name of its Chinese
# screenshot where no other browser test takes one (each screenshot has one test that writes it).
PAGES = [
    ("routes/", None, "Routes", "路由"),
    ("channels/", None, "Channels", "渠道"),
    ("key-groups/", "key-groups-limits-zh", "Key groups", "密钥分组"),
    ("billing/spend/", "spend-report-zh", "Spend report", "花费报表"),
    ("billing/policy/", "billing-policy-zh", "Billing policy", "账单策略"),
    ("prices/", None, "Models & prices", "模型与价格"),
]

def test_a_team_admins_first_ten_minutes(live, page):
    base, team = live.server.url, live.team
    admin = factories.MembershipFactory(team=team, role=roles.OWNER, user__username="first-admin").user
    sign_in(page, base, admin.username, PASSWORD)

    # 1. A key group with a daily budget.
    page.goto(f"{base}/console/t/{team.slug}/key-groups/")
    form = page.locator("[data-testid=new-group]")
    form.locator("input[name=name]").fill("production")
    form.locator("input[name=budget_limit]").fill("5")
    form.locator("select[name=budget_period]").select_option("day")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    group = KeyGroup.objects.get(team=team, name="production")
    assert group.budget_limit == 5_000_000 and group.budget_period == "day"

    # 2. A route for the team's everyday work.
    page.goto(f"{base}/console/t/{team.slug}/routes/")
    form = page.locator("[data-testid=create-route]")
    form.locator("input[name=name]").fill("default")
    form.locator("select[name=default_model]").select_option(live.model.public_id)
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator("[data-testid=routes] tr[data-route=default]").count() == 1

    # 3. A key in that group: its secret is shown once.
    page.goto(f"{base}/console/t/{team.slug}/keys/")
    form = page.locator("[data-testid=create-key]")
    form.locator("input[name=name]").fill("backend")
    form.locator("select[name=group]").select_option(str(group.pk))
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    secret = page.locator("[data-testid=secret]").inner_text().strip()
    assert secret.startswith("sk-tg-")
    key = ApiKey.objects.get(team=team, name="backend")

    # 4. Call the route through the relay with the official SDK.
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="route:default", messages=[{"role": "user", "content": "Hello"}])
    assert "route=route:default" in reply.headers["x-tollgate-route"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=reply.headers["x-request-id"]).first())
    assert record is not None and record.api_key_id == key.pk and record.cost > 0

    # 5. The spend shows on the key list and in the spend report.
    page.goto(f"{base}/console/t/{team.slug}/keys/")
    row = page.locator("[data-testid=keys] tr", has_text="backend")
    assert money_display(record.cost) in row.locator("[data-testid=spend]").inner_text()
    page.goto(f"{base}/console/t/{team.slug}/billing/spend/?group_by=key")
    assert page.locator("[data-testid=total-cost]").inner_text().strip() == money_display(record.cost)

    # Every control-plane page, in English then in Chinese.
    for path, _shot, english, _chinese in PAGES:
        page.goto(f"{base}/console/t/{team.slug}/{path}")
        assert english in page.locator("h1").first.inner_text(), path
    page.click("[data-testid=language] button[value=zh-hans]")
    page.wait_for_load_state()
    for path, name, _english, chinese in PAGES:
        page.goto(f"{base}/console/t/{team.slug}/{path}")
        assert chinese in page.locator("h1").first.inner_text(), path
        if name:
            shot(page, name, full_page=True)
    page.click("[data-testid=language] button[value=en]")
    page.wait_for_load_state()
