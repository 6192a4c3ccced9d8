import datetime
import uuid
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.money import MICRO

MAX_RANGE = datetime.timedelta(days=31)
PERIODS = {"1h": datetime.timedelta(hours=1), "24h": datetime.timedelta(days=1), "7d": datetime.timedelta(days=7),
           "30d": datetime.timedelta(days=30)}


class MoneyField(forms.DecimalField):
    """An amount typed in the deployment's currency (e.g. 12.50), cleaned to integer micro-units."""

    def __init__(self, **kwargs):
        kwargs.setdefault("decimal_places", 6)
        kwargs.setdefault("max_digits", 18)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return Decimal(value) / MICRO if isinstance(value, int) else value

    def clean(self, value):
        amount = super().clean(value)
        return None if amount is None else int(amount * MICRO)


def _datetime_input():
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class LogFilterForm(forms.Form):
    DEFAULT_PERIOD = "7d"
    period = forms.ChoiceField(label=_("Period"), required=False, choices=[
        ("1h", _("Last hour")), ("24h", _("Last 24 hours")), ("7d", _("Last 7 days")), ("30d", _("Last 30 days")),
        ("custom", _("Custom range"))])
    since = forms.DateTimeField(label=_("From (UTC)"), required=False, widget=_datetime_input())
    until = forms.DateTimeField(label=_("To (UTC)"), required=False, widget=_datetime_input())
    key = forms.TypedChoiceField(label=_("Key"), required=False, coerce=int, empty_value=None)
    model = forms.CharField(label=_("Model"), required=False, max_length=200)
    status = forms.ChoiceField(label=_("Status"), required=False, choices=[
        ("", _("Any status")), ("ok", _("Success")), ("error", _("Errors")), ("4xx", "4xx"), ("5xx", "5xx"),
        *[(str(code), str(code)) for code in (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)]])
    request_id = forms.CharField(label=_("Request ID"), required=False, max_length=60)

    def __init__(self, data, *, keys):
        data = data.copy()
        data.setdefault("period", self.DEFAULT_PERIOD)
        super().__init__(data)
        self.fields["key"].choices = [("", _("All keys"))] + [(k.pk, f"{k.name} ({k.mask})") for k in keys]

    def clean(self):
        data = super().clean()
        now = timezone.now()
        if data.get("period") == "custom" or data.get("since") or data.get("until"):
            until = data.get("until") or now
            since = data.get("since") or until - PERIODS["24h"]
            if since >= until:
                raise ValidationError(_("“From” must be before “To”."))
            if until - since > MAX_RANGE:
                raise ValidationError(_("Choose a range of at most 31 days."))
            data["since"], data["until"] = since, until
        else:
            data["since"], data["until"] = now - PERIODS[data.get("period") or self.DEFAULT_PERIOD], None
        return data

    def search_filters(self) -> dict:
        """The valid filters as keyword arguments of billing.selectors.usage_search."""
        return {name: self.cleaned_data[name] for name in
                ("since", "until", "model", "status", "request_id")} | {"key_id": self.cleaned_data["key"]}


class PriceForm(forms.Form):
    input_per_m = MoneyField(label=_("Input, per 1M tokens"), min_value=0)
    output_per_m = MoneyField(label=_("Output, per 1M tokens"), min_value=0)
    cached_input_per_m = MoneyField(label=_("Cached input, per 1M tokens"), min_value=0)
    request_fee = MoneyField(label=_("Fee per request"), min_value=0, initial=0)
    effective_from = forms.DateTimeField(
        label=_("Effective from (UTC)"), required=False, widget=_datetime_input(),
        help_text=_("Empty: now. Usage keeps the price in effect when it was made."))

    def clean_effective_from(self):
        value = self.cleaned_data.get("effective_from")
        if value and value < timezone.now() - datetime.timedelta(minutes=5):
            raise ValidationError(_("A new price cannot start in the past: past usage was charged already."))
        return value


class BalanceChangeForm(forms.Form):
    CREDIT, ADJUSTMENT = "credit", "adjustment"
    kind = forms.ChoiceField(label=_("Kind"), choices=[
        (CREDIT, _("Credit (top-up)")), (ADJUSTMENT, _("Adjustment (either sign)"))])
    amount = MoneyField(label=_("Amount"), help_text=_("In the deployment's currency, e.g. 25 or -3.50."))
    reason = forms.CharField(label=_("Reason"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text=_("Required: it is the audit trail of this entry."))
    # Made when the form is shown: submitting the same form twice posts one entry.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=80)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, initial={"idempotency_key": f"console:{uuid.uuid4().hex}"}, **kwargs)

    def clean(self):
        data = super().clean()
        amount = data.get("amount")
        if amount is not None:
            if amount == 0:
                self.add_error("amount", _("The amount cannot be zero."))
            elif data.get("kind") == self.CREDIT and amount < 0:
                self.add_error("amount", _("A credit is positive; use an adjustment to take money away."))
        if not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason."))
        return data
