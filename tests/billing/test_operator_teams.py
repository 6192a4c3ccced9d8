"""Operator: creating a team with its owner, and the cross-team request logs (operators and support read
them; team users are refused)."""
import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from accounts.models import Membership, Team
from billing.selectors import team_balance
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, staff, text  # noqa: F401
from tests.support.factories import usage_record

pytestmark = pytest.mark.django_db


def test_operator_creates_a_team_for_a_new_owner_with_a_one_time_password():
    client = client_for(staff())
    response = client.post(reverse("operator-team-create"),
                           {"name": "Acme Labs", "slug": "acme-labs", "owner": "ada@acme.test"})
    assert response.status_code == 302
    team = Team.objects.get(slug="acme-labs")
    owner = Membership.objects.get(team=team)
    assert (team.name, owner.role, owner.user.email) == ("Acme Labs", roles.OWNER, "ada@acme.test")
    assert team_balance(team=team) == 0
    page = client.get(reverse("operator-team-create"))
    password = page.context["reveal"]["password"]
    assert password and password in text(page) and "no-store" in page["Cache-Control"]
    assert owner.user.check_password(password)
    assert password not in text(client.get(reverse("operator-team-create")))   # shown once
    # The new owner signs in with it and lands in the team's console.
    client.logout()
    assert client.login(username="ada@acme.test", password=password)


def test_an_existing_user_becomes_the_owner_without_a_new_password():
    user = factories.UserFactory(username="grace", email="grace@example.test")
    client = client_for(staff())
    assert client.post(reverse("operator-team-create"),
                       {"name": "Grace Co", "slug": "grace-co", "owner": "GRACE@example.test"}).status_code == 302
    assert Membership.objects.get(team__slug="grace-co").user == user
    assert client.get(reverse("operator-team-create")).context["reveal"]["password"] is None
    assert get_user_model().objects.filter(email__iexact="grace@example.test").count() == 1


@pytest.mark.parametrize("data,field", [
    ({"name": "X", "slug": "taken", "owner": "x"}, None),
    ({"name": "X", "slug": "Not a slug!", "owner": "x"}, "slug"),
    ({"name": "", "slug": "ok-slug", "owner": "x"}, "name"),
    ({"name": "X", "slug": "ok-slug", "owner": ""}, "owner"),
])
def test_team_creation_errors(data, field):
    factories.TeamFactory(slug="taken")
    response = client_for(staff()).post(reverse("operator-team-create"), data)
    assert response.status_code == 400
    assert response.context["form"].errors[field or "__all__"]
    assert Team.objects.count() == 1


def test_only_operators_create_teams():
    data = {"name": "Nope", "slug": "nope", "owner": "x"}
    assert client_for(staff(roles.SUPPORT)).post(reverse("operator-team-create"), data).status_code == 403
    team_owner = member(factories.TeamFactory(), roles.OWNER)
    assert client_for(team_owner).post(reverse("operator-team-create"), data).status_code == 403
    assert not Team.objects.filter(slug="nope").exists()


def test_cross_team_logs_filter_by_team_model_status_and_page():
    acme, globex = factories.TeamFactory(slug="acme"), factories.TeamFactory(slug="globex")
    ok = usage_record(team=acme, status_code=200, error_code="", requested_model="openai/gpt-4o-mini",
                      served_model="openai/gpt-4o-mini")
    failed = usage_record(team=globex, status_code=429, error_code="rate_limited", requested_model="claude-x")
    old = usage_record(team=globex, status_code=200, cost=1234, created_at=timezone.now() - dt.timedelta(days=20))
    url = reverse("operator-logs")
    for reader in (staff(), staff(roles.SUPPORT)):
        page = client_for(reader).get(url)
        assert page.status_code == 200
        ids = [r.pk for r in page.context["page"]["rows"]]
        assert set(ids) == {ok.pk, failed.pk}             # the default period is the last 7 days
        assert "acme" in text(page) and "globex" in text(page)
        assert reverse("console-log-detail", kwargs={"team": "acme", "pk": ok.pk}) in text(page)

    client = client_for(staff(roles.SUPPORT))

    def rows(**query):
        return [r.pk for r in client.get(url, query).context["page"]["rows"]]

    assert rows(team="globex") == [failed.pk]
    assert rows(team="globex", period="30d") == [failed.pk, old.pk]
    assert rows(model="claude-x") == [failed.pk] and rows(model="GPT-4o") == [ok.pk]   # part of a name, any case
    totals = client.get(url, {"team": "globex", "period": "30d"}).context["totals"]
    assert totals == {"count": 2, "cost": failed.cost + old.cost}
    assert rows(status="error") == [failed.pk] and rows(status="ok") == [ok.pk]
    assert rows(request_id=ok.request_id) == [ok.pk]
    bad = client.get(url, {"team": "no-such-team"})
    assert bad.status_code == 400 and "no-such-team" in text(bad)
    # The support reader can open the record in its team's console.
    assert client.get(reverse("console-log-detail", kwargs={"team": "acme", "pk": ok.pk})).status_code == 200


def test_cross_team_logs_page_through_results():
    team = factories.TeamFactory()
    made = [usage_record(team=team, created_at=timezone.now() - dt.timedelta(minutes=i)) for i in range(52)]
    client = client_for(staff())
    first = client.get(reverse("operator-logs"))
    assert len(first.context["page"]["rows"]) == 50 and first.context["page"]["has_next"]
    second = client.get(reverse("operator-logs"), {"page": 2})
    assert [r.pk for r in second.context["page"]["rows"]] == [made[50].pk, made[51].pk]


@pytest.mark.parametrize("role", [r for r, _ in roles.TEAM_ROLES])
def test_team_users_cannot_read_cross_team_logs(role):
    user = member(factories.TeamFactory(), role)
    assert client_for(user).get(reverse("operator-logs")).status_code == 403


def test_cross_team_usage_api_for_operators_and_support():
    acme, globex = factories.TeamFactory(slug="acme"), factories.TeamFactory(slug="globex")
    ok = usage_record(team=acme, status_code=200, error_code="")
    failed = usage_record(team=globex, status_code=503, error_code="upstream_unavailable")
    for reader in (staff(), staff(roles.SUPPORT)):
        listed = client_for(reader).get("/api/operator/usage/")
        assert listed.status_code == 200
        assert [(r["team"], r["id"]) for r in listed.json()["data"]] == [("globex", failed.pk), ("acme", ok.pk)]
    client = client_for(staff(roles.SUPPORT))
    assert [r["id"] for r in client.get("/api/operator/usage/?team=acme").json()["data"]] == [ok.pk]
    assert [r["id"] for r in client.get("/api/operator/usage/?status=5xx").json()["data"]] == [failed.pk]
    page = client.get("/api/operator/usage/?limit=1").json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert client.get("/api/operator/usage/?team=nope").status_code == 400
    assert client.get("/api/operator/usage/?limit=0").status_code == 400
    assert client_for(member(acme, roles.OWNER)).get("/api/operator/usage/").status_code == 403
