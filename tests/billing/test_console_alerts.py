"""The console shows budget alerts (80% / 100%) to those who can act on them."""
import datetime as dt

import pytest

from accounts import roles
from billing import limits
from billing.models import BudgetAlert
from keys.services import key_limits_set
from tests import factories
from tests.accounts.console_helpers import client_for, member, text


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.django_db
@pytest.mark.parametrize("role,shown", [(roles.OWNER, True), (roles.BILLING, True), (roles.MEMBER, False)])
def test_budget_alert_banner(role, shown):
    team = factories.TeamFactory()
    key, _ = factories.api_key(team=team, name="prod")
    key_limits_set(target=key, budget_limit=10, budget_period="month")   # alerts show only for live budgets
    tag = limits.period_tag("month", dt.datetime.now(dt.UTC))
    BudgetAlert.objects.create(team=team, scope_kind=BudgetAlert.SCOPES[0][0], scope_id=str(key.pk), period_tag=tag,
                               threshold=100, label="key prod monthly budget", spent=10, limit=10)
    page = text(client_for(member(team, role)).get(f"/console/t/{team.slug}/"))
    assert ("key prod monthly budget has reached 100% of its budget." in page) is shown
