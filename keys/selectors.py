from dataclasses import dataclass

from django.db.models import QuerySet

from keys.models import ApiKey, KeyGroup


def allowed_models(*, team_models, group_models, key_models, forbidden=()) -> frozenset[str] | None:
    """The one rule for which models a request may use: team ∩ group ∩ key (each when set) − forbidden.

    Returns None for "every catalog model" (nothing set anywhere and nothing forbidden).
    """
    result: frozenset[str] | None = None
    for limit in (team_models, group_models, key_models):
        if limit:
            result = frozenset(limit) if result is None else result & frozenset(limit)
    if forbidden:
        if result is None:
            return _AllBut(frozenset(forbidden))
        result = result - frozenset(forbidden)
    return result


class _AllBut(frozenset):
    """Every model except these (a route's forbidden list applied to an unrestricted key)."""

    def __contains__(self, item):  # pragma: no branch - inverse membership is the point
        return not frozenset.__contains__(self, item)


def api_keys(*, team, owner=None) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.filter(team=team).select_related("group", "owner").order_by("-created_at")
    return qs.filter(owner=owner) if owner is not None else qs


def key_groups(*, team) -> QuerySet[KeyGroup]:
    return KeyGroup.objects.filter(team=team).order_by("name")


@dataclass(frozen=True)
class LimitRow:
    """One limit on the key detail page: the key's own value, its group's, and the one that binds."""

    name: str             # budget | rpm | tpm | concurrency
    key: object           # the key's value (budget: (limit, period)); None = not set
    group: object
    effective: object     # the binding value (budget: billing.selectors.BudgetUse, the least left)
    source: str           # key | group | team | "" (no limit anywhere)


def limit_rows(*, key: ApiKey, budgets=()) -> list[LimitRow]:
    """Key, group and effective limits. Every level that sets a limit is checked (billing/limits.py), so the
    effective rate is the smallest; the effective budget is the one with the least left (`budgets`: the
    key's budget uses from billing.selectors.key_budgets, which also counts the team's monthly cap)."""
    group = key.group
    binding = min(budgets, key=lambda use: use.left, default=None)
    rows = [LimitRow("budget",
                     (key.budget_limit, key.budget_period) if key.budget_limit is not None else None,
                     (group.budget_limit, group.budget_period) if group.budget_limit is not None else None,
                     binding, binding.source if binding else "")]
    for name, field in (("rpm", "rpm_limit"), ("tpm", "tpm_limit"), ("concurrency", "max_concurrency")):
        mine, theirs = getattr(key, field), getattr(group, field)
        candidates = [(value, source) for value, source in ((mine, "key"), (theirs, "group")) if value]
        value, source = min(candidates, default=(None, ""), key=lambda c: c[0])
        rows.append(LimitRow(name, mine, theirs, value, source))
    return rows
