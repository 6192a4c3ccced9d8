"""Every /console/support/ URL, read from the URL resolver: team roles get 403, support and operator get in.

Like tests/accounts/test_tenancy.py: a new staff page is covered as soon as it is routed; it must declare its
permissions with accounts.views.platform_view (and its object model when it takes a `pk`).
"""
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import roles
from support.models import Ticket
from tests import factories
from tests.support import factories as sf

PREFIX = "console/support/"


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


STAFF_URLS = [(route, p.name, getattr(p.callback, "platform_permissions", None),
               getattr(p.callback, "platform_object_model", None))
              for route, p in _walk(get_resolver().url_patterns) if route.startswith(PREFIX)]
IDS = [route for route, *_ in STAFF_URLS]
ROLE_CASES = [("team", r) for r, _ in roles.TEAM_ROLES] + [("platform", r) for r, _ in roles.PLATFORM_ROLES]


def _url(name, pk):
    return reverse(name, kwargs={"pk": pk} if pk is not None else None)


def test_the_staff_urls_are_found():
    assert len(STAFF_URLS) >= 6


@pytest.mark.parametrize("route,name,permissions,model", STAFF_URLS, ids=IDS)
def test_every_staff_url_declares_its_permissions(route, name, permissions, model):
    assert name and permissions, f"{route}: use accounts.views.platform_view"
    if "<int:pk>" in route:
        assert model is Ticket


@pytest.mark.django_db
@pytest.mark.parametrize("kind,role", ROLE_CASES, ids=[r for _, r in ROLE_CASES])
@pytest.mark.parametrize("route,name,permissions,model", STAFF_URLS, ids=IDS)
def test_team_roles_get_403_and_staff_get_in(route, name, permissions, model, kind, role):
    if kind == "team":
        membership = factories.MembershipFactory(role=role)
        user, team = membership.user, membership.team
    else:
        user, team = factories.StaffRoleFactory(role=role).user, factories.TeamFactory()
    client = Client()
    client.force_login(user)
    # A ticket of the caller's own team (team roles) or of any team (staff): the answer is 403 all the same.
    pk = sf.ticket(team=team).pk if model else None
    for method in ("GET", "POST"):
        status = getattr(client, method.lower())(_url(name, pk)).status_code
        if kind == "team":
            assert status == 403, (method, route, role, status)
        else:
            granted = permissions[method] in roles.PLATFORM_PERMISSIONS[role]
            assert (status not in (403, 404)) if granted else status == 403, (method, route, role, status)


@pytest.mark.django_db
@pytest.mark.parametrize("route,name,permissions,model", STAFF_URLS, ids=IDS)
def test_anonymous_is_sent_to_sign_in(route, name, permissions, model):
    pk = sf.ticket(team=factories.TeamFactory()).pk if model else None
    for method in ("GET", "POST"):
        response = getattr(Client(), method.lower())(_url(name, pk))
        assert response.status_code == 302 and response["Location"].startswith("/console/login/")
