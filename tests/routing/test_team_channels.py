"""A team's own channels (bring your own key) in the console and the management API: owners and admins add, edit,
disable and test them; the upstream key is write-only (never in a page or an API body, only its mask); bad input
is a 400 with field errors; a platform channel or another team's is a 404."""
import time

import orjson
import pytest
from django.urls import reverse

from accounts import roles
from routing import breaker as br
from routing.adapters.registry import ADAPTERS
from routing.forms import ChannelForm
from routing.models import Channel, ChannelProbe
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, member, text  # noqa: F401

pytestmark = pytest.mark.django_db
UPSTREAM_KEY = "sk-proj-teamOwnUpstreamSECRET0123456789wxyz"
REFUSING = "http://127.0.0.1:1/v1"   # nothing listens: a probe fails fast with a connection error


@pytest.fixture
def world():
    mini = factories.CatalogModelFactory(public_id="openai/gpt-4o-mini", upstream_name="gpt-4o-mini")
    claude = factories.CatalogModelFactory(public_id="anthropic/claude-haiku", provider="anthropic")
    team = factories.TeamFactory()
    return mini, claude, team, member(team, roles.ADMIN)


def form_data(model, **extra):
    return {"name": "our-openai", "kind": "openai", "base_url": "https://api.openai.com/v1/",
            "api_key": UPSTREAM_KEY, "models": [model.pk], "priority": 5, "weight": 2,
            "model_mapping": f"{model.public_id} = gpt-4o-mini-2024-07-18", "max_concurrency": 4,
            "test_model": model.public_id, **extra}


def api(client, method, url, body=None):
    if method == "get":
        response = client.get(url)
    else:
        response = getattr(client, method)(url, data=orjson.dumps(body) if body is not None else None,
                                           content_type="application/json")
    return response, (orjson.loads(response.content) if response.content else None)


def urls(team, pk=None):
    kw = {"team": team.slug}
    return {"list": reverse("console-channels", kwargs=kw), "api": reverse("api-channels", kwargs=kw),
            **({"detail": reverse("console-channel-detail", kwargs={**kw, "pk": pk}),
                "test": reverse("console-channel-test", kwargs={**kw, "pk": pk}),
                "api_detail": reverse("api-channel-detail", kwargs={**kw, "pk": pk}),
                "api_test": reverse("api-channel-test", kwargs={**kw, "pk": pk})} if pk else {})}


# --- console -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [roles.OWNER, roles.ADMIN])
def test_console_adds_a_team_channel_and_never_shows_its_key(world, role, django_capture_on_commit_callbacks):
    mini, _, team, _ = world
    client = client_for(member(team, role))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(urls(team)["list"], form_data(mini))
    channel = Channel.objects.get(name="our-openai")
    assert response.status_code == 302 and response["Location"] == urls(team, channel.pk)["detail"]
    assert callbacks, "running gateways must be told (bump_version on commit)"
    assert channel.team == team and channel.base_url == "https://api.openai.com/v1"
    assert channel.api_key() == UPSTREAM_KEY and UPSTREAM_KEY not in channel.api_key_encrypted
    assert channel.model_mapping == {"openai/gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
    assert (channel.priority, channel.weight, channel.max_concurrency, channel.test_model) == (5, 2, 4, mini)
    assert list(channel.models.all()) == [mini] and channel.status == Channel.ENABLED
    for page in (client.get(urls(team)["list"]), client.get(urls(team, channel.pk)["detail"])):
        assert page.status_code == 200
        assert_no_secret(page, UPSTREAM_KEY, UPSTREAM_KEY[:-4], UPSTREAM_KEY[-12:])
        assert channel.api_key_mask == "…wxyz" and channel.api_key_mask in text(page)
        assert 'name="api_key"' in text(page) and 'value="sk-' not in text(page)


def test_console_list_shows_health_and_test_now(world):
    mini, _, team, admin = world
    ours = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY, name="ours")
    Channel.objects.filter(pk=ours.pk).update(needs_attention=True, attention_reason="HTTP 401 invalid_api_key")
    factories.channel(models=[mini], base_url="https://platform.example/v1", name="platform-one")
    factories.channel(team=factories.TeamFactory(), models=[mini], base_url=REFUSING, name="their-byok")
    page = text(client_for(admin).get(urls(team)["list"]))
    assert "ours" in page and "platform-one" not in page and "their-byok" not in page
    assert 'data-testid="needs-attention"' in page and "Not probed yet" in page
    assert urls(team, ours.pk)["test"] in page and "Test now" in page


