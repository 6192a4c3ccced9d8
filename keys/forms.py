import ipaddress

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from keys import selectors
from keys.models import KeyGroup, Limits


class ModelsField(forms.MultipleChoiceField):
    """Catalog model ids (none chosen: no extra restriction). Choices come from the view (the catalog)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", _("Allowed models"))
        kwargs.setdefault("help_text", _("Leave all unchecked to allow every model the team and group allow."))
        super().__init__(**kwargs)


def _with_current(choices, current) -> list[tuple[str, str]]:
    """The catalog's models plus any the object already names (a retired model must not vanish silently)."""
    known = {value for value, _label in choices}
    return list(choices) + [(m, m) for m in current if m not in known]


class IpListField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "203.0.113.7\n10.0.0.0/8"})

    def __init__(self, **kwargs):
        super().__init__(required=False, label=_("IP allowlist"),
                         help_text=_("One IP address or CIDR subnet per line; empty allows any address."),
                         **kwargs)

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        entries = [line.strip() for line in (value or "").replace(",", "\n").splitlines() if line.strip()]
        networks = []
        for entry in entries:
            try:
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ValidationError(_("“%(entry)s” is not an IP address or CIDR subnet."),
                                      params={"entry": entry}) from None
        return networks


MICRO = 1_000_000  # billing.money.MICRO (billing sits above keys: its helpers are imported where they are used)
MAX_BUDGET = 10**12 * MICRO  # fits keys.models.Limits.budget_limit (a bigint) with room to spare


