"""Team model aliases: the service's validation, the router's resolution order (catalog id, then the team's
alias, then the catalog's own aliases), the console page and the management API (one service for both, another
team's alias a 404), and a live gateway serving an old name with the rewrite in X-Tollgate-Route."""
import httpx
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from billing.models import UsageRecord
from keys.auth import context_for
from routing import aliases
from routing.catalog import bump_version
from routing.models import AutoRouting, TeamModelAlias
from routing.relay import errors, router, snapshot
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.conftest import wait_for

CHAT = [{"role": "user", "content": "hello"}]


def two_models():
    new = factories.CatalogModelFactory(public_id="openai/gpt-4o", aliases=["gpt-4o"])
    old = factories.CatalogModelFactory(public_id="openai/gpt-4-turbo", aliases=["gpt-4-turbo-preview"])
    return new, old


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def plan(key, model=None, **request):
    return router.plan(snapshot.load_now(), context_for(key), {"model": model, "messages": CHAT, **request}
                       if model is not None else {"messages": CHAT, **request}, 100)


# --- the service ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_alias_must_be_a_name_a_client_could_send_and_name_a_catalog_model():
    team = factories.TeamFactory()
    new, _old = two_models()
    for bad in ("", "   ", "gpt 4", "a\tb", "x" * 121, "auto", "route:default", None, 7):
        with pytest.raises(ValidationError) as exc:
            aliases.model_alias_upsert(team=team, alias=bad, model=new)
        assert "alias" in exc.value.message_dict, bad
    with pytest.raises(ValidationError) as exc:   # a catalog public id always means itself
        aliases.model_alias_upsert(team=team, alias="openai/gpt-4-turbo", model=new)
    assert "catalog model id" in exc.value.message_dict["alias"][0]
    with pytest.raises(ValidationError) as exc:
        aliases.model_alias_upsert(team=team, alias="gpt-4", model="no/such-model")
    assert "model" in exc.value.message_dict
    team.allowed_models = ["openai/gpt-4-turbo"]
    team.save()
    with pytest.raises(ValidationError) as exc:   # a model the team may not use is no target
        aliases.model_alias_upsert(team=team, alias="gpt-4", model="openai/gpt-4o")
    assert "not available to this team" in exc.value.message_dict["model"][0]
    assert not TeamModelAlias.objects.exists()


@pytest.mark.django_db
def test_upsert_is_idempotent_and_repoints():
    team = factories.TeamFactory()
    new, old = two_models()
    first, created = aliases.model_alias_upsert(team=team, alias=" gpt-4-0613 ", model="openai/gpt-4-turbo",
                                                note="imported by imp_x")
    assert created and first.alias == "gpt-4-0613" and first.model == old
    again, created = aliases.model_alias_upsert(team=team, alias="gpt-4-0613", model=old)
    assert (again.pk, created, again.note) == (first.pk, False, "imported by imp_x")
    moved, created = aliases.model_alias_upsert(team=team, alias="gpt-4-0613", model=new)
    assert (moved.pk, created, moved.model) == (first.pk, False, new)
    assert TeamModelAlias.objects.count() == 1
    with pytest.raises(ValidationError):   # create refuses an existing name (the console and the API)
        aliases.model_alias_create(team=team, alias="gpt-4-0613", model=old)
    other = factories.TeamFactory()   # the same name in another team is that team's own
    assert aliases.model_alias_create(team=other, alias="gpt-4-0613", model=old).model == old


# --- the router ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_team_alias_resolves_after_catalog_ids_and_before_catalog_aliases():
    new, old = two_models()
    key, _ = factories.api_key()
    aliases.model_alias_upsert(team=key.team, alias="gpt-4-turbo-preview", model=new)   # a catalog alias of old
    aliases.model_alias_upsert(team=key.team, alias="claude-3-5-sonnet-20240620", model=new)
    result = plan(key, "gpt-4-turbo-preview")
    assert [m.public_id for m in result.models] == ["openai/gpt-4o"]
    assert result.aliases == ["gpt-4-turbo-preview->openai/gpt-4o"]
    for catalog_name, public_id in (("openai/gpt-4-turbo", "openai/gpt-4-turbo"), ("gpt-4o", "openai/gpt-4o")):
        result = plan(key, catalog_name)
        assert [m.public_id for m in result.models] == [public_id] and result.aliases == []
    # In a fallback list too, each name resolved as the team means it.
    result = plan(key, models=["claude-3-5-sonnet-20240620", "openai/gpt-4-turbo"])
    assert [m.public_id for m in result.models] == ["openai/gpt-4o", "openai/gpt-4-turbo"]
    assert result.aliases == ["claude-3-5-sonnet-20240620->openai/gpt-4o"]
    # Another team sees the catalog only: its catalog alias, and an unknown name.
    stranger, _ = factories.api_key()
    assert [m.public_id for m in plan(stranger, "gpt-4-turbo-preview").models] == ["openai/gpt-4-turbo"]
    with pytest.raises(errors.RelayError) as exc:
        plan(stranger, "claude-3-5-sonnet-20240620")
    assert (exc.value.status, exc.value.code) == (404, "model_not_found")


