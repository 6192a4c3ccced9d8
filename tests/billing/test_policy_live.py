"""A monthly cap saved in the console reaches a running gateway within a second, without a restart."""
import httpx
import pytest
from django.test import Client
from django.urls import reverse

from accounts import roles
from billing.models import TeamBillingPolicy
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.live


def call(live) -> httpx.Response:
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                      timeout=10)


def test_a_cap_saved_in_the_console_is_enforced_within_a_second(live, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert call(live).status_code == 200
    billing = factories.MembershipFactory(team=live.team, role=roles.BILLING).user
    client = Client()
    client.force_login(billing)
    page = reverse("console-billing-policy", kwargs={"team": live.team.slug})
    # A cap of one micro-unit: no request fits under it any more.
    saved = client.post(page, {"monthly_cap": "0.000001", "alert_thresholds": "80, 100", "alert_recipients": ""})
    assert saved.status_code == 302 and TeamBillingPolicy.objects.get(team=live.team).monthly_cap == 1
    refused = wait_for(lambda: (r := call(live)).status_code == 402 and r, timeout=1.0, interval=0.05)
    assert refused, "the gateway did not apply the new cap within a second"
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and "team monthly budget of $0.000001" in error["message"]
    # Lifting the cap lets requests through again, as fast.
    assert client.post(page, {"monthly_cap": "", "alert_thresholds": "80, 100",
                              "alert_recipients": ""}).status_code == 302
    assert wait_for(lambda: call(live).status_code == 200, timeout=1.0, interval=0.05)
