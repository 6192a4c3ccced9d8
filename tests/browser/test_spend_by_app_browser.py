"""Usage by app, end to end (issue 12): an app written for OpenRouter sends its HTTP-Referer and X-Title
headers through the `openai` SDK against /api/v1 of a live gateway; the team's owner opens Spend report → By
app in a real browser and finds each app's requests and cost, as the usage records have them."""
import openai
import pytest

from accounts import roles
from billing.models import UsageRecord
from billing.money import money_display
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import PASSWORD, shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_the_owner_sees_usage_by_app_in_the_console(live, page):
    owner = factories.MembershipFactory(team=live.team, role=roles.OWNER, user__username="appowner").user
    apps = {"Recipe Bot": "https://recipes.example", "": ""}   # the second sends no app headers
    for calls, (title, referer) in zip((2, 1), apps.items()):
        headers = {"HTTP-Referer": referer, "X-Title": title} if title else {}
        client = openai.OpenAI(base_url=f"{live.server.url}/api/v1", api_key=live.secret, max_retries=0,
                               default_headers=headers)
        for _ in range(calls):
            client.chat.completions.create(model="openai/gpt-4o-mini",
                                           messages=[{"role": "user", "content": "[[sim:tokens=5]] hi"}])
    assert wait_for(lambda: UsageRecord.objects.filter(team=live.team).count() == 3)
    cost = {title: sum(UsageRecord.objects.filter(team=live.team, app_title=title).values_list("cost", flat=True))
            for title in apps}

    sign_in(page, live.server.url, owner.username, PASSWORD)
    page.click("nav >> text=Spend report")
    page.select_option("select[name=group_by]", "app")
    page.click("[data-testid=filters] button[type=submit]")
    page.wait_for_load_state()
    rows = page.locator("[data-testid=spend] tbody tr")
    assert rows.count() == 2
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(2)]
    assert cells[0][0] == "Recipe Bot https://recipes.example" and cells[0][1] == "2"
    assert cells[0][4] == money_display(cost["Recipe Bot"])
    assert cells[1][0] == "no app title —" and cells[1][1] == "1" and cells[1][4] == money_display(cost[""])
    assert page.locator("[data-testid=total-requests]").inner_text() == "3"
    shot(page, "spend-by-app")