class BudgetField(forms.CharField):
    """A budget typed as a plain decimal in the team's currency (12.50), cleaned to integer micro-units;
    empty means no budget. No exponent, NaN, sign or more decimals than micro-units."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", _("Budget (%(currency)s)") % {"currency": settings.TOLLGATE_CURRENCY})
        kwargs.setdefault("help_text", _("Spend allowed per period, e.g. 25 or 12.50; empty for no budget."))
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "placeholder": _("no limit")}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        from billing.money import money_plain

        return money_plain(value) if isinstance(value, int) else value

    def to_python(self, value):
        from billing.money import MoneyParseError, parse_money

        text = (value or "").strip()
        if not text:
            return None
        try:
            micro = parse_money(text)
        except MoneyParseError as exc:
            if exc.reason == "precision":
                raise ValidationError(_("Use at most 6 decimals (the smallest amount is 0.000001)."),
                                      code="precision") from None
            raise ValidationError(_("Enter a plain amount such as 12.50: digits and a decimal point, no exponent "
                                    "or separators."), code="invalid") from None
        if micro < 0:
            raise ValidationError(_("A budget cannot be negative."), code="min_value")
        if micro > MAX_BUDGET:
            raise ValidationError(_("That budget is too large."), code="max_value")
        return micro


def _count_field(label, help_text):
    return forms.IntegerField(label=label, help_text=help_text, required=False, min_value=1,
                              max_value=2_147_483_647,
                              widget=forms.NumberInput(attrs={"placeholder": _("no limit")}))


class LimitsFormMixin:
    """Budget, its period, rpm, tpm and concurrency: cleaned to the fields of keys.models.Limits (None = no
    limit at this level)."""

    LIMIT_FIELDS = ("budget_limit", "budget_period", "rpm_limit", "tpm_limit", "max_concurrency")

    @staticmethod
    def limit_fields() -> dict:
        return {
            "budget_limit": BudgetField(),
            "budget_period": forms.TypedChoiceField(
                label=_("Budget period"), initial=Limits.MONTH, required=False, empty_value=Limits.MONTH,
                choices=[(Limits.DAY, _("Daily")), (Limits.WEEK, _("Weekly")), (Limits.MONTH, _("Monthly")),
                         (Limits.NONE, _("No reset"))],
                help_text=_("Periods start at 00:00 UTC (weeks on Monday, months on the 1st).")),
            "rpm_limit": _count_field(_("Requests per minute"), _("Empty for no limit.")),
            "tpm_limit": _count_field(_("Tokens per minute"), _("Prompt and output tokens; empty for no limit.")),
            "max_concurrency": _count_field(_("Concurrent requests"), _("Requests in flight; empty for no limit.")),
        }

    def add_limit_fields(self, target=None):
        for name, field in self.limit_fields().items():
            self.fields[name] = field
            if target is not None:
                self.initial.setdefault(name, getattr(target, name))

    def limit_bound_fields(self):
        return [self[name] for name in self.LIMIT_FIELDS if name in self.fields]

    def non_limit_fields(self):
        return [field for field in self.visible_fields() if field.name not in self.LIMIT_FIELDS]


class KeyFormMixin:
    """Shared by the create and edit forms: group choices from the team, models from the catalog."""

    def setup(self, *, team, model_choices):
        self.fields["group"].queryset = selectors.key_groups(team=team)
        self.fields["allowed_models"].choices = list(model_choices)

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at and expires_at <= timezone.now():
            raise ValidationError(_("The expiry must be in the future."))
        return expires_at


class KeyCreateForm(KeyFormMixin, LimitsFormMixin, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    group = forms.ModelChoiceField(label=_("Group"), queryset=KeyGroup.objects.none(),
                                   empty_label=None)
    allowed_models = ModelsField()
    expires_at = forms.DateTimeField(
        label=_("Expires"), required=False, help_text=_("Optional (UTC)."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    allowed_ips = IpListField()

    def __init__(self, *args, team, model_choices, api_key=None, with_limits=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup(team=team, model_choices=model_choices)
        if with_limits:  # limits are a team admin's control; a member's own key keeps the ones it has
            self.add_limit_fields(api_key)


class KeyEditForm(KeyCreateForm):
    def __init__(self, *args, api_key, model_choices, **kwargs):
        initial = {"name": api_key.name, "group": api_key.group_id, "allowed_models": api_key.allowed_models,
                   "expires_at": api_key.expires_at, "allowed_ips": api_key.allowed_ips}
        super().__init__(*args, team=api_key.team, model_choices=model_choices, initial=initial, api_key=api_key,
                         **kwargs)
        self.fields["allowed_models"].choices = _with_current(model_choices, api_key.allowed_models)
        if "budget_limit" in self.fields:   # with the limits: a team admin's control
            self.fields["is_debug"] = forms.BooleanField(
                label=_("Debug key"), required=False, initial=api_key.is_debug,
                help_text=_("May ask for the upstream request body to be echoed in a stream (debug: "
                            "echo_upstream_body), secrets redacted. Leave off for keys in production."))

    def clean_expires_at(self):  # an existing key may keep an expiry that has passed (it just stays expired)
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at and expires_at != self.initial["expires_at"]:
            return super().clean_expires_at()
        return expires_at


class KeyGroupForm(LimitsFormMixin, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    allowed_models = ModelsField(help_text=_("Leave all unchecked to allow every model the team allows."))
    routes_only = forms.BooleanField(
        label=_("Routes only"), required=False,
        help_text=_("Keys of this group may only call route:NAME or auto, so they cannot bypass a route's "
                    "forbidden models by naming a model directly."))

    def __init__(self, *args, team, model_choices, group=None, **kwargs):
        if group is not None:
            kwargs["initial"] = {"name": group.name, "allowed_models": group.allowed_models,
                                 "routes_only": group.routes_only}
        super().__init__(*args, **kwargs)
        self.team, self.group = team, group
        self.fields["allowed_models"].choices = _with_current(model_choices, group.allowed_models if group else ())
        self.add_limit_fields(group)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        taken = selectors.key_groups(team=self.team).filter(name__iexact=name)
        if self.group is not None:
            taken = taken.exclude(pk=self.group.pk)
        if taken.exists():
            raise ValidationError(_("This team already has a group with that name."))
        return name
