"""Debug keys (for OpenRouter's `debug: {echo_upstream_body}`): only a team owner or admin marks a key as one,
in the console's key form or the keys API; the flag reaches every gateway process in the key's context and
survives a rotation."""
import pytest
from django.urls import reverse

from accounts import roles
from keys.models import ApiKey
from keys.services import api_key_rotate
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401 (fixture)
from tests.keys.test_console_limits import api, cached_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return factories.TeamFactory()


@pytest.fixture
def group(team):
    return factories.KeyGroupFactory(team=team, name="production")


def key_url(team, key):
    return reverse("console-key-detail", kwargs={"team": team.slug, "pk": key.pk})


def test_an_admin_marks_a_key_as_a_debug_key_in_the_console(django_capture_on_commit_callbacks, team, group):
    admin = member(team, roles.ADMIN)
    key, _ = factories.api_key(team=team, group=group, name="backend")
    assert 'name="is_debug"' in text(client_for(admin).get(key_url(team, key)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(key_url(team, key), {"name": "backend", "group": group.pk,
                                                               "is_debug": "on"})
    assert response.status_code == 302, response.content
    key.refresh_from_db()
    assert key.is_debug and cached_context(key).is_debug
    with django_capture_on_commit_callbacks(execute=True):   # unchecked: off again
        client_for(admin).post(key_url(team, key), {"name": "backend", "group": group.pk})
    key.refresh_from_db()
    assert not key.is_debug and not cached_context(key).is_debug


def test_a_member_cannot_make_their_key_a_debug_key(team, group):
    user = member(team, roles.MEMBER)
    key, _ = factories.api_key(team=team, group=group, owner=user, name="mine")
    assert 'name="is_debug"' not in text(client_for(user).get(key_url(team, key)))
    response = client_for(user).post(key_url(team, key), {"name": "mine", "group": group.pk, "is_debug": "on"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert not key.is_debug


def test_the_keys_api_sets_is_debug_for_admins_only(django_capture_on_commit_callbacks, team, group):
    admin = member(team, roles.ADMIN)
    user = member(team, roles.MEMBER)
    factories.MembershipFactory(user=user, role=roles.ADMIN)   # admin elsewhere: may hold a token
    mine, _ = factories.api_key(team=team, group=group, owner=user, name="mine")
    url = f"/api/teams/{team.slug}/keys/{mine.pk}/"
    assert api(admin).get(url).json()["is_debug"] is False
    assert api(user).patch(url, {"is_debug": True}, format="json").status_code == 403
    created = api(user).post(f"/api/teams/{team.slug}/keys/", {"name": "x", "group": "production",
                                                                "is_debug": True}, format="json")
    assert created.status_code == 403 and not ApiKey.objects.filter(name="x").exists()
    with django_capture_on_commit_callbacks(execute=True):
        patched = api(admin).patch(url, {"is_debug": True}, format="json")
    assert patched.status_code == 200 and patched.json()["is_debug"] is True
    assert cached_context(mine).is_debug
    made = api(admin).post(f"/api/teams/{team.slug}/keys/", {"name": "dbg", "group": "production",
                                                              "is_debug": True}, format="json")
    assert made.status_code == 201 and made.json()["is_debug"] is True
    assert api(admin).patch(url, {"name": "renamed"}, format="json").json()["is_debug"] is True   # kept


def test_a_rotated_debug_key_stays_a_debug_key(team, group):
    key, _ = factories.api_key(team=team, group=group, is_debug=True)
    new_key, _ = api_key_rotate(api_key=key)
    assert new_key.is_debug
