"""Shared by the console page tests: users in roles, signed-in clients, and the never-a-secret check."""
import pytest
from django.test import Client

from accounts import roles
from tests import factories


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    """Console tests make many users with passwords: PBKDF2 would dominate their run time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(team, role=roles.MEMBER):
    return factories.MembershipFactory(team=team, role=role).user


def staff(role=roles.OPERATOR):
    return factories.StaffRoleFactory(role=role).user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return response.content.decode()


def assert_no_secret(response, *secrets):
    body = text(response)
    for secret in secrets:
        assert secret not in body, "a secret leaked into the page"
