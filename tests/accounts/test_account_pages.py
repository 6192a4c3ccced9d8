"""Account pages: change password, the forced change of an invite's one-time password, personal access
tokens (create, shown once, revoke), and the operator's staff accounts (invite, deactivate, reactivate)."""
import datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import roles
from accounts.models import PersonalAccessToken, StaffRole, UserPreference
from accounts.services import staff_deactivate
from accounts.tokens import personal_access_token_create
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, member, staff, text  # noqa: F401
from tests.accounts.test_tenancy import _walk

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
NEW_PASSWORD = "a-much-better-passphrase-42"
ACCOUNT = "/console/account/"


def sign_in(username, password) -> tuple[Client, object]:
    client = Client()
    return client, client.post(reverse("login"), {"username": username, "password": password})


def bearer(secret) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def change(client, old, new, again=None, **extra):
    return client.post(ACCOUNT, {"old_password": old, "new_password1": new, "new_password2": again or new,
                                 **extra})


# --- change password -------------------------------------------------------------------------------------------

def test_wrong_old_password_is_a_form_error():
    user = factories.UserFactory()
    response = change(client_for(user), "not-my-password", NEW_PASSWORD)
    assert response.status_code == 400
    assert response.context["form"].errors["old_password"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("new,again,field", [
    ("short1", None, "new_password2"),                         # Django's minimum length validator (10)
    (NEW_PASSWORD, NEW_PASSWORD + "x", "new_password2"),      # the two entries differ
])
def test_weak_or_mismatched_new_password_is_refused(new, again, field):
    user = factories.UserFactory()
    response = change(client_for(user), PASSWORD, new, again)
    assert response.status_code == 400 and response.context["form"].errors[field]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_change_keeps_this_session_and_ends_the_others():
    user = factories.UserFactory()
    here, _ = sign_in(user.username, PASSWORD)
    elsewhere, _ = sign_in(user.username, PASSWORD)
    response = change(here, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302 and response["Location"] == ACCOUNT
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    page = here.get(ACCOUNT)
    assert page.status_code == 200 and "Your password was changed." in text(page)
    assert elsewhere.get(ACCOUNT)["Location"].startswith("/console/login/")
    assert sign_in(user.username, NEW_PASSWORD)[1].status_code == 302


def test_account_page_needs_sign_in_and_offers_the_language():
    assert Client().get(ACCOUNT)["Location"].startswith("/console/login/")
    client = client_for(factories.UserFactory())
    body = text(client.get(ACCOUNT))
    assert 'data-testid="account-language"' in body and 'value="zh-hans"' in body
    assert 'data-testid="account-link"' in body and f'href="{ACCOUNT}"' in body


# --- the one-time password of an invite --------------------------------------------------------------------------

def invite(team, identifier="newbie") -> str:
    owner = client_for(member(team, roles.OWNER))
    response = owner.post(reverse("console-members", kwargs={"team": team.slug}),
                          {"identifier": identifier, "role": roles.ADMIN})
    assert response.status_code == 302
    return owner.get(reverse("console-members", kwargs={"team": team.slug})).context["reveal"]["password"]


def _console_urls():
    """Every console page from the URL resolver (with placeholder arguments), but the exempt ones."""
    exempt = {"login", "logout", "console-language", "console-account"}
    for route, pattern in _walk(get_resolver().url_patterns):
        if route.startswith("console/") and isinstance(pattern, URLPattern) and pattern.name not in exempt:
            kwargs = {name: 1 if type(conv).__name__ == "IntConverter" else "x"
                      for name, conv in pattern.pattern.converters.items()}
            yield pattern.name, reverse(pattern.name, kwargs=kwargs)


def test_invited_user_must_change_the_one_time_password_first():
    team = factories.TeamFactory()
    password = invite(team)
    newbie = get_user_model().objects.get(username="newbie")
    assert UserPreference.objects.get(user=newbie).password_change_required
    client, response = sign_in("newbie", password)
    assert response.status_code == 302
    # Every console page (read from the URL resolver) sends them to the change page, and back afterwards.
    urls = dict(_console_urls())
    assert {"console-home", "console-dashboard", "console-account-tokens", "operator-staff"} <= set(urls)
    for name, url in urls.items():
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(ACCOUNT + "?next="), (name, url)
    dashboard = reverse("console-dashboard", kwargs={"team": team.slug})
    response = client.get(dashboard)
    assert response["Location"] == f"{ACCOUNT}?next=%2Fconsole%2Ft%2F{team.slug}%2F"
    page = client.get(response["Location"])
    assert page.status_code == 200 and 'data-testid="password-change-required"' in text(page)
    assert page.context["nav"] == [] and not page.context["switch_teams"]
    # The management API, from this session, refuses too; creating a token is refused.
    api = APIClient()
    api.force_login(newbie)
    assert api.get(f"/api/teams/{team.slug}/keys/").status_code == 403
    assert api.post("/api/tokens/", {"name": "ci"}, format="json").status_code == 403
    # The language switch works meanwhile.
    assert client.post(reverse("console-language"), {"language": "zh-hans", "next": ACCOUNT}).status_code == 302
    client.post(reverse("console-language"), {"language": "en", "next": ACCOUNT})
    # The change, and back to where they were going; the flag is gone and the pages open.
    response = change(client, password, NEW_PASSWORD, next=dashboard)
    assert response.status_code == 302 and response["Location"] == dashboard
    assert not UserPreference.objects.get(user=newbie).password_change_required
    assert client.get(dashboard).status_code == 200
    assert client.get(f"/api/teams/{team.slug}/keys/").status_code == 200
    assert api.get(f"/api/teams/{team.slug}/keys/").status_code == 401  # the other session ended
    # Sign out (exempt) and in with the new password; the one-time one no longer works.
    assert client.post(reverse("logout"))["Location"] == reverse("login")
    assert sign_in("newbie", password)[1].status_code == 200
    assert sign_in("newbie", NEW_PASSWORD)[1].status_code == 302


def test_a_foreign_next_is_not_followed():
    team = factories.TeamFactory()
    password = invite(team)
    client, _ = sign_in("newbie", password)
    response = change(client, password, NEW_PASSWORD, next="https://evil.example/")
    assert response.status_code == 302 and response["Location"] == reverse("console-home")


def test_token_auth_is_not_redirected():
    """A personal access token is not a console session: the API answers it even while the flag is set."""
    user = member(factories.TeamFactory(), roles.OWNER)
    _, secret = personal_access_token_create(user=user, name="ci")
    UserPreference.objects.create(user=user, password_change_required=True)
    assert bearer(secret).get("/api/tokens/").status_code == 200


def test_an_existing_user_added_to_a_team_is_not_forced():
    dave = factories.UserFactory(username="dave")
    team = factories.TeamFactory()
    owner = client_for(member(team, roles.OWNER))
    owner.post(reverse("console-members", kwargs={"team": team.slug}), {"identifier": "dave", "role": "member"})
    client, _ = sign_in(dave.username, PASSWORD)
    assert client.get(reverse("console-dashboard", kwargs={"team": team.slug})).status_code == 200


# --- personal access tokens ---------------------------------------------------------------------------------------

TOKENS = "/console/account/tokens/"


def test_token_is_shown_once_listed_masked_and_revoked():
    user = member(factories.TeamFactory(), roles.ADMIN)
    client = client_for(user)
    expires = (timezone.now() + datetime.timedelta(days=30)).replace(second=0, microsecond=0)
    response = client.post(TOKENS, {"name": "deploys", "expires_at": expires.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 302 and response["Location"] == TOKENS
    page = client.get(TOKENS)
    secret = page.context["reveal"]["secret"]
    assert secret.startswith("tgp_") and secret in text(page) and "no-store" in page["Cache-Control"]
    token = PersonalAccessToken.objects.get(user=user)
    assert token.name == "deploys" and token.expires_at == expires
    again = client.get(TOKENS)
    assert_no_secret(again, secret)
    assert token.mask in text(again) and "never" in text(again)
    # The API takes it (the same accounts.tokens functions), and the page shows when it was last used.
    assert bearer(secret).get("/api/tokens/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    # Revoke: the API refuses it from then on.
    response = client.post(reverse("console-account-token-revoke", kwargs={"pk": token.pk}))
    assert response.status_code == 302
    refused = bearer(secret).get("/api/tokens/")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert "revoked" in text(client.get(TOKENS))


def test_token_form_errors_and_other_users_tokens():
    user = member(factories.TeamFactory(), roles.OWNER)
    client = client_for(user)
    past = timezone.now() - datetime.timedelta(minutes=5)
    response = client.post(TOKENS, {"name": "old", "expires_at": past.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 400 and response.context["form"].errors["expires_at"]
    response = client.post(TOKENS, {"name": "bad", "expires_at": "next tuesday"})
    assert response.status_code == 400 and response.context["form"].errors["expires_at"]
    assert client.post(TOKENS, {}).status_code == 400
    assert not PersonalAccessToken.objects.filter(user=user).exists()
    # No expiry is allowed.
    assert client.post(TOKENS, {"name": "forever"}).status_code == 302
    assert PersonalAccessToken.objects.get(user=user).expires_at is None
    # An expired token is listed as such, and the API refuses it.
    _, old_secret = personal_access_token_create(user=user, name="lapsed",
                                                 expires_at=timezone.now() - datetime.timedelta(hours=1))
    row = next(r for r in text(client.get(TOKENS)).split("<tr") if "lapsed" in r)
    assert "expired" in row and "Revoke" in row
    assert "has expired" in bearer(old_secret).get("/api/tokens/").json()["error"]["message"]
    # Someone else's token: 404, and it stays live.
    theirs, _ = personal_access_token_create(user=member(factories.TeamFactory(), roles.OWNER), name="theirs")
    assert client.post(reverse("console-account-token-revoke", kwargs={"pk": theirs.pk})).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert client.get(reverse("console-account-token-revoke", kwargs={"pk": theirs.pk})).status_code == 405


def test_members_cannot_create_tokens():
    client = client_for(member(factories.TeamFactory(), roles.MEMBER))
    page = client.get(TOKENS)
    assert page.status_code == 200 and not page.context["can_create"]
    assert 'data-testid="create-token"' not in text(page)
    assert client.post(TOKENS, {"name": "nope"}).status_code == 403
    assert not PersonalAccessToken.objects.exists()


# --- staff accounts -----------------------------------------------------------------------------------------------

STAFF = "/console/operator/staff/"


def staff_row(username) -> StaffRole:
    return StaffRole.objects.select_related("user").get(user__username=username)


def test_operator_invites_a_support_member_who_must_change_the_password():
    operator = client_for(staff(roles.OPERATOR))
    response = operator.post(STAFF, {"username": "sam", "email": "sam@example.com", "role": roles.SUPPORT})
    assert response.status_code == 302
    page = operator.get(STAFF)
    password = page.context["reveal"]["password"]
    assert password in text(page) and "no-store" in page["Cache-Control"]
    assert_no_secret(operator.get(STAFF), password)
    sam = staff_row("sam")
    assert sam.role == roles.SUPPORT and sam.user.email == "sam@example.com" and sam.user.check_password(password)
    client, _ = sign_in("sam", password)
    assert client.get(reverse("support-queue"))["Location"].startswith(ACCOUNT)
    change(client, password, NEW_PASSWORD)
    assert client.get(reverse("support-queue")).status_code == 200
    # A taken username or email is a form error.
    again = operator.post(STAFF, {"username": "SAM", "email": "other@example.com", "role": roles.SUPPORT})
    assert again.status_code == 400 and "The username SAM is taken." in text(again)
    again = operator.post(STAFF, {"username": "sam2", "email": "SAM@example.com", "role": roles.OPERATOR})
    assert again.status_code == 400 and "Another account already uses" in text(again)
    bad = operator.post(STAFF, {"username": "x y", "email": "nope", "role": "owner"})
    assert bad.status_code == 400 and set(bad.context["form"].errors) == {"username", "email", "role"}


def test_deactivated_staff_cannot_sign_in_and_their_token_is_refused():
    operator = client_for(staff(roles.OPERATOR))
    other_operator = staff(roles.OPERATOR)
    _, secret = personal_access_token_create(user=other_operator, name="ops")
    session, response = sign_in(other_operator.username, PASSWORD)
    assert response.status_code == 302 and bearer(secret).get("/api/tokens/").status_code == 200
    row = StaffRole.objects.get(user=other_operator)
    response = operator.post(reverse("operator-staff-deactivate", kwargs={"pk": row.pk}), follow=True)
    assert "was deactivated" in text(response) and "deactivated" in text(response)
    other_operator.refresh_from_db()
    assert not other_operator.is_active
    # Signed out everywhere, cannot sign in, the token is refused.
    assert session.get(STAFF)["Location"].startswith("/console/login/")
    assert sign_in(other_operator.username, PASSWORD)[1].status_code == 200
    assert bearer(secret).get("/api/tokens/").status_code == 401
    # Reactivated: signs in again; the revoked token stays revoked.
    operator.post(reverse("operator-staff-reactivate", kwargs={"pk": row.pk}))
    assert sign_in(other_operator.username, PASSWORD)[1].status_code == 302
    assert bearer(secret).get("/api/tokens/").status_code == 401


def test_an_operator_cannot_deactivate_themselves_nor_the_last_operator():
    me = staff(roles.OPERATOR)
    client = client_for(me)
    mine = StaffRole.objects.get(user=me)
    response = client.post(reverse("operator-staff-deactivate", kwargs={"pk": mine.pk}), follow=True)
    assert "You cannot deactivate your own account." in text(response)
    me.refresh_from_db()
    assert me.is_active
    other = staff(roles.OPERATOR)
    staff_deactivate(staff=StaffRole.objects.get(user=other), by=me)
    with pytest.raises(ValidationError, match="at least one active operator"):
        staff_deactivate(staff=mine, by=other)
    assert client.post(reverse("operator-staff-deactivate", kwargs={"pk": 10**9})).status_code == 404


@pytest.mark.parametrize("kind,role", [("platform", roles.SUPPORT), ("team", roles.OWNER)])
def test_only_operators_manage_staff(kind, role):
    user = staff(role) if kind == "platform" else member(factories.TeamFactory(), role)
    target = StaffRole.objects.get(user=staff(roles.SUPPORT))
    client = client_for(user)
    assert client.get(STAFF).status_code == 403
    assert client.post(STAFF, {"username": "eve", "email": "eve@example.com", "role": "operator"}).status_code == 403
    assert client.post(reverse("operator-staff-deactivate", kwargs={"pk": target.pk})).status_code == 403
    target.user.refresh_from_db()
    assert target.user.is_active and not get_user_model().objects.filter(username="eve").exists()


def test_staff_page_is_in_the_operator_nav_only_for_operators():
    operator = client_for(staff(roles.OPERATOR))
    nav = {link["url"] for link in operator.get(reverse("operator-catalog")).context["nav"]}
    assert STAFF in nav
    support = client_for(staff(roles.SUPPORT))
    nav = {link["url"] for link in support.get(reverse("operator-catalog")).context["nav"]}
    assert STAFF not in nav


def test_staff_api_is_the_pages_twin():
    me = staff(roles.OPERATOR)
    api = APIClient()
    api.force_login(me)
    made = api.post("/api/operator/staff/", {"username": "sue", "email": "sue@example.com", "role": "support"},
                    format="json")
    assert made.status_code == 201
    body = made.json()
    assert body["username"] == "sue" and body["role"] == "support" and body["is_active"] is True
    sue = staff_row("sue")
    assert sue.user.check_password(body["password"])
    assert UserPreference.objects.get(user=sue.user).password_change_required
    listed = api.get("/api/operator/staff/").json()
    assert {row["username"] for row in listed} == {me.username, "sue"} and "password" not in listed[0]
    taken = api.post("/api/operator/staff/", {"username": "Sue", "email": "x@example.com", "role": "support"},
                     format="json")
    assert taken.status_code == 400 and taken.json()["error"]["message"] == "The username Sue is taken."
    bad = api.post("/api/operator/staff/", {"username": "sue 2", "email": "x", "role": "owner"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] in ("username", "email", "role")
    # Deactivate and reactivate; not oneself.
    off = api.post(f"/api/operator/staff/{sue.pk}/deactivate/")
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert sign_in("sue", body["password"])[1].status_code == 200  # refused: the form again
    assert api.post(f"/api/operator/staff/{sue.pk}/reactivate/").json()["is_active"] is True
    mine = StaffRole.objects.get(user=me)
    refused = api.post(f"/api/operator/staff/{mine.pk}/deactivate/")
    assert refused.status_code == 400 and "your own account" in refused.json()["error"]["message"]
    assert api.post("/api/operator/staff/999999/deactivate/").status_code == 404


def test_staff_api_refuses_everyone_but_operators():
    assert APIClient().get("/api/operator/staff/").status_code in (401, 403)
    for user in (staff(roles.SUPPORT), member(factories.TeamFactory(), roles.OWNER)):
        api = APIClient()
        api.force_login(user)
        assert api.get("/api/operator/staff/").status_code == 403
        assert api.post("/api/operator/staff/", {"username": "eve", "email": "eve@example.com",
                                                 "role": "operator"}, format="json").status_code == 403
    assert not get_user_model().objects.filter(username="eve").exists()
    # A personal access token of an operator works; an operator still on a one-time password's session does not.
    operator = staff(roles.OPERATOR)
    _, secret = personal_access_token_create(user=operator, name="ops")
    assert bearer(secret).get("/api/operator/staff/").status_code == 200
    UserPreference.objects.create(user=operator, password_change_required=True)
    api = APIClient()
    api.force_login(operator)
    assert api.get("/api/operator/staff/").status_code == 403
