"""The soak's books: what the client saw against what PostgreSQL and Redis hold afterwards (bench/soak.py).

Pure functions over plain rows, so the comparison itself is unit-tested (tests/test_soak_books.py): a soak
that reported 0 because it compared the wrong things would prove nothing.
"""
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The four figures that must be 0; any other value fails the soak.
MUST_BE_ZERO = ("lost_usage", "double_charged", "leaked_holds", "counter_drift")


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it."""

    kind: str                 # "chat", "chat-stream", "messages-stream", "fuzz", …
    status: int               # HTTP status; 0 when no response came (connection refused or cut)
    request_id: str | None    # the X-Request-Id the gateway answered with
    complete: bool            # the client got the whole answer: a JSON body, or a stream up to its terminal frame
    latency_ms: float
    internal: bool = False    # a 5xx that is the gateway's own failure (500, or a body not in an API's error shape)
    detail: str = ""          # the start of an error body, for the log


def lost_usage(outcomes: Iterable[Outcome], recorded_ids: Iterable[str]) -> list[str]:
    """Request ids of answers the client saw complete that have no usage record."""
    recorded = set(recorded_ids)
    return sorted({o.request_id for o in outcomes if o.complete and o.request_id and o.request_id not in recorded})


def double_charged(records: Iterable[tuple[str, int | None]], entries: Mapping[int, int],
                   entry_costs: Mapping[int, int]) -> list[str]:
    """Request ids charged more than once.

    `records`: (request id, ledger entry id or None) of every usage record; `entries`: usage ledger entry id →
    its amount (negative); `entry_costs`: entry id → the sum of the costs of the records linked to it. A
    request id on two billed records is charged twice; so is every record of an entry that took more than its
    records cost (a batch posted twice over the same records)."""
    billed = Counter(rid for rid, entry in records if entry is not None)
    twice = {rid for rid, n in billed.items() if n > 1}
    overcharged = {entry for entry, amount in entries.items() if -amount > entry_costs.get(entry, 0)}
    twice |= {rid for rid, entry in records if entry in overcharged}
    return sorted(twice)


def leaked_holds(hold_records: int, hold_index: int, counters: Mapping[str, int]) -> int:
    """Reservations still held once traffic stopped and the settle window passed: the hold records
    (tg:holds:data), the index entries without a record (tg:holds), and every held amount or concurrency slot
    counter (tg:held:*, tg:cc:*) above zero."""
    return hold_records + max(0, hold_index - hold_records) + sum(1 for value in counters.values() if value > 0)


def counter_drift(audit_output: str) -> int:
    """Redis counters `ledger_audit` found different from the database after its settle window."""
    return sum(1 for line in audit_output.splitlines() if line.startswith("MISMATCH counter "))


def p99(values: Iterable[float]) -> float:
    """The 99th percentile (nearest rank); 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def soak_line(figures: Mapping[str, float]) -> str:
    order = ("requests", "ok", *MUST_BE_ZERO, "gateway_5xx", "p99_ms", "rss_growth_mb")
    parts = []
    for name in order:
        value = figures[name]
        parts.append(f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}")
    return "SOAK " + " ".join(parts)


def failed(figures: Mapping[str, float]) -> list[str]:
    """The must-be-zero figures that are not."""
    return [name for name in MUST_BE_ZERO if figures[name] != 0]
