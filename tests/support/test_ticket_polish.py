"""Tickets as a team reads them: readable values, a link back to the request, closing one's own ticket, and
billing members opening billing tickets (and only those)."""
import pytest
from django.test import Client
from django.urls import reverse

from accounts import roles
from support import selectors
from support.models import Ticket
from tests import factories
from tests.support import factories as sf

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_snapshot_rows_show_yes_no_and_a_readable_time():
    rows = {str(label): value for label, value, _block in selectors.snapshot_rows(
        {"stream": True, "requested_at": "2026-12-01T08:05:09.123456+00:00", "status_code": 502})}
    assert rows["Streaming"] == "Yes"
    assert rows["Request time"] == "2026-12-01 08:05:09 UTC"
    assert rows["Status code"] == 502
    assert selectors.snapshot_rows({"stream": False})[0][1] == "No"


def test_ticket_page_links_to_its_request_log_and_shows_readable_values():
    owner = factories.MembershipFactory(role=roles.OWNER)
    record = sf.usage_record(team=owner.team, owner=owner.user, stream=True)
    from support import services
    ticket = services.ticket_open(team=owner.team, opened_by=owner.user, subject="broke", record=record)
    page = login(owner.user).get(reverse("console-ticket", kwargs={"team": owner.team.slug, "pk": ticket.pk}))
    html = page.content.decode()
    assert reverse("console-log-detail", kwargs={"team": owner.team.slug, "pk": record.pk}) in html
    assert "<code>Yes</code>" in html and "True" not in html


def test_team_closes_its_own_ticket_in_the_console_and_the_api():
    member = factories.MembershipFactory(role=roles.MEMBER)
    client = login(member.user)
    ticket = sf.ticket(team=member.team, opened_by=member.user)
    url = reverse("console-ticket-close", kwargs={"team": member.team.slug, "pk": ticket.pk})
    assert client.post(url).status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == Ticket.CLOSED
    assert ticket.events.filter(to_status=Ticket.CLOSED, by_staff=False).count() == 1
    # The history says it in words, not codes.
    page = client.get(reverse("console-ticket", kwargs={"team": member.team.slug, "pk": ticket.pk}))
    assert "Open → Closed" in page.content.decode()

    other = sf.ticket(team=member.team, opened_by=member.user)
    api = reverse("api-ticket-close", kwargs={"team": member.team.slug, "pk": other.pk})
    response = client.post(api)
    assert response.status_code == 200 and response.json()["status"] == "closed"
    # Another team's ticket: 404.
    theirs = sf.ticket(team=factories.TeamFactory())
    assert client.post(reverse("api-ticket-close", kwargs={"team": member.team.slug, "pk": theirs.pk})
                       ).status_code == 404


def test_billing_member_opens_billing_tickets_and_sees_only_those_and_their_own():
    billing = factories.MembershipFactory(role=roles.BILLING)
    team = billing.team
    technical = sf.ticket(team=team, opened_by=factories.MembershipFactory(team=team).user, subject="Tools 500")
    client = login(billing.user)
    new = reverse("console-ticket-new", kwargs={"team": team.slug})
    assert client.get(new).status_code == 200
    response = client.post(new, {"subject": "Invoice is wrong", "priority": "normal", "category": "technical"})
    assert response.status_code == 400  # billing members open billing tickets only
    response = client.post(new, {"subject": "Invoice is wrong", "priority": "normal", "category": "billing"})
    assert response.status_code == 302
    mine = Ticket.objects.get(subject="Invoice is wrong")
    assert mine.category == Ticket.BILLING
    listing = client.get(reverse("console-tickets", kwargs={"team": team.slug})).content.decode()
    assert "Invoice is wrong" in listing and technical.subject not in listing
    assert client.get(reverse("console-ticket", kwargs={"team": team.slug, "pk": technical.pk})).status_code == 404
    # The API agrees, and defaults a billing member's ticket to the billing category.
    api = reverse("api-tickets", kwargs={"team": team.slug})
    created = client.post(api, {"subject": "Refund"}, content_type="application/json")
    assert created.status_code == 201 and created.json()["category"] == "billing"
    assert client.post(api, {"subject": "x", "category": "technical"},
                       content_type="application/json").status_code == 400
    assert {t["subject"] for t in client.get(api).json()} == {"Invoice is wrong", "Refund"}


def test_owner_still_sees_every_ticket():
    owner = factories.MembershipFactory(role=roles.OWNER)
    sf.ticket(team=owner.team, opened_by=owner.user, category=Ticket.BILLING)
    sf.ticket(team=owner.team, opened_by=owner.user)
    api = reverse("api-tickets", kwargs={"team": owner.team.slug})
    assert len(login(owner.user).get(api).json()) == 2
