"""Operator pages: catalog models and prices, teams and their balances, credit and adjustments."""
import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from billing.models import LedgerEntry, Price
from billing.selectors import current_price, team_balance
from routing.models import Model
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, staff, text  # noqa: F401

pytestmark = pytest.mark.django_db


def test_catalog_lists_models_with_current_prices():
    price = factories.PriceFactory(model__public_id="openai/gpt-4o-mini")
    factories.PriceFactory(model=price.model, input_per_m=999_000_000,
                           effective_from=timezone.now() + timezone.timedelta(days=7))  # scheduled, not current
    factories.CatalogModelFactory(public_id="acme/unpriced")
    page = client_for(staff(roles.SUPPORT)).get(reverse("operator-catalog"))
    models = {m.public_id: m for m in page.context["models"]}
    assert models["openai/gpt-4o-mini"].price_input_per_m == 150_000
    assert models["acme/unpriced"].price_input_per_m is None
    body = text(page)
    assert "$0.15" in body and "no price: not served" in body
    assert "Add a model" not in body  # support reads only


def test_add_and_edit_a_model(django_capture_on_commit_callbacks):
    client = client_for(staff())
    data = {"public_id": "acme/fast-1", "display_name": "Fast 1", "provider": "acme", "upstream_name": "fast-1",
            "aliases": "fast-1, fast", "context_length": 32000, "max_output_tokens": 4096,
            "input_modalities": ["text"], "output_modalities": ["text"], "supports_tools": "on", "enabled": "on"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("operator-catalog"), data)
    model = Model.objects.get(public_id="acme/fast-1")
    assert response.status_code == 302 and callbacks  # the catalog version is bumped after commit
    assert model.aliases == ["fast-1", "fast"] and model.supports_tools and not model.supports_vision
    response = client.post(reverse("operator-model", kwargs={"pk": model.pk}),
                           {**data, "public_id": "acme/renamed", "display_name": "Fast One"})
    model.refresh_from_db()
    assert response.status_code == 302 and (model.public_id, model.display_name) == ("acme/fast-1", "Fast One")
    bad = client.post(reverse("operator-catalog"), {**data, "public_id": "no-provider"})
    assert bad.status_code == 400 and "Use provider/name" in text(bad)


def test_set_a_new_price():
    price = factories.PriceFactory()
    client = client_for(staff())
    url = reverse("operator-model-price", kwargs={"pk": price.model.pk})
    response = client.post(url, {"input_per_m": "0.20", "output_per_m": "0.80", "cached_input_per_m": "0.1",
                                 "request_fee": "0"})
    assert response.status_code == 302
    new = current_price(model=price.model)
    assert (new.input_per_m, new.output_per_m, new.cached_input_per_m) == (200_000, 800_000, 100_000)
    assert Price.objects.filter(model=price.model).count() == 2  # the old price stays for past usage
    past = client.post(url, {"input_per_m": "1", "output_per_m": "1", "cached_input_per_m": "1", "request_fee": "0",
                             "effective_from": "2020-01-01T00:00"})
    assert past.status_code == 400 and "cannot start in the past" in text(past)
    negative = client.post(url, {"input_per_m": "-1", "output_per_m": "1", "cached_input_per_m": "1",
                                 "request_fee": "0"})
    assert negative.status_code == 400
    assert client_for(staff(roles.SUPPORT)).post(url, {"input_per_m": "9"}).status_code == 403


def test_teams_list_with_balances_and_credit():
    team = factories.TeamFactory(name="Acme")
    operator = staff()
    client = client_for(operator)
    url = reverse("operator-team", kwargs={"pk": team.pk})
    form = client.get(url).context["form"]
    key = form.initial["idempotency_key"]
    data = {"kind": "credit", "amount": "25.50", "reason": "Invoice 42 paid", "idempotency_key": key}
    data["confirm"] = client.post(url, data).context["token"]  # the first POST asks for confirmation
    assert client.post(url, data).status_code == 302
    assert client.post(url, data).status_code == 302  # a double submit posts one entry
    entry = LedgerEntry.objects.get(team=team)
    assert (entry.kind, entry.amount, entry.reason, entry.created_by) == ("topup", 25_500_000, "Invoice 42 paid",
                                                                          operator)
    adjust = {"kind": "adjustment", "amount": "-0.5", "reason": "duplicate charge", "idempotency_key": "k2"}
    adjust["confirm"] = client.post(url, adjust).context["token"]
    assert client.post(url, adjust).status_code == 302
    assert team_balance(team=team) == 25_000_000
    listing = client.get(reverse("operator-teams"))
    assert "Acme" in text(listing) and "$25.00" in text(listing)


@pytest.mark.parametrize("data,field,message", [
    ({"kind": "credit", "amount": "-5", "reason": "x"}, "amount", "A credit is positive"),
    ({"kind": "adjustment", "amount": "0", "reason": "x"}, "amount", "The amount cannot be zero."),
    ({"kind": "credit", "amount": "5", "reason": "   "}, "reason", "This field is required."),
])
def test_credit_form_errors(data, field, message):
    team = factories.TeamFactory()
    response = client_for(staff()).post(reverse("operator-team", kwargs={"pk": team.pk}),
                                        {**data, "idempotency_key": "k"})
    assert response.status_code == 400
    assert any(message in e for e in response.context["form"].errors[field])
    assert not LedgerEntry.objects.filter(team=team).exists()
