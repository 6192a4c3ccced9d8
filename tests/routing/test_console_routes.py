"""Routes (task tiers) as the control plane: the service's validation and warnings, the console page and the
API (one service for both), routes-only key groups, editable `auto` rules, the try-it dry run, and a live
gateway picking up a route edited through the API within a second."""
import dataclasses
import time
import types

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from keys.auth import KeyContext, context_for
from routing import services
from routing.models import AutoRouting, RoutingRule
from routing.relay import errors, router, snapshot
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.conftest import wait_for

CHAT = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def catalog(**overrides):
    """A capable default and weaker siblings, each a catalog model with a price."""
    strong = factories.CatalogModelFactory(
        public_id="test/strong", supports_tools=True, supports_vision=True, supports_json_schema=True,
        context_length=200_000, input_modalities=["text", "image", "video"], output_modalities=["text"])
    weak = factories.CatalogModelFactory(
        public_id="test/weak", supports_tools=False, supports_vision=False, supports_json_schema=False,
        context_length=8_000, input_modalities=["text"], output_modalities=["text"])
    same = factories.CatalogModelFactory(
        public_id="test/same", supports_tools=True, supports_vision=True, supports_json_schema=True,
        context_length=200_000, input_modalities=["text", "image", "video"], output_modalities=["text"])
    embed = factories.CatalogModelFactory(public_id="test/embed", output_modalities=["embeddings"],
                                          context_length=200_000)
    return strong, weak, same, embed


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def base(team) -> str:
    return f"/api/teams/{team.slug}/routes/"


# --- the service ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_create_validates_catalog_ids_names_and_budgets():
    team = factories.TeamFactory()
    strong, weak, *_ = catalog()
    with pytest.raises(ValidationError) as exc:
        services.routing_rule_create(team=team, name="bad name!", default_model="no/such",
                                     backup_models=["test/weak", "no/backup"], downgrade_model="no/down",
                                     forbidden_models=["no/forbid"], budget_limit=10, soft_limit=20)
    errors_ = exc.value.message_dict
    assert set(errors_) == {"name", "default_model", "backup_models", "downgrade_model", "forbidden_models",
                            "soft_limit"}
    assert "no/backup" in errors_["backup_models"][0] and "no/such" in errors_["default_model"][0]

    rule, warnings = services.routing_rule_create(team=team, name="batch", default_model="test/strong",
                                                  backup_models=["test/strong", "test/weak", "test/weak"])
    assert rule.backup_models == ["test/weak"]  # the default and duplicates are dropped, order kept
    with pytest.raises(ValidationError) as exc:
        services.routing_rule_create(team=team, name="batch", default_model="test/weak")
    assert "name" in exc.value.message_dict
    group = factories.KeyGroupFactory(team=team)
    scoped, _ = services.routing_rule_create(team=team, name="batch", default_model="test/weak", key_group=group)
    assert scoped.key_group == group  # the same name in another scope is fine
    with pytest.raises(ValidationError) as exc:
        services.routing_rule_create(team=team, name="other", default_model="test/strong",
                                     forbidden_models=["test/strong"])
    assert "forbidden_models" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.routing_rule_create(team=team, name="theirs", default_model="test/strong",
                                     key_group=factories.KeyGroupFactory())
    assert "key_group" in exc.value.message_dict
    updated, _ = services.routing_rule_update(rule=rule, budget_limit=5_000_000, soft_limit=4_000_000,
                                              budget_period="day")
    assert (updated.budget_limit, updated.soft_limit, updated.budget_period) == (5_000_000, 4_000_000, "day")
    with pytest.raises(ValidationError):
        services.routing_rule_update(rule=rule, budget_period="year")


