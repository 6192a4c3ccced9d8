from django.db import transaction
from django.utils import timezone

from billing.models import Price
from routing.catalog import bump_version


@transaction.atomic
def price_set(*, model, input_per_m: int, output_per_m: int, cached_input_per_m: int, request_fee: int = 0,
              effective_from=None) -> Price:
    """Add a catalog price from a date on (past usage keeps the price it was charged at)."""
    price, _ = Price.objects.update_or_create(
        model=model, effective_from=effective_from or timezone.now(),
        defaults={"input_per_m": input_per_m, "output_per_m": output_per_m,
                  "cached_input_per_m": cached_input_per_m, "request_fee": request_fee})
    transaction.on_commit(bump_version)
    return price
