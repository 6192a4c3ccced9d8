"""Limits on keys and key groups, set in the console and the management API (one service), published to the
keys' cached contexts; the key list's spend and remaining, the key page's limits and spend breakdown."""
import datetime

import orjson
import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import roles
from accounts.tokens import personal_access_token_create
from billing import limits as billing_limits
from gateway_site import shared_cache
from keys import auth
from keys.models import ApiKey, KeyGroup
from keys.services import api_key_rotate
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.billing.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def team():
    return factories.TeamFactory()


@pytest.fixture
def group(team):
    return factories.KeyGroupFactory(team=team, name="production")


@pytest.fixture
def admin(team):
    return member(team, roles.ADMIN)


def cached_context(api_key) -> auth.KeyContext:
    """What every gateway process reads for this key (the shared cache entry publish() wrote)."""
    raw = shared_cache.get(auth.cache_key(api_key.secret_hash))
    assert raw is not None, "the key's context was not published"
    return auth._decode(raw)


def group_url(team, group):
    return reverse("console-key-group-detail", kwargs={"team": team.slug, "pk": group.pk})


def key_url(team, key):
    return reverse("console-key-detail", kwargs={"team": team.slug, "pk": key.pk})


def keys_url(team):
    return reverse("console-keys", kwargs={"team": team.slug})


def group_form(group, **changes):
    data = {"name": group.name, "budget_limit": "", "budget_period": "month", "rpm_limit": "", "tpm_limit": "",
            "max_concurrency": ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- console forms -------------------------------------------------------------------------------------------

def test_group_form_sets_limits_and_routes_only_and_publishes(django_capture_on_commit_callbacks, team, group,
                                                              admin):
    with django_capture_on_commit_callbacks(execute=True):
        key, _ = factories.api_key(team=team, group=group)
    assert cached_context(key).group_limits == (None, "month", None, None, None)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(group_url(team, group), group_form(
            group, budget_limit="12.50", budget_period="day", rpm_limit="2", tpm_limit="5000",
            max_concurrency="3", routes_only="on"))
    assert response.status_code == 302, response.content
    group.refresh_from_db()
    assert group.limits_tuple() == (12_500_000, "day", 2, 5000, 3) and group.routes_only
    ctx = cached_context(key)
    assert ctx.group_limits == (12_500_000, "day", 2, 5000, 3)
    assert ctx.group_routes_only is True
    # The form shows the values back as typed (a plain decimal), and empty fields clear the limits.
    page = client_for(admin).get(group_url(team, group))
    assert 'value="12.5"' in text(page) and page.context["form"]["routes_only"].value() is True
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin).post(group_url(team, group), group_form(group))
    group.refresh_from_db()
    assert group.limits_tuple() == (None, "month", None, None, None) and not group.routes_only
    assert cached_context(key).group_limits == (None, "month", None, None, None)
    assert cached_context(key).group_routes_only is False


def test_new_group_with_limits(team, admin):
    url = reverse("console-key-groups", kwargs={"team": team.slug})
    response = client_for(admin).post(url, {"name": "scripts", "budget_limit": "100", "budget_period": "week",
                                            "rpm_limit": "60"})
    assert response.status_code == 302
    created = KeyGroup.objects.get(team=team, name="scripts")
    assert created.limits_tuple() == (100 * M, "week", 60, None, None)
    listing = text(client_for(admin).get(url))
    assert "$100.00" in listing and "per week" in listing


@pytest.mark.parametrize("typed,error", [
    ("1e3", "no exponent"), ("NaN", "no exponent"), ("Infinity", "no exponent"), ("1,000", "no exponent"),
    ("0.0000001", "at most 6 decimals"), ("-5", "cannot be negative"), ("12.5.1", "no exponent"),
    ("１２", "no exponent"),
])
def test_budget_must_be_a_plain_decimal(team, group, admin, typed, error):
    response = client_for(admin).post(group_url(team, group), group_form(group, budget_limit=typed))
    assert response.status_code == 400
    assert error in " ".join(response.context["form"].errors["budget_limit"])
    group.refresh_from_db()
    assert group.budget_limit is None


