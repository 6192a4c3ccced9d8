"""The console and APIs show what caching costs: prices for cache reads and both write durations (the
providers' ratios when left empty), and every token part of a request in its log, export and API."""
import csv
import io

import pytest
from django.urls import reverse

from accounts import roles
from billing.selectors import current_price
from billing.services import price_override_set
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, staff, text  # noqa: F401
from tests.billing.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db


def test_a_price_set_without_cache_prices_gets_the_providers_ratios_and_typed_ones_are_kept():
    model = factories.CatalogModelFactory(provider="anthropic", upstream_name="claude-sonnet-4-5")
    client = client_for(staff())
    url = reverse("operator-model-price", kwargs={"pk": model.pk})
    response = client.post(url, {"input_per_m": "3", "output_per_m": "15", "cached_input_per_m": "",
                                 "cache_write_5m_per_m": "", "cache_write_1h_per_m": "", "request_fee": "0"})
    assert response.status_code == 302
    price = current_price(model=model)
    assert (price.cached_input_per_m, price.cache_write_5m_per_m, price.cache_write_1h_per_m) == (
        300_000, 3_750_000, 6_000_000)
    page = text(client.get(reverse("operator-model", kwargs={"pk": model.pk})))
    current = page.split('data-testid="current-price"')[1].split("</dl>")[0]
    assert "$0.30" in current and "$3.75" in current and "$6.00" in current
    assert "Cache write (1 hour), per 1M tokens" in page

    response = client.post(url, {"input_per_m": "3", "output_per_m": "15", "cached_input_per_m": "0.25",
                                 "cache_write_5m_per_m": "3.5", "cache_write_1h_per_m": "5", "request_fee": "0"})
    assert response.status_code == 302
    price = current_price(model=model)
    assert (price.cached_input_per_m, price.cache_write_5m_per_m, price.cache_write_1h_per_m) == (
        250_000, 3_500_000, 5_000_000)
    negative = client.post(url, {"input_per_m": "3", "output_per_m": "15", "cache_write_1h_per_m": "-1",
                                 "request_fee": "0"})
    assert negative.status_code == 400


def test_team_prices_show_cache_write_prices_of_an_override():
    team = factories.TeamFactory(slug="acme")
    price = factories.PriceFactory(model__provider="openai", model__upstream_name="gpt-4o")
    price_override_set(team=team, model=price.model, input_per_m=2_000_000, output_per_m=8_000_000,
                       cache_write_1h_per_m=3_000_000)
    owner = member(team, roles.OWNER)
    page = text(client_for(owner).get(reverse("console-prices", kwargs={"team": team.slug})))
    row = page.split(f'data-model="{price.model.public_id}"')[1].split("</tr>")[0]
    # The override's read (OpenAI gpt-4o: half of input) and 5-minute write (input) by ratio, its 1-hour typed.
    assert "$1.00" in row and "$2.00 / $3.00" in row


def test_log_detail_export_and_api_show_every_part():
    team = factories.TeamFactory(slug="acme")
    owner = member(team, roles.OWNER)
    key, _ = factories.api_key(team=team, owner=owner)
    record = UsageRecordFactory(team=team, api_key=key, prompt_tokens=5_000, cached_tokens=3_000,
                                cache_write_5m_tokens=1_200, cache_write_1h_tokens=700, completion_tokens=900,
                                reasoning_tokens=640, usage_clamped=True)
    client = client_for(owner)
    page = text(client.get(reverse("console-log-detail", kwargs={"team": team.slug, "pk": record.pk})))

    def shown(testid):
        return page.split(f'data-testid="{testid}"')[1].split("</dd>")[0].split(">", 1)[1].strip()

    assert [shown(t) for t in ("prompt-tokens", "cache-read", "cache-write-5m", "cache-write-1h",
                               "completion-tokens", "reasoning")] == ["5000", "3000", "1200", "700", "900", "640"]
    assert "clamped" in shown("usage-clamped")
    logs = text(client.get(reverse("console-logs", kwargs={"team": team.slug})))
    assert "cache: 3000 read, 1900 written" in logs
    assert "cache: 3000 read, 1900 written" in text(client_for(staff(roles.SUPPORT)).get(reverse("operator-logs")))

    export = client.get(reverse("console-logs-export", kwargs={"team": team.slug}))
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [(r["cached_tokens"], r["cache_write_5m_tokens"], r["cache_write_1h_tokens"], r["reasoning_tokens"])
            for r in rows] == [("3000", "1200", "700", "640")]

    api = client.get(f"/api/teams/{team.slug}/usage/{record.pk}/").json()
    assert (api["cached_tokens"], api["cache_write_5m_tokens"], api["cache_write_1h_tokens"],
            api["reasoning_tokens"], api["usage_clamped"]) == (3000, 1200, 700, 640, True)
