"""Claude model ids as Claude Code sends them (its main and small fast model, present and future names):
catalog ids and operator-editable aliases first, then the team's route for unknown Claude ids, shown in
X-Tollgate-Route; set in the route console page and its API."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from keys.auth import context_for
from routing import services
from routing.models import AutoRouting
from routing.relay import errors, router, snapshot
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401

CHAT = [{"role": "user", "content": "hello"}]


def setup_team(claude_route="claude-code"):
    sonnet = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", supports_tools=True,
                                           aliases=["claude-sonnet-4-5", "claude-sonnet-4-6"])
    haiku = factories.CatalogModelFactory(public_id="anthropic/claude-haiku-4-5", supports_tools=True,
                                          aliases=["claude-haiku-4-5-20251001"])
    key, _ = factories.api_key()
    services.routing_rule_create(team=key.team, name="claude-code", default_model=sonnet.public_id,
                                 backup_models=[haiku.public_id])
    if claude_route is not None:
        services.auto_routing_update(team=key.team, claude_route=claude_route)
    return key


def plan_for(key, model):
    return router.plan(snapshot.load_now(), context_for(key), {"model": model, "messages": CHAT}, 1_000)


@pytest.mark.django_db
def test_aliases_resolve_first_and_unknown_claude_ids_take_the_team_route():
    key = setup_team()
    direct = plan_for(key, "claude-haiku-4-5-20251001")   # Claude Code's small fast model, an alias
    assert direct.route is None and [m.public_id for m in direct.models] == ["anthropic/claude-haiku-4-5"]
    assert plan_for(key, "claude-sonnet-4-6").models[0].public_id == "anthropic/claude-sonnet-4-5"
    for unknown in ("claude-opus-4-8", "claude-opus-9", "anthropic/claude-sonnet-7-20270101"):
        routed = plan_for(key, unknown)
        assert routed.route == f"route:claude-code; unknown_model={unknown}"
        assert [m.public_id for m in routed.models] == ["anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"]
    with pytest.raises(errors.RelayError) as exc:   # not a Claude id: unknown as ever
        plan_for(key, "gpt-9")
    assert exc.value.status == 404 and exc.value.code == "model_not_found"
    with pytest.raises(errors.RelayError) as exc:   # no header injection through the model name
        plan_for(key, "claude-x; channel=spoofed")
    assert exc.value.status == 404


@pytest.mark.django_db
@pytest.mark.parametrize("claude_route", [None, "", "missing-route"])
def test_without_a_claude_route_unknown_claude_ids_are_a_404(claude_route):
    key = setup_team(claude_route)
    with pytest.raises(errors.RelayError) as exc:
        plan_for(key, "claude-opus-9")
    assert exc.value.status == 404 and exc.value.code == "model_not_found"
    assert "Unknown Claude model ids" in exc.value.message and "claude_route" in exc.value.message   # how to fix
    with pytest.raises(errors.RelayError) as exc:
        plan_for(key, "gpt-9")
    assert "Claude" not in exc.value.message


@pytest.mark.django_db
def test_the_claude_route_is_per_team():
    key = setup_team()
    other, _ = factories.api_key()
    assert plan_for(key, "claude-opus-9").route.startswith("route:claude-code")
    with pytest.raises(errors.RelayError):
        plan_for(other, "claude-opus-9")


@pytest.mark.django_db
def test_api_sets_and_clears_the_claude_route():
    owner = factories.MembershipFactory(role=roles.OWNER)
    client = APIClient()
    client.force_authenticate(owner.user)
    url = f"/api/teams/{owner.team.slug}/routes/auto/"
    assert client.get(url).json()["claude_route"] == ""
    saved = client.put(url, {"claude_route": "claude-code"}, format="json")
    assert saved.status_code == 200 and saved.json()["claude_route"] == "claude-code"
    assert any("unknown Claude model ids" in w for w in saved.json()["warnings"])   # no such route yet
    assert AutoRouting.objects.get(team=owner.team).claude_route == "claude-code"
    assert client.put(url, {"claude_route": "not a slug"}, format="json").status_code == 400
    cleared = client.put(url, {"claude_route": ""}, format="json")
    assert cleared.status_code == 200 and cleared.json()["claude_route"] == ""
    other = factories.MembershipFactory(role=roles.OWNER)
    client.force_authenticate(other.user)
    assert client.put(url, {"claude_route": "x"}, format="json").status_code == 404   # another team's


@pytest.mark.django_db
def test_console_form_sets_the_claude_route(django_capture_on_commit_callbacks):
    team = factories.TeamFactory()
    client = client_for(member(team, roles.OWNER))
    page = client.get(reverse("console-routes", kwargs={"team": team.slug}))
    assert "Unknown Claude model ids" in text(page)
    fields = {"vision_route": "vision", "tools_route": "tools", "long_prompt_route": "long-review",
              "long_prompt_tokens": "", "default_route": "default", "claude_route": "long-review"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("console-route-auto", kwargs={"team": team.slug}), fields, follow=True)
    assert response.status_code == 200 and "The rules of “auto” were saved." in text(response)
    assert AutoRouting.objects.get(team=team).claude_route == "long-review"
    bad = client.post(reverse("console-route-auto", kwargs={"team": team.slug}), {**fields, "claude_route": "a b"})
    assert bad.status_code == 400 and set(bad.context["auto_form"].errors) == {"claude_route"}


@pytest.mark.django_db
def test_the_demo_team_sends_unknown_claude_ids_to_a_working_route():
    from billing.demo import CLAUDE_ROUTE, seed_demo
    from keys.models import ApiKey

    seed_demo(api_key="sk-tg-claude-demo-key-00000000000000000000", owner_password="demo-password-1",
              operator_password="operator-password-1", simulator_url="http://127.0.0.1:9100")
    key = ApiKey.objects.get(team__slug="demo")
    routed = plan_for(key, "claude-opus-5-5")   # Claude Code 2.1's own default model
    assert routed.route == f"route:{CLAUDE_ROUTE}; unknown_model=claude-opus-5-5"
    assert routed.models[0].public_id == "anthropic/claude-sonnet-4-5"
    assert plan_for(key, "claude-haiku-4-5-20251001").models[0].public_id == "anthropic/claude-haiku-4-5"