@pytest.mark.parametrize("typed,micro", [("12.50", 12_500_000), ("0.000001", 1), ("7", 7 * M), ("0", 0),
                                         (" 3.25 ", 3_250_000), (".5", 500_000)])
def test_budget_amounts_are_exact(team, group, admin, typed, micro):
    assert client_for(admin).post(group_url(team, group), group_form(group, budget_limit=typed)).status_code == 302
    group.refresh_from_db()
    assert group.budget_limit == micro


@pytest.mark.parametrize("field,value", [("rpm_limit", "0"), ("tpm_limit", "-1"), ("max_concurrency", "1.5"),
                                         ("rpm_limit", "abc"), ("budget_period", "year")])
def test_rates_must_be_positive_whole_numbers(team, group, admin, field, value):
    response = client_for(admin).post(group_url(team, group), group_form(group, **{field: value}))
    assert response.status_code == 400 and field in response.context["form"].errors


def test_key_form_sets_the_keys_own_limits(django_capture_on_commit_callbacks, team, group, admin):
    key, _ = factories.api_key(team=team, group=group, name="backend")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(key_url(team, key), {
            "name": "backend", "group": group.pk, "budget_limit": "5", "budget_period": "week", "rpm_limit": "10",
            "tpm_limit": "", "max_concurrency": "2"})
    assert response.status_code == 302, response.content
    key.refresh_from_db()
    assert key.limits_tuple() == (5 * M, "week", 10, None, 2)
    assert cached_context(key).key_limits == (5 * M, "week", 10, None, 2)


def test_create_key_with_a_budget(team, group, admin):
    response = client_for(admin).post(keys_url(team), {"name": "ci", "group": group.pk, "budget_limit": "2.5",
                                                       "budget_period": "day"})
    assert response.status_code == 302
    assert ApiKey.objects.get(name="ci").limits_tuple() == (2_500_000, "day", None, None, None)