def test_health_column_shows_an_open_breaker_with_its_redacted_reason(world):
    mini, claude, team, admin = world
    open_one = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY, name="open-one")
    pair = factories.channel(team=team, models=[mini, claude], base_url=REFUSING, name="pair-cooling")
    now = time.time()
    br.publish([t for t in (
        br.Breaker(br.channel_scope(open_one.pk)).record(False, now, br.Policy(), f"HTTP 401 {UPSTREAM_KEY}",
                                                         fatal=True),
        br.Breaker(br.model_scope(pair.pk, claude.pk)).record(False, now, br.Policy(), "HTTP 404", fatal=True)) if t])
    client = client_for(admin)
    page = text(client.get(urls(team)["list"]))
    rows = {c: page.split(f'data-channel="{c.pk}"')[1].split("</tr>")[0] for c in (open_one, pair)}
    assert "cooling down" in rows[open_one] and "[REDACTED" in rows[open_one]
    assert "1 model cooling down" in rows[pair] and claude.public_id in rows[pair]
    assert 'data-testid="needs-attention"' in rows[open_one]          # a credential error flags it for an admin
    assert_no_secret(client.get(urls(team)["list"]), UPSTREAM_KEY)
    _, body = api(client, "get", urls(team, pair.pk)["api_detail"])
    assert body["health"]["models_cooling_down"] == [claude.public_id] and body["health"]["breaker"] == "closed"


def test_console_edit_keeps_the_key_when_blank_and_can_disable(world):
    mini, claude, team, admin = world
    channel = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY, name="ours")
    Channel.objects.filter(pk=channel.pk).update(needs_attention=True, attention_reason="HTTP 401")
    client, url = client_for(admin), urls(team, channel.pk)["detail"]
    data = {**form_data(mini), "name": "renamed", "api_key": "", "base_url": REFUSING, "status": "disabled",
            "models": [mini.pk, claude.pk], "model_mapping": "", "test_model": ""}
    assert client.post(url, data).status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.status, channel.api_key()) == ("renamed", "disabled", UPSTREAM_KEY)
    assert channel.needs_attention and channel.test_model is None       # same key, same address: still flagged
    assert set(channel.models.all()) == {mini, claude}
    assert client.post(url, {**data, "api_key": "sk-replacement-upstream-9999", "status": "enabled"}).status_code == 302
    channel.refresh_from_db()
    assert channel.api_key() == "sk-replacement-upstream-9999" and channel.api_key_mask == "…9999"
    assert channel.status == "enabled" and not channel.needs_attention  # a new key answers the flag


@pytest.mark.parametrize("bad,field", [
    ({"base_url": "ftp://files.example/v1"}, "base_url"),
    ({"base_url": "javascript:alert(1)"}, "base_url"),
    ({"base_url": "https://user:secret@api.example/v1"}, "base_url"),
    ({"base_url": "not a url"}, "base_url"),
    ({"model_mapping": "openai/gpt-4o-mini gpt-4o"}, "model_mapping"),
    ({"model_mapping": "anthropic/claude-haiku = claude-3"}, "model_mapping"),     # not among its models
    ({"model_mapping": "openai/gpt-4o-mini = a\nopenai/gpt-4o-mini = b"}, "model_mapping"),
    ({"weight": 0}, "weight"),
    ({"api_key": ""}, "api_key"),
    ({"kind": "cohere"}, "kind"),
    ({"test_model": "anthropic/claude-haiku"}, "test_model"),
])
def test_console_validation_is_a_400_with_field_errors(world, bad, field):
    mini, _, team, admin = world
    response = client_for(admin).post(urls(team)["list"], {**form_data(mini), **bad})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Channel.objects.exists()
    assert_no_secret(response, UPSTREAM_KEY)


