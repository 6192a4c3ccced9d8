from django.db.models import QuerySet

from billing.models import LedgerEntry, TeamBalance, UsageRecord


def team_balance(*, team) -> int:
    """The team's cached balance in micro-units (0 before its first ledger entry)."""
    return TeamBalance.objects.filter(team=team).values_list("balance", flat=True).first() or 0


def ledger_entries(*, team) -> QuerySet[LedgerEntry]:
    # Newest first by id: entries of a team are inserted under its balance lock, so id order is the order
    # in which balance_after was computed.
    return LedgerEntry.objects.filter(team=team).select_related("created_by").order_by("-id")


def usage_records(*, team, key=None) -> QuerySet[UsageRecord]:
    qs = UsageRecord.objects.filter(team=team).order_by("-created_at", "-id")
    return qs.filter(api_key=key) if key is not None else qs
