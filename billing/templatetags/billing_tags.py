"""Template filters for money (integer micro-units, the deployment's currency) and ledger labels."""
from django import template
from django.utils.translation import gettext_lazy as _

from billing.money import money_display

register = template.Library()


@register.filter
def money(micro) -> str:
    """The one money format (billing.money.format_money): exact, at least cents — $7.50, $0.075,
    -$0.000045. Every page that shows an amount uses this filter, cards and tables alike."""
    return money_display(micro)


KIND_LABELS = {"topup": _("Top-up"), "usage": _("Usage"), "adjustment": _("Adjustment"), "refund": _("Refund"),
               "redemption": _("Redemption"), "expiry": _("Expiry")}


@register.filter
def ledger_kind(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


SOURCE_LABELS = {"topup": _("Top-up"), "redemption": _("Redemption"), "grant": _("Grant")}


@register.filter
def bundle_source(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


@register.filter
def percent(fraction) -> str:
    return f"{100 * (fraction or 0):.1f}%"