def test_a_team_channel_serves_only_models_the_team_may_use(world):
    mini, claude, team, admin = world
    team.allowed_models = [mini.public_id]
    team.save(update_fields=["allowed_models"])
    disabled = factories.CatalogModelFactory(public_id="openai/retired", enabled=False)
    form = ChannelForm(team=team)
    assert list(form.fields["models"].queryset) == [mini]
    response, body = api(client_for(admin), "post", urls(team)["api"], {
        "name": "x", "base_url": REFUSING, "api_key": "sk-x-12345678",
        "models": [claude.public_id, disabled.public_id]})
    assert response.status_code == 400 and "models" in str(body["error"]["param"]) + body["error"]["message"]
    assert not Channel.objects.exists()


def test_disabling_always_works(world, django_capture_on_commit_callbacks):
    mini, claude, team, admin = world
    channel = factories.channel(team=team, models=[mini, claude], base_url=REFUSING)
    team.allowed_models = [mini.public_id]        # later, the team may no longer use one of its models
    team.save(update_fields=["allowed_models"])
    client = client_for(admin)
    assert api(client, "patch", urls(team, channel.pk)["api_detail"], {"weight": 3})[0].status_code == 400
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert api(client, "delete", urls(team, channel.pk)["api_detail"])[0].status_code == 204
    assert callbacks
    channel.refresh_from_db()
    assert channel.status == Channel.DISABLED and channel.weight == 1


def test_other_teams_and_platform_channels_are_404(world):
    mini, _, team, admin = world
    platform = factories.channel(models=[mini], base_url=REFUSING, name="platform")
    theirs = factories.channel(team=factories.TeamFactory(), models=[mini], base_url=REFUSING, name="theirs")
    client = client_for(admin)
    for channel in (platform, theirs):
        u = urls(team, channel.pk)
        assert client.get(u["detail"]).status_code == 404
        assert client.post(u["detail"], form_data(mini)).status_code == 404
        assert client.post(u["test"]).status_code == 404
        for method in ("get", "patch", "delete"):
            assert api(client, method, u["api_detail"], {"name": "mine now"})[0].status_code == 404
        assert api(client, "post", u["api_test"])[0].status_code == 404
    assert not ChannelProbe.objects.exists()
    assert {c.name for c in Channel.objects.all()} == {"platform", "theirs"}
    assert Channel.objects.filter(status=Channel.ENABLED).count() == 2


@pytest.mark.parametrize("role", [roles.BILLING, roles.MEMBER])
def test_smaller_roles_may_not_manage_channels(world, role):
    mini, _, team, _ = world
    channel = factories.channel(team=team, models=[mini], base_url=REFUSING)
    client = client_for(member(team, role))
    assert client.get(urls(team)["list"]).status_code == 403
    assert client.post(urls(team)["list"], form_data(mini)).status_code == 403
    assert api(client, "get", urls(team, channel.pk)["api_detail"])[0].status_code == 403
    nav = text(client.get(reverse("console-dashboard", kwargs={"team": team.slug})))
    assert urls(team)["list"] not in nav


def test_test_now_runs_a_probe_and_shows_the_redacted_result(world):
    mini, _, team, admin = world
    channel = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY)
    client = client_for(admin)
    response = client.post(urls(team, channel.pk)["test"], {"back": "list"}, follow=True)
    assert response.redirect_chain[-1][0] == urls(team)["list"]
    probe = ChannelProbe.objects.get(channel=channel)
    assert probe.manual and not probe.ok and probe.error_class == "connection" and probe.model == mini
    page = text(response)
    assert "failed (connection" in page and "Last probe:" in page
    assert_no_secret(response, UPSTREAM_KEY)
    detail = client.post(urls(team, channel.pk)["test"], follow=True)
    assert detail.redirect_chain[-1][0] == urls(team, channel.pk)["detail"]
    assert ChannelProbe.objects.filter(channel=channel).count() == 2
    assert text(detail).count("connection") >= 2          # the message and the recent-probes table
    # GET runs nothing.
    assert client.get(urls(team, channel.pk)["test"]).status_code == 302
    assert ChannelProbe.objects.filter(channel=channel).count() == 2


