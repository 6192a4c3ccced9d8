"""Console sign-in is throttled (issue 11: 60 wrong passwords in 12 s were all answered): AXES_FAILURE_LIMIT (5)
wrong passwords for one username from one address lock that pair out; the next attempt, even with the right
password, is refused with the lockout page; other users and other addresses are not affected."""
import re

import httpx
import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from tests import factories
from tests.accounts.console_helpers import fast_hasher  # noqa: F401

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


@pytest.fixture
def user():
    user = factories.UserFactory(username="ada@acme.test")
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(client, username, password, ip="203.0.113.7"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_sixth_wrong_password_is_refused_with_the_lockout_message(user, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    client = Client()
    for attempt in range(1, 5):
        response = sign_in(client, user.username, f"wrong-{attempt}")
        assert response.status_code == 200 and "_auth_user_id" not in client.session, attempt  # the form again
    fifth = sign_in(client, user.username, "wrong-5")
    assert fifth.status_code == 429  # the limit reached: locked from now on
    sixth = sign_in(client, user.username, "wrong-6")
    assert sixth.status_code == 429
    page = sixth.content.decode()
    assert "Sign-in paused" in page and "after 5 wrong passwords" in page and "15 minutes" in page
    assert "_auth_user_id" not in client.session
    # Locked means locked: the right password does not get in either, until the cool-off passes.
    assert sign_in(client, user.username, PASSWORD).status_code == 429 and "_auth_user_id" not in client.session
    assert AccessAttempt.objects.get(username=user.username).failures_since_start >= 5


def test_the_lockout_is_per_username_and_address(user):
    other = factories.UserFactory(username="bob@acme.test")
    other.set_password(PASSWORD)
    other.save()
    for attempt in range(5):
        sign_in(Client(), user.username, f"wrong-{attempt}")
    assert sign_in(Client(), user.username, PASSWORD).status_code == 429
    # Bob, from the same address, and Ada from another one, still sign in.
    bob = Client()
    assert sign_in(bob, other.username, PASSWORD).status_code == 302 and "_auth_user_id" in bob.session
    ada = Client()
    assert sign_in(ada, user.username, PASSWORD, ip="198.51.100.9").status_code == 302


def test_a_spoofed_forwarded_for_header_does_not_reset_the_count(user):
    for attempt in range(5):
        Client().post(reverse("login"), {"username": user.username, "password": f"wrong-{attempt}"},
                      REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}")
    assert sign_in(Client(), user.username, PASSWORD).status_code == 429


def test_a_correct_sign_in_resets_the_count(user):
    client = Client()
    for attempt in range(4):
        sign_in(client, user.username, f"wrong-{attempt}")
    assert sign_in(client, user.username, PASSWORD).status_code == 302
    for attempt in range(4):  # four more wrong ones are not a lockout: the count started again
        assert sign_in(Client(), user.username, f"again-{attempt}").status_code == 200


def test_lockout_page_in_chinese(user):
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    for attempt in range(6):
        response = sign_in(client, user.username, f"wrong-{attempt}")
    assert response.status_code == 429 and 'lang="zh-hans"' in response.content.decode()


@pytest.mark.live
def test_lockout_through_a_live_gateway(transactional_db, gateway):
    """The console runs under ASGI there (axes' async middleware path)."""
    user = factories.UserFactory(username="live@acme.test")
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        def attempt(password):
            page = http.get("/console/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            return http.post("/console/login/", data={"csrfmiddlewaretoken": token, "username": user.username,
                                                      "password": password}, headers={"Referer": str(page.url)})
        statuses = [attempt(f"wrong-{n}").status_code for n in range(6)]
        right = attempt(PASSWORD)
    assert statuses == [200, 200, 200, 200, 429, 429] and right.status_code == 429
    assert "Sign-in paused" in right.text