@pytest.mark.django_db
def test_warnings_name_what_a_backup_cannot_serve():
    team = factories.TeamFactory()
    catalog()
    _, warnings = services.routing_rule_create(team=team, name="vision", default_model="test/strong",
                                               backup_models=["test/same", "test/weak"],
                                               downgrade_model="test/embed", soft_limit=1_000)
    text_ = "\n".join(warnings)
    weak = [w for w in warnings if "test/weak" in w]
    assert len(weak) == 5, warnings   # context, tools, vision, JSON schema, video
    for mismatch in ("shorter context (8000 tokens)", "no tool calling", "no image input", "no JSON-schema output",
                     "no video input"):
        assert any(mismatch in w for w in weak), (mismatch, warnings)
    assert all(w.startswith("Backup test/weak") for w in weak)
    assert "Downgrade test/embed outputs embeddings, but the default test/strong outputs text." in text_
    assert "test/same" not in text_     # a backup that serves everything the default serves: no warning
    _, none = services.routing_rule_create(team=team, name="plain", default_model="test/strong",
                                           backup_models=["test/same"])
    assert none == []


# --- console ----------------------------------------------------------------------------------------------
def _form(**fields):
    return {"name": "tools", "key_group": "", "default_model": "test/strong", "backup_models": "test/weak",
            "downgrade_model": "", "budget_limit": "", "budget_period": "month", "soft_limit": "", **fields}


@pytest.mark.django_db
def test_console_create_edit_delete_with_warnings(django_capture_on_commit_callbacks):
    team = factories.TeamFactory()
    catalog()
    client = client_for(member(team, roles.ADMIN))
    url = reverse("console-routes", kwargs={"team": team.slug})
    page = client.get(url)
    assert page.status_code == 200 and "New route" in text(page) and "Rules of “auto”" in text(page)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(url, _form(downgrade_model="test/same", budget_limit="12.50", soft_limit="10",
                                           forbidden_models=["test/embed"]), follow=True)
    assert response.status_code == 200 and callbacks  # bump_version on commit
    rule = RoutingRule.objects.get(team=team, name="tools")
    assert rule.backup_models == ["test/weak"] and rule.downgrade_model.public_id == "test/same"
    assert (rule.budget_limit, rule.soft_limit, rule.forbidden_models) == (12_500_000, 10_000_000, ["test/embed"])
    body = text(response)
    assert "Route “route:tools” created." in body
    assert "Backup test/weak has no tool calling, but the default test/strong has." in body
    assert "<code>route:tools</code>" in body and "$12.50" in body

    detail = reverse("console-route-detail", kwargs={"team": team.slug, "pk": rule.pk})
    page = client.get(detail)
    assert page.status_code == 200 and 'data-testid="route-warnings"' in text(page)
    assert "Backup test/weak has no tool calling, but the default test/strong has." in text(page)
    response = client.post(detail, _form(backup_models="test/same, test/weak", budget_limit="abc"))
    assert response.status_code == 400 and "budget_limit" in response.context["form"].errors
    response = client.post(detail, _form(backup_models="test/same, no/such"))
    assert response.status_code == 400 and "“no/such” is not in the catalog." in text(response)
    response = client.post(detail, _form(backup_models="test/same, test/weak", budget_limit="1e3"))
    assert response.status_code == 400
    response = client.post(detail, _form(backup_models="test/same"), follow=True)
    assert response.status_code == 200 and "Route “route:tools” saved." in text(response)
    rule.refresh_from_db()
    assert rule.backup_models == ["test/same"] and rule.downgrade_model is None and rule.budget_limit is None

    response = client.post(reverse("console-route-delete", kwargs={"team": team.slug, "pk": rule.pk}))
    assert response.status_code == 302 and not RoutingRule.objects.filter(pk=rule.pk).exists()


