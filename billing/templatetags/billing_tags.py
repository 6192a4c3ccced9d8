"""Template filters for money (integer micro-units, the deployment's currency) and ledger labels."""
from django import template
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from billing.money import MICRO, format_money

register = template.Library()


@register.filter
def money(micro) -> str:
    """Exact, with at least cents: $7.50, $0.075, -$0.000045."""
    if micro is None:
        return ""
    whole, _dot, fraction = format_money(int(micro), settings.TOLLGATE_CURRENCY).partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


@register.filter
def money_short(micro) -> str:
    """Rounded for a glance (dashboards): cents from one unit up, else four decimals. Pages that account
    for money (ledger, logs) use the exact `money`."""
    if micro is None:
        return ""
    micro = int(micro)
    places = 2 if abs(micro) >= MICRO else 4
    symbol = {"USD": "$", "CNY": "¥"}.get(settings.TOLLGATE_CURRENCY, "")
    return f"{'-' if micro < 0 else ''}{symbol}{abs(micro) / MICRO:,.{places}f}"


KIND_LABELS = {"topup": _("Top-up"), "usage": _("Usage"), "adjustment": _("Adjustment"), "refund": _("Refund"),
               "redemption": _("Redemption"), "expiry": _("Expiry")}


@register.filter
def ledger_kind(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


@register.filter
def percent(fraction) -> str:
    return f"{100 * (fraction or 0):.1f}%"
