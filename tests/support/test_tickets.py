"""Tickets: opening one from a failed request, the team's pages, the audited status/assignment history."""
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse

from accounts import roles
from billing.models import UsageRecord
from support import selectors, services
from support.models import Ticket, TicketEvent
from tests import factories
from tests.support import factories as sf

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member():
    return factories.MembershipFactory(role=roles.MEMBER)


@pytest.fixture
def staff():
    return factories.StaffRoleFactory(role=roles.SUPPORT).user


# --- request ids -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given", ["req_0123456789abcdef01234567", "chatcmpl-0123456789abcdef01234567",
                                   "0123456789abcdef01234567", '  "req_0123456789abcdef01234567" '])
def test_request_and_response_ids_name_the_same_call(given):
    assert selectors.normalize_request_id(given) == "req_0123456789abcdef01234567"


@pytest.mark.parametrize("path,flagged", [
    ("/v1/chat/completions", None), ("/v1/v1/chat/completions", "added another"),
    ("/chat/completions", "without /v1"), ("/api/chat/completions", "without /v1"),
])
def test_base_url_mistakes_are_flagged(path, flagged):
    hint = selectors.path_hint(path)
    assert (flagged in hint) if flagged else hint == ""


# --- opening from a request --------------------------------------------------------------------------------
def test_open_form_is_prefilled_from_the_response_id(member):
    record = sf.usage_record(team=member.team, owner=member.user, path="/v1/v1/chat/completions",
                             error_text="The model `gpt-5-turbo` does not exist.", error_code="model_not_found",
                             status_code=404)
    url = reverse("console-ticket-new", kwargs={"team": member.team.slug})
    html = login(member.user).get(url, {"request_id": "chatcmpl-" + record.request_id[4:]}).content.decode()
    for expected in (record.request_id, "chatcmpl-" + record.request_id[4:], "OpenAI/Python 1.51.0",
                     "OpenAI-Python 1.51.0", "/v1/v1/chat/completions", "added another", "gpt-4o-mini", "404",
                     "model_not_found", "does not exist", record.key_mask, "812"):
        assert expected in html, expected
    assert "HTTP 404 model_not_found on gpt-4o-mini" in html      # the suggested subject


def test_open_posts_a_ticket_with_the_snapshot_and_an_opening_event(member):
    record = sf.usage_record(team=member.team, owner=member.user)
    url = reverse("console-ticket-new", kwargs={"team": member.team.slug})
    response = login(member.user).post(url, {
        "request_id": record.request_id, "subject": "401 from the relay", "priority": Ticket.HIGH,
        "owner": "Ana", "environment": "prod, openai-python 1.51", "selected_capability": "gpt-4o-mini chat",
        "last_known_good": "yesterday 18:00", "observed_symptom": "every call 401", "evidence": "see request",
        "next_review_at": "2030-01-02T10:00"})
    ticket = Ticket.objects.get(team=member.team)
    assert response.status_code == 302 and response["Location"].endswith(f"/tickets/{ticket.pk}/")
    assert ticket.request_id == record.request_id and ticket.priority == Ticket.HIGH
    assert ticket.troubleshooting["status_code"] == 401
    assert ticket.troubleshooting["key_mask"] == record.key_mask
    assert ticket.troubleshooting["path"] == "/v1/chat/completions"
    assert ticket.last_known_good == "yesterday 18:00" and ticket.next_review_at.year == 2030
    [event] = ticket.events.all()
    assert (event.kind, event.from_status, event.to_status) == (TicketEvent.STATUS_CHANGE, "", Ticket.OPEN)


def test_another_teams_request_id_is_not_found(member):
    theirs = sf.usage_record(team=factories.TeamFactory())
    url = reverse("console-ticket-new", kwargs={"team": member.team.slug})
    client = login(member.user)
    page = client.get(url, {"request_id": theirs.request_id}).content.decode()
    assert "No request with this id in this team." in page and theirs.error_text not in page
    response = client.post(url, {"request_id": theirs.request_id, "subject": "x", "priority": "normal"})
    assert response.status_code == 400 and not Ticket.objects.exists()


def test_a_member_opens_tickets_only_from_their_own_keys_requests(member):
    colleague = factories.MembershipFactory(team=member.team, role=roles.MEMBER).user
    record = sf.usage_record(team=member.team, owner=colleague)
    url = reverse("console-ticket-new", kwargs={"team": member.team.slug})
    assert "No request with this id" in login(member.user).get(url, {"request_id": record.request_id}).content.decode()
    admin = factories.MembershipFactory(team=member.team, role=roles.ADMIN).user   # logs.read: the whole team
    assert "No request with this id" not in login(admin).get(url, {"request_id": record.request_id}).content.decode()