@pytest.mark.django_db
def test_console_roles_and_other_teams():
    team, other = factories.TeamFactory(), factories.TeamFactory()
    catalog()
    theirs, _ = services.routing_rule_create(team=other, name="default", default_model="test/strong")
    admin = client_for(member(team, roles.ADMIN))
    assert admin.get(reverse("console-route-detail", kwargs={"team": team.slug, "pk": theirs.pk})).status_code == 404
    billing = client_for(member(team, roles.BILLING))     # reads (keys.read), never edits
    page = billing.get(reverse("console-routes", kwargs={"team": team.slug}))
    assert page.status_code == 200 and "New route" not in text(page)
    assert billing.post(reverse("console-routes", kwargs={"team": team.slug}), _form()).status_code == 403
    plain = client_for(member(team, roles.MEMBER))
    assert plain.get(reverse("console-routes", kwargs={"team": team.slug})).status_code == 403


# --- API --------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_api_crud_with_warnings():
    owner = factories.MembershipFactory(role=roles.OWNER)
    team = owner.team
    catalog()
    group = factories.KeyGroupFactory(team=team)
    client = api(owner.user)
    created = client.post(base(team), {"name": "vision", "default_model": "test/strong",
                                       "backup_models": ["test/weak"], "downgrade_model": "test/same",
                                       "forbidden_models": ["test/embed"], "budget_limit": 2_000_000,
                                       "budget_period": "week", "soft_limit": 1_500_000,
                                       "key_group_id": group.pk}, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["default_model"] == "test/strong" and data["key_group_id"] == group.pk
    assert data["backup_models"] == ["test/weak"] and data["downgrade_model"] == "test/same"
    assert any("Backup test/weak takes no video input" in w for w in data["warnings"])
    listed = client.get(base(team)).json()
    assert [r["name"] for r in listed] == ["vision"]
    url = f"{base(team)}{data['id']}/"
    assert client.get(url).json()["budget_limit"] == 2_000_000
    assert client.get(url).json()["warnings"] == data["warnings"]

    patched = client.patch(url, {"backup_models": ["test/same"], "downgrade_model": None}, format="json")
    assert patched.status_code == 200
    assert patched.json()["warnings"] == ["A soft limit has no effect without a downgrade model."]
    assert patched.json()["downgrade_model"] is None
    assert patched.json()["key_group_id"] == group.pk   # untouched by a PATCH that does not name it
    put = client.put(url, {"name": "vision", "default_model": "test/same"}, format="json")
    assert put.status_code == 200 and put.json()["key_group_id"] is None and put.json()["backup_models"] == []

    bad = client.post(base(team), {"name": "x", "default_model": "no/such"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "default_model"
    bad = client.post(base(team), {"name": "vision", "default_model": "test/weak"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    bad = client.post(base(team), {"name": "y", "default_model": "test/weak", "key_group_id": 10**9},
                      format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "key_group_id"
    bad = client.post(base(team), {"name": "y", "default_model": "test/weak", "budget_limit": "1.5"},
                      format="json")
    assert bad.status_code == 400

    other = factories.MembershipFactory(role=roles.OWNER)
    assert api(other.user).get(url).status_code == 404
    assert api(other.user).delete(f"/api/teams/{other.team.slug}/routes/{data['id']}/").status_code == 404
    assert client.delete(url).status_code == 204 and not RoutingRule.objects.filter(pk=data["id"]).exists()


@pytest.mark.django_db
def test_api_auto_rules():
    owner = factories.MembershipFactory(role=roles.OWNER)
    client = api(owner.user)
    url = f"/api/teams/{owner.team.slug}/routes/auto/"
    assert client.get(url).json() == {"vision_route": "vision", "tools_route": "tools",
                                      "long_prompt_route": "long-review", "long_prompt_tokens": None,
                                      "default_route": "default", "claude_route": ""}
    saved = client.put(url, {"tools_route": "agents", "long_prompt_tokens": 1000}, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["tools_route"] == "agents" and saved.json()["long_prompt_tokens"] == 1000
    assert any("agents" in w for w in saved.json()["warnings"])
    assert AutoRouting.objects.get(team=owner.team).tools_route == "agents"
    assert client.put(url, {"tools_route": "no spaces"}, format="json").status_code == 400
    assert client.put(url, {"long_prompt_tokens": 0}, format="json").status_code == 400
    reader = factories.MembershipFactory(team=owner.team, role=roles.BILLING)
    assert api(reader.user).get(url).status_code == 200
    assert api(reader.user).put(url, {"tools_route": "x"}, format="json").status_code == 403


# --- the router ---------------------------------------------------------------------------------------------
def _ctx(key, **changes):
    ctx = context_for(key)
    if all(name in KeyContext.__dataclass_fields__ for name in changes):
        return dataclasses.replace(ctx, **changes)
    return types.SimpleNamespace(**dataclasses.asdict(ctx), **changes)   # a field the keys app has yet to add


@pytest.mark.django_db
def test_routes_only_groups_cannot_name_a_model():
    strong, weak, *_ = catalog()
    key, _ = factories.api_key()
    services.routing_rule_create(team=key.team, name="default", default_model="test/weak",
                                 forbidden_models=["test/strong"])
    snap = snapshot.load_now()
    ctx = _ctx(key, group_routes_only=True)
    for request in ({"model": "test/strong", "messages": CHAT}, {"models": ["test/strong"], "messages": CHAT},
                    {"model": "test/weak", "models": ["test/strong"], "messages": CHAT}):
        with pytest.raises(errors.RelayError) as exc:
            router.plan(snap, ctx, request, 100)
        assert (exc.value.status, exc.value.code) == (403, "model_not_allowed")
        assert "may only call routes" in exc.value.message and "route:NAME" in exc.value.message
    for spec in ("route:default", "auto"):
        assert [m.public_id for m in router.plan(snap, ctx, {"model": spec, "messages": CHAT}, 100).models] == \
            ["test/weak"]
    # Without the flag a model id is fine.
    assert router.plan(snap, context_for(key), {"model": "test/strong", "messages": CHAT}, 100).route is None


@pytest.mark.django_db
def test_routes_only_key_group_field_reaches_the_router():
    from keys.models import KeyGroup

    if not hasattr(KeyGroup, "routes_only"):
        pytest.skip("KeyGroup.routes_only is not there yet")
    catalog()
    group = factories.KeyGroupFactory(routes_only=True)
    key, _ = factories.api_key(group=group)
    with pytest.raises(errors.RelayError) as exc:
        router.plan(snapshot.load_now(), context_for(key), {"model": "test/weak", "messages": CHAT}, 100)
    assert exc.value.code == "model_not_allowed"


@pytest.mark.django_db
def test_auto_rules_change_what_auto_picks():
    catalog()
    key, _ = factories.api_key()
    team = key.team
    for name, model in (("default", "test/weak"), ("tools", "test/same"), ("agents", "test/strong"),
                        ("long-review", "test/strong"), ("bulk", "test/same")):
        services.routing_rule_create(team=team, name=name, default_model=model)
    long_text = [{"role": "user", "content": "word " * 2000}]

    def picked(request):
        route = router.plan(snapshot.load_now(), context_for(key), {"model": "auto", **request}, 10_000).route
        return route.replace("→", "->")   # the arrow is ASCII in headers, whichever the router writes

    assert picked({"messages": CHAT, "tools": TOOLS}) == "auto -> route:tools"
    assert picked({"messages": long_text}) == "auto -> route:default"     # under the deployment's 32k default
    services.auto_routing_update(team=team, tools_route="agents", long_prompt_tokens=500,
                                 long_prompt_route="bulk", default_route="bulk")
    assert picked({"messages": CHAT, "tools": TOOLS}) == "auto -> route:agents"
    assert picked({"messages": long_text}) == "auto -> route:bulk"
    assert picked({"messages": CHAT}) == "auto -> route:bulk"
    # A route named by the rules but missing: the team's default route serves.
    services.auto_routing_update(team=team, tools_route="missing")
    assert picked({"messages": CHAT, "tools": TOOLS}) == "auto -> route:bulk"


# --- the dry run ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_dry_run_lists_candidates_and_skip_reasons():
    strong, weak, same, _ = catalog()
    owner = factories.MembershipFactory(role=roles.ADMIN)
    team = owner.team
    key, _ = factories.api_key(team=team)
    own = factories.channel(models=[strong, weak], base_url="http://127.0.0.1:9/v1", team=team, name="our-openai",
                            priority=5)
    platform = factories.channel(models=[strong], base_url="http://127.0.0.1:9/v1", name="platform-a")
    services.routing_rule_create(team=team, name="tools", default_model="test/strong",
                                 backup_models=["test/weak", "test/same"])
    client = api(owner.user)
    url = f"/api/teams/{team.slug}/routes/try/"
    body = {"model": "route:tools", "messages": CHAT, "tools": TOOLS}
    response = client.post(url, {"body": body, "key_id": key.pk}, format="json")
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["route"] == "route:tools" and result["error"] is None
    assert [(c["model"], c["channel"]) for c in result["candidates"]] == [
        ("test/strong", "channel 'our-openai'"), ("test/strong", f"platform channel #{platform.pk}")]
    assert "test/weak: no tool calling" in result["skipped"]
    assert "test/same via -: no channel serves it" in result["skipped"]
    assert result["header"].startswith("route=route:tools; model=test/strong; channel=our-openai; attempts=1; skipped=")
    assert "test/weak: no tool calling" in result["header"]
    assert own.pk  # the team's own channel comes first

    # A string body works too; invalid JSON is a clear 400; a refusal is reported as the relay's answer.
    as_text = client.post(url, {"body": '{"model": "route:nope", "messages": []}', "key_id": key.pk}, format="json")
    assert as_text.status_code == 200 and as_text.json()["error"]["code"] == "invalid_value"
    bad = client.post(url, {"body": "{not json", "key_id": key.pk}, format="json")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    assert bad.json()["error"]["param"] == "body"
    as_group = client.post(url, {"body": body, "key_group_id": key.group_id}, format="json").json()
    assert as_group["candidates"][0]["model"] == "test/strong"
    refused = client.post(url, {"body": {"model": "route:nope", "messages": CHAT}, "key_id": key.pk},
                          format="json").json()
    assert refused["error"]["status"] == 404 and "route:nope" in refused["error"]["message"]
    assert client.post(url, {"body": body}, format="json").status_code == 400
    other = factories.MembershipFactory(role=roles.OWNER)
    assert api(other.user).post(url, {"body": body, "key_id": key.pk}, format="json").status_code == 404

    # The console panel: the same result on the page.
    page = client_for(owner.user).post(reverse("console-route-try", kwargs={"team": team.slug}),
                                       {"body": '{"model": "route:tools", "tools": [{"type": "function", '
                                                '"function": {"name": "x"}}], "messages": [{"role": "user", '
                                                '"content": "hi"}]}', "key": key.pk})
    assert page.status_code == 200
    html = text(page)
    assert 'data-testid="try-candidates"' in html and "our-openai" in html and "no tool calling" in html
    page = client_for(owner.user).post(reverse("console-route-try", kwargs={"team": team.slug}),
                                       {"body": "{oops", "key": key.pk})
    assert page.status_code == 400 and "not valid JSON" in text(page)


# --- live: an API edit reaches a running gateway within a second ------------------------------------------
def test_a_route_edited_through_the_api_is_live_within_a_second(live, simulator):
    second = factories.CatalogModelFactory(public_id="test/second", upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=second)
    factories.channel(models=[second], base_url=f"{simulator.url}/v1", name="second")
    owner = factories.MembershipFactory(team=live.team, role=roles.ADMIN)
    client = api(owner.user)

    def call():
        return httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                          json={"model": "route:live", "messages": CHAT}, timeout=10)

    created = client.post(base(live.team), {"name": "live", "default_model": live.model.public_id}, format="json")
    assert created.status_code == 201
    started = time.monotonic()
    first = wait_for(lambda: (r := call()).status_code == 200 and r, timeout=1.0)
    assert first and "route=route:live; model=openai/gpt-4o-mini" in first.headers["x-tollgate-route"], \
        f"not live after {time.monotonic() - started:.2f} s"

    changed = client.patch(f"{base(live.team)}{created.json()['id']}/", {"default_model": "test/second"},
                           format="json")
    assert changed.status_code == 200
    started = time.monotonic()
    served = wait_for(lambda: (r := call()).status_code == 200 and r.json()["model"] == "test/second" and r,
                      timeout=1.0)
    assert served, f"the edit was not live after {time.monotonic() - started:.2f} s"
    assert "model=test/second" in served.headers["x-tollgate-route"]


@pytest.mark.django_db
def test_dry_run_as_a_routes_only_group_shows_the_refusal():
    catalog()
    owner = factories.MembershipFactory(role=roles.OWNER)
    group = factories.KeyGroupFactory(team=owner.team)
    group.routes_only = True
    group.save()
    services.routing_rule_create(team=owner.team, name="default", default_model="test/weak")
    url = f"/api/teams/{owner.team.slug}/routes/try/"
    direct = api(owner.user).post(url, {"body": {"model": "test/strong", "messages": CHAT},
                                        "key_group_id": group.pk}, format="json").json()
    assert direct["error"]["status"] == 403 and direct["error"]["code"] == "model_not_allowed"
    assert "may only call routes" in direct["error"]["message"] and direct["candidates"] == []
    routed = api(owner.user).post(url, {"body": {"model": "auto", "messages": CHAT}, "key_group_id": group.pk},
                                  format="json").json()
    assert routed["route"].startswith("auto") and routed["skipped"] == ["test/weak via -: no channel serves it"]
    assert routed["error"]["status"] == 503 and routed["error"]["code"] == "no_available_channel"  # no channel


@pytest.mark.django_db
def test_dry_run_past_the_soft_limit_shows_the_downgrade():
    strong, weak, same, _ = catalog()
    for model in (strong, weak):
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url="http://127.0.0.1:9/v1", name=model.public_id)
    owner = factories.MembershipFactory(role=roles.OWNER)
    key, _ = factories.api_key(team=owner.team)
    rule, _ = services.routing_rule_create(team=owner.team, name="batch", default_model="test/strong",
                                           downgrade_model="test/weak", budget_limit=10_000_000, soft_limit=0)
    url = f"/api/teams/{owner.team.slug}/routes/try/"
    body = {"model": "route:batch", "messages": CHAT}
    result = api(owner.user).post(url, {"body": body, "key_id": key.pk}, format="json").json()
    assert [(c["model"], c["role"]) for c in result["candidates"]] == [("test/weak", "primary")]
    assert "route 'batch' past its soft limit: downgraded" in result["skipped"]
    assert "route 'batch' past its soft limit: downgraded" in result["header"]
    services.routing_rule_update(rule=rule, soft_limit=5_000_000)   # nothing spent yet: under it
    result = api(owner.user).post(url, {"body": body, "key_id": key.pk}, format="json").json()
    assert [(c["model"], c["role"]) for c in result["candidates"]] == [("test/strong", "primary"),
                                                                        ("test/weak", "downgrade")]


def test_past_the_soft_limit_the_relay_serves_the_downgrade_as_the_dry_run_says(live, simulator):
    cheap = factories.CatalogModelFactory(public_id="test/cheap", upstream_name="gpt-4o-mini")
    factories.PriceFactory(model=cheap)
    factories.channel(models=[cheap], base_url=f"{simulator.url}/v1", name="cheap")
    owner = factories.MembershipFactory(team=live.team, role=roles.ADMIN)
    created = api(owner.user).post(base(live.team), {
        "name": "capped", "default_model": live.model.public_id, "downgrade_model": "test/cheap",
        "budget_limit": 50_000_000, "soft_limit": 0}, format="json")
    assert created.status_code == 201
    body = {"model": "route:capped", "messages": CHAT}
    served = wait_for(lambda: (r := httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                                               headers={"Authorization": f"Bearer {live.secret}"})).status_code
                      == 200 and r, timeout=2.0)
    assert served and served.json()["model"] == "test/cheap"
    assert "route 'capped' past its soft limit: downgraded" in served.headers["x-tollgate-route"]
    dry = api(owner.user).post(f"/api/teams/{live.team.slug}/routes/try/", {"body": body, "key_id": live.key.pk},
                               format="json").json()
    assert [c["model"] for c in dry["candidates"]] == ["test/cheap"]
    assert dry["header"].split("; attempts=")[0] == served.headers["x-tollgate-route"].split("; attempts=")[0]


@pytest.mark.django_db
def test_dry_run_embeddings_and_the_attempt_limit(settings):
    strong, _, same, embed = catalog()
    for model in (strong, same, embed):
        factories.channel(models=[model], base_url="http://127.0.0.1:9/v1", name=model.public_id)
    owner = factories.MembershipFactory(role=roles.OWNER)
    key, _ = factories.api_key(team=owner.team)
    client, url = api(owner.user), f"/api/teams/{owner.team.slug}/routes/try/"
    embedded = client.post(url, {"body": {"model": "test/embed", "input": "hello"}, "key_id": key.pk},
                           format="json").json()
    assert [c["model"] for c in embedded["candidates"]] == ["test/embed"] and embedded["error"] is None
    wrong = client.post(url, {"body": {"model": "test/strong", "input": "hello"}, "key_id": key.pk},
                        format="json").json()
    assert wrong["error"]["status"] == 400 and wrong["error"]["code"] == "unsupported_capability"
    settings.TOLLGATE_MAX_ATTEMPTS = 1
    listed = client.post(url, {"body": {"models": ["test/strong", "test/same"], "messages": CHAT}, "key_id": key.pk},
                         format="json").json()
    assert [(c["model"], c["within_attempt_limit"]) for c in listed["candidates"]] == [
        ("test/strong", True), ("test/same", False)]
    assert listed["route"] == "models[]"


@pytest.mark.django_db
def test_a_concurrent_duplicate_name_is_a_field_error():
    strong, *_ = catalog()
    team = factories.TeamFactory()
    services.routing_rule_create(team=team, name="dup", default_model="test/strong")
    with pytest.raises(ValidationError) as exc:   # what the loser of a race meets after both checked the name
        services._save_rule(RoutingRule(team=team, name="dup", default_model=strong))
    assert "name" in exc.value.message_dict
    assert RoutingRule.objects.filter(team=team, name="dup").count() == 1


@pytest.mark.django_db
def test_console_auto_rules_form(django_capture_on_commit_callbacks):
    team = factories.TeamFactory()
    client = client_for(member(team, roles.OWNER))
    url = reverse("console-route-auto", kwargs={"team": team.slug})
    fields = {"vision_route": "vision", "tools_route": "agents", "long_prompt_route": "long-review",
              "long_prompt_tokens": "", "default_route": "default"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(url, fields, follow=True)
    assert response.status_code == 200 and callbacks
    assert "The rules of “auto” were saved." in text(response)
    assert "No route “agents” exists yet" in text(response)
    auto = AutoRouting.objects.get(team=team)
    assert (auto.tools_route, auto.long_prompt_tokens) == ("agents", None)
    bad = client.post(url, {**fields, "long_prompt_tokens": "0", "tools_route": "a b"})
    assert bad.status_code == 400 and set(bad.context["auto_form"].errors) == {"long_prompt_tokens", "tools_route"}
    assert client.get(url).status_code == 302
