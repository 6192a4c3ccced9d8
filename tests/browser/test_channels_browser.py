"""A team admin brings the team's own upstream key, in a real browser against a live gateway (no restart in between):
adds a channel pointing at the simulated upstream, clicks "Test now" and sees it pass, and the team's next call
for that model is served by it (the upstream sees the team's key and mapped name; the usage record names the
channel). The key is never on a page, only its mask. Screenshots go to docs/screenshots/."""
import time
import uuid

import httpx
import pytest

from accounts import roles
from billing.models import UsageRecord
from routing.models import Channel
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
PROPAGATION_SECONDS = 1.0           # a saved change reaches every gateway process within this bound


def test_admin_adds_a_byok_channel_tests_it_and_it_serves_the_next_call(live, page):
    base, team = live.server.url, live.team
    admin = factories.MembershipFactory(team=team, role=roles.ADMIN, user__username="channel-admin").user
    own_key = f"sk-team-browser-{uuid.uuid4().hex}"

    sign_in(page, base, admin.username, PASSWORD)
    page.click("nav >> text=Channels")
    assert page.url.endswith(f"/console/t/{team.slug}/channels/")
    assert "No channels yet" in page.content()
    form = page.locator("[data-testid=add-channel]")
    form.locator("input[name=name]").fill("our-openai")
    form.locator("select[name=kind]").select_option("openai")
    form.locator("input[name=base_url]").fill(f"{live.simulator.url}/v1")
    form.locator("input[name=api_key]").fill(own_key)
    form.locator("label", has_text=live.model.public_id).locator("input[name=models]").check()
    form.locator("textarea[name=model_mapping]").fill(f"{live.model.public_id} = gpt-4o-mini-our-deployment")
    form.locator("input[name=priority]").fill("10")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    saved_at = time.monotonic()
    channel = Channel.objects.get(team=team, name="our-openai")
    assert page.url.endswith(f"/console/t/{team.slug}/channels/{channel.pk}/")
    assert "Channel “our-openai” added" in page.content()
    assert own_key not in page.content() and own_key[:-4] not in page.content()
    assert "…" + own_key[-4:] in page.content()

    # "Test now": one probe through the channel's adapter, its result on the page.
    page.locator("[data-testid=test-now] button").click()
    page.wait_for_load_state()
    assert "Test of “our-openai” OK" in page.content(), page.locator(".messages").inner_text()
    assert "OK" in page.locator("[data-testid=probes]").inner_text()
    shot(page, "team-channel-detail")

    page.click("nav >> text=Channels")
    row = page.locator(f"[data-testid=channels] tr[data-channel='{channel.pk}']")
    assert "our-openai" in row.inner_text() and "healthy" in row.inner_text() and "OK" in row.inner_text()
    assert own_key not in page.content()
    shot(page, "team-channels")

    # The team's next call for that model: served by its own channel within a second of the save.
    marker = f"browser-{uuid.uuid4().hex}"

    def call():
        reply = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                           json={"model": live.model.public_id, "messages": [{"role": "user", "content": marker}]},
                           timeout=20)
        return reply if "channel=our-openai" in reply.headers.get("x-tollgate-route", "") else None

    reply = wait_for(call, timeout=PROPAGATION_SECONDS, interval=0.05)
    assert reply is not None, "the team's channel did not serve within a second of saving it"
    assert time.monotonic() - saved_at <= PROPAGATION_SECONDS + 1.0
    assert reply.status_code == 200, reply.text
    seen = httpx.get(f"{live.simulator.url}/_sim/requests?limit=50").json()["requests"]
    upstream = [r for r in seen if marker in str(r.get("body"))][-1]
    assert upstream["headers"]["authorization"].endswith(own_key[-4:])      # the team's own key …
    assert upstream["body"]["model"] == "gpt-4o-mini-our-deployment"        # … and its model-name mapping
    assert "route=direct" in reply.headers["x-tollgate-route"] and "skipped" not in reply.headers["x-tollgate-route"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=reply.headers["x-request-id"]).first())
    assert record is not None and record.channel_id == channel.pk

    # The team's status page lists its own channel (and no platform channel).
    page.click("nav >> text=Status")
    status = page.locator("[data-testid=channel-status]").inner_text()
    assert "our-openai" in status and live.channel.name not in status.split()

    # 中文 too.
    page.click("nav >> text=Channels")
    page.click("[data-testid=language] button[value=zh-hans]")
    page.wait_for_load_state()
    shot(page, "team-channels-zh")
    page.click("[data-testid=language] button[value=en]")
    page.wait_for_load_state()
