"""The support staff queue: all teams, filters, SLA ages, and the actions on a ticket."""
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from support import selectors, services
from support.models import Ticket, TicketEvent
from tests import factories
from tests.support import factories as sf

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return factories.StaffRoleFactory(role=roles.SUPPORT).user


def staff_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _age(ticket, **delta):
    """Move a ticket and its events back in time."""
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(**delta))
    TicketEvent.objects.filter(ticket=ticket).update(created_at=timezone.now() - timedelta(**delta))


def test_queue_shows_every_team_urgent_first_then_longest_waiting(staff):
    old = sf.ticket(team=factories.TeamFactory(), subject="old normal")
    _age(old, hours=5)
    new = sf.ticket(team=factories.TeamFactory(), subject="new normal")
    urgent = sf.ticket(team=factories.TeamFactory(), subject="new urgent", priority=Ticket.URGENT)
    done = sf.ticket(team=factories.TeamFactory(), subject="resolved one")
    services.ticket_set_status(ticket=done, status=Ticket.RESOLVED, actor=staff, by_staff=True)
    queue = list(selectors.support_queue(user=staff))
    assert queue == [urgent, old, new]                      # active only, by default
    assert {t.team_id for t in queue} == {urgent.team_id, old.team_id, new.team_id}
    assert done in selectors.support_queue(user=staff, status="all")


def test_sla_clock_runs_from_the_teams_last_reply(staff):
    ticket = sf.ticket(team=factories.TeamFactory())
    _age(ticket, hours=3)
    row = selectors.support_queue(user=staff).get(pk=ticket.pk)
    assert row.waiting_since == row.created_at                        # nobody answered yet
    services.ticket_reply(ticket=ticket, author=staff, body="Looking.", by_staff=True)
    assert selectors.support_queue(user=staff).get(pk=ticket.pk).waiting_since is None
    services.ticket_reply(ticket=ticket, author=ticket.opened_by, body="Any news?", by_staff=False)
    row = selectors.support_queue(user=staff).get(pk=ticket.pk)
    assert row.waiting_since == row.last_team_reply_at > row.created_at
    services.ticket_set_status(ticket=ticket, status=Ticket.PENDING, actor=staff, by_staff=True)
    assert selectors.support_queue(user=staff).get(pk=ticket.pk).waiting_since is None


def test_queue_filters(staff):
    team = factories.TeamFactory(slug="acme")
    mine = sf.ticket(team=team, priority=Ticket.HIGH)
    services.ticket_assign(ticket=mine, assignee=staff, actor=staff)
    other = sf.ticket(team=factories.TeamFactory())
    pending = sf.ticket(team=team)
    services.ticket_set_status(ticket=pending, status=Ticket.PENDING, actor=staff, by_staff=True)

    def ids(**filters):
        return {t.pk for t in selectors.support_queue(user=staff, **filters)}

    assert ids(assignee="me") == {mine.pk} == ids(assignee=str(staff.pk))
    assert ids(assignee="none") == {other.pk, pending.pk}
    assert ids(team="acme") == {mine.pk, pending.pk}
    assert ids(priority=Ticket.HIGH) == {mine.pk}
    assert ids(status=Ticket.PENDING) == {pending.pk}
    html = staff_client(staff).get(reverse("support-queue"), {"team": "acme", "assignee": "me"}).content.decode()
    assert mine.subject in html and f'href="/console/support/tickets/{other.pk}/"' not in html


def test_staff_work_a_ticket_from_the_console(staff):
    ticket = sf.ticket(team=factories.TeamFactory())
    client = staff_client(staff)

    def post(action, **data):
        url = reverse(f"support-ticket-{action}", kwargs={"pk": ticket.pk})
        assert client.post(url, data).status_code == 302

    post("assign", assignee=staff.pk)
    post("reply", body="Your base URL is missing /v1.")
    post("note", body="Third one this week from this team.")
    post("status", status=Ticket.PENDING)
    ticket.refresh_from_db()
    assert ticket.assignee == staff and ticket.status == Ticket.PENDING
    events = list(ticket.events.values_list("kind", "by_staff"))
    assert events[1:] == [(TicketEvent.ASSIGNMENT, True), (TicketEvent.REPLY, True),
                          (TicketEvent.INTERNAL_NOTE, True), (TicketEvent.STATUS_CHANGE, True)]
    page = client.get(reverse("support-ticket", kwargs={"pk": ticket.pk})).content.decode()
    assert "Third one this week" in page and "Your base URL is missing /v1." in page


def test_invalid_staff_action_comes_back_as_a_message(staff):
    ticket = sf.ticket(team=factories.TeamFactory())
    client = staff_client(staff)
    response = client.post(reverse("support-ticket-status", kwargs={"pk": ticket.pk}), {"status": "bogus"},
                           follow=True)
    assert response.status_code == 200 and "bogus" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.status == Ticket.OPEN
