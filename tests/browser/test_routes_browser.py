"""A team admin sets up a route in a real browser against a live gateway (no restart in between): creates
`route:default` with default, backup and downgrade models, calls `route:default` and `auto` through the relay
and sees the route in X-Tollgate-Route, then dry-runs a request in the try-it panel."""
import re

import httpx
import pytest

from accounts import roles
from routing.models import RoutingRule
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def sim_model(simulator, public_id):
    model = factories.CatalogModelFactory(public_id=public_id, upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=f"{simulator.url}/v1", name=public_id)
    return model


def test_admin_creates_a_route_and_calls_it(live, simulator, page):
    base, team = live.server.url, live.team
    sim_model(simulator, "test/backup")
    sim_model(simulator, "test/cheap")
    admin = factories.MembershipFactory(team=team, role=roles.ADMIN, user__username="route-admin").user

    sign_in(page, base, admin.username, PASSWORD)
    page.click("nav >> text=Routes")
    assert page.url.endswith(f"/console/t/{team.slug}/routes/")
    form = page.locator("[data-testid=create-route]")
    form.locator("input[name=name]").fill("default")
    form.locator("select[name=default_model]").select_option("openai/gpt-4o-mini")
    form.locator("input[name=backup_models]").fill("test/backup")
    form.locator("select[name=downgrade_model]").select_option("test/cheap")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "Route “route:default” created." in page.content()
    row = page.locator("[data-testid=routes] tr[data-route=default]")
    assert "openai/gpt-4o-mini" in row.inner_text() and "test/backup" in row.inner_text()
    assert "test/cheap" in row.inner_text()
    assert RoutingRule.objects.filter(team=team, name="default").exists()

    def call(model):
        return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=10)

    # The running gateway picks the new route up within a second.
    routed = wait_for(lambda: (r := call("route:default")).status_code == 200 and r, timeout=1.0)
    assert routed, "route:default was not live within a second"
    assert "route=route:default; model=openai/gpt-4o-mini" in routed.headers["x-tollgate-route"]
    auto = call("auto")
    assert auto.status_code == 200, auto.text
    assert re.match(r"route=auto \S+ route:default; model=openai/gpt-4o-mini", auto.headers["x-tollgate-route"])

    # Try it: a dry run of the same request shows the candidates in order, nothing is sent upstream.
    panel = page.locator("[data-testid=try-form]")
    panel.locator("textarea[name=body]").fill('{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}')
    panel.locator("select[name=key]").select_option(str(live.key.pk))
    panel.locator("button[type=submit]").click()
    page.wait_for_load_state()
    rows = page.locator("[data-testid=try-candidates] tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        "openai/gpt-4o-mini", "test/backup", "test/cheap"]
    assert "downgrade" in rows.nth(2).inner_text()
    header = page.locator("[data-testid=try-header]").inner_text()
    assert re.match(r"route=auto \S+ route:default; model=openai/gpt-4o-mini", header)
    shot(page, "routes", full_page=True)
    page.click("[data-testid=language] button[value=zh-hans]")
    page.wait_for_load_state()
    shot(page, "routes-zh", full_page=True)
    page.click("[data-testid=language] button[value=en]")
    page.wait_for_load_state()
    page.goto(f"{base}/console/t/{team.slug}/routes/")

    # A body that is not JSON says so.
    panel = page.locator("[data-testid=try-form]")
    panel.locator("textarea[name=body]").fill("{oops")
    panel.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "This is not valid JSON" in page.content()
