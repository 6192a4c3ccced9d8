"""Forms of the operator's money and team pages: code batches, team creation, cross-team log filters, prices
per customer, and the signed confirmation of a credit or adjustment. Every amount is a MoneyField."""
import datetime
from decimal import Decimal

from django import forms
from django.core import signing
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.forms import LogFilterForm, MoneyField, PriceForm
from billing.money import MICRO

MAX_CODES = 1000


def _datetime_input():
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class RedemptionBatchForm(forms.Form):
    name = forms.CharField(label=_("Label"), max_length=120, required=False,
                           help_text=_("For you: “launch promo”, “conference 2026”."))
    count = forms.IntegerField(label=_("Number of codes"), min_value=1, max_value=MAX_CODES, initial=10)
    amount = MoneyField(label=_("Amount per code"), help_text=_("In the deployment's currency, e.g. 10 or 2.50."))
    expires_at = forms.DateTimeField(label=_("Codes expire (UTC)"), required=False, widget=_datetime_input(),
                                     help_text=_("Empty: the codes can be redeemed at any time."))
    credit_valid_days = forms.IntegerField(
        label=_("Credit valid for (days)"), required=False, min_value=1, max_value=3650,
        help_text=_("Empty: redeemed credit never expires."))

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount is not None and amount <= 0:
            raise ValidationError(_("A code is worth a positive amount."))
        return amount

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value and value <= timezone.now():
            raise ValidationError(_("The codes' expiry must be in the future."))
        return value


class BatchForm(forms.Form):
    """The batch a void (or export) is about."""

    batch = forms.RegexField(regex=r"^[0-9a-f]{16}$", max_length=16, widget=forms.HiddenInput)


class TeamCreateForm(forms.Form):
    name = forms.CharField(label=_("Team name"), max_length=120)
    slug = forms.SlugField(label=_("Slug"), max_length=60,
                           help_text=_("In the console's addresses: /console/t/<slug>/."))
    owner = forms.CharField(label=_("Owner (username or email)"), max_length=150,
                            help_text=_("An unknown one becomes a new user with a one-time password."))


class OperatorLogFilterForm(LogFilterForm):
    """The team logs' filters across every team: a team (by slug) instead of a key."""

    team = forms.CharField(label=_("Team (slug)"), required=False, max_length=60)
    field_order = ["team", "period", "since", "until", "model", "status", "request_id"]

    def __init__(self, data, *, teams):
        super().__init__(data, keys=[])
        del self.fields["key"]
        self.teams = teams

    def clean_team(self):
        slug = (self.cleaned_data.get("team") or "").strip()
        if not slug:
            return None
        team = self.teams.filter(slug=slug).first()
        if team is None:
            raise ValidationError(_("No team has the slug “%(slug)s”.") % {"slug": slug})
        return team

    def search_filters(self) -> dict:
        """Keyword arguments of billing.selectors.platform_usage_search."""
        team = self.cleaned_data["team"]
        return {name: self.cleaned_data[name] for name in ("since", "until", "model", "status", "request_id")} | {
            "team_id": team.pk if team else None}


class MultiplierField(forms.DecimalField):
    """A price multiplier typed as a plain decimal (1 = list price, 0.8 = 20% off), cleaned to ppm."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 9)
        kwargs.setdefault("decimal_places", 6)
        kwargs.setdefault("min_value", Decimal(0))
        kwargs.setdefault("max_value", Decimal(100))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return Decimal(value) / MICRO if isinstance(value, int) else value

    def to_python(self, value):
        if isinstance(value, str) and value.strip() and not all(c in "0123456789." for c in value.strip()):
            raise ValidationError(_("Enter a plain decimal number, such as 0.8."), code="invalid")
        return super().to_python(value)

    def clean(self, value):
        number = super().clean(value)
        return None if number is None else int(number * MICRO)


class TeamMultiplierForm(forms.Form):
    multiplier = MultiplierField(label=_("Team multiplier"),
                                 help_text=_("Applied to every price the team pays: 1 = list price, "
                                             "0.8 = a fifth off."))


class GroupMultiplierForm(forms.Form):
    group = forms.TypedChoiceField(label=_("Key group"), coerce=int)
    multiplier = MultiplierField(label=_("Group multiplier"), required=False,
                                 help_text=_("On top of the team's; empty: none."))

    def __init__(self, *args, groups, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [(g.pk, g.name) for g in groups]


class PriceOverrideForm(PriceForm):
    """A team's own price for one model from a date on; the fields of the catalog price form."""

    model = forms.TypedChoiceField(label=_("Model"), coerce=int)
    field_order = ["model", "input_per_m", "output_per_m", "cached_input_per_m", "cache_write_5m_per_m",
                   "cache_write_1h_per_m", "request_fee", "effective_from"]

    def __init__(self, *args, models, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.pk, m.public_id) for m in models]
        self.fields["effective_from"].help_text = _(
            "Empty: now. Usage already recorded keeps the price it was charged at.")


# --- the confirmation of a credit or adjustment -------------------------------------------------------------
# The first POST of the balance form shows what would be posted; only a POST carrying a token signed for
# exactly that team, kind, amount, reason and idempotency key posts it (a changed field needs a new
# confirmation). The idempotency key, made when the form was first shown, makes a double submit post once.

_SALT = "tollgate.operator.balance-confirm"
CONFIRM_MAX_AGE = datetime.timedelta(minutes=15)


def _confirm_payload(team, data) -> list:
    return [team.pk, data["kind"], data["amount"], data["reason"].strip(), data["idempotency_key"]]


def balance_confirm_token(*, team, data) -> str:
    return signing.dumps(_confirm_payload(team, data), salt=_SALT, compress=True)


def balance_confirmed(*, team, data, token: str | None) -> bool:
    """Whether `token` confirms exactly this change (and is at most 15 minutes old)."""
    if not token:
        return False
    try:
        signed = signing.loads(token, salt=_SALT, max_age=CONFIRM_MAX_AGE)
    except signing.BadSignature:
        return False
    return signed == _confirm_payload(team, data)
