"""A value the database cannot hold is the caller's input: a 400 in the API's error shape, never a 500 (issue 11;
schemathesis found `offset=10**20` on the usage list)."""
import pytest
from django.db import DataError

from accounts import roles
from accounts.tokens import personal_access_token_create
from gateway_site.api import exception_handler
from tests import factories


@pytest.fixture
def owner(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    membership = factories.MembershipFactory(role=roles.OWNER, team__slug="acme")
    _, secret = personal_access_token_create(user=membership.user, name="probe")
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.mark.parametrize("query", ["offset=100000000000000000000", "offset=1000000001"])
def test_an_offset_past_what_the_database_takes_is_a_400(client, owner, query):
    response = client.get(f"/api/teams/acme/usage/?{query}", **owner)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("offset", "invalid_value") and "less than or equal" in error["message"]


def test_any_value_the_database_refuses_is_a_400_in_the_api_shape():
    """The net under every field's own bounds: a DataError (out of range, NUL) a view did not foresee."""
    response = exception_handler(DataError("bigint out of range"), {})
    assert response.status_code == 400
    assert response.data == {"error": {"message": "A value is out of range or cannot be stored.",
                                       "type": "invalid_request_error", "param": None, "code": "invalid_value"}}
