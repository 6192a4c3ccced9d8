"""Dashboard, request logs (list, detail, CSV) and the billing page, with the role rules on what each sees."""
import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from billing import selectors
from billing.services import balance_credit
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, member, text  # noqa: F401
from tests.billing.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return factories.TeamFactory(slug="acme")


def url(name, team, **kwargs):
    return reverse(name, kwargs={"team": team.slug, **kwargs})


def usage(team, key, **kwargs):
    return UsageRecordFactory(team=team, api_key=key, key_mask=key.mask, **kwargs)


def test_usage_summary_numbers():
    team = factories.TeamFactory()
    key, _ = factories.api_key(team=team)
    now = timezone.now()
    for latency in range(1, 101):  # 1..100 ms, successes
        usage(team, key, latency_ms=latency, cost=10, created_at=now)
    usage(team, key, status_code=502, served_model="", cost=0, latency_ms=9999,
          created_at=now - timezone.timedelta(days=3))
    usage(team, key, cost=1000, created_at=now - timezone.timedelta(days=20))  # outside the window
    summary = selectors.usage_summary(team=team, now=now)
    assert (summary.requests, summary.errors, summary.spend) == (101, 1, 1000)
    assert (summary.p50_ms, summary.p95_ms) == (50, 95)
    assert len(summary.days) == 14 and summary.days[-1]["requests"] == 100 and summary.days[-4]["errors"] == 1
    assert summary.by_model[0]["model"] == "openai/gpt-4o-mini"
    assert summary.by_key[0]["api_key_id"] == key.id


def test_dashboard_scope_and_balance(team):
    owner, alice = member(team, roles.OWNER), member(team)
    owner_key, _ = factories.api_key(team=team, owner=owner, name="owner-key")
    alice_key, _ = factories.api_key(team=team, owner=alice, name="alice-key")
    usage(team, owner_key, cost=2_000_000)
    usage(team, alice_key, cost=1_000_000)
    balance_credit(team=team, amount=25_000_000, reason="welcome", created_by=owner, idempotency_key="t1")
    page = client_for(owner).get(url("console-dashboard", team))
    assert page.context["summary"].requests == 2 and page.context["balance"] == 25_000_000
    body = text(page)
    assert "$25.00" in body and "owner-key" in body and "alice-key" in body
    today = timezone.now().date().isoformat()
    assert f'data-day="{today}" data-value="2"' in body
    mine = client_for(alice).get(url("console-dashboard", team))
    assert mine.context["summary"].requests == 1 and mine.context["balance"] is None
    assert "owner-key" not in text(mine) and "$25.00" not in text(mine)
    # Billing sees the whole team's spend and the balance.
    billing = client_for(member(team, roles.BILLING)).get(url("console-dashboard", team))
    assert billing.context["summary"].requests == 2 and billing.context["balance"] == 25_000_000


