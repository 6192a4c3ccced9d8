"""Redemption codes, credit bundles that expire, and the billing management API (balance, ledger, redeem,
operator credit)."""
import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from accounts import roles
from billing import selectors, services
from billing.models import CreditBundle, CreditBundleCursor, LedgerEntry, RedemptionCode
from billing.services import CreditError
from billing.tasks import expire_credit_bundles
from gateway_site import urls as site_urls
from tests.billing.factories import usage_bulk
from tests.billing.test_ledger import ledger_sum, run_threads
from tests.factories import MembershipFactory, StaffRoleFactory, TeamFactory, UserFactory, credit

pytestmark = pytest.mark.django_db
# The API's URLs, whether or not gateway_site/urls.py includes them yet (a second include is harmless).
urlpatterns = site_urls.urlpatterns + [path("", include("billing.api_urls"))]
api_urls = pytest.mark.urls(__name__)

HOUR = dt.timedelta(hours=1)
CODE = re.compile(r"^TG(-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{4}){4}$")


def assert_ledger_consistent(*teams):
    for team in teams:
        assert selectors.team_balance(team=team) == ledger_sum(team)
    call_command("ledger_audit")   # raises CommandError on any mismatch


def usage(team, cost):
    """Usage billed to the ledger through reconciliation (the debits bundles are drawn down by)."""
    usage_bulk(team=team, costs=[cost])
    assert services.usage_reconcile() == 1


# --- redemption codes ---------------------------------------------------------------------------------------

def test_a_batch_is_stored_as_hashes_and_masks_and_shown_once():
    operator = UserFactory()
    codes = services.redemption_batch_create(created_by=operator, count=5, amount=2_500_000, name="launch")
    assert len(set(codes)) == 5 and all(CODE.match(c) for c in codes)
    rows = RedemptionCode.objects.order_by("pk")
    assert {r.batch for r in rows} == {rows[0].batch}
    for code, row in zip(codes, rows):
        assert row.mask == f"TG-…{code[-4:]}" and row.status == RedemptionCode.UNUSED
        assert row.code_hash != code and code.replace("-", "")[2:] not in row.code_hash
        assert (row.amount, row.name, row.created_by) == (2_500_000, "launch", operator)


def test_redeeming_credits_the_team_once_and_is_audited():
    member = MembershipFactory(role=roles.BILLING)
    team, user = member.team, member.user
    [code] = services.redemption_batch_create(created_by=None, count=1, amount=7_000_000)
    # Typed by hand: lower case, spaces instead of dashes, no prefix.
    entry = services.redemption_redeem(team=team, user=user, code=" " + code[3:].replace("-", " ").lower())

    row = RedemptionCode.objects.get()
    assert (entry.kind, entry.amount, entry.balance_after) == (LedgerEntry.REDEMPTION, 7_000_000, 7_000_000)
    assert entry.idempotency_key == f"redeem:{row.pk}"
    assert (entry.created_by, entry.reason) == (user, f"Redeemed code TG-…{code[-4:]}")
    assert (row.status, row.redeemed_by_team, row.redeemed_by_user, row.ledger_entry) == (
        RedemptionCode.USED, team, user, entry)
    assert row.redeemed_at is not None
    assert not CreditBundle.objects.exists()               # a code without credit_valid_days never expires

    for again in (team, TeamFactory()):
        with pytest.raises(CreditError) as refused:
            services.redemption_redeem(team=again, user=user, code=code)
        assert refused.value.code == "code_used"
    assert LedgerEntry.objects.count() == 1
    assert_ledger_consistent(team)


