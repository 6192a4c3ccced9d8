"""Members page: invite (new user with a one-time password, or an existing user), change role, remove."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts import roles
from accounts.models import Membership
from keys.models import ApiKey
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, member, text  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return factories.TeamFactory()


def url(name, team, **kwargs):
    return reverse(name, kwargs={"team": team.slug, **kwargs})


def test_invite_a_new_user_shows_a_one_time_password_once(team):
    client = client_for(member(team, roles.OWNER))
    response = client.post(url("console-members", team), {"identifier": "carol@example.com", "role": roles.ADMIN})
    assert response.status_code == 302
    page = client.get(url("console-members", team))
    password = page.context["reveal"]["password"]
    carol = get_user_model().objects.get(username="carol@example.com")
    assert carol.email == "carol@example.com" and carol.check_password(password)
    assert Membership.objects.get(team=team, user=carol).role == roles.ADMIN
    assert password in text(page) and "no-store" in page["Cache-Control"]
    assert_no_secret(client.get(url("console-members", team)), password)


def test_invite_an_existing_user_by_email(team):
    dave = factories.UserFactory(username="dave", email="Dave@Example.com")
    client = client_for(member(team, roles.OWNER))
    client.post(url("console-members", team), {"identifier": "dave@example.com", "role": roles.MEMBER})
    assert Membership.objects.filter(team=team, user=dave, role=roles.MEMBER).exists()
    assert client.get(url("console-members", team)).context["reveal"] is None
    again = client.post(url("console-members", team), {"identifier": "dave", "role": roles.MEMBER})
    assert again.status_code == 400 and "dave is already a member of this team." in text(again)
    bad = client.post(url("console-members", team), {"identifier": "no spaces please", "role": roles.MEMBER})
    assert bad.status_code == 400 and "letters, digits" in text(bad)


def test_change_role_and_last_owner_rule(team):
    owner = member(team, roles.OWNER)
    client = client_for(owner)
    mine = Membership.objects.get(team=team, user=owner)
    response = client.post(url("console-member-role", team, pk=mine.pk), {"role": roles.MEMBER}, follow=True)
    assert "A team needs at least one owner" in text(response)
    mine.refresh_from_db()
    assert mine.role == roles.OWNER
    response = client.post(url("console-member-remove", team, pk=mine.pk), follow=True)
    assert "The last owner cannot be removed" in text(response)
    assert Membership.objects.filter(pk=mine.pk).exists()
    # With a second owner, the first may step down.
    other = Membership.objects.get(team=team, user=member(team))
    client.post(url("console-member-role", team, pk=other.pk), {"role": roles.OWNER})
    client.post(url("console-member-role", team, pk=mine.pk), {"role": roles.ADMIN})
    mine.refresh_from_db()
    assert mine.role == roles.ADMIN


def test_removing_a_member_revokes_their_keys_here(team):
    owner, leaver = member(team, roles.OWNER), member(team)
    key, _ = factories.api_key(team=team, owner=leaver)
    elsewhere, _ = factories.api_key(owner=leaver)  # the same user's key in another team stays
    membership = Membership.objects.get(team=team, user=leaver)
    assert client_for(owner).post(url("console-member-remove", team, pk=membership.pk)).status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    key.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (key.status, elsewhere.status) == (ApiKey.REVOKED, ApiKey.ACTIVE)


def test_only_members_managers_see_the_page(team):
    for role in (roles.ADMIN, roles.BILLING, roles.MEMBER):
        assert client_for(member(team, role)).get(url("console-members", team)).status_code == 403
    assert client_for(member(team, roles.OWNER)).get(url("console-members", team)).status_code == 200
