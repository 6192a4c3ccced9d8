"""The console's status page: teams see platform health per model (never a platform channel), their admins
their own channels too, platform staff everything."""
import pytest

from accounts import roles
from tests import factories
from tests.accounts.console_helpers import client_for, member, staff, text


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def setup(db):
    team = factories.TeamFactory()
    model = factories.CatalogModelFactory(public_id="openai/status-model")
    factories.channel(models=[model], base_url="http://upstream.invalid/v1", name="platform-secret-name",
                      api_key="sk-platform-upstream-key-0001")
    factories.channel(models=[model], base_url="http://byok.invalid/v1", name="our-own-channel", team=team,
                      api_key="sk-team-upstream-key-0002")
    return team


@pytest.mark.parametrize("role,sees_own_channels", [(roles.MEMBER, False), (roles.ADMIN, True)])
def test_team_status_page(setup, role, sees_own_channels):
    page = text(client_for(member(setup, role)).get(f"/console/t/{setup.slug}/status/"))
    assert "openai/status-model" in page
    assert "platform-secret-name" not in page and "upstream.invalid" not in page
    assert ("our-own-channel" in page) is sees_own_channels
    assert "sk-platform-upstream-key" not in page and "sk-team-upstream-key" not in page


def test_operator_status_page_lists_every_channel(setup):
    page = text(client_for(staff(roles.OPERATOR)).get("/console/operator/status/"))
    assert "platform-secret-name" in page and "our-own-channel" in page
    assert "sk-platform-upstream-key" not in page and "upstream.invalid" not in page