def test_expired_disabled_and_unknown_codes_are_refused_distinctly():
    team, user = TeamFactory(), UserFactory()
    [expired] = services.redemption_batch_create(created_by=None, count=1, amount=1_000,
                                                 expires_at=timezone.now() - HOUR)
    [disabled] = services.redemption_batch_create(created_by=None, count=1, amount=1_000)
    RedemptionCode.objects.filter(mask=f"TG-…{disabled[-4:]}").update(status=RedemptionCode.DISABLED)
    cases = [(expired, "code_expired", "expired on"), (disabled, "code_disabled", "disabled"),
             ("TG-2222-3333-4444-5555", "code_unknown", "does not exist"), ("nonsense", "code_unknown", "typos")]
    for code, error, words in cases:
        with pytest.raises(CreditError, match=words) as refused:
            services.redemption_redeem(team=team, user=user, code=code)
        assert refused.value.code == error
    assert not LedgerEntry.objects.exists()
    assert RedemptionCode.objects.filter(status=RedemptionCode.USED).count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_of_the_same_codes_credit_each_code_once():
    codes = services.redemption_batch_create(created_by=None, count=3, amount=1_000_000)
    teams, user = [TeamFactory() for _ in range(8)], UserFactory()

    def redeem(i):
        try:
            return services.redemption_redeem(team=teams[i], user=user, code=codes[i % 3]).pk
        except CreditError as exc:
            return exc.code

    results = run_threads(8, redeem)

    credited = [r for r in results if isinstance(r, int)]
    assert len(credited) == 3 and sorted(r for r in results if isinstance(r, str)) == ["code_used"] * 5
    assert LedgerEntry.objects.filter(kind=LedgerEntry.REDEMPTION).count() == 3
    assert sum(selectors.team_balance(team=t) for t in teams) == 3_000_000
    for row in RedemptionCode.objects.all():
        assert row.status == RedemptionCode.USED and row.ledger_entry.team == row.redeemed_by_team
    assert_ledger_consistent(*teams)


def test_a_code_with_credit_valid_days_opens_a_bundle():
    team = TeamFactory()
    [code] = services.redemption_batch_create(created_by=None, count=1, amount=500, credit_valid_days=30)
    before = timezone.now()
    entry = services.redemption_redeem(team=team, user=None, code=code)
    bundle = CreditBundle.objects.get()
    assert (bundle.team, bundle.amount, bundle.remaining, bundle.source, bundle.ledger_entry) == (
        team, 500, 500, CreditBundle.REDEMPTION, entry)
    assert before + dt.timedelta(days=30) <= bundle.expires_at <= timezone.now() + dt.timedelta(days=30)


# --- credit bundles -----------------------------------------------------------------------------------------

def grant(team, amount, expires_in, key):
    return services.credit_bundle_grant(team=team, amount=amount, expires_at=timezone.now() + expires_in,
                                        reason="prepaid package", created_by=None, idempotency_key=key)


def test_a_bundle_expires_its_unused_part_in_one_entry_and_twice_is_a_no_op():
    team = TeamFactory()
    credit(team, 5_000)                                   # permanent credit: spent after bundles
    bundle = grant(team, 10_000, HOUR, "pkg-1")
    assert bundle.ledger_entry.kind == LedgerEntry.TOPUP and selectors.team_balance(team=team) == 15_000
    usage(team, 3_000)

    assert services.credit_bundles_expire(team=team) == []   # not due yet: only drawn down
    bundle.refresh_from_db()
    assert (bundle.remaining, bundle.expired_at) == (7_000, None)

    later = timezone.now() + 2 * HOUR
    [entry] = services.credit_bundles_expire(team=team, now=later)
    assert (entry.kind, entry.amount, entry.idempotency_key) == (LedgerEntry.EXPIRY, -7_000, f"expiry:{bundle.pk}")
    assert selectors.team_balance(team=team) == 5_000     # the permanent credit is untouched
    bundle.refresh_from_db()
    assert (bundle.remaining, bundle.expired_at, bundle.expiry_entry) == (0, later, entry)

    assert services.credit_bundles_expire(team=team, now=later + HOUR) == []
    assert services.credit_bundles_sweep(now=later + HOUR) == 0
    assert expire_credit_bundles.apply().get() == 0
    assert LedgerEntry.objects.filter(kind=LedgerEntry.EXPIRY).count() == 1
    assert_ledger_consistent(team)


