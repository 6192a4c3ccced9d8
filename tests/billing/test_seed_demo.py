"""seed_demo: idempotent, create-if-missing (an operator's or team admin's edit survives a re-run), and the
demo it makes works out of the box: task tiers for `auto`/`route:*`, limits on the demo key group, a
support-staff login."""
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts import roles
from accounts.models import Membership, StaffRole, Team
from billing.demo import CATALOG, ROUTES, seed_demo, to_micro
from billing.models import LedgerEntry, Price
from billing.services import price_set
from keys.models import ApiKey, KeyGroup
from routing.models import Channel, Model, RoutingRule

pytestmark = pytest.mark.django_db

KEY = "sk-tg-seed-test-key-000000000000000000000000"


def seed(**overrides):
    args = {"api_key": KEY, "owner_password": "demo-password-1", "operator_password": "operator-password-1",
            "support_password": "support-password-1", "simulator_url": "http://127.0.0.1:9100"}
    return seed_demo(**{**args, **overrides})


def counts():
    return {model.__name__: model.objects.count()
            for model in (get_user_model(), Team, Membership, StaffRole, KeyGroup, ApiKey, Model, Price, Channel,
                          RoutingRule, LedgerEntry)}


def test_a_second_run_creates_nothing_and_changes_nothing():
    first = seed()
    assert "route:vision" in first.created and "api key demo" in first.created
    before = counts()
    second = seed()
    assert second.created == []
    assert counts() == before
    assert LedgerEntry.objects.filter(team=first.team).count() == 1      # the demo credit, once


def test_edits_made_in_the_console_survive_a_re_run():
    demo = seed()
    team = demo.team
    mini = Model.objects.get(public_id="openai/gpt-4o-mini")
    haiku = Model.objects.get(public_id="anthropic/claude-haiku-4-5")
    # A team admin changes a route and the key group's limits; an operator reprices a model and renames one.
    route = RoutingRule.objects.get(team=team, name="batch")
    route.default_model, route.backup_models, route.downgrade_model = haiku, [], None
    route.save()
    RoutingRule.objects.filter(team=team, name="tools").delete()
    KeyGroup.objects.filter(team=team, name="default").update(rpm_limit=7, budget_limit=123, budget_period="month")
    new_price = price_set(model=mini, input_per_m=1, output_per_m=2, cached_input_per_m=1)
    Model.objects.filter(pk=haiku.pk).update(display_name="Haiku (ours)", context_length=1000)
    channel = Channel.objects.get(team=None, kind=Channel.OPENAI)
    channel.base_url = "https://upstream.example.com/v1"
    channel.save()
    channel.models.set([mini])
    owner = get_user_model().objects.get(username="demo")
    owner.set_password("changed-by-the-owner")
    owner.save()
    Membership.objects.filter(user=owner, team=team).update(role=roles.ADMIN)

    again = seed(simulator_url="http://127.0.0.1:9555")

    route = RoutingRule.objects.get(team=team, name="batch")
    assert (route.default_model_id, route.backup_models, route.downgrade_model_id) == (haiku.pk, [], None)
    assert not RoutingRule.objects.filter(team=team, name="tools").exists()   # a deleted tier stays deleted
    assert again.created == []
    group = KeyGroup.objects.get(team=team, name="default")
    assert (group.rpm_limit, group.budget_limit, group.budget_period) == (7, 123, "month")
    assert Price.objects.filter(model=mini).order_by("-effective_from").first() == new_price
    haiku.refresh_from_db()
    assert (haiku.display_name, haiku.context_length) == ("Haiku (ours)", 1000)
    channel.refresh_from_db()
    assert channel.base_url == "https://upstream.example.com/v1"
    assert list(channel.models.all()) == [mini]
    owner.refresh_from_db()
    assert owner.check_password("changed-by-the-owner")
    assert Membership.objects.get(user=owner, team=team).role == roles.ADMIN