# --- API -------------------------------------------------------------------------------------------------------
def test_api_crud_never_returns_the_key(world, django_capture_on_commit_callbacks):
    mini, claude, team, admin = world
    client = client_for(admin)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response, created = api(client, "post", urls(team)["api"], {
            "name": "byok", "kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": UPSTREAM_KEY,
            "models": [mini.public_id], "model_mapping": {mini.public_id: "gpt-4o-mini-2024-07-18"},
            "priority": 3, "max_concurrency": 8, "team": None, "team_id": None})   # always the caller's team
    assert response.status_code == 201, created
    assert callbacks
    channel = Channel.objects.get(pk=created["id"])
    assert channel.team == team and channel.api_key() == UPSTREAM_KEY
    assert created["api_key_mask"] == "…wxyz" and created["models"] == [mini.public_id]
    assert created["model_mapping"] == {mini.public_id: "gpt-4o-mini-2024-07-18"}
    assert (created["priority"], created["weight"], created["max_concurrency"]) == (3, 1, 8)
    assert created["status"] == "enabled" and created["health"]["breaker"] == "closed"
    assert created["health"]["last_probe"] is None and created["health"]["needs_attention"] is False
    bodies = [response]
    listing, items = api(client, "get", urls(team)["api"])
    assert [c["id"] for c in items] == [channel.pk]
    bodies.append(listing)
    u = urls(team, channel.pk)
    response, patched = api(client, "patch", u["api_detail"], {"weight": 5, "api_key": "", "models": [
        mini.public_id, claude.public_id], "test_model": claude.public_id})
    assert response.status_code == 200, patched
    channel.refresh_from_db()
    assert (channel.weight, channel.priority, channel.api_key(), channel.test_model) == (5, 3, UPSTREAM_KEY, claude)
    assert patched["models"] == sorted([mini.public_id, claude.public_id]) or set(patched["models"]) == {
        mini.public_id, claude.public_id}
    bodies.append(response)
    response, _ = api(client, "patch", u["api_detail"], {"api_key": "sk-another-upstream-key-7777"})
    channel.refresh_from_db()
    assert channel.api_key() == "sk-another-upstream-key-7777" and channel.api_key_mask == "…7777"
    assert "sk-another-upstream-key-7777" not in response.content.decode()
    detail, _ = api(client, "get", u["api_detail"])
    bodies.append(detail)
    response, _ = api(client, "delete", u["api_detail"])
    assert response.status_code == 204
    channel.refresh_from_db()
    assert channel.status == Channel.DISABLED     # kept (history, usage records), no longer routed
    response, back = api(client, "patch", u["api_detail"], {"status": "enabled"})
    assert response.status_code == 200 and back["status"] == "enabled"
    for body in bodies + [response]:
        assert UPSTREAM_KEY not in body.content.decode() and UPSTREAM_KEY[:-4] not in body.content.decode()
        assert "api_key_encrypted" not in body.content.decode()


