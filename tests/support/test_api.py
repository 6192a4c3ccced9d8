"""Management API: key groups, usage records and tickets (tenancy and roles per URL are in test_tenancy)."""
import pytest
from rest_framework.test import APIClient

from accounts import roles
from accounts.tokens import personal_access_token_create
from support import services
from support.models import Ticket
from tests import factories
from tests.support import factories as sf

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    """A client authenticated the way scripts are: a personal access token."""
    _, secret = personal_access_token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def owner():
    return factories.MembershipFactory(role=roles.OWNER)


def base(membership):
    return f"/api/teams/{membership.team.slug}"


def assert_error(response, status, param=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    if param:
        assert error["param"] == param


# --- key groups --------------------------------------------------------------------------------------------
def test_key_groups_list_and_create(owner):
    client = api(owner.user)
    created = client.post(f"{base(owner)}/key-groups/", {"name": "production", "allowed_models": ["gpt-4o-mini"]},
                          format="json")
    assert created.status_code == 201 and created.json()["name"] == "production"
    assert [g["name"] for g in client.get(f"{base(owner)}/key-groups/").json()] == ["production"]
    assert_error(client.post(f"{base(owner)}/key-groups/", {"name": "production"}, format="json"), 400, "name")


def test_a_token_holder_who_is_only_a_member_here_cannot_create_key_groups(owner):
    member = factories.MembershipFactory(team=owner.team, role=roles.MEMBER)
    factories.MembershipFactory(user=member.user, role=roles.ADMIN)      # admin elsewhere: may hold a token
    assert_error(api(member.user).post(f"{base(owner)}/key-groups/", {"name": "x"}, format="json"), 403)


# --- usage ---------------------------------------------------------------------------------------------------
def test_usage_list_filters_and_pages(owner):
    ok = sf.usage_record(team=owner.team, owner=owner.user, status_code=200, error_code="", error_text="")
    failed = sf.usage_record(team=owner.team, owner=owner.user)
    sf.usage_record(team=factories.TeamFactory())                      # another team's: never listed
    client = api(owner.user)
    everything = client.get(f"{base(owner)}/usage/").json()
    assert {r["request_id"] for r in everything["data"]} == {ok.request_id, failed.request_id}
    errors = client.get(f"{base(owner)}/usage/", {"status": "error"}).json()["data"]
    assert [r["request_id"] for r in errors] == [failed.request_id]
    assert errors[0]["response_id"] == "chatcmpl-" + failed.request_id[4:]
    by_id = client.get(f"{base(owner)}/usage/", {"request_id": "chatcmpl-" + ok.request_id[4:]}).json()["data"]
    assert [r["id"] for r in by_id] == [ok.id]
    page = client.get(f"{base(owner)}/usage/", {"limit": 1}).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert_error(client.get(f"{base(owner)}/usage/", {"status": "bad"}), 400, "status")


def test_usage_detail_by_request_id_response_id_or_id(owner):
    record = sf.usage_record(team=owner.team, owner=owner.user)
    client = api(owner.user)
    for ref in (record.request_id, "chatcmpl-" + record.request_id[4:], str(record.pk)):
        body = client.get(f"{base(owner)}/usage/{ref}/").json()
        assert body["request_id"] == record.request_id and body["key_mask"] == record.key_mask
    theirs = sf.usage_record(team=factories.TeamFactory())
    assert_error(client.get(f"{base(owner)}/usage/{theirs.request_id}/"), 404)


def test_members_see_only_their_own_keys_usage(owner):
    member = factories.MembershipFactory(team=owner.team, role=roles.MEMBER)
    mine = sf.usage_record(team=owner.team, owner=member.user)
    not_mine = sf.usage_record(team=owner.team, owner=owner.user)
    client = APIClient()
    client.force_authenticate(member.user)        # members hold no token: a console session in real life
    assert [r["id"] for r in client.get(f"{base(owner)}/usage/").json()["data"]] == [mine.id]
    assert_error(client.get(f"{base(owner)}/usage/{not_mine.request_id}/"), 404)


# --- tickets ---------------------------------------------------------------------------------------------------
def test_open_a_ticket_from_a_request_id_alone(owner):
    record = sf.usage_record(team=owner.team, owner=owner.user, path="/chat/completions")
    response = api(owner.user).post(f"{base(owner)}/tickets/", {"request_id": "chatcmpl-" + record.request_id[4:]},
                                    format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["subject"] == "HTTP 401 invalid_api_key on gpt-4o-mini"
    assert body["request_id"] == record.request_id and body["status"] == Ticket.OPEN
    assert body["troubleshooting"]["path"] == "/chat/completions"
    assert "without /v1" in body["troubleshooting"]["path_hint"]
    assert body["observed_symptom"] == "Incorrect API key provided."


def test_ticket_create_errors(owner):
    client = api(owner.user)
    assert_error(client.post(f"{base(owner)}/tickets/", {}, format="json"), 400, "subject")
    theirs = sf.usage_record(team=factories.TeamFactory())
    assert_error(client.post(f"{base(owner)}/tickets/", {"request_id": theirs.request_id}, format="json"), 400,
                 "request_id")
    assert not Ticket.objects.exists()


def test_ticket_detail_reply_and_no_internal_notes(owner):
    staff = factories.StaffRoleFactory(role=roles.SUPPORT).user
    ticket = sf.ticket(team=owner.team, opened_by=owner.user)
    services.ticket_note_internal(ticket=ticket, author=staff, body="internal: check their proxy")
    services.ticket_reply(ticket=ticket, author=staff, body="Which SDK version?", by_staff=True)
    client = api(owner.user)
    reply = client.post(f"{base(owner)}/tickets/{ticket.pk}/replies/", {"body": "openai-python 1.51"},
                        format="json")
    assert reply.status_code == 201 and reply.json()["author"] == owner.user.username
    detail = client.get(f"{base(owner)}/tickets/{ticket.pk}/").json()
    assert [e["kind"] for e in detail["events"]] == ["status_change", "reply", "reply"]
    assert detail["events"][1]["author"] == "Tollgate support"
    assert "internal" not in str(detail)
    assert [t["id"] for t in client.get(f"{base(owner)}/tickets/", {"status": "open"}).json()] == [ticket.pk]
    services.ticket_set_status(ticket=ticket, status=Ticket.CLOSED, actor=staff, by_staff=True)
    assert_error(client.post(f"{base(owner)}/tickets/{ticket.pk}/replies/", {"body": "x"}, format="json"), 400,
                 "body")
