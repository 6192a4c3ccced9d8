"""Console pages for API keys and key groups: one-time secrets, role rules, validation."""
import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from gateway_site import shared_cache
from keys import auth
from keys.models import ApiKey, KeyGroup
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, member, text  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    team = factories.TeamFactory()
    factories.KeyGroupFactory(team=team, name="default")
    return team


def keys_url(team):
    return reverse("console-keys", kwargs={"team": team.slug})


def test_new_key_secret_is_shown_once_with_snippets(team, settings):
    owner = member(team, roles.OWNER)
    client = client_for(owner)
    group = team.key_groups.get()
    response = client.post(keys_url(team), {"name": "ci", "group": group.pk})
    assert response.status_code == 302
    page = client.get(keys_url(team))
    key = ApiKey.objects.get(team=team, name="ci")
    body = text(page)
    secret = page.context["reveal"]["secret"]
    assert secret.startswith("sk-tg-") and key.mask.endswith(secret[-4:])
    assert body.count(secret) >= 4  # the secret, and the OpenAI SDK, curl and Claude Code snippets
    base = settings.TOLLGATE_PUBLIC_BASE_URL.rstrip("/")
    assert f'base_url="{base}/v1"' in body and f"{base}/v1/chat/completions" in body
    assert f"ANTHROPIC_BASE_URL={base} ANTHROPIC_AUTH_TOKEN={secret}" in body
    assert "no-store" in page["Cache-Control"]
    # Reloading, the key's own page and the list never show it again.
    again = client.get(keys_url(team))
    assert_no_secret(again, secret)
    assert key.mask in text(again)
    assert_no_secret(client.get(reverse("console-key-detail", kwargs={"team": team.slug, "pk": key.pk})), secret)


