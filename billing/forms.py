import datetime
import re
import uuid

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.money import MoneyParseError, money_plain, parse_money

MAX_RANGE = datetime.timedelta(days=31)
PERIODS = {"1h": datetime.timedelta(hours=1), "24h": datetime.timedelta(days=1), "7d": datetime.timedelta(days=7),
           "30d": datetime.timedelta(days=30)}
MAX_AMOUNT = 10**15   # micro-units: a billion units of currency; anything larger is a typo


class MoneyField(forms.CharField):
    """An amount typed as a plain decimal in the deployment's currency (12.50), cleaned to integer
    micro-units — the one money input of the project (billing.money.parse_money underneath).

    Refused with a clear message: exponents (1e3), NaN/Infinity, thousands separators, more decimals than
    micro-units (6), a sign unless `signed`, zero unless `allow_zero`, more than `max_amount` micro-units
    either way. Empty is None when not required. An int initial value is shown as a plain decimal."""

    default_error_messages = {
        "invalid": _("Enter a plain amount such as 12.50: digits and a decimal point only (no exponent, "
                     "no thousands separators)."),
        "precision": _("Use at most 6 decimals: the smallest amount is 0.000001."),
        "negative": _("The amount cannot be negative."),
        "zero": _("The amount cannot be zero."),
        "too_large": _("The amount is too large."),
    }

    def __init__(self, *, signed: bool = False, allow_zero: bool = True, max_amount: int = MAX_AMOUNT,
                 min_value=None, **kwargs):
        if min_value is not None and min_value >= 0:  # the DecimalField-style spelling of "not negative"
            signed = False
        self.signed, self.allow_zero, self.max_amount = signed, allow_zero, max_amount
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return money_plain(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def to_python(self, value):
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        if len(text) > 40:
            raise ValidationError(self.error_messages["too_large"], code="too_large")
        try:
            micro = parse_money(text)
        except MoneyParseError as error:
            code = "precision" if error.reason == "precision" else "invalid"
            raise ValidationError(self.error_messages[code], code=code) from None
        if text.lstrip().startswith("-") and not self.signed:  # "-0" too
            raise ValidationError(self.error_messages["negative"], code="negative")
        if micro == 0 and not self.allow_zero:
            raise ValidationError(self.error_messages["zero"], code="zero")
        if abs(micro) > self.max_amount:
            raise ValidationError(self.error_messages["too_large"], code="too_large")
        return micro

    def validate(self, value):
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")

    def run_validators(self, value):  # CharField's length validators do not apply to an int
        return


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
    model = forms.CharField(label=_("Model"), required=False, max_length=200,
                            widget=forms.TextInput(attrs={"placeholder": _("part of a name, e.g. gpt-4o")}))
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
    cached_input_per_m = MoneyField(label=_("Cached input, per 1M tokens"), min_value=0, required=False,
                                    help_text=_("A prompt-cache read. Empty: the provider's published share of "
                                                "the input price (Anthropic 0.1, OpenAI 0.5 to 0.1 by model, "
                                                "Gemini 0.25)."))
    cache_write_5m_per_m = MoneyField(label=_("Cache write (5 minutes), per 1M tokens"), min_value=0,
                                      required=False,
                                      help_text=_("Empty: Anthropic's 1.25 times input; input for others."))
    cache_write_1h_per_m = MoneyField(label=_("Cache write (1 hour), per 1M tokens"), min_value=0, required=False,
                                      help_text=_("Empty: Anthropic's 2 times input; input for others."))
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
    amount = MoneyField(label=_("Amount"), signed=True,
                        help_text=_("In the deployment's currency, e.g. 25 or -3.50."))
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


# --- team billing: redeem a code, spend report, billing policy ----------------------------------------------

class RedeemForm(forms.Form):
    code = forms.CharField(label=_("Redemption code"), max_length=60, widget=forms.TextInput(attrs={
        "placeholder": "TG-XXXX-XXXX-XXXX-XXXX", "autocomplete": "off", "spellcheck": "false"}),
        help_text=_("Case, spaces and dashes do not matter."))


class SpendReportForm(forms.Form):
    """?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=key|model|day: whole UTC days, both ends included; by default
    the last 30 days up to today."""

    DEFAULT_DAYS, MAX_DAYS = 30, 366
    GROUPS = [("key", _("By key")), ("model", _("By model")), ("day", _("By day")), ("app", _("By app"))]
    group_by = forms.ChoiceField(label=_("Group by"), choices=GROUPS, required=False)

    def __init__(self, data, **kwargs):
        # The inputs show the range the report covers: today and 29 days before `to` unless given.
        data = data.copy()
        data["to"] = data.get("to") or timezone.now().date().isoformat()
        if not data.get("from"):
            try:
                until = datetime.date.fromisoformat(data["to"])
            except ValueError:
                pass   # the "to" field explains
            else:
                data["from"] = (until - datetime.timedelta(days=self.DEFAULT_DAYS - 1)).isoformat()
        super().__init__(data, **kwargs)
        # "from" is a Python keyword: the fields are named in the dict instead of as class attributes.
        date = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
        self.fields = {
            "from": forms.DateField(label=_("From (UTC)"), required=False, widget=date, input_formats=["%Y-%m-%d"]),
            "to": forms.DateField(label=_("To (UTC)"), required=False, widget=date, input_formats=["%Y-%m-%d"]),
            **self.fields}

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        today = timezone.now().date()
        until = data.get("to") or today
        since = data.get("from") or until - datetime.timedelta(days=self.DEFAULT_DAYS - 1)
        if since > until:
            raise ValidationError(_("“From” must not be after “To”."))
        if (until - since).days + 1 > self.MAX_DAYS:
            raise ValidationError(_("Choose a range of at most %(days)d days.") % {"days": self.MAX_DAYS})
        data.update({"from": since, "to": until, "group_by": data.get("group_by") or "key"})
        return data

    def report_range(self) -> tuple[datetime.datetime, datetime.datetime]:
        """[since, until) in UTC for billing.selectors.spend_report."""
        since = datetime.datetime.combine(self.cleaned_data["from"], datetime.time.min, tzinfo=datetime.UTC)
        until = datetime.datetime.combine(self.cleaned_data["to"] + datetime.timedelta(days=1), datetime.time.min,
                                          tzinfo=datetime.UTC)
        return since, until


MAX_THRESHOLDS, MAX_RECIPIENTS = 10, 20


def _items(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,;]+", text or "") if item]


class BillingPolicyForm(forms.Form):
    monthly_cap = MoneyField(
        label=_("Monthly cap (%(currency)s)") % {"currency": settings.TOLLGATE_CURRENCY}, required=False,
        allow_zero=False, widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": _("no cap")}),
        help_text=_("The most the whole team may spend in a calendar month (UTC), e.g. 500 or 99.50; "
                    "requests past it are refused. Empty: no cap."))
    alert_thresholds = forms.CharField(
        label=_("Alert thresholds (%)"), required=False, max_length=200,
        help_text=_("Percentages of each budget (key, key group, route, monthly cap, balance) at which an alert "
                    "is mailed, e.g. 50, 80, 100. Empty: no alerts."))
    alert_recipients = forms.CharField(
        label=_("Alert recipients"), required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Email addresses, one per line or separated by commas. Empty: the team's owners and admins."))

    def clean_alert_thresholds(self):
        values = []
        for item in _items(self.cleaned_data.get("alert_thresholds")):
            if not item.isascii() or not item.isdigit() or not 1 <= int(item) <= 100:
                raise ValidationError(_("“%(value)s” is not a whole percentage from 1 to 100.") % {"value": item})
            values.append(int(item))
        values = sorted(set(values))
        if len(values) > MAX_THRESHOLDS:
            raise ValidationError(_("At most %(n)d thresholds.") % {"n": MAX_THRESHOLDS})
        return values

    def clean_alert_recipients(self):
        values = []
        for item in _items(self.cleaned_data.get("alert_recipients")):
            try:
                validate_email(item)
            except ValidationError:
                raise ValidationError(_("“%(value)s” is not an email address.") % {"value": item}) from None
            if item.lower() not in {v.lower() for v in values}:
                values.append(item)
        if len(values) > MAX_RECIPIENTS:
            raise ValidationError(_("At most %(n)d recipients.") % {"n": MAX_RECIPIENTS})
        return values
