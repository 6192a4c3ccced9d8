"""A credit or adjustment is confirmed before it reaches the ledger: the first POST shows the team, amount,
balance after and reason; only the confirm POST (with its signed token) posts, and exactly once."""
import re

import pytest
from django.urls import reverse

from billing.models import LedgerEntry
from billing.selectors import team_balance
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, staff, text  # noqa: F401

pytestmark = pytest.mark.django_db


def _hidden(response) -> dict:
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', text(response)))


def test_nothing_is_posted_until_confirmed_then_exactly_once():
    team = factories.TeamFactory(name="Acme")
    factories.credit(team, 10_000_000)
    client = client_for(staff())
    url = reverse("operator-team", kwargs={"pk": team.pk})
    key = client.get(url).context["form"].initial["idempotency_key"]
    review = client.post(url, {"kind": "credit", "amount": "25.50", "reason": "Invoice 42 paid",
                               "idempotency_key": key})
    assert review.status_code == 200 and "operator/balance_confirm.html" in [t.name for t in review.templates]
    body = text(review)
    assert "Acme" in body and "$25.50" in body and "$35.50" in body and "Invoice 42 paid" in body
    assert LedgerEntry.objects.filter(team=team).count() == 1           # only the setup credit
    confirm = _hidden(review)
    assert confirm["amount"] == "25.50" and confirm["idempotency_key"] == key and confirm["confirm"]
    assert client.post(url, confirm).status_code == 302
    assert client.post(url, confirm).status_code == 302                 # a double submit posts once
    entries = LedgerEntry.objects.filter(team=team, kind="topup", amount=25_500_000)
    assert entries.count() == 1 and entries.get().reason == "Invoice 42 paid"
    assert team_balance(team=team) == 35_500_000


def test_a_tampered_or_foreign_confirmation_posts_nothing():
    team, other = factories.TeamFactory(), factories.TeamFactory()
    client = client_for(staff())
    url = reverse("operator-team", kwargs={"pk": team.pk})
    review = client.post(url, {"kind": "adjustment", "amount": "-2", "reason": "refund dup", "idempotency_key": "k1"})
    confirm = _hidden(review)
    for changed in ({"amount": "-200"}, {"reason": "something else"}, {"kind": "credit", "amount": "2"},
                    {"confirm": confirm["confirm"][:-2] + "xx"}):
        again = client.post(url, {**confirm, **changed})
        assert again.status_code == 200 and "operator/balance_confirm.html" in [t.name for t in again.templates]
    other_url = reverse("operator-team", kwargs={"pk": other.pk})
    assert client.post(other_url, confirm).status_code == 200           # signed for another team
    assert not LedgerEntry.objects.exists()
    assert client.post(url, confirm).status_code == 302
    assert LedgerEntry.objects.get().amount == -2_000_000


@pytest.mark.parametrize("amount", ["1e3", "NaN", "Infinity", "1,000", "2.0000001", "abc", ""])
def test_bad_money_input_is_a_400_form_error(amount):
    team = factories.TeamFactory()
    response = client_for(staff()).post(reverse("operator-team", kwargs={"pk": team.pk}),
                                        {"kind": "credit", "amount": amount, "reason": "x", "idempotency_key": "k"})
    assert response.status_code == 400 and response.context["form"].errors["amount"]
    assert not LedgerEntry.objects.exists()
