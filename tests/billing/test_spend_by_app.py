"""Usage by app (issue 12): the spend report, its CSV and its API grouped by the client's X-Title and
HTTP-Referer headers, as the relay stored them on usage records."""
import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.billing.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return factories.TeamFactory(slug="apps")


@pytest.fixture
def owner(team):
    owner = member(team, roles.OWNER)
    now = timezone.now()
    for title, referer, cost in (("My App", "https://myapp.example", 3_000), ("My App", "https://myapp.example", 2_000),
                                 ("", "https://other.example", 4_000), ("", "", 1_000)):
        UsageRecordFactory(team=team, app_title=title, http_referer=referer, cost=cost, created_at=now)
    UsageRecordFactory(team=factories.TeamFactory(), app_title="My App", cost=99_000, created_at=now)   # not ours
    return owner


def test_the_spend_report_groups_by_app(team, owner):
    page = client_for(owner).get(reverse("console-spend", kwargs={"team": team.slug}), {"group_by": "app"})
    assert page.status_code == 200
    rows = page.context["report"].rows
    assert [(r["app_title"], r["http_referer"], r["requests"], r["cost"]) for r in rows] == [
        ("My App", "https://myapp.example", 2, 5_000), ("", "https://other.example", 1, 4_000), ("", "", 1, 1_000)]
    body = text(page)
    assert "App (X-Title · HTTP-Referer)" in body and "https://other.example" in body and "no app title" in body


def test_the_csv_and_the_api_group_by_app_too(team, owner):
    client = client_for(owner)
    csv = client.get(reverse("console-spend-export", kwargs={"team": team.slug}), {"group_by": "app"})
    lines = b"".join(csv.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("app_title,http_referer,requests,")
    assert lines[1].startswith("My App,https://myapp.example,2,")
    api = client.get(f"/api/teams/{team.slug}/billing/spend/", {"group_by": "app"}).json()
    assert api["group_by"] == "app"
    assert [(r["app_title"], r["cost"]) for r in api["rows"]] == [("My App", 5_000), ("", 4_000), ("", 1_000)]


def test_the_log_detail_shows_the_app(team, owner):
    record = UsageRecordFactory(team=team, app_title="Acme Bot", http_referer="https://acme.example",
                                created_at=timezone.now())
    page = client_for(owner).get(reverse("console-log-detail", kwargs={"team": team.slug, "pk": record.pk}))
    app = text(page).split('data-testid="app"')[1][:200]
    assert "Acme Bot" in app and "https://acme.example" in app