@pytest.mark.parametrize("body,field", [
    ({"base_url": "ftp://x.example/v1"}, "base_url"),
    ({"base_url": "http://h/v1?key=sk-in-the-url"}, "base_url"),
    ({"model_mapping": "openai/gpt-4o-mini = x"}, "model_mapping"),                 # not an object
    ({"model_mapping": {"openai/gpt-4o-mini": ""}}, "model_mapping"),
    ({"model_mapping": {"openai/gpt-4o-mini": "has space"}}, "model_mapping"),
    ({"model_mapping": {"anthropic/claude-haiku": "claude"}}, "model_mapping"),     # not among its models
    ({"models": ["nobody/nothing"]}, "models"),
    ({"models": "openai/gpt-4o-mini"}, "models"),
    ({"weight": 0}, "weight"),
    ({"priority": "high"}, "priority"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"kind": "cohere"}, "kind"),
    ({"status": "paused"}, "status"),
    ({"test_model": "anthropic/claude-haiku"}, "test_model"),
    ({"api_key": "has a space"}, "api_key"),
    ({"name": ""}, "name"),
])
def test_api_validation_is_a_400_naming_the_field(world, body, field):
    mini, _, team, admin = world
    good = {"name": "byok", "base_url": "https://api.example/v1", "api_key": UPSTREAM_KEY, "models": [mini.public_id]}
    response, answer = api(client_for(admin), "post", urls(team)["api"], {**good, **body})
    assert response.status_code == 400, answer
    assert field in str(answer["error"]["param"]) + answer["error"]["message"], answer
    assert not Channel.objects.exists()
    assert UPSTREAM_KEY not in response.content.decode()


def test_api_patch_of_models_drops_the_names_of_models_no_longer_served(world):
    mini, claude, team, admin = world
    channel = factories.channel(team=team, models=[mini, claude], base_url=REFUSING,
                                model_mapping={mini.public_id: "mini-x", claude.public_id: "haiku-x"})
    response, body = api(client_for(admin), "patch", urls(team, channel.pk)["api_detail"],
                         {"models": [claude.public_id]})
    assert response.status_code == 200, body
    assert body["models"] == [claude.public_id] and body["model_mapping"] == {claude.public_id: "haiku-x"}


def test_api_patch_validation_and_empty_bodies(world):
    mini, _, team, admin = world
    channel = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY)
    client, u = client_for(admin), urls(team, channel.pk)
    assert api(client, "post", urls(team)["api"], {})[0].status_code == 400
    assert api(client, "patch", u["api_detail"], {})[0].status_code == 200
    response, answer = api(client, "patch", u["api_detail"], {"base_url": "gopher://x/v1"})
    assert response.status_code == 400 and "base_url" in str(answer["error"]["param"]) + answer["error"]["message"]
    channel.refresh_from_db()
    assert channel.base_url == REFUSING and channel.api_key() == UPSTREAM_KEY


def test_api_test_now(world):
    mini, _, team, admin = world
    channel = factories.channel(team=team, models=[mini], base_url=REFUSING, api_key=UPSTREAM_KEY)
    response, answer = api(client_for(admin), "post", urls(team, channel.pk)["api_test"])
    assert response.status_code == 200
    assert (answer["probe"]["ok"], answer["probe"]["error_class"], answer["probe"]["manual"]) == (False, "connection",
                                                                                                True)
    assert answer["channel"]["health"]["last_probe"] == answer["probe"]
    assert UPSTREAM_KEY not in response.content.decode()


# --- kinds, status page ------------------------------------------------------------------------------------------
def test_kinds_come_from_the_model_and_each_has_an_adapter():
    kinds = [code for code, _ in Channel.KINDS]
    assert set(kinds) == set(ADAPTERS)
    assert [code for code, _ in ChannelForm().fields["kind"].choices] == kinds


def test_status_page_shows_the_teams_own_channels_only(world):
    mini, _, team, admin = world
    factories.channel(team=team, models=[mini], base_url=REFUSING, name="our-byok")
    factories.channel(models=[mini], base_url=REFUSING, name="platform-secret-name")
    factories.channel(team=factories.TeamFactory(), models=[mini], base_url=REFUSING, name="their-byok")
    page = text(client_for(admin).get(reverse("console-status", kwargs={"team": team.slug})))
    assert "our-byok" not in page.split('data-testid="channel-status"')[0]
    assert "our-byok" in page and "platform-secret-name" not in page and "their-byok" not in page
    assert "127.0.0.1:1" not in page
    empty_team = factories.TeamFactory()
    empty = text(client_for(member(empty_team, roles.OWNER)).get(
        reverse("console-status", kwargs={"team": empty_team.slug})))
    assert reverse("console-channels", kwargs={"team": empty_team.slug}) in empty