@pytest.mark.django_db
def test_a_team_alias_of_a_claude_id_wins_over_the_unknown_claude_route():
    new, old = two_models()
    key, _ = factories.api_key()
    factories.routing_rule(team=key.team, name="claude", default_model=old)
    AutoRouting.objects.create(team=key.team, claude_route="claude")
    assert plan(key, "claude-3-opus-20240229").route.startswith("route:claude; unknown_model=")
    aliases.model_alias_upsert(team=key.team, alias="claude-3-opus-20240229", model=new)
    result = plan(key, "claude-3-opus-20240229")
    assert result.route is None and [m.public_id for m in result.models] == ["openai/gpt-4o"]


@pytest.mark.django_db
def test_an_alias_of_a_disabled_model_means_nothing_and_key_limits_still_apply():
    new, old = two_models()
    key, _ = factories.api_key(allowed_models=["openai/gpt-4-turbo"])
    aliases.model_alias_upsert(team=key.team, alias="gpt-4-32k", model=new)
    with pytest.raises(errors.RelayError) as exc:   # the alias does not bypass the key's allowed models
        plan(key, "gpt-4-32k")
    assert (exc.value.status, exc.value.code) == (403, "model_not_allowed")
    new.enabled = False
    new.save()
    with pytest.raises(errors.RelayError) as exc:
        plan(key, "gpt-4-32k")
    assert exc.value.code == "model_not_found"


@pytest.mark.django_db
def test_the_routes_try_it_panel_shows_the_rewrite():
    new, _old = two_models()
    admin = factories.MembershipFactory(role=roles.ADMIN)
    factories.channel(models=[new], base_url="http://127.0.0.1:9/v1", name="platform-a")
    aliases.model_alias_upsert(team=admin.team, alias="gpt-4-turbo-preview", model=new)
    key, _ = factories.api_key(team=admin.team)
    result = api(admin.user).post(f"/api/teams/{admin.team.slug}/routes/try/", {
        "body": {"model": "gpt-4-turbo-preview", "messages": CHAT}, "key_id": key.pk}, format="json").json()
    assert result["error"] is None and [c["model"] for c in result["candidates"]] == ["openai/gpt-4o"]
    assert result["header"].startswith("route=direct; alias=gpt-4-turbo-preview->openai/gpt-4o; model=openai/gpt-4o")


# --- the console page ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_console_lists_creates_edits_and_deletes_aliases():
    new, old = two_models()
    admin = factories.MembershipFactory(role=roles.ADMIN)
    team, client = admin.team, client_for(admin.user)
    url = reverse("console-model-aliases", kwargs={"team": team.slug})
    page = client.get(url)
    assert page.status_code == 200 and "No model aliases yet." in text(page)
    assert url in text(client.get(reverse("console-dashboard", kwargs={"team": team.slug})))   # in the nav
    made = client.post(url, {"alias": "gpt-4-turbo-preview", "model": "openai/gpt-4o", "note": "old SDK"})
    assert made.status_code == 302
    alias = TeamModelAlias.objects.get(team=team)
    assert (alias.alias, alias.model, alias.note) == ("gpt-4-turbo-preview", new, "old SDK")
    page = text(client.get(url))
    assert 'data-alias="gpt-4-turbo-preview"' in page and "openai/gpt-4o" in page
    refused = client.post(url, {"alias": "openai/gpt-4-turbo", "model": "openai/gpt-4o"})
    assert refused.status_code == 400 and "catalog model id" in text(refused)
    duplicate = client.post(url, {"alias": "gpt-4-turbo-preview", "model": "openai/gpt-4-turbo"})
    assert duplicate.status_code == 400 and "already has the alias" in text(duplicate)
    detail = reverse("console-model-alias-detail", kwargs={"team": team.slug, "pk": alias.pk})
    assert client.post(detail, {"alias": "gpt-4-1106-preview", "model": "openai/gpt-4-turbo"}).status_code == 302
    alias.refresh_from_db()
    assert (alias.alias, alias.model) == ("gpt-4-1106-preview", old)
    delete = reverse("console-model-alias-delete", kwargs={"team": team.slug, "pk": alias.pk})
    assert client.post(delete).status_code == 302
    assert not TeamModelAlias.objects.exists()