def test_create_form_errors_are_clear(team):
    client = client_for(member(team, roles.ADMIN))
    group = team.key_groups.get()
    past = (timezone.now() - timezone.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(keys_url(team), {"name": "", "group": group.pk, "expires_at": past,
                                            "allowed_ips": "10.0.0.0/8\nnot-an-ip"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "name" in errors
    assert errors["expires_at"] == ["The expiry must be in the future."]
    assert errors["allowed_ips"] == ["“not-an-ip” is not an IP address or CIDR subnet."]
    assert not ApiKey.objects.filter(team=team).exists()


def test_create_with_limits(team):
    model = factories.CatalogModelFactory(public_id="openai/gpt-4o-mini")
    client = client_for(member(team, roles.OWNER))
    future = (timezone.now() + timezone.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    client.post(keys_url(team), {"name": "limited", "group": team.key_groups.get().pk, "expires_at": future,
                                 "allowed_models": [model.public_id], "allowed_ips": "203.0.113.7\n10.0.0.0/8"})
    key = ApiKey.objects.get(name="limited")
    assert key.allowed_models == ["openai/gpt-4o-mini"]
    assert key.allowed_ips == ["203.0.113.7/32", "10.0.0.0/8"]
    assert key.expires_at is not None


def test_unknown_model_is_refused(team):
    client = client_for(member(team, roles.OWNER))
    response = client.post(keys_url(team), {"name": "x", "group": team.key_groups.get().pk,
                                            "allowed_models": ["nope/not-in-catalog"]})
    assert response.status_code == 400 and "allowed_models" in response.context["form"].errors


def test_members_see_and_change_only_their_own_keys(team):
    alice, bob = member(team), member(team)
    alice_key, _ = factories.api_key(team=team, owner=alice, name="alice-key")
    bob_key, _ = factories.api_key(team=team, owner=bob, name="bob-key")
    client = client_for(alice)
    body = text(client.get(keys_url(team)))
    assert "alice-key" in body and "bob-key" not in body
    detail = reverse("console-key-detail", kwargs={"team": team.slug, "pk": bob_key.pk})
    assert client.get(detail).status_code == 404
    assert client.post(reverse("console-key-revoke", kwargs={"team": team.slug, "pk": bob_key.pk})).status_code == 404
    bob_key.refresh_from_db()
    assert bob_key.status == ApiKey.ACTIVE
    # An admin manages every key; billing reads them all but changes none.
    assert client_for(member(team, roles.ADMIN)).get(detail).status_code == 200
    billing = client_for(member(team, roles.BILLING))
    assert "bob-key" in text(billing.get(keys_url(team)))
    assert billing.post(detail, {"name": "renamed"}).status_code == 403


def test_edit_key_settings(team, django_capture_on_commit_callbacks):
    owner = member(team, roles.OWNER)
    key, secret = factories.api_key(team=team, owner=owner, group=team.key_groups.get())
    other_group = factories.KeyGroupFactory(team=team, name="scripts")
    url = reverse("console-key-detail", kwargs={"team": team.slug, "pk": key.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(url, {"name": "renamed", "group": other_group.pk,
                                                "allowed_ips": "192.0.2.0/24"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.group, key.allowed_ips) == ("renamed", other_group, ["192.0.2.0/24"])
    cached = shared_cache.get(auth.cache_key(key.secret_hash))
    assert b"192.0.2.0/24" in cached  # every gateway process sees the new allowlist


def test_group_of_another_team_is_refused(team):
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner, group=team.key_groups.get())
    foreign = factories.KeyGroupFactory()
    url = reverse("console-key-detail", kwargs={"team": team.slug, "pk": key.pk})
    response = client_for(owner).post(url, {"name": "x", "group": foreign.pk})
    assert response.status_code == 400 and "group" in response.context["form"].errors


def test_rotate_revokes_the_old_key_and_shows_the_new_secret_once(team, django_capture_on_commit_callbacks):
    alice = member(team)
    key, old_secret = factories.api_key(team=team, owner=alice, group=team.key_groups.get(), name="app",
                                        allowed_ips=["10.0.0.0/8"])
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("console-key-rotate", kwargs={"team": team.slug, "pk": key.pk}))
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == ApiKey.REVOKED
    new_key = ApiKey.objects.get(team=team, status=ApiKey.ACTIVE)
    assert (new_key.name, new_key.owner, new_key.allowed_ips) == ("app", alice, ["10.0.0.0/8"])
    assert b'"revoked"' in shared_cache.get(auth.cache_key(key.secret_hash))
    page = client.get(keys_url(team))
    new_secret = page.context["reveal"]["secret"]
    assert new_secret != old_secret and new_key.mask.endswith(new_secret[-4:])
    assert_no_secret(page, old_secret)
    assert_no_secret(client.get(keys_url(team)), new_secret)


def test_revoke(team):
    alice = member(team)
    key, _ = factories.api_key(team=team, owner=alice, group=team.key_groups.get())
    client_for(alice).post(reverse("console-key-revoke", kwargs={"team": team.slug, "pk": key.pk}))
    key.refresh_from_db()
    assert key.status == ApiKey.REVOKED and key.revoked_at is not None


def test_key_groups_create_edit_and_validate(team, django_capture_on_commit_callbacks):
    model = factories.CatalogModelFactory(public_id="openai/gpt-4o")
    admin = member(team, roles.ADMIN)
    client = client_for(admin)
    url = reverse("console-key-groups", kwargs={"team": team.slug})
    assert client.post(url, {"name": "prod", "allowed_models": [model.public_id]}).status_code == 302
    group = KeyGroup.objects.get(team=team, name="prod")
    assert group.allowed_models == ["openai/gpt-4o"]
    duplicate = client.post(url, {"name": "PROD"})
    assert duplicate.status_code == 400
    assert duplicate.context["form"].errors["name"] == ["This team already has a group with that name."]
    key, _ = factories.api_key(team=team, owner=admin, group=group)
    detail = reverse("console-key-group-detail", kwargs={"team": team.slug, "pk": group.pk})
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(detail, {"name": "production"}).status_code == 302
    group.refresh_from_db()
    assert (group.name, group.allowed_models) == ("production", [])
    assert b'"group_models":[]' in shared_cache.get(auth.cache_key(key.secret_hash))
    # Billing reads groups, a member does not see the page at all.
    assert client_for(member(team, roles.BILLING)).get(url).status_code == 200
    assert client_for(member(team, roles.BILLING)).post(url, {"name": "x"}).status_code == 403
    assert client_for(member(team)).get(url).status_code == 403


def test_keys_page_without_groups_explains_what_to_do():
    team = factories.TeamFactory()
    body = text(client_for(member(team)).get(keys_url(team)))
    assert "This team has no key group yet." in body and "Ask a team admin" in body