def test_logs_filters(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    other_key, _ = factories.api_key(team=team, owner=owner)
    ok = usage(team, key, request_id="req_" + "a" * 24)
    failed = usage(team, key, status_code=429, error_code="rate_limited", served_model="")
    other = usage(team, other_key, requested_model="openai/gpt-4o", served_model="openai/gpt-4o")
    old = usage(team, key, created_at=timezone.now() - timezone.timedelta(days=10))
    client = client_for(owner)

    def found(**params):
        page = client.get(url("console-logs", team), params)
        assert page.status_code == 200, page.context["form"].errors
        return {r.pk for r in page.context["page"]["rows"]}

    assert found() == {ok.pk, failed.pk, other.pk}                      # last 7 days by default
    assert found(period="30d") == {ok.pk, failed.pk, other.pk, old.pk}
    assert found(status="error") == {failed.pk}
    assert found(status="429") == {failed.pk}
    assert found(status="ok", key=other_key.pk) == {other.pk}
    assert found(model="openai/gpt-4o") == {ok.pk, failed.pk, other.pk}   # part of a name, any case
    assert found(model="GPT-4O", status="ok", key=other_key.pk) == {other.pk}
    assert found(request_id="chatcmpl-" + "a" * 24) == {ok.pk}         # what the client saw as the id


def test_logs_bad_range_is_explained(team):
    client = client_for(member(team, roles.OWNER))
    response = client.get(url("console-logs", team), {"period": "custom", "since": "2026-01-02T00:00",
                                                      "until": "2026-01-01T00:00"})
    assert response.status_code == 400 and "“From” must be before “To”." in text(response)
    response = client.get(url("console-logs", team), {"since": "2026-01-01T00:00", "until": "2026-03-01T00:00"})
    assert "Choose a range of at most 31 days." in text(response)


def test_logs_pagination(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    for _ in range(55):
        usage(team, key)
    client = client_for(owner)
    first = client.get(url("console-logs", team), {"status": "ok"}).context["page"]
    second = client.get(url("console-logs", team), {"status": "ok", "page": 2}).context["page"]
    assert (len(first["rows"]), first["has_next"], len(second["rows"]), second["has_next"]) == (50, True, 5, False)
    assert not {r.pk for r in first["rows"]} & {r.pk for r in second["rows"]}
    assert "status=ok&amp;page=2" in text(client.get(url("console-logs", team), {"status": "ok"}))


def test_members_see_only_their_own_requests(team):
    alice, bob = member(team), member(team)
    alice_key, _ = factories.api_key(team=team, owner=alice)
    bob_key, _ = factories.api_key(team=team, owner=bob)
    mine, theirs = usage(team, alice_key), usage(team, bob_key)
    client = client_for(alice)
    rows = client.get(url("console-logs", team)).context["page"]["rows"]
    assert [r.pk for r in rows] == [mine.pk]
    assert client.get(url("console-log-detail", team, pk=theirs.pk)).status_code == 404
    assert client.get(url("console-log-detail", team, pk=mine.pk)).status_code == 200
    exported = b"".join(client.get(url("console-logs-export", team)).streaming_content).decode()
    assert mine.request_id in exported and theirs.request_id not in exported


def test_log_detail_fields_and_channel_names(team):
    owner = member(team, roles.OWNER)
    key, secret = factories.api_key(team=team, owner=owner)
    model = factories.CatalogModelFactory()
    platform = factories.channel(models=[model], base_url="http://127.0.0.1:1/v1", name="upstream-acct-7",
                                 api_key="sk-upstream-platform-secret-0001")
    own = factories.channel(models=[model], base_url="http://127.0.0.1:1/v1", name="our-byok", team=team)
    via_platform = usage(team, key, channel=platform, status_code=502, error_code="upstream_unavailable",
                         error_text="upstream said no", ttfb_ms=120, latency_ms=900, stream=True,
                         user_agent="OpenAI/Python 1.51.0", sdk="OpenAI-Python 1.51.0", path="/v1/chat/completions")
    via_own = usage(team, key, channel=own)
    page = client_for(owner).get(url("console-log-detail", team, pk=via_platform.pk))
    body = text(page)
    for value in (via_platform.request_id, key.mask, "upstream_unavailable", "upstream said no", "120 ms",
                  "900 ms", "OpenAI-Python 1.51.0", "/v1/chat/completions", "openai/gpt-4o-mini"):
        assert value in body, value
    assert page.context["channel_label"] == "platform" and "upstream-acct-7" not in body
    assert_no_secret(page, secret, "sk-upstream-platform-secret-0001")
    assert client_for(owner).get(url("console-log-detail", team, pk=via_own.pk)).context["channel_label"] == "our-byok"
    # Platform staff see which platform channel served it.
    support = factories.StaffRoleFactory(role=roles.SUPPORT).user
    staff_page = client_for(support).get(url("console-log-detail", team, pk=via_platform.pk))
    assert "upstream-acct-7" in staff_page.context["channel_label"]


def test_logs_csv_export(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner, name="ci")
    usage(team, key, cost=1_234_567, user_agent="=HYPERLINK(\"http://evil\")")
    response = client_for(owner).get(url("console-logs-export", team), {"period": "24h"})
    assert response["Content-Type"].startswith("text/csv") and response.streaming
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    assert rows[0]["cost"] == "1.234567" and rows[0]["key_name"] == "ci" and rows[0]["channel"] == "—"
    assert rows[0]["user_agent"].startswith("'=")  # a spreadsheet will not run it


def test_billing_page_and_ledger_csv(team):
    owner = member(team, roles.OWNER)
    balance_credit(team=team, amount=10_000_000, reason="top-up", created_by=owner, idempotency_key="a")
    from billing.services import balance_adjust

    balance_adjust(team=team, amount=-2_500_000, reason="refund reversal", created_by=owner, idempotency_key="b")
    client = client_for(owner)
    page = client.get(url("console-billing", team))
    assert page.context["balance"] == 7_500_000
    entries = page.context["page"]["rows"]
    assert [e.balance_after for e in entries] == [7_500_000, 10_000_000]
    body = text(page)
    assert "$7.50" in body and "refund reversal" in body and "-$2.50" in body
    exported = b"".join(client.get(url("console-ledger-export", team)).streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("adjustment", "-2.5", "7.5"), ("topup", "10", "10")]
    for role in (roles.ADMIN, roles.MEMBER):
        assert client_for(member(team, role)).get(url("console-billing", team)).status_code == 403