@pytest.mark.django_db
def test_console_readers_see_but_cannot_edit_and_members_see_nothing():
    new, _old = two_models()
    team = factories.TeamFactory()
    alias = factories.model_alias(team=team, alias="gpt-4-turbo-preview", model=new)
    billing = client_for(member(team, roles.BILLING))
    url = reverse("console-model-aliases", kwargs={"team": team.slug})
    page = billing.get(url)
    assert page.status_code == 200 and "gpt-4-turbo-preview" in text(page)
    assert 'data-testid="create-alias"' not in text(page)
    assert billing.post(url, {"alias": "x", "model": "openai/gpt-4o"}).status_code == 403
    detail = reverse("console-model-alias-detail", kwargs={"team": team.slug, "pk": alias.pk})
    assert billing.post(detail, {"alias": "y", "model": "openai/gpt-4o"}).status_code == 403
    assert client_for(member(team, roles.MEMBER)).get(url).status_code == 403
    # Another team's admin: their alias is a 404 under my team and under theirs.
    stranger = factories.MembershipFactory(role=roles.OWNER)
    mine = reverse("console-model-alias-detail", kwargs={"team": stranger.team.slug, "pk": alias.pk})
    assert client_for(stranger.user).get(mine).status_code == 404
    assert client_for(stranger.user).get(detail).status_code == 404


# --- the management API -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_api_lists_creates_updates_and_deletes_aliases():
    new, old = two_models()
    owner = factories.MembershipFactory(role=roles.OWNER)
    client = api(owner.user)
    base = f"/api/teams/{owner.team.slug}/model-aliases/"
    made = client.post(base, {"alias": "gpt-4-turbo-preview", "model": "openai/gpt-4o"}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["alias"], body["model"], body["note"]) == ("gpt-4-turbo-preview", "openai/gpt-4o", "")
    assert client.get(base).json() == [body]
    bad = client.post(base, {"alias": "has space", "model": "no/such"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "alias", bad.content
    assert client.post(base, {"alias": "gpt-4-turbo-preview", "model": "openai/gpt-4o"},
                       format="json").status_code == 400
    detail = f"{base}{body['id']}/"
    patched = client.patch(detail, {"model": "openai/gpt-4-turbo"}, format="json")
    assert patched.status_code == 200 and patched.json()["model"] == "openai/gpt-4-turbo"
    assert patched.json()["alias"] == "gpt-4-turbo-preview"
    put = client.put(detail, {"alias": "gpt-4-0125-preview", "model": "openai/gpt-4o", "note": "n"}, format="json")
    assert put.status_code == 200 and (put.json()["alias"], put.json()["note"]) == ("gpt-4-0125-preview", "n")
    assert client.patch(detail, {"model": "no/such"}, format="json").status_code == 400
    # Roles: billing reads, cannot write; another team's alias is a 404.
    reader = api(factories.MembershipFactory(team=owner.team, role=roles.BILLING).user)
    assert reader.get(detail).status_code == 200
    assert reader.delete(detail).status_code == 403
    stranger = factories.MembershipFactory(role=roles.OWNER)
    assert api(stranger.user).get(detail).status_code == 404
    assert api(stranger.user).get(f"/api/teams/{stranger.team.slug}/model-aliases/{body['id']}/").status_code == 404
    assert client.delete(detail).status_code == 204
    assert client.get(base).json() == []


# --- a live gateway -----------------------------------------------------------------------------------------
def chat(live, secret, model):
    return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": CHAT}, timeout=20)


def test_a_live_gateway_serves_the_old_name_and_says_the_rewrite(live):
    owner = factories.MembershipFactory(team=live.team, role=roles.OWNER)
    made = api(owner.user).post(f"/api/teams/{live.team.slug}/model-aliases/",
                                {"alias": "gpt-4-turbo-preview", "model": "openai/gpt-4o-mini"}, format="json")
    assert made.status_code == 201, made.content
    resp = wait_for(lambda: (r := chat(live, live.secret, "gpt-4-turbo-preview")).status_code == 200 and r)
    assert resp, "the alias did not reach the gateway"
    assert resp.json()["model"] == "openai/gpt-4o-mini"
    route = resp.headers["x-tollgate-route"]
    assert "alias=gpt-4-turbo-preview->openai/gpt-4o-mini" in route and "model=openai/gpt-4o-mini" in route
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert (record.requested_model, record.served_model) == ("gpt-4-turbo-preview", "openai/gpt-4o-mini")
    retrieved = httpx.get(f"{live.base_url}/models/gpt-4-turbo-preview", timeout=5,
                          headers={"Authorization": f"Bearer {live.secret}"})   # the SDK's models.retrieve
    assert retrieved.status_code == 200 and retrieved.json()["id"] == "openai/gpt-4o-mini"
    # Another team's key: the name means nothing to it.
    other_key, other_secret = factories.api_key()
    factories.credit(other_key.team)
    bump_version()
    refused = wait_for(lambda: (r := chat(live, other_secret, "gpt-4-turbo-preview")).status_code != 401 and r)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    # Deleted: within a second the old name is unknown again for the team too.
    api(owner.user).delete(f"/api/teams/{live.team.slug}/model-aliases/{made.json()['id']}/")
    assert wait_for(lambda: chat(live, live.secret, "gpt-4-turbo-preview").status_code == 404)
