"""English and Simplified Chinese: the switch, the per-user choice, translated pages, nav per role."""
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from accounts import roles
from accounts.models import UserPreference
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, text  # noqa: F401

pytestmark = pytest.mark.django_db


def test_switching_language_sets_the_cookie_and_the_users_preference():
    team = factories.TeamFactory()
    user = member(team, roles.OWNER)
    client = client_for(user)
    dashboard = reverse("console-dashboard", kwargs={"team": team.slug})
    response = client.post(reverse("console-language"), {"language": "zh-hans", "next": dashboard})
    assert response.status_code == 302 and response["Location"] == dashboard
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert UserPreference.objects.get(user=user).language == "zh-hans"
    body = text(client.get(dashboard))
    assert 'lang="zh-hans"' in body and "仪表盘" in body and "API 密钥" in body and "请求日志" in body


def test_the_choice_follows_the_user_to_a_new_browser():
    user = factories.UserFactory(username="wang")
    UserPreference.objects.create(user=user, language="zh-hans")
    response = Client().post(reverse("login"), {"username": "wang", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"


def test_unknown_language_is_ignored():
    user = factories.UserFactory()
    client_for(user).post(reverse("console-language"), {"language": "xx", "next": "/console/"})
    assert not UserPreference.objects.filter(user=user).exists()


def test_sign_in_page_in_chinese():
    body = text(Client(HTTP_ACCEPT_LANGUAGE="zh-CN").get(reverse("login")))
    assert "登录" in body and "简体中文" in body


@pytest.mark.parametrize("role,links,hidden", [
    (roles.OWNER, ["console-keys", "console-logs", "console-billing", "console-members"], []),
    (roles.ADMIN, ["console-keys", "console-key-groups", "console-logs"], ["console-billing", "console-members"]),
    (roles.BILLING, ["console-billing", "console-keys"], ["console-members"]),
    (roles.MEMBER, ["console-keys", "console-logs"], ["console-key-groups", "console-billing", "console-members"]),
])
def test_nav_shows_only_pages_the_role_may_open(role, links, hidden):
    team = factories.TeamFactory()
    client = client_for(member(team, role))
    page = client.get(reverse("console-dashboard", kwargs={"team": team.slug}))
    nav = {link["url"] for link in page.context["nav"]}
    for name in links:
        assert reverse(name, kwargs={"team": team.slug}) in nav
    for name in hidden:
        assert reverse(name, kwargs={"team": team.slug}) not in nav
    for link in nav:  # every link shown opens
        assert client.get(link).status_code == 200, link
