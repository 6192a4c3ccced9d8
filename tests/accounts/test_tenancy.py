"""Tenancy and roles for every team-scoped URL, read from Django's URL resolver (not a hand-kept list).

A new console page or API endpoint under a team is covered automatically; one that declares no permissions
(or whose object type has no factory here) fails `test_every_team_url_declares_its_permissions`.
"""
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import roles
from accounts.models import Membership
from billing.models import UsageRecord
from keys.models import ApiKey, KeyGroup
from routing.models import Channel, RoutingRule, TeamModelAlias
from support.models import Ticket
from tests import factories
from tests.support import factories as support_factories

# How to make a team-owned object that a `pk` in a URL refers to (owner: the user who will ask for it).
OBJECT_FACTORIES = {
    ApiKey: lambda team, owner: factories.api_key(team=team, owner=owner)[0],
    KeyGroup: lambda team, owner: factories.KeyGroupFactory(team=team),
    Membership: lambda team, owner: factories.MembershipFactory(team=team, role=roles.MEMBER),
    RoutingRule: lambda team, owner: factories.routing_rule(team=team),
    TeamModelAlias: lambda team, owner: factories.model_alias(team=team),
    Channel: lambda team, owner: factories.channel(team=team, models=[], base_url="http://127.0.0.1:1/v1"),
    Ticket: lambda team, owner: support_factories.ticket(team=team, opened_by=owner),
    UsageRecord: lambda team, owner: support_factories.usage_record(team=team, owner=owner),
}


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def _spec(callback):
    """(permissions by method, object model) declared by a console view or a TeamAPIView."""
    cls = getattr(callback, "cls", None)
    if cls is not None:
        return getattr(cls, "permissions_by_method", None), getattr(cls, "team_object_model", None)
    return getattr(callback, "team_permissions", None), getattr(callback, "team_object_model", None)


def team_urls():
    found = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if "<slug:team>" in route:
            permissions, model = _spec(pattern.callback)
            found.append((route, pattern.name, permissions, model))
    return found


TEAM_URLS = team_urls()
IDS = [route for route, *_ in TEAM_URLS]


def test_there_are_team_urls_to_check():
    assert len(TEAM_URLS) >= 4


@pytest.mark.parametrize("route,name,permissions,model", TEAM_URLS, ids=IDS)
def test_every_team_url_declares_its_permissions(route, name, permissions, model):
    assert name, f"{route} needs a URL name"
    assert permissions, f"{route} declares no permissions (use team_view(...) or TeamAPIView)"
    if "<int:pk>" in route:
        assert model in OBJECT_FACTORIES, f"{route}: declare team_object_model and add a factory here"


def _url(name, team, pk=None):
    return reverse(name, kwargs={"team": team.slug, **({"pk": pk} if pk is not None else {})})


def _call(client, method, url):
    return getattr(client, method.lower())(url, content_type="application/json") if method != "GET" else \
        client.get(url)


def _methods(permissions):
    return [m for m in permissions if m not in ("HEAD", "OPTIONS")]


@pytest.mark.django_db
@pytest.mark.parametrize("route,name,permissions,model", TEAM_URLS, ids=IDS)
def test_another_teams_objects_are_404(route, name, permissions, model):
    mine = factories.MembershipFactory(role=roles.OWNER)
    theirs = factories.MembershipFactory(role=roles.OWNER)
    client = Client()
    client.force_login(mine.user)
    their_pk = OBJECT_FACTORIES[model](theirs.team, theirs.user).pk if model else None
    for method in _methods(permissions):
        # Their team in the URL …
        assert _call(client, method, _url(name, theirs.team, their_pk)).status_code == 404, (method, route)
        # … and my team in the URL with their object.
        if model:
            assert _call(client, method, _url(name, mine.team, their_pk)).status_code == 404, (method, route)
    if model:
        assert model.objects.filter(pk=their_pk).exists()


ROLE_CASES = [("team", r) for r, _ in roles.TEAM_ROLES] + [("platform", r) for r, _ in roles.PLATFORM_ROLES]


@pytest.mark.django_db
@pytest.mark.parametrize("kind,role", ROLE_CASES, ids=[r for _, r in ROLE_CASES])
@pytest.mark.parametrize("route,name,permissions,model", TEAM_URLS, ids=IDS)
def test_role_table_is_enforced(route, name, permissions, model, kind, role):
    team = factories.TeamFactory()
    if kind == "team":
        user = factories.MembershipFactory(team=team, role=role).user
        granted = roles.team_permissions(role, None)
    else:
        user = factories.StaffRoleFactory(role=role).user
        granted = roles.team_permissions(None, role)
    client = Client()
    client.force_login(user)
    for method in _methods(permissions):
        pk = OBJECT_FACTORIES[model](team, user).pk if model else None
        wanted = permissions[method]
        wanted = (wanted,) if isinstance(wanted, str) else wanted
        status = _call(client, method, _url(name, team, pk)).status_code
        if any(p in granted for p in wanted):
            assert status not in (403, 404), (method, route, role, status)
        else:
            assert status == 403, (method, route, role, status)


@pytest.mark.django_db
@pytest.mark.parametrize("route,name,permissions,model", TEAM_URLS, ids=IDS)
def test_anonymous_gets_nothing(route, name, permissions, model):
    team = factories.TeamFactory()
    pk = OBJECT_FACTORIES[model](team, factories.MembershipFactory(team=team).user).pk if model else None
    for method in _methods(permissions):
        response = _call(Client(), method, _url(name, team, pk))
        assert response.status_code in (302, 401, 403), (method, route, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/console/login/")
