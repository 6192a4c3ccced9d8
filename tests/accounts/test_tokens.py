"""Personal access tokens: shown once, stored as sha256 + mask, one user's, revocable; the API's Bearer auth."""
import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import roles
from accounts.models import PersonalAccessToken
from accounts.tokens import personal_access_token_create
from core.redaction import redact
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin():
    return factories.MembershipFactory(role=roles.ADMIN)


def session(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def bearer(secret) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def create(user, name="ci"):
    client = APIClient()
    client.force_login(user)
    return client.post("/api/tokens/", {"name": name}, format="json")


def test_created_token_is_shown_once_and_stored_hashed(admin):
    response = create(admin.user)
    assert response.status_code == 201
    secret = response.json()["token"]
    assert secret.startswith("tgp_") and len(secret) > 40
    stored = PersonalAccessToken.objects.get(user=admin.user)
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert stored.mask == f"tgp_…{secret[-4:]}"
    assert secret not in str(list(PersonalAccessToken.objects.values()))
    listed = session(admin.user).get("/api/tokens/").json()
    assert [t["mask"] for t in listed] == [stored.mask] and "token" not in listed[0]


def test_token_acts_as_its_user_with_their_roles(admin):
    _, secret = personal_access_token_create(user=admin.user, name="ci")
    client = bearer(secret)
    team = admin.team.slug
    # No CSRF token needed: the Bearer token is the credential.
    assert client.post(f"/api/teams/{team}/key-groups/", {"name": "ci"}, format="json").status_code == 201
    assert client.get(f"/api/teams/{team}/tickets/").status_code == 200
    # Another team: invisible. A team where the user is only a member: the role decides.
    assert client.get(f"/api/teams/{factories.TeamFactory().slug}/tickets/").status_code == 404
    other = factories.MembershipFactory(user=admin.user, role=roles.MEMBER).team
    response = client.post(f"/api/teams/{other.slug}/key-groups/", {"name": "ci"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert PersonalAccessToken.objects.get(user=admin.user).last_used_at is not None


def test_only_owners_admins_and_operators_create_tokens():
    member = factories.MembershipFactory(role=roles.MEMBER).user
    response = create(member)
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert create(factories.MembershipFactory(role=roles.OWNER).user).status_code == 201
    assert create(factories.StaffRoleFactory(role=roles.OPERATOR).user).status_code == 201
    assert create(factories.StaffRoleFactory(role=roles.SUPPORT).user).status_code == 403


def test_a_token_cannot_mint_more_tokens(admin):
    _, secret = personal_access_token_create(user=admin.user, name="ci")
    assert bearer(secret).post("/api/tokens/", {"name": "more"}, format="json").status_code == 403
    assert bearer(secret).get("/api/tokens/").status_code == 200


def test_revoked_token_is_refused(admin):
    token, secret = personal_access_token_create(user=admin.user, name="ci")
    client = bearer(secret)
    assert client.delete(f"/api/tokens/{token.pk}/").status_code == 204
    response = client.get(f"/api/teams/{admin.team.slug}/tickets/")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error" and "revoked" in response.json()["error"][
        "message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_users_revoke_only_their_own_tokens(admin):
    theirs, _ = personal_access_token_create(user=factories.MembershipFactory(role=roles.OWNER).user, name="x")
    client = APIClient()
    client.force_login(admin.user)
    assert client.delete(f"/api/tokens/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


@pytest.mark.parametrize("header,message", [
    ("Bearer tgp_not-a-real-token-at-all", "Unknown personal access token"),
    ("Bearer sk-tg-Qm9x2Lr8Tn4Vb6Yc1Zd3Fe5Gh7Jk0Pw", "not a relay API key"),
])
def test_bad_tokens_get_401_that_says_why(header, message):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/tokens/")
    assert response.status_code == 401 and message in response.json()["error"]["message"]


def test_expired_token_is_refused(admin):
    _, secret = personal_access_token_create(user=admin.user, name="ci",
                                             expires_at=timezone.now() - timedelta(minutes=1))
    response = bearer(secret).get("/api/tokens/")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_anonymous_gets_401():
    assert APIClient().get("/api/tokens/").status_code == 401


def test_a_pasted_token_is_redacted_wherever_it_lands(admin):
    _, secret = personal_access_token_create(user=admin.user, name="ci")
    out = redact(f"my script uses {secret} and fails")
    assert secret not in out and f"[REDACTED…{secret[-4:]}]" in out