@pytest.mark.skipif("route" not in {f.name for f in UsageRecord._meta.fields}, reason="relay records no route")
def test_route_and_attempts_come_along_redacted(member):
    key = "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"
    record = sf.usage_record(team=member.team, owner=member.user, route="auto → route:tools", attempts=[
        "openai/gpt-4o-mini via platform #1: 429 rate limited", f"openai/gpt-4o-mini via team #2: 401 key {key}"])
    ticket = services.ticket_open(team=member.team, opened_by=member.user, subject="s", record=record)
    assert ticket.troubleshooting["route"] == "auto → route:tools"
    assert ticket.troubleshooting["attempts"][0] == "openai/gpt-4o-mini via platform #1: 429 rate limited"
    assert key not in str(ticket.troubleshooting) and "[REDACTED…e1f0]" in ticket.troubleshooting["attempts"][1]
    html = login(member.user).get(reverse("console-ticket", kwargs={"team": member.team.slug, "pk": ticket.pk}))
    assert "429 rate limited" in html.content.decode()


# --- the team's pages --------------------------------------------------------------------------------------
def test_team_sees_replies_but_never_internal_notes(member, staff):
    ticket = sf.ticket(team=member.team, opened_by=member.user)
    services.ticket_reply(ticket=ticket, author=staff, body="Please rotate the key.", by_staff=True)
    services.ticket_note_internal(ticket=ticket, author=staff, body="Customer pasted the wrong base URL.")
    services.ticket_assign(ticket=ticket, assignee=staff, actor=staff)
    client = login(member.user)
    html = client.get(reverse("console-ticket", kwargs={"team": member.team.slug, "pk": ticket.pk})).content.decode()
    assert "Please rotate the key." in html
    assert "wrong base URL" not in html and "Internal note" not in html and "Tollgate support" in html
    listing = client.get(reverse("console-tickets", kwargs={"team": member.team.slug})).content.decode()
    assert ticket.subject in listing


def test_team_lists_only_their_own_tickets(member):
    mine = sf.ticket(team=member.team, subject="Mine is broken")
    sf.ticket(team=factories.TeamFactory(), subject="Theirs is broken")
    html = login(member.user).get(reverse("console-tickets", kwargs={"team": member.team.slug})).content.decode()
    assert mine.subject in html and "Theirs is broken" not in html


def test_team_reply_reopens_a_pending_ticket(member, staff):
    ticket = sf.ticket(team=member.team, opened_by=member.user)
    services.ticket_set_status(ticket=ticket, status=Ticket.PENDING, actor=staff, by_staff=True)
    url = reverse("console-ticket", kwargs={"team": member.team.slug, "pk": ticket.pk})
    assert login(member.user).post(url, {"body": "Still failing."}).status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == Ticket.OPEN
    kinds = [(e.kind, e.to_status, e.by_staff) for e in ticket.events.all()]
    assert kinds[-2:] == [(TicketEvent.REPLY, "", False), (TicketEvent.STATUS_CHANGE, Ticket.OPEN, False)]


def test_a_closed_ticket_takes_no_team_reply(member, staff):
    ticket = sf.ticket(team=member.team, opened_by=member.user)
    services.ticket_set_status(ticket=ticket, status=Ticket.CLOSED, actor=staff, by_staff=True)
    with pytest.raises(services.TicketError):
        services.ticket_reply(ticket=ticket, author=member.user, body="hello?", by_staff=False)
    url = reverse("console-ticket", kwargs={"team": member.team.slug, "pk": ticket.pk})
    assert login(member.user).post(url, {"body": "hello?"}).status_code == 400
    assert not ticket.events.filter(kind=TicketEvent.REPLY).exists()


# --- audit -------------------------------------------------------------------------------------------------
def test_status_change_and_its_event_commit_together(member, staff):
    ticket = sf.ticket(team=member.team)
    with mock.patch.object(TicketEvent.objects, "create", side_effect=RuntimeError("audit write failed")):
        with pytest.raises(RuntimeError):
            services.ticket_set_status(ticket=ticket, status=Ticket.RESOLVED, actor=staff, by_staff=True)
    ticket.refresh_from_db()
    assert ticket.status == Ticket.OPEN
    services.ticket_set_status(ticket=ticket, status=Ticket.RESOLVED, actor=staff, by_staff=True)
    services.ticket_set_status(ticket=ticket, status=Ticket.RESOLVED, actor=staff, by_staff=True)  # no-op
    changes = ticket.events.filter(kind=TicketEvent.STATUS_CHANGE).values_list("from_status", "to_status", "author")
    assert list(changes) == [("", Ticket.OPEN, ticket.opened_by_id), (Ticket.OPEN, Ticket.RESOLVED, staff.pk)]


def test_tickets_are_assigned_to_support_staff_only(member, staff):
    ticket = sf.ticket(team=member.team)
    with pytest.raises(services.TicketError):
        services.ticket_assign(ticket=ticket, assignee=member.user, actor=staff)
    services.ticket_assign(ticket=ticket, assignee=staff, actor=staff)
    services.ticket_assign(ticket=ticket, assignee=None, actor=staff)
    assert list(ticket.events.filter(kind=TicketEvent.ASSIGNMENT).values_list("assignee", flat=True)) == [
        staff.pk, None]
