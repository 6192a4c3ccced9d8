"""No secret survives into a ticket: not in its database rows, the team's pages, the API's JSON, nor the support
queue. The request behind the ticket carries real key shapes (the fixed strings of test_redaction.py, not
strings made from the engine's patterns) in JSON, URLs, headers and prose, and so do the fields people type.
"""
import json

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from support import services
from support.models import Ticket, TicketEvent
from tests import factories
from tests.support import factories as sf
from tests.support.test_redaction import (
    ALL,
    ANTHROPIC,
    GOOGLE,
    LEGACY_OPENAI,
    OPENAI_PROJECT,
    OPENROUTER,
    TEAM_SECRET,
    TOLLGATE,
)

pytestmark = pytest.mark.django_db

# Tokens of no known shape: redacted by the name in front of them (Bearer, x-api-key), not by their shape, so
# they appear only in such settings below. The team's own secret is known by value (its channel's key).
BEARER_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZWFtLWJvdCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
X_API_KEY_OPAQUE = "opaque0key0value0123456789"
NAMED_ONLY = [BEARER_JWT, X_API_KEY_OPAQUE]
SECRETS = ALL + [TEAM_SECRET] + NAMED_ONLY


def mention(secret: str) -> str:
    """The secret in passing: bare in prose when its shape (or value) is known, else behind its header name."""
    return f"x-api-key: {secret}" if secret in NAMED_ONLY else f"my key {secret}"


def error_text(secret: str) -> str:
    """What an upstream or a client might put in front of us, with the secret in every setting."""
    return "\n".join([
        json.dumps({"error": {"message": f"Incorrect API key provided: {mention(secret)}",
                              "type": "invalid_request_error"}}),
        json.dumps({"request": {"headers": {"x-api-key": secret, "authorization": f"Bearer {secret}"}}}),
        f"GET https://generativelanguage.googleapis.com/v1beta/models/gemini:generateContent?key={secret}&alt=sse",
        f"Authorization: Bearer {secret}",
        f"x-api-key: {secret}",
        f"I pasted {mention(secret)} into the config, then it failed.",
    ])


def typed(secret: str) -> str:
    return f'my .env has OPENAI_API_KEY={secret} and curl -H "Authorization: Bearer {secret}" fails ({mention(secret)})'


@pytest.fixture
def setup():
    owner = factories.MembershipFactory(role=roles.OWNER)
    # The team's own upstream key (bring-your-own-key channel): a secret of no public shape.
    factories.channel(team=owner.team, models=[factories.CatalogModelFactory()], base_url="http://127.0.0.1:9/v1",
                      api_key=TEAM_SECRET)
    staff = factories.StaffRoleFactory(role=roles.SUPPORT).user
    return owner, staff


def _open_everywhere(owner, staff, secret):
    """One ticket from the console and one from the API, both about a request full of `secret`."""
    console_record = sf.usage_record(team=owner.team, owner=owner.user, error_text=error_text(secret),
                                     user_agent=f"my-app/1.0 (x-api-key: {secret})")
    client = Client()
    client.force_login(owner.user)
    prefill = client.get(reverse("console-ticket-new", kwargs={"team": owner.team.slug}),
                         {"request_id": console_record.request_id})
    assert prefill.status_code == 200 and "REDACTED" in prefill.content.decode()
    response = client.post(reverse("console-ticket-new", kwargs={"team": owner.team.slug}), {
        "request_id": console_record.request_id, "subject": f"401 with {mention(secret)}", "priority": "high",
        "owner": "ops", "environment": f"prod, {mention(secret)}", "selected_capability": "chat",
        "last_known_good": typed(secret), "observed_symptom": typed(secret), "evidence": error_text(secret)})
    assert response.status_code == 302
    ticket = Ticket.objects.get(request_id=console_record.request_id)
    client.post(reverse("console-ticket", kwargs={"team": owner.team.slug, "pk": ticket.pk}), {"body": typed(secret)})
    services.ticket_reply(ticket=ticket, author=staff, body=f"Rotate {mention(secret)} now", by_staff=True)
    services.ticket_note_internal(ticket=ticket, author=staff, body=f"they leaked x-api-key: {secret}")

    api_record = sf.usage_record(team=owner.team, owner=owner.user, error_text=error_text(secret))
    api = APIClient()
    api.force_authenticate(owner.user)
    created = api.post(f"/api/teams/{owner.team.slug}/tickets/", {
        "request_id": "chatcmpl-" + api_record.request_id[4:], "evidence": error_text(secret)}, format="json")
    assert created.status_code == 201, created.content
    api.post(f"/api/teams/{owner.team.slug}/tickets/{created.json()['id']}/replies/", {"body": typed(secret)},
             format="json")
    return [prefill] + [ticket, Ticket.objects.get(pk=created.json()["id"])], client, api


