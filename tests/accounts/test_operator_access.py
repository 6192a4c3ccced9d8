"""Operator pages (/console/operator/…), read from Django's URL resolver like the tenancy test: every page
declares its platform permissions; team roles get 403, support reads but may not write, operators may."""
import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from accounts import roles
from accounts.models import StaffRole, Team
from billing.models import ImportBatch
from routing.models import Channel, Model
from tests import factories
from tests.accounts.test_tenancy import _walk

OBJECT_FACTORIES = {
    Model: lambda: factories.CatalogModelFactory(),
    Channel: lambda: factories.channel(models=[], base_url="http://127.0.0.1:1/v1",
                                       api_key="sk-upstream-never-shown-0001"),
    Team: lambda: factories.TeamFactory(),
    StaffRole: lambda: factories.StaffRoleFactory(role=roles.SUPPORT),
    ImportBatch: lambda: factories.import_batch(),
}


def operator_urls():
    found = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if route.startswith("console/operator/"):
            callback = pattern.callback
            found.append((route, pattern.name, getattr(callback, "platform_permissions", None),
                          getattr(callback, "platform_object_model", None)))
    return found


OPERATOR_URLS = operator_urls()
IDS = [route for route, *_ in OPERATOR_URLS]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_there_are_operator_urls():
    assert len(OPERATOR_URLS) >= 6


@pytest.mark.parametrize("route,name,permissions,model", OPERATOR_URLS, ids=IDS)
def test_every_operator_url_declares_its_permissions(route, name, permissions, model):
    assert name and permissions, f"{route}: use accounts.views.platform_view"
    assert set(permissions.values()) <= {roles.PLATFORM_READ, roles.PLATFORM_MANAGE}
    if "<int:pk>" in route:
        assert model in OBJECT_FACTORIES, f"{route}: declare model= and add a factory here"


def _url(name, model):
    return reverse(name, kwargs={"pk": OBJECT_FACTORIES[model]().pk} if model else None)


CASES = [("team", r) for r, _ in roles.TEAM_ROLES] + [("platform", r) for r, _ in roles.PLATFORM_ROLES]


@pytest.mark.django_db
@pytest.mark.parametrize("kind,role", CASES, ids=[r for _, r in CASES])
@pytest.mark.parametrize("route,name,permissions,model", OPERATOR_URLS, ids=IDS)
def test_platform_roles_are_enforced(route, name, permissions, model, kind, role):
    if kind == "team":
        user = factories.MembershipFactory(role=role).user
        granted = frozenset()
    else:
        user = factories.StaffRoleFactory(role=role).user
        granted = roles.PLATFORM_PERMISSIONS[role]
    client = Client()
    client.force_login(user)
    for method in ("GET", "POST"):
        response = getattr(client, method.lower())(_url(name, model))
        if permissions[method] in granted:
            assert response.status_code not in (403, 404, 500), (method, route, role, response.status_code)
        else:
            assert response.status_code == 403, (method, route, role, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("route,name,permissions,model", OPERATOR_URLS, ids=IDS)
def test_anonymous_is_sent_to_sign_in(route, name, permissions, model):
    response = Client().get(_url(name, model))
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
