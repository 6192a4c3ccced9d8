"""A channel's provider metadata (what OpenRouter-style `provider` preferences match) in the console form and
the channels API: stored, shown back, validated (a 400 naming the field), and in the relay's snapshot."""
import pytest

from accounts import roles
from routing.models import Channel
from routing.relay import snapshot
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401
from tests.routing.test_team_channels import UPSTREAM_KEY, api, form_data, urls

pytestmark = pytest.mark.django_db

META = {"provider_name": "Azure", "data_collection": "deny", "zdr": True, "quantization": "fp8"}


@pytest.fixture
def world():
    mini = factories.CatalogModelFactory(public_id="openai/gpt-4o-mini", upstream_name="gpt-4o-mini")
    team = factories.TeamFactory()
    return mini, team, member(team, roles.ADMIN)


def test_api_stores_and_returns_the_metadata(world):
    mini, team, admin = world
    client = client_for(admin)
    response, created = api(client, "post", urls(team)["api"], {
        "name": "byok", "base_url": "https://api.example/v1", "api_key": UPSTREAM_KEY, "models": [mini.public_id],
        **META})
    assert response.status_code == 201, created
    assert {k: created[k] for k in META} == META
    channel = Channel.objects.get(pk=created["id"])
    assert (channel.provider_name, channel.data_collection, channel.zdr, channel.quantization) == \
        ("Azure", "deny", True, "fp8")
    response, patched = api(client, "patch", urls(team, channel.pk)["api_detail"], {"zdr": False, "quantization": ""})
    assert response.status_code == 200 and patched["zdr"] is False and patched["quantization"] == ""
    assert patched["provider_name"] == "Azure"                     # a partial update keeps the rest
    entry = snapshot.load_now().channels[mini.public_id][0]
    assert (entry.provider_name, entry.data_collection, entry.zdr, entry.quantization) == ("Azure", "deny", False, "")


def test_defaults_when_not_given(world):
    mini, team, admin = world
    response, created = api(client_for(admin), "post", urls(team)["api"], {
        "name": "byok", "base_url": "https://api.example/v1", "api_key": UPSTREAM_KEY, "models": [mini.public_id]})
    assert response.status_code == 201
    assert {k: created[k] for k in META} == {"provider_name": "", "data_collection": "allow", "zdr": False,
                                             "quantization": ""}


@pytest.mark.parametrize("body, field", [
    ({"quantization": "q4_k_m"}, "quantization"),
    ({"data_collection": "never"}, "data_collection"),
    ({"provider_name": "x" * 61}, "provider_name"),
])
def test_api_validation_names_the_field(world, body, field):
    mini, team, admin = world
    good = {"name": "byok", "base_url": "https://api.example/v1", "api_key": UPSTREAM_KEY, "models": [mini.public_id]}
    response, answer = api(client_for(admin), "post", urls(team)["api"], {**good, **body})
    assert response.status_code == 400, answer
    assert field in str(answer["error"]["param"]) + answer["error"]["message"], answer
    assert not Channel.objects.exists()


def test_console_form_edits_the_metadata(world):
    mini, team, admin = world
    client = client_for(admin)
    page = client.get(urls(team)["list"])
    assert "Provider name" in text(page) and "Zero data retention" in text(page)
    response = client.post(urls(team)["list"], form_data(mini, provider_name="DeepInfra", quantization="int8",
                                                         data_collection="deny", zdr="on"))
    assert response.status_code == 302, text(response)
    channel = Channel.objects.get(team=team)
    assert (channel.provider_name, channel.data_collection, channel.zdr, channel.quantization) == \
        ("DeepInfra", "deny", True, "int8")
    detail = client.get(urls(team, channel.pk)["detail"])
    assert 'value="DeepInfra"' in detail.content.decode()