def _assert_clean(text: str, secret: str, where: str):
    assert secret not in text, where
    assert secret[:12] not in text, where          # no long prefix survives either
    assert secret[-16:-4] not in text, where       # nor a long tail (only the last four are kept)


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s[:10])
def test_no_secret_anywhere_a_ticket_shows(setup, secret):
    owner, staff = setup
    (prefill, *tickets), client, api = _open_everywhere(owner, staff, secret)
    _assert_clean(prefill.content.decode(), secret, "pre-filled open form")
    staff_client = Client()
    staff_client.force_login(staff)
    for ticket in tickets:
        # The database rows: the ticket and every event of it.
        rows = json.dumps([list(Ticket.objects.filter(pk=ticket.pk).values())[0],
                           list(TicketEvent.objects.filter(ticket=ticket).values())], default=str)
        assert "REDACTED" in rows
        _assert_clean(rows, secret, "database")
        pages = {
            "team ticket page": client.get(reverse("console-ticket", kwargs={"team": owner.team.slug,
                                                                             "pk": ticket.pk})),
            "team ticket list": client.get(reverse("console-tickets", kwargs={"team": owner.team.slug})),
            "API ticket": api.get(f"/api/teams/{owner.team.slug}/tickets/{ticket.pk}/"),
            "API ticket list": api.get(f"/api/teams/{owner.team.slug}/tickets/"),
            "API usage record": api.get(f"/api/teams/{owner.team.slug}/usage/{ticket.request_id}/"),
            "support queue": staff_client.get(reverse("support-queue")),
            "support ticket page": staff_client.get(reverse("support-ticket", kwargs={"pk": ticket.pk})),
        }
        for where, response in pages.items():
            assert response.status_code == 200, where
            _assert_clean(response.content.decode(), secret, where)
        for where in ("team ticket page", "API ticket", "support ticket page"):   # the evidence is there, masked
            assert "REDACTED" in pages[where].content.decode(), where


def test_the_support_page_still_shows_what_is_needed(setup):
    """Redaction keeps the evidence useful: the last four characters, the key mask, the request id."""
    owner, staff = setup
    ticket = _open_everywhere(owner, staff, OPENROUTER)[0][1]
    staff_client = Client()
    staff_client.force_login(staff)
    html = staff_client.get(reverse("support-ticket", kwargs={"pk": ticket.pk})).content.decode()
    assert "[REDACTED…e1f0]" in html and ticket.request_id in html and ticket.troubleshooting["key_mask"] in html


def test_other_known_shapes_in_one_request(setup):
    owner, staff = setup
    record = sf.usage_record(team=owner.team, owner=owner.user, error_text=" | ".join(
        [f"key={OPENAI_PROJECT}", ANTHROPIC, f"?key={GOOGLE}", LEGACY_OPENAI, TOLLGATE, TEAM_SECRET]))
    ticket = services.ticket_open(team=owner.team, opened_by=owner.user, subject="many", record=record,
                                  evidence=record.error_text)
    stored = json.dumps(list(Ticket.objects.filter(pk=ticket.pk).values()), default=str)
    for secret in (OPENAI_PROJECT, ANTHROPIC, GOOGLE, LEGACY_OPENAI, TOLLGATE, TEAM_SECRET):
        _assert_clean(stored, secret, "database")
