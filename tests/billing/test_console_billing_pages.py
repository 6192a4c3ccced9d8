"""The team side of billing in the console and the API: redeem a code, credit bundles, the spend report (and its
CSV), the billing policy (cap, alert thresholds and recipients), the logs' substring filter and totals, and one
money format on cards and tables."""
import csv
import datetime as dt
import io

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import roles
from accounts.tokens import personal_access_token_create
from billing import services
from billing.models import BudgetAlert, CreditBundle, LedgerEntry, RedemptionCode, TeamBillingPolicy
from billing.selectors import team_balance
from gateway_site import shared_cache
from keys.models import ApiKey
from routing.catalog import VERSION_KEY
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.billing.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def team():
    return factories.TeamFactory(slug="acme")


def url(name, team, **kwargs):
    return reverse(name, kwargs={"team": team.slug, **kwargs})


def api(user) -> APIClient:
    """The management API as `user`: a personal access token where the role may have one, else a session."""
    client = APIClient()
    try:
        _, secret = personal_access_token_create(user=user, name="test")
    except PermissionDenied:   # billing members and members hold no tokens; the console's session works
        client.force_login(user)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def code(amount=5 * M, **kwargs) -> str:
    return services.redemption_batch_create(created_by=None, count=1, amount=amount, **kwargs)[0]


def csv_rows(response) -> tuple[bytes, list[dict]]:
    raw = b"".join(response.streaming_content)
    return raw, list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


# --- redeem a code ------------------------------------------------------------------------------------------

def test_a_billing_member_redeems_a_code_in_the_console(team):
    user = member(team, roles.BILLING)
    factories.credit(team, 10 * M)
    typed = code(2_345_678)
    client = client_for(user)
    page = client.get(url("console-billing", team))
    assert page.status_code == 200 and 'data-testid="redeem"' in text(page)
    response = client.post(url("console-billing", team), {"code": typed.lower().replace("-", " ")}, follow=True)
    assert response.redirect_chain == [(url("console-billing", team), 302)]
    assert team_balance(team=team) == 12_345_678
    body = text(response)
    assert "Code redeemed: $2.345678 added; the balance is now $12.345678." in body
    entry = LedgerEntry.objects.filter(team=team).order_by("-id").first()
    assert (entry.kind, entry.amount, entry.created_by) == (LedgerEntry.REDEMPTION, 2_345_678, user)
    assert RedemptionCode.objects.get().status == RedemptionCode.USED


def test_redeem_refusals_are_explained_and_change_nothing(team):
    client = client_for(member(team, roles.OWNER))
    used, expired, disabled = code(), code(expires_at=timezone.now() - dt.timedelta(minutes=1)), code()
    services.redemption_redeem(team=factories.TeamFactory(), user=None, code=used)
    RedemptionCode.objects.filter(code_hash=services._code_hash(services._code_body(disabled))).update(
        status=RedemptionCode.DISABLED)
    for typed, message in (("TG-AAAA-BBBB-CCCC-DDDD", "This code does not exist; check it for typos."),
                           ("nonsense", "This code does not exist; check it for typos."),
                           (used, "This code has already been redeemed."),
                           (expired, "This code has expired."),
                           (disabled, "This code has been disabled.")):
        response = client.post(url("console-billing", team), {"code": typed})
        assert response.status_code == 400 and message in text(response), typed
    assert client.post(url("console-billing", team), {"code": ""}).status_code == 400
    assert team_balance(team=team) == 0 and not LedgerEntry.objects.filter(team=team).exists()


def test_redeeming_takes_the_redeem_role(team):
    typed = code()
    for role in (roles.ADMIN, roles.MEMBER):
        client = client_for(member(team, role))
        assert client.post(url("console-billing", team), {"code": typed}).status_code == 403
        assert client.get(url("console-billing", team)).status_code == 403
    # Support staff may not see a team's billing at all.
    assert client_for(factories.StaffRoleFactory(role=roles.SUPPORT).user).post(
        url("console-billing", team), {"code": typed}).status_code == 403
    assert RedemptionCode.objects.get().status == RedemptionCode.UNUSED


