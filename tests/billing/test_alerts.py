"""Budget alerts at 80% and 100%: every kind of budget, once per period, mailed to owners and admins, and the
console banner's selector."""
import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from billing import limits, services
from billing.models import BudgetAlert, TeamBillingPolicy
from billing.tasks import check_budget_alerts
from keys.models import ApiKey
from routing.models import RoutingRule
from tests.billing.factories import UsageRecordFactory
from tests.billing.test_ledger import run_threads
from tests.factories import CatalogModelFactory, KeyGroupFactory, MembershipFactory, TeamFactory, api_key, credit

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    """A team, the addresses its alerts go to (owner and admin), and its owner."""
    team = TeamFactory()
    owner = MembershipFactory(team=team, role=roles.OWNER).user
    admin = MembershipFactory(team=team, role=roles.ADMIN).user
    MembershipFactory(team=team, role=roles.MEMBER)
    MembershipFactory(team=team, role=roles.BILLING)
    return team, sorted([owner.email, admin.email]), owner


def budget_key(team, owner, limit, period="month", group=None):
    key, _ = api_key(team=team, owner=owner, group=group)
    ApiKey.objects.filter(pk=key.pk).update(budget_limit=limit, budget_period=period)
    return key


def check(capture, **kwargs) -> int:
    with capture(execute=True):
        return services.budget_alerts_check(**kwargs)


def test_a_key_budget_alerts_once_at_80_and_once_at_100(people, mailoutbox, django_capture_on_commit_callbacks):
    team, recipients, owner = people
    key = budget_key(team, owner, 1_000)
    UsageRecordFactory(team=team, api_key=key, cost=799)
    UsageRecordFactory(team=TeamFactory(), cost=10_000)          # another team's spend does not count
    assert check(django_capture_on_commit_callbacks) == 0 and mailoutbox == []   # below 80%: nothing

    UsageRecordFactory(team=team, api_key=key, cost=1)
    assert check(django_capture_on_commit_callbacks) == 1
    alert = BudgetAlert.objects.get()
    tag = limits.period_tag("month", timezone.now())
    assert (alert.scope_kind, alert.scope_id, alert.period_tag, alert.threshold) == ("key", str(key.pk), tag, 80)
    assert (alert.spent, alert.limit, alert.label) == (800, 1_000, f"key 'test key' ({key.mask}) monthly budget")
    [mail] = mailoutbox
    assert sorted(mail.to) == recipients
    assert mail.subject == f"[Tollgate] {team.name}: key 'test key' ({key.mask}) monthly budget at 80%"
    assert "has reached 80%: $0.0008 of $0.001 spent" in mail.body and f"/console/t/{team.slug}/billing/" in mail.body
    assert check(django_capture_on_commit_callbacks) == 0 and len(mailoutbox) == 1   # once per period

    UsageRecordFactory(team=team, api_key=key, cost=200)
    assert check(django_capture_on_commit_callbacks) == 1
    assert "at 100%" in mailoutbox[1].subject and "refused (HTTP 402" in mailoutbox[1].body
    assert check(django_capture_on_commit_callbacks) == 0 and len(mailoutbox) == 2
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [80, 100]

    # The banner shows the budget once, at its highest threshold; raising the limit retires it.
    assert [(a.scope_kind, a.threshold) for a in services.active_alerts(team=team)] == [("key", 100)]
    ApiKey.objects.filter(pk=key.pk).update(budget_limit=5_000)
    assert services.active_alerts(team=team) == []


def test_each_period_alerts_again(people, mailoutbox, django_capture_on_commit_callbacks):
    team, _, owner = people
    key = budget_key(team, owner, 1_000, period="day")
    now = timezone.now()
    UsageRecordFactory(team=team, api_key=key, cost=900, created_at=now)
    assert check(django_capture_on_commit_callbacks, now=now) == 1
    tomorrow = limits.period_end("day", now) + dt.timedelta(hours=1)
    assert services.active_alerts(team=team, now=tomorrow) == []         # yesterday's alert is over
    assert check(django_capture_on_commit_callbacks, now=tomorrow) == 0  # yesterday's spend does not count
    UsageRecordFactory(team=team, api_key=key, cost=850, created_at=tomorrow - dt.timedelta(minutes=5))
    assert check(django_capture_on_commit_callbacks, now=tomorrow) == 1
    assert sorted(BudgetAlert.objects.values_list("period_tag", flat=True)) == sorted(
        [limits.period_tag("day", now), limits.period_tag("day", tomorrow)])
    assert len(mailoutbox) == 2


