"""The health status JSON: platform staff see every channel; a team sees platform health per model only, its
channel admins their own channels too; another team's channel is a 404; no upstream URL or key anywhere."""
import time

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from routing import breaker as br
from routing.models import ChannelProbe
from tests import factories

pytestmark = pytest.mark.django_db

SECRET_URL, SECRET_KEY = "http://upstream-internal.example:9443/v1", "sk-upstream-do-not-show-0001"


def add_stats(scope, ok, failed, ms_each):
    counters = br.new_counters()
    counters[0], counters[1], counters[2] = ok, failed, (ok + failed) * ms_each
    counters[3 + sum(1 for b in br.LATENCY_BOUNDS_MS if b < ms_each)] = ok + failed
    store = br.sync_store()
    pipe = store.pipeline(transaction=False) if hasattr(store, "pipeline") else store
    br.queue_stats(pipe, {scope: counters}, time.time())
    if pipe is not store:
        pipe.execute()


@pytest.fixture
def world():
    model = factories.CatalogModelFactory(public_id="test/status-model")
    platform_a = factories.channel(models=[model], base_url=SECRET_URL, api_key=SECRET_KEY, name="plat-alpha")
    platform_b = factories.channel(models=[model], base_url=SECRET_URL, api_key=SECRET_KEY, name="plat-beta")
    mine, theirs = factories.TeamFactory(), factories.TeamFactory()
    own = factories.channel(team=mine, models=[model], base_url="http://127.0.0.1:1/v1", api_key=SECRET_KEY,
                            name="our-byok")
    other = factories.channel(team=theirs, models=[model], base_url=SECRET_URL, api_key=SECRET_KEY, name="their-byok")
    for channel in (platform_a, own):
        add_stats(br.channel_scope(channel.pk), 9, 1, 120)
        add_stats(br.model_scope(channel.pk, model.pk), 9, 1, 120)
    ChannelProbe.objects.create(channel=platform_a, model=model, started_at=timezone.now(), ok=True,
                                latency_ms=80, ttfb_ms=40, status_code=200)
    # platform_a's pair breaker is open (reason text with a key in it, as an upstream might echo one).
    t = br.Breaker(br.model_scope(platform_a.pk, model.pk)).record(
        False, time.time(), br.Policy(), f"HTTP 401 bad key {SECRET_KEY}", fatal=True)
    br.publish([t])
    return model, platform_a, platform_b, mine, own, other


def get(user, url, method="get"):
    client = Client()
    if user is not None:
        client.force_login(user)
    return getattr(client, method)(url)


def assert_nothing_secret(response):
    text = response.content.decode()
    assert SECRET_KEY not in text and "upstream-internal" not in text and "9443" not in text


def test_team_admin_sees_models_and_only_its_own_channels(world):
    model, platform_a, platform_b, mine, own, other = world
    admin = factories.MembershipFactory(team=mine, role=roles.ADMIN).user
    response = get(admin, f"/console/t/{mine.slug}/health.json")
    assert response.status_code == 200
    data = orjson.loads(response.content)
    assert [c["id"] for c in data["channels"]] == [own.pk]
    (figures,) = [m for m in data["models"] if m["model"] == model.public_id]
    assert set(figures) == {"model", "state", "availability", "requests", "probes", "latency_ms", "series"}
    assert figures["state"] == "degraded"              # one of two platform channels is cooling down
    assert figures["requests"]["1h"] == 10 and figures["probes"]["1h"] == 1
    assert figures["availability"]["1h"] == round(10 / 11, 4)
    assert 100 <= figures["latency_ms"]["1h"]["p50"] <= 250 and len(figures["series"]) == 24
    text = response.content.decode()
    assert "plat-alpha" not in text and "plat-beta" not in text and "their-byok" not in text
    assert str(platform_a.pk) not in [str(c["id"]) for c in data["channels"]]
    assert_nothing_secret(response)


def test_team_member_sees_platform_health_per_model_only(world):
    _, _, _, mine, own, _ = world
    member = factories.MembershipFactory(team=mine, role=roles.MEMBER).user
    data = orjson.loads(get(member, f"/console/t/{mine.slug}/health.json").content)
    assert "channels" not in data and data["models"]
    assert get(member, f"/console/t/{mine.slug}/health.json?channel={own.pk}").status_code == 403


def test_a_channel_in_detail_only_for_its_own_team(world):
    _, platform_a, _, mine, own, other = world
    admin = factories.MembershipFactory(team=mine, role=roles.ADMIN).user
    base = f"/console/t/{mine.slug}/health.json?channel="
    assert get(admin, base + str(other.pk)).status_code == 404        # another team's channel
    assert get(admin, base + str(platform_a.pk)).status_code == 404   # a platform channel
    assert get(admin, f"/console/t/{factories.TeamFactory().slug}/health.json").status_code == 404
    detail = orjson.loads(get(admin, base + str(own.pk)).content)["channel"]
    assert detail["id"] == own.pk and detail["availability"]["1h"] == 0.9
    # "Test now": one probe (its upstream refuses connections), recorded and shown.
    response = get(admin, base + str(own.pk), method="post")
    assert response.status_code == 200
    probe = orjson.loads(response.content)["probe"]
    assert (probe["ok"], probe["error_class"]) == (False, "connection")
    assert orjson.loads(response.content)["channel"]["recent_probes"][0] == probe
    assert_nothing_secret(response)


@pytest.mark.parametrize("role", [roles.OPERATOR, roles.SUPPORT])
def test_platform_staff_see_every_channel(world, role):
    model, platform_a, platform_b, mine, own, other = world
    staff = factories.StaffRoleFactory(role=role).user
    response = get(staff, "/console/operator/health.json")
    assert response.status_code == 200
    channels = {c["id"]: c for c in orjson.loads(response.content)["channels"]}
    assert set(channels) == {platform_a.pk, platform_b.pk, own.pk, other.pk}
    (pair,) = channels[platform_a.pk]["breaker"]["models"]
    assert pair["model"] == model.public_id and pair["state"] == br.OPEN and "[REDACTED" in pair["reason"]
    assert channels[platform_a.pk]["last_probe"]["latency_ms"] == 80
    assert_nothing_secret(response)
    detail = get(staff, f"/console/operator/health/channels/{platform_a.pk}.json")
    assert detail.status_code == 200 and orjson.loads(detail.content)["channel"]["name"] == "plat-alpha"
    probe_now = get(staff, f"/console/operator/health/channels/{own.pk}.json", method="post")
    assert probe_now.status_code == (200 if role == roles.OPERATOR else 403)


def test_teams_and_anonymous_get_no_platform_view(world):
    _, _, _, mine, _, _ = world
    owner = factories.MembershipFactory(team=mine, role=roles.OWNER).user
    assert get(owner, "/console/operator/health.json").status_code == 403
    assert get(None, f"/console/t/{mine.slug}/health.json").status_code == 302
    assert get(None, "/console/operator/health.json").status_code == 302
