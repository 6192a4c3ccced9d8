"""A team admin adds a model alias in a real browser against a live gateway (no restart in between): an old
name the team's clients still send answers from the catalog model it now means, and X-Tollgate-Route says so;
after the alias is deleted (with a confirmation) the old name is unknown again."""
import httpx
import pytest

from accounts import roles
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def chat(live, model):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=20)


def test_admin_adds_an_alias_and_the_old_name_works(live, page):
    base, team = live.server.url, live.team
    admin = factories.MembershipFactory(team=team, role=roles.ADMIN, user__username="alias-admin").user
    assert chat(live, "gpt-4-turbo-preview").status_code == 404

    sign_in(page, base, admin.username, PASSWORD)
    page.click("nav >> text=Model aliases")
    assert page.url.endswith(f"/console/t/{team.slug}/model-aliases/")
    form = page.locator("[data-testid=create-alias]")
    form.locator("input[name=alias]").fill("gpt-4-turbo-preview")
    form.locator("select[name=model]").select_option("openai/gpt-4o-mini")
    form.locator("input[name=note]").fill("One API mapping")
    form.locator("button[type=submit]").click()
    row = page.locator("[data-testid=model-aliases] tr[data-alias='gpt-4-turbo-preview']")
    assert "openai/gpt-4o-mini" in row.inner_text()
    shot(page, "model-aliases")

    resp = wait_for(lambda: (r := chat(live, "gpt-4-turbo-preview")).status_code == 200 and r)
    assert resp, "the alias did not reach the gateway"
    assert "alias=gpt-4-turbo-preview->openai/gpt-4o-mini" in resp.headers["x-tollgate-route"]

    row.locator("text=Edit").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=delete-alias]")
    assert page.locator("[data-testid=model-aliases] tr[data-alias='gpt-4-turbo-preview']").count() == 0
    assert wait_for(lambda: chat(live, "gpt-4-turbo-preview").status_code == 404)