def test_redeem_api_is_the_same_service(team):
    owner = member(team, roles.OWNER)
    typed = code(3 * M, credit_valid_days=30)
    endpoint = f"/api/teams/{team.slug}/billing/redeem/"
    created = api(owner).post(endpoint, {"code": typed}, format="json")
    assert created.status_code == 201 and created.json()["amount"] == 3 * M
    assert created.json()["credit_expires_at"] is not None
    again = api(owner).post(endpoint, {"code": typed}, format="json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "code_used"
    unknown = api(owner).post(endpoint, {"code": "TG-2222-3333-4444-5555"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "code_unknown"
    assert api(member(team, roles.MEMBER)).post(endpoint, {"code": code()}, format="json").status_code == 403
    other = factories.TeamFactory()
    assert api(owner).post(f"/api/teams/{other.slug}/billing/redeem/", {"code": code()},
                           format="json").status_code == 404
    assert team_balance(team=team) == 3 * M and team_balance(team=other) == 0


def test_billing_page_lists_credit_bundles_with_remaining_and_expiry(team):
    owner = member(team, roles.OWNER)
    services.redemption_redeem(team=team, user=owner, code=code(4 * M, credit_valid_days=10))
    bundle = CreditBundle.objects.get(team=team)
    CreditBundle.objects.filter(pk=bundle.pk).update(remaining=1_500_000)
    factories.credit(factories.TeamFactory())  # another team's bundle-free credit
    page = client_for(owner).get(url("console-billing", team))
    assert list(page.context["bundles"]) == [bundle]
    row = text(page).split('data-testid="bundles"')[1].split("</table>")[0]
    assert "$4.00" in row and "$1.50" in row and "Redemption" in row
    assert bundle.expires_at.strftime("%Y-%m-%d %H:%M") in row


# --- spend report -------------------------------------------------------------------------------------------

@pytest.fixture
def spend(team):
    """Usage over 40 days: two keys, two models; the newest is today."""
    owner = member(team, roles.OWNER)
    ci, _ = factories.api_key(team=team, owner=owner, name="ci")
    prod, _ = factories.api_key(team=team, owner=owner, name="production")
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    rows = [(prod, "openai/gpt-4o-mini", 0, 1_000_000, 200), (prod, "openai/gpt-4o-mini", 0, 500_000, 200),
            (ci, "anthropic/claude-sonnet-4-5", 1, 2_250_000, 200), (ci, "", 2, 0, 502),   # never served
            (prod, "anthropic/claude-sonnet-4-5", 29, 100, 200),   # the first day of the default range
            (prod, "openai/gpt-4o-mini", 30, 7 * M, 200)]           # one day before it
    for key, model, days_ago, cost, status in rows:
        UsageRecordFactory(team=team, api_key=key, key_mask=key.mask, requested_model=model or "openai/gpt-5",
                           served_model=model, cost=cost,
                           status_code=status, created_at=today - dt.timedelta(days=days_ago))
    UsageRecordFactory(team=factories.TeamFactory(), cost=99 * M, created_at=today)  # not this team's
    return owner, ci, prod, today.date()


def test_spend_report_defaults_to_the_last_30_days_by_key(team, spend):
    owner, ci, prod, today = spend
    page = client_for(owner).get(url("console-spend", team))
    assert page.status_code == 200
    report = page.context["report"]
    assert (report.since.date(), report.until.date()) == (today - dt.timedelta(days=29), today + dt.timedelta(days=1))
    form = page.context["form"]   # the inputs show the range covered
    assert (form["from"].value(), form["to"].value()) == (
        (today - dt.timedelta(days=29)).isoformat(), today.isoformat())
    assert [(r["key_name"], r["requests"], r["errors"], r["cost"]) for r in report.rows] == [
        ("ci", 2, 1, 2_250_000), ("production", 3, 0, 1_500_100)]
    assert report.totals == {"requests": 5, "errors": 1, "prompt_tokens": 500, "completion_tokens": 250,
                             "cost": 3_750_100}
    body = text(page)
    assert "$3.7501" in body.split('data-testid="total-cost"')[1][:40]
    assert "$3.7501" in body.split('data-testid="table-total"')[1][:40]   # the same figure on card and table


def test_spend_report_ranges_and_groups(team, spend):
    owner, ci, prod, today = spend
    client = client_for(owner)

    def report(**params):
        page = client.get(url("console-spend", team), params)
        assert page.status_code == 200, page.context["form"].errors
        return page.context["report"]

    day30 = (today - dt.timedelta(days=30)).isoformat()
    assert report(**{"from": day30, "to": day30}).totals["cost"] == 7 * M          # both ends included
    by_model = report(**{"from": day30, "group_by": "model"})
    assert [(r["model"], r["requests"], r["cost"]) for r in by_model.rows] == [
        ("openai/gpt-4o-mini", 3, 8_500_000), ("anthropic/claude-sonnet-4-5", 2, 2_250_100), ("openai/gpt-5", 1, 0)]
    by_day = report(**{"from": (today - dt.timedelta(days=2)).isoformat(), "to": today.isoformat(),
                       "group_by": "day"})
    assert [(r["day"], r["requests"], r["cost"]) for r in by_day.rows] == [
        (today - dt.timedelta(days=2), 1, 0), (today - dt.timedelta(days=1), 1, 2_250_000), (today, 2, 1_500_000)]
    assert sum(r["cost"] for r in by_day.rows) == by_day.totals["cost"]
    empty = report(**{"from": "2020-01-01", "to": "2020-01-31", "group_by": "day"})
    assert len(empty.rows) == 31 and empty.totals["cost"] == 0 and empty.totals["requests"] == 0


@pytest.mark.parametrize("params,message", [
    ({"from": "2026-13-01"}, "Enter a valid date."),
    ({"to": "yesterday"}, "Enter a valid date."),
    ({"from": "2026-02-10", "to": "2026-02-01"}, "“From” must not be after “To”."),
    ({"from": "2024-01-01", "to": "2026-01-01"}, "Choose a range of at most 366 days."),
    ({"group_by": "team"}, "Select a valid choice."),
])
def test_spend_report_bad_input_is_a_400_with_the_reason(team, params, message):
    owner = member(team, roles.OWNER)
    page = client_for(owner).get(url("console-spend", team), params)
    assert page.status_code == 400 and message in text(page) and page.context["report"] is None
    exported = client_for(owner).get(url("console-spend-export", team), params)
    assert exported.status_code == 302 and "/billing/spend/?" in exported["Location"]
    response = api(owner).get(f"/api/teams/{team.slug}/billing/spend/", params)
    assert response.status_code == 400 and response.json()["error"]["param"] in ("from", "to", "group_by")


def test_spend_csv_starts_with_a_bom_and_matches_the_page(team, spend):
    owner, ci, prod, today = spend
    response = client_for(owner).get(url("console-spend-export", team), {"group_by": "model"})
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    raw, rows = csv_rows(response)
    assert raw.startswith(b"\xef\xbb\xbfmodel,requests,")
    assert [(r["model"], r["requests"], r["cost_usd"]) for r in rows] == [
        ("anthropic/claude-sonnet-4-5", "2", "2.2501"), ("openai/gpt-4o-mini", "2", "1.5"), ("openai/gpt-5", "1", "0")]
    _, by_key = csv_rows(client_for(owner).get(url("console-spend-export", team)))
    assert [(r["key_name"], r["key_mask"], r["cost_usd"]) for r in by_key] == [
        ("ci", ci.mask, "2.25"), ("production", prod.mask, "1.5001")]


def test_every_csv_export_has_the_bom(team, spend):
    owner = spend[0]
    for name in ("console-logs-export", "console-ledger-export"):
        raw, _ = csv_rows(client_for(owner).get(url(name, team)))
        assert raw.startswith(b"\xef\xbb\xbf"), name


def test_spend_api_is_the_same_report(team, spend):
    owner, ci, prod, today = spend
    day = (today - dt.timedelta(days=1)).isoformat()
    body = api(owner).get(f"/api/teams/{team.slug}/billing/spend/", {"from": day, "group_by": "day"}).json()
    assert (body["from"], body["to"], body["group_by"], body["currency"]) == (day, today.isoformat(), "day", "USD")
    assert [(r["day"], r["cost"]) for r in body["rows"]] == [(day, 2_250_000), (today.isoformat(), 1_500_000)]
    assert body["totals"] == {"requests": 3, "errors": 0, "prompt_tokens": 300, "completion_tokens": 150,
                              "cost": 3_750_000}
    by_key = api(owner).get(f"/api/teams/{team.slug}/billing/spend/").json()
    assert [(r["key_id"], r["key_name"], r["cost"]) for r in by_key["rows"]] == [
        (ci.pk, "ci", 2_250_000), (prod.pk, "production", 1_500_100)]


def test_spend_report_roles_and_other_teams(team, spend):
    admin = member(team, roles.ADMIN)        # reads logs: may see the spend report, not the billing page
    assert client_for(admin).get(url("console-spend", team)).status_code == 200
    assert api(admin).get(f"/api/teams/{team.slug}/billing/spend/").status_code == 200
    assert client_for(member(team, roles.BILLING)).get(url("console-spend", team)).status_code == 200
    plain = member(team, roles.MEMBER)
    assert client_for(plain).get(url("console-spend", team)).status_code == 403
    assert client_for(plain).get(url("console-spend-export", team)).status_code == 403
    assert api(plain).get(f"/api/teams/{team.slug}/billing/spend/").status_code == 403
    other = factories.TeamFactory()
    assert client_for(spend[0]).get(url("console-spend", other)).status_code == 404
    assert api(spend[0]).get(f"/api/teams/{other.slug}/billing/spend/").status_code == 404


# --- billing policy -----------------------------------------------------------------------------------------

def test_policy_page_shows_the_defaults(team):
    owner = member(team, roles.OWNER)
    admin = member(team, roles.ADMIN)
    member(team, roles.BILLING)
    page = client_for(owner).get(url("console-billing-policy", team))
    assert page.status_code == 200
    form = page.context["form"]
    assert form["alert_thresholds"].value() == "80, 100" and form["monthly_cap"].value() is None
    assert page.context["default_recipients"] == sorted([owner.email, admin.email])
    assert owner.email in text(page)


def test_saving_the_policy_reaches_the_gateways_and_the_alerts(team, django_capture_on_commit_callbacks):
    owner = member(team, roles.BILLING)
    shared_cache.set(VERSION_KEY, b"before")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(url("console-billing-policy", team), {
            "monthly_cap": "250.5", "alert_thresholds": "100, 50 80 50",
            "alert_recipients": "a@example.com\nB@example.com, a@example.com"})
    assert response.status_code == 302
    policy = TeamBillingPolicy.objects.get(team=team)
    assert (policy.monthly_cap, policy.alert_thresholds, policy.alert_recipients) == (
        250_500_000, [50, 80, 100], ["a@example.com", "B@example.com"])
    assert shared_cache.get(VERSION_KEY) != b"before"   # the gateways reload their snapshot
    page = client_for(owner).get(url("console-billing-policy", team))
    assert page.context["form"]["monthly_cap"].value() == "250.5"
    UsageRecordFactory(team=team, cost=1_250_000)
    UsageRecordFactory(team=team, cost=5 * M, created_at=timezone.now() - dt.timedelta(days=40))  # not this month
    billing_page = text(client_for(owner).get(url("console-billing", team)))
    assert "$250.50" in billing_page.split('data-testid="monthly-cap"')[1][:40]
    assert "$1.25 spent this month" in billing_page.split('data-testid="month-spend"')[1][:60]
    # Clearing the cap keeps the operator's price multiplier.
    TeamBillingPolicy.objects.filter(team=team).update(price_multiplier_ppm=900_000)
    client_for(owner).post(url("console-billing-policy", team), {"monthly_cap": "", "alert_thresholds": "80",
                                                                 "alert_recipients": ""})
    policy.refresh_from_db()
    assert (policy.monthly_cap, policy.alert_thresholds, policy.alert_recipients, policy.price_multiplier_ppm) == (
        None, [80], [], 900_000)


@pytest.mark.parametrize("field,value,message", [
    ("monthly_cap", "1e3", "Enter a plain amount such as 12.50"),
    ("monthly_cap", "NaN", "Enter a plain amount such as 12.50"),
    ("monthly_cap", "-5", "The amount cannot be negative."),
    ("monthly_cap", "0", "The amount cannot be zero."),
    ("monthly_cap", "1.0000001", "Use at most 6 decimals"),
    ("alert_thresholds", "80, 150", "“150” is not a whole percentage from 1 to 100."),
    ("alert_thresholds", "0", "“0” is not a whole percentage from 1 to 100."),
    ("alert_thresholds", "80.5", "“80.5” is not a whole percentage from 1 to 100."),
    ("alert_thresholds", " ".join(str(n) for n in range(1, 12)), "At most 10 thresholds."),
    ("alert_recipients", "finance@example.com, not-an-email", "“not-an-email” is not an email address."),
])
def test_policy_validation(team, field, value, message):
    owner = member(team, roles.OWNER)
    data = {"monthly_cap": "100", "alert_thresholds": "80, 100", "alert_recipients": "", field: value}
    response = client_for(owner).post(url("console-billing-policy", team), data)
    assert response.status_code == 400 and message in text(response)
    assert not TeamBillingPolicy.objects.filter(team=team).exists()


def test_policy_roles(team):
    for role in (roles.ADMIN, roles.MEMBER):
        client = client_for(member(team, role))
        assert client.get(url("console-billing-policy", team)).status_code == 403
        assert client.post(url("console-billing-policy", team), {"monthly_cap": "1"}).status_code == 403
        assert api(member(team, role)).put(f"/api/teams/{team.slug}/billing/policy/", {
            "monthly_cap": 1, "alert_thresholds": [], "alert_recipients": []}, format="json").status_code == 403
    assert not TeamBillingPolicy.objects.filter(team=team).exists()
    assert roles.BILLING_MANAGE in roles.team_permissions(roles.BILLING, None)
    assert roles.BILLING_MANAGE in roles.team_permissions(None, roles.OPERATOR)
    assert roles.BILLING_MANAGE not in roles.team_permissions(None, roles.SUPPORT)


def test_policy_api(team, django_capture_on_commit_callbacks):
    owner = member(team, roles.OWNER)
    endpoint = f"/api/teams/{team.slug}/billing/policy/"
    got = api(owner).get(endpoint).json()
    assert (got["monthly_cap"], got["alert_thresholds"], got["alert_recipients"], got["updated_at"]) == (
        None, [80, 100], [], None)
    assert got["default_recipients"] == [owner.email]
    shared_cache.set(VERSION_KEY, b"before")
    with django_capture_on_commit_callbacks(execute=True):
        put = api(owner).put(endpoint, {"monthly_cap": 5 * M, "alert_thresholds": [90, 50],
                                        "alert_recipients": ["ops@example.com"]}, format="json")
    assert put.status_code == 200, put.content
    assert (put.json()["monthly_cap"], put.json()["alert_thresholds"], put.json()["alert_recipients"]) == (
        5 * M, [50, 90], ["ops@example.com"])
    assert shared_cache.get(VERSION_KEY) != b"before"
    for bad in ({"monthly_cap": 0, "alert_thresholds": [], "alert_recipients": []},
                {"monthly_cap": "1e3", "alert_thresholds": [], "alert_recipients": []},
                {"monthly_cap": None, "alert_thresholds": [101], "alert_recipients": []},
                {"monthly_cap": None, "alert_thresholds": [], "alert_recipients": ["nope"]},
                {"monthly_cap": None}, {}):
        response = api(owner).put(endpoint, bad, format="json")
        assert response.status_code == 400, bad
    assert TeamBillingPolicy.objects.get(team=team).monthly_cap == 5 * M
    assert api(owner).get(f"/api/teams/{factories.TeamFactory().slug}/billing/policy/").status_code == 404


def test_alerts_follow_the_policy_thresholds_and_recipients(team, mailoutbox, django_capture_on_commit_callbacks):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    ApiKey.objects.filter(pk=key.pk).update(budget_limit=1_000, budget_period="month")
    services.billing_policy_set(team=team, monthly_cap=None, alert_thresholds=[50],
                                alert_recipients=["finance@example.com"])
    UsageRecordFactory(team=team, api_key=key, cost=799)   # 80% of the key's budget: past 50, the only threshold
    with django_capture_on_commit_callbacks(execute=True):
        assert services.budget_alerts_check() == 1
    assert BudgetAlert.objects.get().threshold == 50
    [mail] = mailoutbox
    assert mail.to == ["finance@example.com"] and "50%" in mail.subject
    assert "as an alert recipient named in the team's billing policy" in mail.body
    assert "alerts once per period at 50%." in mail.body
    # No thresholds: no alerts.
    services.billing_policy_set(team=team, monthly_cap=None, alert_thresholds=[], alert_recipients=[])
    UsageRecordFactory(team=team, api_key=key, cost=500)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.budget_alerts_check() == 0


# --- request logs -------------------------------------------------------------------------------------------

def test_logs_model_filter_matches_substrings_and_shows_the_total(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    mini = UsageRecordFactory(team=team, api_key=key, served_model="openai/gpt-4o-mini", cost=1_250_000)
    big = UsageRecordFactory(team=team, api_key=key, requested_model="openai/gpt-4o", served_model="openai/gpt-4o",
                             cost=250_000)
    failed = UsageRecordFactory(team=team, api_key=key, requested_model="gpt-4o-mini", served_model="",
                                status_code=404, cost=0)
    UsageRecordFactory(team=team, api_key=key, requested_model="anthropic/claude-sonnet-4-5",
                       served_model="anthropic/claude-sonnet-4-5", cost=9 * M)
    client = client_for(owner)

    def search(model):
        page = client.get(url("console-logs", team), {"model": model})
        assert page.status_code == 200
        return {r.pk for r in page.context["page"]["rows"]}, page

    found, page = search("GPT-4O")
    assert found == {mini.pk, big.pk, failed.pk}
    assert page.context["totals"] == {"count": 3, "cost": 1_500_000}
    assert "3 requests match, costing $1.50 in all." in text(page)
    found, page = search("4o-mini")
    assert found == {mini.pk, failed.pk} and page.context["totals"] == {"count": 2, "cost": 1_250_000}
    found, page = search("sonnet")
    assert len(found) == 1 and "1 request matches, costing $9.00." in text(page)
    found, page = search("no-such-model")
    assert found == set() and "0 requests match, costing $0.00 in all." in text(page)


def test_log_detail_says_billed_once_reconciled(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    factories.credit(team)
    record = UsageRecordFactory(team=team, api_key=key, cost=1_000)
    page = text(client_for(owner).get(url("console-log-detail", team, pk=record.pk)))
    state = page.split('data-testid="billing-state"')[1].split("</dd>")[0]
    assert "pending" in state and "billed" not in state
    services.usage_reconcile()
    record.refresh_from_db()
    page = text(client_for(owner).get(url("console-log-detail", team, pk=record.pk)))
    state = page.split('data-testid="billing-state"')[1].split("</dd>")[0]
    assert "billed" in state and "pending" not in state and record.billed_at.strftime("%Y-%m-%d %H:%M:%S") in state


# --- one money format ---------------------------------------------------------------------------------------

def test_dashboard_cards_and_tables_show_the_same_figure(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    UsageRecordFactory(team=team, api_key=key, cost=7_512_345)
    factories.credit(team, 12_500_000)
    body = text(client_for(owner).get(url("console-dashboard", team)))
    card = body.split('data-testid="spend"')[1][:40]
    assert "$7.512345" in card and body.count("$7.512345") >= 3   # the card, by model, by key
    assert "$12.50" in body.split('data-testid="balance"')[1][:40]
