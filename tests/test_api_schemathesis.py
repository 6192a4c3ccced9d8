"""schemathesis over the management API's own OpenAPI schema (issue 11): every operation, fed bodies,
queries and path parameters generated from the schema, answers below 500, as a team owner with a personal
access token would see it (in process, through Django's WSGI application)."""
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from accounts import roles
from accounts.tokens import personal_access_token_create
from tests import factories

APP = get_wsgi_application()
# Generated cases only (the coverage phase's boundary cases cost minutes on this suite's clock).
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}})


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Django's WSGI handler closes the DB connection after each request (as the test client prevents): keep it,
    so the test's transaction and its data stay."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def owner_token(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    membership = factories.MembershipFactory(role=roles.OWNER, team__slug="acme")
    _, secret = personal_access_token_create(user=membership.user, name="schemathesis")
    return secret


@pytest.fixture
def api_schema(owner_token):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP, config=CONFIG,
                                            headers={"Authorization": f"Bearer {owner_token}"})
    # Path parameters: the owner's own team (another team's would be a 404, which is fine too).
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case, owner_token):
    if "team" in (case.path_parameters or {}):
        case.path_parameters["team"] = "acme"
    response = case.call(headers={"Authorization": f"Bearer {owner_token}"})
    case.validate_response(response, checks=[not_a_server_error])
