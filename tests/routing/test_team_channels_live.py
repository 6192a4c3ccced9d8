"""A team channel (bring your own key) added through the management API serves the team's next call on a running
gateway within a second, no restart: the simulated upstream sees the team's own key and the mapped model name, the
usage record names the channel, and X-Tollgate-Route names it when it fails over. Disabling it is as quick."""
import time
import uuid

import httpx
import orjson
import pytest
from django.test import Client
from django.urls import reverse

from accounts import roles
from billing.models import UsageRecord
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.live
PLATFORM_KEY = "sk-sim-test-channel"          # tests.factories.channel's default: the live platform channel


class Sim:
    def __init__(self, url):
        self.url = url

    def last(self, marker):
        """The upstream request that carried `marker` (keys are masked to their last 4 characters)."""
        seen = httpx.get(f"{self.url}/_sim/requests?limit=200").json()["requests"]
        return next((r for r in reversed(seen) if marker in str(r.get("body"))), None)

    def fault(self, key, fault, count=None):
        httpx.post(f"{self.url}/_sim/faults", json={"key": key, "fault": fault, "count": count}).raise_for_status()

    def clear(self):
        httpx.delete(f"{self.url}/_sim/faults").raise_for_status()


@pytest.fixture
def sim(simulator):
    yield Sim(simulator.url)
    Sim(simulator.url).clear()


def chat(live, marker):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": live.model.public_id, "messages": [{"role": "user", "content": marker}]},
                      timeout=20)


def served(live, sim, key) -> tuple[httpx.Response, dict | None] | None:
    """One call; (response, upstream request) when the upstream request carried `key`."""
    marker = f"m-{uuid.uuid4().hex}"
    response = chat(live, marker)
    upstream = sim.last(marker)
    auth = (upstream or {}).get("headers", {}).get("authorization", "")
    return (response, upstream) if response.status_code == 200 and auth.endswith(key[-4:]) else None


def within(seconds, predicate):
    """Poll `predicate` until it answers, for at most `seconds`; returns (answer, seconds taken)."""
    t0 = time.monotonic()
    while True:
        answer = predicate()
        elapsed = time.monotonic() - t0
        if answer or elapsed > seconds:
            return answer, elapsed


def test_a_channel_added_through_the_api_serves_the_teams_next_call_within_a_second(live, sim):
    admin = factories.MembershipFactory(team=live.team, role=roles.ADMIN).user
    client = Client()
    client.force_login(admin)
    assert served(live, sim, PLATFORM_KEY)                  # before: the platform channel serves the team
    byok_key = f"sk-team-own-{uuid.uuid4().hex}"

    response = client.post(reverse("api-channels", kwargs={"team": live.team.slug}), content_type="application/json",
                           data=orjson.dumps({"name": "our-byok", "kind": "openai",
                                              "base_url": f"{live.simulator.url}/v1", "api_key": byok_key,
                                              "models": [live.model.public_id],
                                              "model_mapping": {live.model.public_id: "gpt-4o-mini-team-deploy"}}))
    assert response.status_code == 201, response.content
    channel_id = orjson.loads(response.content)["id"]
    assert byok_key not in response.content.decode()
    answer, elapsed = within(1.0, lambda: served(live, sim, byok_key))
    assert answer, f"the team channel did not serve within 1 s ({elapsed:.2f} s)"
    reply, upstream = answer
    assert upstream["body"]["model"] == "gpt-4o-mini-team-deploy"         # the model-name mapping
    request_id = reply.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record is not None and record.channel_id == channel_id and record.status_code == 200
    assert "channel=our-byok" in reply.headers["x-tollgate-route"]   # the header names the team's channel

    # Its own channel failing, the platform's serves; the route header names the team channel that was skipped.
    sim.fault(byok_key, "status:503", count=1)
    fallback = served(live, sim, PLATFORM_KEY)
    assert fallback, "the platform channel should have served after the team channel's 503"
    route = fallback[0].headers["x-tollgate-route"]
    assert "channel 'our-byok': HTTP 503" in route, route
    assert "platform channel" not in route.split("skipped=")[0] and "channel=platform" in route

    # "Test now" against the simulator passes, and answers a "needs attention" flag.
    Channel.objects.filter(pk=channel_id).update(needs_attention=True, attention_reason="probe: HTTP 401")
    test = client.post(reverse("api-channel-test", kwargs={"team": live.team.slug, "pk": channel_id}))
    probe = orjson.loads(test.content)["probe"]
    assert test.status_code == 200 and probe["ok"] and probe["status_code"] == 200 and probe["manual"]
    assert orjson.loads(test.content)["channel"]["health"]["needs_attention"] is False
    assert not Channel.objects.get(pk=channel_id).needs_attention

    # Disabled (DELETE): within a second the platform serves again.
    assert client.delete(reverse("api-channel-detail", kwargs={"team": live.team.slug, "pk": channel_id})
                         ).status_code == 204
    back, elapsed = within(1.0, lambda: served(live, sim, PLATFORM_KEY))
    assert back, f"a disabled channel still served after 1 s ({elapsed:.2f} s)"


def test_another_teams_channel_never_serves(live, sim):
    other_key, own_key = f"sk-other-team-{uuid.uuid4().hex}", f"sk-own-{uuid.uuid4().hex}"
    factories.channel(team=factories.TeamFactory(), models=[live.model], base_url=f"{live.simulator.url}/v1",
                      api_key=other_key, name="not-yours", priority=100)
    factories.channel(team=live.team, models=[live.model], base_url=f"{live.simulator.url}/v1", api_key=own_key,
                      name="ours")
    # Once the team's own channel serves, the gateway's snapshot holds the other team's channel too …
    assert within(1.0, lambda: served(live, sim, own_key))[0]
    # … which never carries this team's calls.
    assert all(served(live, sim, own_key) for _ in range(6))
    seen = httpx.get(f"{live.simulator.url}/_sim/requests?limit=200").json()["requests"]
    assert not [r for r in seen if r["headers"].get("authorization", "").endswith(other_key[-4:])]
