"""One level's limits (a key's or its group's) as the relay reads them from keys.auth.KeyContext. Plain data,
no Django: the warm path builds these from the shared cache."""
from typing import NamedTuple


class LimitValues(NamedTuple):
    """The fields of keys.models.Limits; None means no limit at this level."""
    budget: int | None
    period: str
    rpm: int | None
    tpm: int | None
    concurrency: int | None


NO_LIMITS = LimitValues(None, "month", None, None, None)
