"""Operator pages for platform channels: the upstream key is write-only (encrypted, shown only as a mask)."""
import pytest
from django.urls import reverse

from accounts import roles
from routing.models import Channel, ChannelProbe
from tests import factories
from tests.accounts.console_helpers import assert_no_secret, client_for, fast_hasher, staff, text  # noqa: F401

pytestmark = pytest.mark.django_db
UPSTREAM_KEY = "sk-proj-upstreamSECRETvalue0123456789abcd"


def test_create_channel_stores_the_key_encrypted_and_never_shows_it(django_capture_on_commit_callbacks):
    model = factories.CatalogModelFactory(public_id="openai/gpt-4o-mini")
    client = client_for(staff())
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("operator-channels"), {
            "name": "openai-main", "kind": "openai", "base_url": "https://api.openai.com/v1/",
            "api_key": UPSTREAM_KEY, "models": [model.pk], "model_mapping": "openai/gpt-4o-mini = gpt-4o-mini-2024",
            "priority": 5, "weight": 2})
    assert response.status_code == 302 and callbacks
    channel = Channel.objects.get(name="openai-main")
    assert channel.team is None and channel.base_url == "https://api.openai.com/v1"
    assert channel.api_key() == UPSTREAM_KEY and UPSTREAM_KEY not in channel.api_key_encrypted
    assert channel.model_mapping == {"openai/gpt-4o-mini": "gpt-4o-mini-2024"}
    listing = client.get(reverse("operator-channels"))
    detail = client.get(reverse("operator-channel", kwargs={"pk": channel.pk}))
    for page in (listing, detail):
        assert_no_secret(page, UPSTREAM_KEY, UPSTREAM_KEY[-12:])
        assert channel.api_key_mask in text(page)


def test_edit_keeps_the_key_when_left_blank_and_replaces_it_when_given():
    model = factories.CatalogModelFactory()
    channel = factories.channel(models=[model], base_url="http://127.0.0.1:1/v1", api_key=UPSTREAM_KEY)
    client = client_for(staff())
    url = reverse("operator-channel", kwargs={"pk": channel.pk})
    data = {"name": "renamed", "kind": "openai", "base_url": "http://127.0.0.1:2/v1", "api_key": "",
            "models": [model.pk], "priority": 0, "weight": 1, "status": "disabled"}
    assert client.post(url, data).status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.status, channel.api_key()) == ("renamed", "disabled", UPSTREAM_KEY)
    assert client.post(url, {**data, "api_key": "sk-new-upstream-key-9999"}).status_code == 302
    channel.refresh_from_db()
    assert channel.api_key() == "sk-new-upstream-key-9999" and channel.api_key_mask == "…9999"


def test_channel_form_validation():
    client = client_for(staff())
    response = client.post(reverse("operator-channels"), {"name": "x", "kind": "openai", "base_url": "not a url",
                                                          "priority": 0, "weight": 0,
                                                          "model_mapping": "openai/unknown = y"})
    errors = response.context["form"].errors
    assert response.status_code == 400
    assert set(errors) >= {"base_url", "api_key", "weight", "model_mapping"}
    assert not Channel.objects.exists()


def test_team_channels_are_not_operator_pages():
    team_channel = factories.channel(models=[], base_url="http://127.0.0.1:1/v1", team=factories.TeamFactory())
    response = client_for(staff()).get(reverse("operator-channel", kwargs={"pk": team_channel.pk}))
    assert response.status_code == 404


def test_support_reads_without_forms():
    factories.channel(models=[], base_url="http://127.0.0.1:1/v1", api_key=UPSTREAM_KEY)
    page = client_for(staff(roles.SUPPORT)).get(reverse("operator-channels"))
    assert page.status_code == 200 and "Add a channel" not in text(page)
    assert_no_secret(page, UPSTREAM_KEY)


def test_operator_list_shows_health_attention_and_test_now():
    model = factories.CatalogModelFactory()
    flagged = factories.channel(models=[model], base_url="http://127.0.0.1:1/v1", api_key=UPSTREAM_KEY, name="flagged")
    Channel.objects.filter(pk=flagged.pk).update(needs_attention=True, attention_reason="probe: HTTP 401")
    factories.channel(models=[model], base_url="http://127.0.0.1:1/v1", name="calm")
    client = client_for(staff())
    page = text(client.get(reverse("operator-channels")))
    assert page.count('data-testid="channel-health"') == 2 and page.count('data-testid="needs-attention"') == 1
    assert 'title="probe: HTTP 401"' in page and "Not probed yet" in page
    test_url = reverse("operator-channel-test", kwargs={"pk": flagged.pk})
    assert test_url in page
    # "Test now" from the list: one manual probe, its result as a message, back on the list.
    response = client.post(test_url, {"back": "list"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("operator-channels")
    probe = ChannelProbe.objects.get(channel=flagged)
    assert probe.manual and probe.error_class == "connection"
    assert "failed (connection" in text(response) and "Last probe:" in text(response)
    assert_no_secret(response, UPSTREAM_KEY)
    # … and from the channel's page, which lists its recent probes.
    detail = client.post(test_url, follow=True)
    assert detail.redirect_chain[-1][0] == reverse("operator-channel", kwargs={"pk": flagged.pk})
    assert 'data-testid="probes"' in text(detail) and ChannelProbe.objects.filter(channel=flagged).count() == 2


def test_support_sees_health_but_cannot_test():
    channel = factories.channel(models=[], base_url="http://127.0.0.1:1/v1")
    client = client_for(staff(roles.SUPPORT))
    page = text(client.get(reverse("operator-channels")))
    assert 'data-testid="channel-health"' in page and "Test now" not in page
    assert client.post(reverse("operator-channel-test", kwargs={"pk": channel.pk})).status_code == 403
    assert not ChannelProbe.objects.exists()


def test_operator_test_now_is_for_platform_channels_only():
    team_channel = factories.channel(models=[], base_url="http://127.0.0.1:1/v1", team=factories.TeamFactory())
    response = client_for(staff()).post(reverse("operator-channel-test", kwargs={"pk": team_channel.pk}))
    assert response.status_code == 404 and not ChannelProbe.objects.exists()