def test_every_kind_of_budget_alerts_in_one_mail(people, mailoutbox, django_capture_on_commit_callbacks):
    team, recipients, owner = people
    group = KeyGroupFactory(team=team, name="production", budget_limit=1_000, budget_period="week")
    key = budget_key(team, owner, 1_000, period="none", group=group)
    RoutingRule.objects.create(team=team, name="batch", default_model=CatalogModelFactory(), budget_limit=1_000)
    TeamBillingPolicy.objects.create(team=team, monthly_cap=1_000)
    credit(team, 1_000)                                          # balance 1000; 900 unbilled leaves 100
    UsageRecordFactory(team=team, api_key=key, cost=900, route="route:batch")

    assert check(django_capture_on_commit_callbacks) == 5
    fired = {a.scope_kind: (a.threshold, a.label) for a in BudgetAlert.objects.all()}
    assert fired == {
        "key": (80, f"key 'test key' ({key.mask}) total budget"),
        "group": (80, "key group 'production' weekly budget"), "route": (80, "route 'batch' monthly budget"),
        "team": (80, "team monthly cap"), "balance": (80, "team balance")}
    [mail] = mailoutbox
    assert mail.subject == f"[Tollgate] {team.name}: 5 budget alerts" and sorted(mail.to) == recipients
    assert "The team balance is down to a fifth of the last top-up" in mail.body

    # A route chosen by `auto` spends the same route budget; the balance hits zero.
    UsageRecordFactory(team=team, api_key=key, cost=100, route="auto → route:batch")
    assert check(django_capture_on_commit_callbacks) == 5
    assert BudgetAlert.objects.filter(threshold=100).count() == 5
    assert {a.scope_kind for a in services.active_alerts(team=team)} == {"key", "group", "route", "team", "balance"}

    # A top-up starts a new balance "period": the old balance alert no longer shows.
    credit(team, 5_000)
    assert "balance" not in {a.scope_kind for a in services.active_alerts(team=team)}


def test_alerts_fire_without_anyone_to_mail(mailoutbox, django_capture_on_commit_callbacks):
    team = TeamFactory()
    MembershipFactory(team=team, role=roles.OWNER, user__email="")
    TeamBillingPolicy.objects.create(team=team, monthly_cap=100)
    UsageRecordFactory(team=team, cost=100)
    assert check(django_capture_on_commit_callbacks) == 2            # 80% and 100% in one run
    assert mailoutbox == []


@pytest.mark.urls("tests.billing.test_credits")                  # with the billing API's URLs
def test_the_task_and_the_api_list(people, mailoutbox, django_capture_on_commit_callbacks):
    team, _, owner = people
    key = budget_key(team, owner, 100)
    UsageRecordFactory(team=team, api_key=key, cost=85)
    with django_capture_on_commit_callbacks(execute=True):
        assert check_budget_alerts.apply(kwargs={"batch_size": 1}).get() == 1
    assert len(mailoutbox) == 1
    client = Client()
    client.force_login(owner)
    [alert] = client.get(f"/api/teams/{team.slug}/billing/alerts/").json()
    assert (alert["scope_kind"], alert["threshold"], alert["spent"], alert["limit"]) == ("key", 80, 85, 100)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_fire_and_mail_once(mailoutbox):
    team = TeamFactory()
    owner = MembershipFactory(team=team, role=roles.OWNER).user
    key = budget_key(team, owner, 1_000)
    UsageRecordFactory(team=team, api_key=key, cost=900)

    created = run_threads(4, lambda i: services.budget_alerts_check())

    assert sum(created) == 1 == BudgetAlert.objects.count()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [owner.email]