def test_usage_draws_the_earliest_expiry_first():
    team = TeamFactory()
    late = grant(team, 100, 48 * HOUR, "late")
    soon = grant(team, 100, 24 * HOUR, "soon")
    usage(team, 150)
    assert services.credit_bundles_consume(team=team) == 150
    assert services.credit_bundles_consume(team=team) == 0   # the cursor moved: nothing is applied twice
    soon.refresh_from_db(), late.refresh_from_db()
    assert (soon.remaining, late.remaining) == (0, 50)

    assert services.credit_bundles_expire(team=team, now=timezone.now() + 30 * HOUR) == []
    soon.refresh_from_db()
    assert soon.expired_at is not None and soon.expiry_entry is None
    [entry] = services.credit_bundles_expire(team=team, now=timezone.now() + 50 * HOUR)
    assert entry.amount == -50 and selectors.team_balance(team=team) == 0
    assert_ledger_consistent(team)


def test_credit_added_after_the_bundle_was_used_up_does_not_expire():
    team = TeamFactory()
    grant(team, 100, HOUR, "pkg")
    usage(team, 100)                                       # the bundle paid for this
    credit(team, 100)                                      # a later, permanent top-up
    assert services.credit_bundles_expire(team=team, now=timezone.now() + 2 * HOUR) == []
    assert selectors.team_balance(team=team) == 100


def test_expiry_never_takes_a_balance_below_zero():
    team = TeamFactory()
    CreditBundleCursor.objects.create(team=team, last_entry_id=0)   # a cursor from an earlier bundle
    usage(team, 30)                                        # overdrawn before the bundle: -30
    grant(team, 100, HOUR, "pkg")
    [entry] = services.credit_bundles_expire(team=team, now=timezone.now() + 2 * HOUR)
    assert entry.amount == -70 and selectors.team_balance(team=team) == 0
    assert_ledger_consistent(team)


def test_grant_is_idempotent_and_validated():
    team = TeamFactory()
    assert grant(team, 100, HOUR, "same") == grant(team, 100, HOUR, "same")
    assert CreditBundle.objects.count() == 1 and selectors.team_balance(team=team) == 100
    credit(team, 50)
    with pytest.raises(ValueError, match="without expiry"):
        grant(team, 50, HOUR, f"test-credit-{team.pk}-50")
    for amount, expires_in, words in [(0, HOUR, "positive"), (10, -HOUR, "future")]:
        with pytest.raises(ValueError, match=words):
            grant(team, amount, expires_in, "bad")


@pytest.mark.django_db(transaction=True)
def test_concurrent_expiry_runs_write_one_entry():
    teams = [TeamFactory() for _ in range(3)]
    for team in teams:
        grant(team, 1_000, HOUR, "pkg")
        usage(team, 400)
    later = timezone.now() + 2 * HOUR

    written = run_threads(4, lambda i: services.credit_bundles_sweep(now=later, batch_size=2))

    assert sum(written) == 3 == LedgerEntry.objects.filter(kind=LedgerEntry.EXPIRY).count()
    for team in teams:
        assert selectors.team_balance(team=team) == 0
    assert_ledger_consistent(*teams)


# --- management API -----------------------------------------------------------------------------------------

def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client, url, data):
    return client.post(url, data, content_type="application/json")


@api_urls
@pytest.mark.parametrize("role,status", [(roles.BILLING, 201), (roles.OWNER, 201), (roles.MEMBER, 403),
                                         (roles.ADMIN, 403)])
def test_redeem_through_the_api_checks_the_role(role, status):
    member = MembershipFactory(role=role)
    [code] = services.redemption_batch_create(created_by=None, count=1, amount=4_000_000)
    url = f"/api/teams/{member.team.slug}/billing/redeem/"
    response = post(client_for(member.user), url, {"code": code})
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert (body["kind"], body["amount"], body["balance_after"], body["created_by"]) == (
            "redemption", 4_000_000, 4_000_000, member.user.username)
        assert body["credit_expires_at"] is None
        again = post(client_for(member.user), url, {"code": code})
        assert again.status_code == 400
        assert again.json()["error"]["code"] == "code_used"
        assert "already been redeemed" in again.json()["error"]["message"]
    else:
        assert not LedgerEntry.objects.exists()
    assert post(Client(), url, {"code": code}).status_code in (401, 403)