def test_a_member_edits_their_key_but_not_its_limits(team, group):
    user = member(team, roles.MEMBER)
    key, _ = factories.api_key(team=team, group=group, owner=user, name="mine", budget_limit=M, rpm_limit=5)
    page = client_for(user).get(key_url(team, key))
    assert 'name="budget_limit"' not in text(page)
    response = client_for(user).post(key_url(team, key), {"name": "renamed", "group": group.pk,
                                                          "budget_limit": "", "rpm_limit": "1000"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed" and key.limits_tuple() == (M, "month", 5, None, None)


def test_rotation_keeps_the_limits(team, group):
    key, _ = factories.api_key(team=team, group=group, budget_limit=3 * M, budget_period="day", tpm_limit=900)
    new_key, _ = api_key_rotate(api_key=key)
    assert new_key.limits_tuple() == (3 * M, "day", None, 900, None)


def test_cached_contexts_from_before_routes_only_still_decode(team, group):
    key, _ = factories.api_key(team=team, group=group)
    old = orjson.loads(auth.encode(auth.context_for(key)))
    del old["group_routes_only"]
    ctx = auth._decode(orjson.dumps({**old, "a_field_from_a_newer_release": 1}))
    assert ctx.group_routes_only is False and ctx.key_id == key.pk


# --- key list: spend and remaining; search and status filter ---------------------------------------------------

def usage(key, cost, when):
    return UsageRecordFactory(team=key.team, api_key=key, key_mask=key.mask, cost=cost, created_at=when)


def test_key_list_shows_spend_and_remaining_for_the_keys_period(team, group, admin):
    now = timezone.now()
    daily, _ = factories.api_key(team=team, group=group, name="daily", budget_limit=10 * M, budget_period="day")
    open_ended, _ = factories.api_key(team=team, group=group, name="open")
    today = billing_limits.period_start("day", now)
    usage(daily, 1_250_000, today + datetime.timedelta(seconds=1))
    usage(daily, 2 * M, today - datetime.timedelta(seconds=1))      # yesterday: not in today's budget
    usage(open_ended, 750_000, now)
    response = client_for(admin).get(keys_url(team))
    rows = {k.name: k for k in response.context["keys"]}
    assert rows["daily"].period_spend == 1_250_000 and rows["daily"].budget_left == 8_750_000
    assert rows["open"].period_spend == 750_000 and rows["open"].budget_left is None
    body = text(response)
    assert "$1.25" in body and "$8.75" in body and "of $10.00" in body and "no limit" in body
    assert "today" in body and "this month" in body


def test_an_exhausted_budget_shows_nothing_left(team, group, admin):
    key, _ = factories.api_key(team=team, group=group, name="spent", budget_limit=M, budget_period="none")
    usage(key, 3 * M, timezone.now() - datetime.timedelta(days=400))  # no reset: all time counts
    row = client_for(admin).get(keys_url(team)).context["keys"][0]
    assert row.period_spend == 3 * M and row.budget_left == -2 * M
    assert 'class="badge warn">$0.00' in text(client_for(admin).get(keys_url(team)))


def test_key_list_search_and_status_filter(team, group, admin):
    alpha, _ = factories.api_key(team=team, group=group, name="alpha-backend")
    beta, _ = factories.api_key(team=team, group=group, name="beta-worker")
    beta.status = ApiKey.REVOKED
    beta.save(update_fields=["status"])
    client = client_for(admin)

    def names(**params):
        return sorted(k.name for k in client.get(keys_url(team), params).context["keys"])

    assert names() == ["alpha-backend", "beta-worker"]
    assert names(q="ALPHA") == ["alpha-backend"]
    assert names(q=beta.mask[-4:]) == ["beta-worker"]
    assert names(status="active") == ["alpha-backend"]
    assert names(status="revoked") == ["beta-worker"]
    assert names(status="revoked", q="alpha") == []
    assert names(status="bogus") == ["alpha-backend", "beta-worker"]
    assert "No keys match these filters." in text(client.get(keys_url(team), {"q": "nothing-like-this"}))


def test_members_see_only_their_own_keys_spend(team, group):
    user = member(team, roles.MEMBER)
    mine, _ = factories.api_key(team=team, group=group, owner=user, name="mine")
    theirs, _ = factories.api_key(team=team, group=group, name="theirs")
    usage(theirs, 5 * M, timezone.now())
    keys = client_for(user).get(keys_url(team)).context["keys"]
    assert [k.name for k in keys] == ["mine"] and keys[0].period_spend == 0


# --- key detail: limits and spend breakdown --------------------------------------------------------------------

def test_key_detail_shows_own_group_and_effective_limits(team, admin):
    from billing.models import TeamBillingPolicy

    group = factories.KeyGroupFactory(team=team, name="prod", budget_limit=50 * M, budget_period="month",
                                      rpm_limit=30, tpm_limit=10_000)
    key, _ = factories.api_key(team=team, group=group, budget_limit=20 * M, budget_period="month", rpm_limit=60,
                               max_concurrency=4)
    other, _ = factories.api_key(team=team, group=group)
    now = timezone.now()
    usage(key, 2 * M, now)
    usage(other, 45 * M, now)      # the group has 3 left, less than the key's 18
    response = client_for(admin).get(key_url(team, key))
    rows = {row.name: row for row in response.context["limits"]}
    assert rows["budget"].key == (20 * M, "month") and rows["budget"].group == (50 * M, "month")
    assert rows["budget"].source == "group" and rows["budget"].effective.left == 3 * M
    assert (rows["rpm"].key, rows["rpm"].group, rows["rpm"].effective, rows["rpm"].source) == (60, 30, 30, "group")
    assert (rows["tpm"].effective, rows["tpm"].source) == (10_000, "group")
    assert (rows["concurrency"].effective, rows["concurrency"].source) == (4, "key")
    body = text(response)
    assert "$3.00 left of $50.00" in body and "from the group" in body
    # A team monthly cap tighter than both binds.
    TeamBillingPolicy.objects.create(team=team, monthly_cap=48 * M)
    rows = {row.name: row for row in client_for(admin).get(key_url(team, key)).context["limits"]}
    assert rows["budget"].source == "team" and rows["budget"].effective.left == M


def test_key_detail_without_limits(team, group, admin):
    key, _ = factories.api_key(team=team, group=group)
    rows = client_for(admin).get(key_url(team, key)).context["limits"]
    assert all(row.source == "" and row.effective is None for row in rows)


def test_key_detail_spend_by_day_and_model(team, group, admin):
    key, _ = factories.api_key(team=team, group=group)
    now = timezone.now().replace(hour=12)
    UsageRecordFactory(team=team, api_key=key, cost=3 * M, served_model="openai/gpt-4o", created_at=now)
    UsageRecordFactory(team=team, api_key=key, cost=M, served_model="openai/gpt-4o-mini",
                       created_at=now - datetime.timedelta(days=2))
    UsageRecordFactory(team=team, api_key=key, cost=7 * M, created_at=now - datetime.timedelta(days=40))  # too old
    UsageRecordFactory(team=team, cost=9 * M, created_at=now)                                            # no key
    spend = client_for(admin).get(key_url(team, key)).context["spend"]
    assert spend.spend == 4 * M and spend.requests == 2 and len(spend.days) == 30
    by_day = {d["day"]: d["spend"] for d in spend.days if d["spend"]}
    assert by_day == {now.date(): 3 * M, (now - datetime.timedelta(days=2)).date(): M}
    assert [(r["model"], r["spend"]) for r in spend.by_model] == [("openai/gpt-4o", 3 * M),
                                                                  ("openai/gpt-4o-mini", M)]


def test_another_teams_key_and_group_are_404(team, group, admin):
    theirs_group = factories.KeyGroupFactory()
    theirs, _ = factories.api_key(group=theirs_group)
    client = client_for(admin)
    assert client.get(key_url(team, theirs)).status_code == 404
    assert client.post(group_url(team, theirs_group), group_form(theirs_group, rpm_limit="1")).status_code == 404
    theirs_group.refresh_from_db()
    assert theirs_group.rpm_limit is None


# --- management API --------------------------------------------------------------------------------------------

def api(user) -> APIClient:
    _, secret = personal_access_token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_api_group_detail_get_and_patch(django_capture_on_commit_callbacks, team, group, admin):
    key, _ = factories.api_key(team=team, group=group)
    client = api(admin)
    url = f"/api/teams/{team.slug}/key-groups/{group.pk}/"
    got = client.get(url).json()
    assert got["routes_only"] is False and got["budget_limit"] is None and got["budget_period"] == "month"
    with django_capture_on_commit_callbacks(execute=True):
        patched = client.patch(url, {"rpm_limit": 2, "budget_limit": 5 * M, "budget_period": "day",
                                     "routes_only": True, "allowed_models": ["openai/gpt-4o-mini"]}, format="json")
    assert patched.status_code == 200, patched.content
    body = patched.json()
    assert (body["rpm_limit"], body["budget_limit"], body["budget_period"], body["routes_only"]) == (
        2, 5 * M, "day", True)
    assert body["name"] == "production" and body["allowed_models"] == ["openai/gpt-4o-mini"]
    ctx = cached_context(key)
    assert ctx.group_limits == (5 * M, "day", 2, None, None) and ctx.group_routes_only
    assert ctx.group_models == ("openai/gpt-4o-mini",)
    # A PATCH changes only what it names; null clears a limit.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.patch(url, {"rpm_limit": None}, format="json").status_code == 200
    group.refresh_from_db()
    assert group.limits_tuple() == (5 * M, "day", None, None, None) and group.routes_only
    assert cached_context(key).group_limits == (5 * M, "day", None, None, None)


@pytest.mark.parametrize("body,param", [({"budget_limit": -1}, "budget_limit"), ({"rpm_limit": 0}, "rpm_limit"),
                                        ({"budget_limit": "1e3"}, "budget_limit"),
                                        ({"budget_limit": 1.5}, "budget_limit"),
                                        ({"budget_period": "year"}, "budget_period"),
                                        ({"max_concurrency": "many"}, "max_concurrency"),
                                        ({"name": ""}, "name")])
def test_api_refuses_bad_limits(team, group, admin, body, param):
    response = api(admin).patch(f"/api/teams/{team.slug}/key-groups/{group.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    group.refresh_from_db()
    assert group.limits_tuple() == (None, "month", None, None, None)


def test_api_group_list_and_create_with_limits(team, admin):
    client = api(admin)
    created = client.post(f"/api/teams/{team.slug}/key-groups/", {
        "name": "batch", "budget_limit": 25 * M, "budget_period": "week", "tpm_limit": 100_000,
        "routes_only": True}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["tpm_limit"] == 100_000 and created.json()["routes_only"] is True
    listed = client.get(f"/api/teams/{team.slug}/key-groups/").json()
    assert [(g["name"], g["budget_limit"], g["budget_period"]) for g in listed] == [("batch", 25 * M, "week")]
    duplicate = client.post(f"/api/teams/{team.slug}/key-groups/", {"name": "BATCH"}, format="json")
    assert duplicate.status_code == 400 and duplicate.json()["error"]["param"] == "name"


def test_api_group_rename_to_a_taken_name(team, group, admin):
    other = factories.KeyGroupFactory(team=team, name="test")
    response = api(admin).patch(f"/api/teams/{team.slug}/key-groups/{other.pk}/", {"name": "production"},
                                format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "name"


def test_api_key_patch(django_capture_on_commit_callbacks, team, group, admin):
    key, _ = factories.api_key(team=team, group=group, name="backend")
    staging = factories.KeyGroupFactory(team=team, name="staging")
    url = f"/api/teams/{team.slug}/keys/{key.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).patch(url, {"name": "backend-2", "group": "staging", "budget_limit": 1_500_000,
                                          "budget_period": "day", "max_concurrency": 1,
                                          "allowed_models": ["openai/gpt-4o"]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["group"], body["budget_limit"], body["budget_period"], body["max_concurrency"]) == (
        "backend-2", "staging", 1_500_000, "day", 1)
    ctx = cached_context(key)
    assert ctx.group_id == staging.pk and ctx.key_limits == (1_500_000, "day", None, None, 1)
    assert ctx.key_models == ("openai/gpt-4o",)
    assert api(admin).get(url).json()["budget_limit"] == 1_500_000
    assert api(admin).get(f"/api/teams/{team.slug}/keys/").json()[0]["max_concurrency"] == 1
    unknown = api(admin).patch(url, {"group": "nope"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "group"


def test_api_key_create_with_limits(team, group, admin):
    response = api(admin).post(f"/api/teams/{team.slug}/keys/", {"name": "ci", "group": "production",
                                                                 "rpm_limit": 100}, format="json")
    assert response.status_code == 201 and response.json()["rpm_limit"] == 100
    assert response.json()["secret"].startswith("sk-tg-")


def test_api_a_member_may_rename_their_key_but_not_lift_its_limits(team, group):
    user = member(team, roles.MEMBER)
    factories.MembershipFactory(user=user, role=roles.ADMIN)   # admin elsewhere: may hold a token
    key, _ = factories.api_key(team=team, group=group, owner=user, rpm_limit=5)
    url = f"/api/teams/{team.slug}/keys/{key.pk}/"
    assert api(user).patch(url, {"rpm_limit": None}, format="json").status_code == 403
    assert api(user).patch(url, {"name": "renamed"}, format="json").status_code == 200
    key.refresh_from_db()
    assert key.name == "renamed" and key.rpm_limit == 5
    assert api(user).post(f"/api/teams/{team.slug}/keys/", {"name": "x", "group": "production",
                                                             "rpm_limit": 1}, format="json").status_code == 403


def test_api_other_teams_group_and_key_are_404(team, admin):
    theirs_group = factories.KeyGroupFactory()
    theirs, _ = factories.api_key(group=theirs_group)
    client = api(admin)
    assert client.get(f"/api/teams/{team.slug}/key-groups/{theirs_group.pk}/").status_code == 404
    assert client.patch(f"/api/teams/{team.slug}/key-groups/{theirs_group.pk}/", {"rpm_limit": 1},
                        format="json").status_code == 404
    assert client.patch(f"/api/teams/{team.slug}/keys/{theirs.pk}/", {"rpm_limit": 1},
                        format="json").status_code == 404
    theirs_group.refresh_from_db()
    theirs.refresh_from_db()
    assert theirs_group.rpm_limit is None and theirs.rpm_limit is None
