"""One price source with effective-from dates: past usage keeps the price it was charged at."""
import asyncio
import datetime as dt

import pytest
from django.utils import timezone

from billing.services import price_set
from routing.relay import snapshot
from tests import factories


@pytest.mark.django_db(transaction=True)
def test_price_in_effect_is_the_latest_that_has_started():
    model = factories.CatalogModelFactory(public_id="test/priced")
    now = timezone.now()
    price_set(model=model, input_per_m=100, output_per_m=200, cached_input_per_m=50,
              effective_from=now - dt.timedelta(days=30))
    price_set(model=model, input_per_m=300, output_per_m=600, cached_input_per_m=150,
              effective_from=now - dt.timedelta(days=1))
    price_set(model=model, input_per_m=999, output_per_m=999, cached_input_per_m=999,
              effective_from=now + dt.timedelta(days=1))   # announced, not yet in force
    snapshot.invalidate_local()
    entry = asyncio.run(snapshot.current()).resolve("test/priced")
    assert (entry.price.input_per_m, entry.price.output_per_m, entry.price.cached_input_per_m) == (300, 600, 150)
