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