@api_urls
def test_ledger_balance_and_alerts_read_through_the_api():
    member = MembershipFactory(role=roles.BILLING)
    team = member.team
    credit(team, 1_000)
    grant(team, 500, HOUR, "pkg")
    usage(team, 200)
    client, base = client_for(member.user), f"/api/teams/{team.slug}/billing/"

    page = client.get(base + "ledger/?limit=2").json()
    assert [e["kind"] for e in page["data"]] == ["usage", "topup"] and page["has_more"] is True
    assert [e["balance_after"] for e in page["data"]] == [1_300, 1_500]
    rest = client.get(base + "ledger/?limit=2&offset=2").json()
    assert [e["amount"] for e in rest["data"]] == [1_000] and rest["has_more"] is False

    balance = client.get(base + "balance/").json()
    assert (balance["balance"], balance["currency"]) == (1_300, "USD")
    assert [(b["amount"], b["remaining"], b["source"]) for b in balance["bundles"]] == [(500, 500, "topup")]
    assert client.get(base + "alerts/").json() == []
    assert client_for(MembershipFactory(team=team, role=roles.MEMBER).user).get(base + "ledger/").status_code == 403


@api_urls
def test_operator_api_makes_codes_and_credits_teams():
    operator, support = StaffRoleFactory(role=roles.OPERATOR).user, StaffRoleFactory(role=roles.SUPPORT).user
    team = TeamFactory()
    batch = {"count": 2, "amount": 3_000_000, "name": "promo", "credit_valid_days": 7}
    assert post(client_for(support), "/api/operator/redemption-batches/", batch).status_code == 403
    assert post(Client(), "/api/operator/redemption-batches/", batch).status_code in (401, 403)
    made = post(client_for(operator), "/api/operator/redemption-batches/", batch)
    assert made.status_code == 201
    assert len(made.json()["codes"]) == 2 and all(CODE.match(c) for c in made.json()["codes"])
    entry = services.redemption_redeem(team=team, user=None, code=made.json()["codes"][0])
    assert CreditBundle.objects.get(ledger_entry=entry).source == CreditBundle.REDEMPTION

    url = f"/api/operator/teams/{team.pk}/credit/"
    expires = (timezone.now() + 24 * HOUR).isoformat()
    grant_body = {"kind": "credit", "amount": 1_000, "reason": "goodwill", "idempotency_key": "k1",
                  "expires_at": expires}
    first = post(client_for(operator), url, grant_body)
    assert first.status_code == 201, first.content
    assert first.json()["credit_expires_at"] is not None and first.json()["created_by"] == operator.username
    assert post(client_for(operator), url, grant_body).json()["id"] == first.json()["id"]   # a safe retry
    assert CreditBundle.objects.filter(source=CreditBundle.GRANT, team=team).count() == 1

    adjust = post(client_for(operator), url, {"kind": "adjustment", "amount": -500, "reason": "correction",
                                              "idempotency_key": "k2"})
    assert adjust.status_code == 201 and adjust.json()["kind"] == "adjustment"
    for bad in ({"kind": "adjustment", "amount": -5, "reason": " ", "idempotency_key": "k3"},
                {"kind": "adjustment", "amount": 5, "reason": "x", "idempotency_key": "k4", "expires_at": expires},
                {"kind": "credit", "amount": -5, "reason": "x", "idempotency_key": "k5"}):
        response = post(client_for(operator), url, bad)
        assert response.status_code == 400 and "error" in response.json(), bad
    assert post(client_for(support), url, grant_body).status_code == 403
    assert post(client_for(operator), "/api/operator/teams/999999/credit/", grant_body).status_code == 404
    assert selectors.team_balance(team=team) == 3_000_000 + 1_000 - 500
    assert_ledger_consistent(team)