def test_the_simulator_channels_follow_the_simulator_port_while_they_point_at_it():
    seed()
    seed(simulator_url="http://127.0.0.1:9555")
    urls = dict(Channel.objects.filter(team=None).values_list("kind", "base_url"))
    assert urls == {Channel.OPENAI: "http://127.0.0.1:9555/v1", Channel.ANTHROPIC: "http://127.0.0.1:9555",
                    Channel.GEMINI: "http://127.0.0.1:9555"}


def test_the_task_tiers_have_backups_and_a_downgrade_and_vision_takes_video():
    demo = seed()
    rules = {r.name: r for r in RoutingRule.objects.filter(team=demo.team, key_group=None)
             .select_related("default_model", "downgrade_model")}
    assert set(rules) == {"batch", "default", "tools", "long-review", "vision"} == set(ROUTES)
    assert rules["batch"].default_model.public_id == "deepseek/deepseek-chat"
    assert rules["default"].default_model.public_id == "openai/gpt-4o-mini"
    assert rules["long-review"].default_model.provider == "anthropic"
    assert rules["vision"].default_model.provider == "google"
    assert "video" in rules["vision"].default_model.input_modalities
    catalog = {m.public_id for m in Model.objects.all()}
    for rule in rules.values():
        assert rule.backup_models and set(rule.backup_models) <= catalog
        assert rule.default_model.public_id not in rule.backup_models
        assert rule.downgrade_model is not None and rule.downgrade_model != rule.default_model
        assert not set(rule.forbidden_models) & {rule.default_model.public_id, *rule.backup_models,
                                                 rule.downgrade_model.public_id}
    # A model the cheap tiers forbid is a real, costly catalog model.
    assert "openai/gpt-4o" in rules["batch"].forbidden_models
    for public_id, *_ in CATALOG:
        model = Model.objects.get(public_id=public_id)
        assert ("video" in model.input_modalities) == (model.provider == "google")


def test_limits_on_the_demo_key_group_and_the_support_login():
    demo = seed()
    key = ApiKey.objects.select_related("group").get(team=demo.team)
    assert (key.group.budget_period, key.group.budget_limit, key.group.rpm_limit) == ("day", to_micro("5"), 60)
    support = get_user_model().objects.get(username="support")
    assert support.check_password("support-password-1") and not support.is_superuser
    assert StaffRole.objects.get(user=support).role == roles.SUPPORT
    assert StaffRole.objects.get(user__username="operator").role == roles.OPERATOR


def test_the_command_needs_its_secrets_and_takes_the_limits_from_the_environment(monkeypatch):
    for name in ("DEMO_API_KEY", "DEMO_PASSWORD", "OPERATOR_PASSWORD", "SUPPORT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CommandError, match="DEMO_API_KEY"):
        call_command("seed_demo")
    monkeypatch.setenv("DEMO_API_KEY", KEY)
    monkeypatch.setenv("DEMO_PASSWORD", "demo-password-1")
    monkeypatch.setenv("OPERATOR_PASSWORD", "operator-password-1")
    monkeypatch.setenv("DEMO_RPM_LIMIT", "0")
    monkeypatch.setenv("DEMO_DAILY_BUDGET", "1.50")
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "demo team 'demo' ready" in out.getvalue() and "route:batch" in out.getvalue()
    group = KeyGroup.objects.get(team__slug="demo", name="default")
    assert (group.rpm_limit, group.budget_limit) == (None, to_micro("1.50"))
    assert not get_user_model().objects.filter(username="support").exists()   # no SUPPORT_PASSWORD, no user
    monkeypatch.setenv("DEMO_RPM_LIMIT", "-1")
    with pytest.raises(CommandError, match="negative"):
        call_command("seed_demo")
    monkeypatch.setenv("DEMO_DAILY_BUDGET", "NaN")
    with pytest.raises(CommandError):
        call_command("seed_demo")
