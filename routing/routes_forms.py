"""Forms of the Routes page: a route (task tier), the team's `auto` rules, and the try-it panel.

Validation that concerns the catalog (ids, unique names, budgets) lives in routing.services, shared with the
API; these forms parse what a browser sends (lists, money) and hand over."""
import orjson
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from keys.forms import ModelsField, _with_current
from keys.models import KeyGroup
from routing.models import RoutingRule


class MoneyInput(forms.CharField):
    """An optional amount typed as a plain decimal (12.50) → integer micro-units. Parsing is billing's
    (billing.money.parse_money: no exponent, NaN or more decimals than micro-units); billing sits above
    routing in the stack, so it is imported when used."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "maxlength": 40}))
        super().__init__(required=False, **kwargs)

    def prepare_value(self, value):
        from billing.money import money_plain

        return money_plain(value) if isinstance(value, int) else value

    def to_python(self, value):
        from billing.money import MoneyParseError, parse_money

        value = (value or "").strip()
        if not value:
            return None
        try:
            amount = parse_money(value)
        except MoneyParseError as exc:
            raise ValidationError(_("Use at most 6 decimals.") if exc.reason == "precision" else
                                  _("Enter a plain amount such as 12.50 (digits and a decimal point only).")) from None
        if amount < 0:
            raise ValidationError(_("The amount cannot be negative."))
        return amount


def parse_model_list(value) -> list[str]:
    """"a, b" or one per line → ["a", "b"], order kept, duplicates dropped."""
    items = [part.strip() for line in (value or "").splitlines() for part in line.split(",")]
    return list(dict.fromkeys(item for item in items if item))


def parse_request_body(text: str, *, error=ValidationError, field=None):
    """A pasted request body → dict, or `error` saying what is wrong with the JSON."""
    try:
        body = orjson.loads(text or "")
    except orjson.JSONDecodeError as exc:
        message = _("This is not valid JSON (%(detail)s). Paste a request body such as "
                    "{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}.") % {
            "detail": str(exc).split(":")[0]}
        raise error({field: [message]} if field else message) from None
    if not isinstance(body, dict):
        message = _("Expected a JSON object (the request body), not a list or a value.")
        raise error({field: [message]} if field else message)
    return body


class OrderedModelsField(forms.CharField):
    widget = forms.TextInput(attrs={"placeholder": "openai/gpt-4o-mini, anthropic/claude-haiku-4-5",
                                    "list": "route-models"})

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return parse_model_list(value)


class RouteForm(forms.Form):
    name = forms.SlugField(label=_("Name"), max_length=60,
                           help_text=_("Clients call it as model “route:NAME”."))
    key_group = forms.ModelChoiceField(label=_("Key group"), queryset=KeyGroup.objects.none(), required=False,
                                       empty_label=_("Whole team"),
                                       help_text=_("A group's own route wins over the team-wide one."))
    default_model = forms.ChoiceField(label=_("Default model"))
    backup_models = OrderedModelsField(label=_("Backup models"), required=False,
                                       help_text=_("Tried in this order when the default fails; comma-separated."))
    downgrade_model = forms.ChoiceField(label=_("Downgrade model"), required=False,
                                        help_text=_("Serves when all the others failed, and past the soft limit."))
    forbidden_models = ModelsField(label=_("Forbidden models"),
                                   help_text=_("Never served to keys this route applies to."))

    def __init__(self, *args, team, model_choices, rule: RoutingRule | None = None, **kwargs):
        if rule is not None:
            kwargs["initial"] = {
                "name": rule.name, "key_group": rule.key_group_id, "default_model": rule.default_model.public_id,
                "backup_models": rule.backup_models,
                "downgrade_model": rule.downgrade_model.public_id if rule.downgrade_model_id else "",
                "forbidden_models": rule.forbidden_models, "budget_limit": rule.budget_limit,
                "budget_period": rule.budget_period, "soft_limit": rule.soft_limit}
        super().__init__(*args, **kwargs)
        current = [rule.default_model.public_id] if rule else []
        if rule and rule.downgrade_model_id:
            current.append(rule.downgrade_model.public_id)
        choices = _with_current(model_choices, current)
        self.fields["key_group"].queryset = KeyGroup.objects.filter(team=team).order_by("name")
        self.fields["default_model"].choices = choices
        self.fields["downgrade_model"].choices = [("", _("None"))] + choices
        self.fields["forbidden_models"].choices = _with_current(model_choices, rule.forbidden_models if rule else ())
        self.fields["budget_limit"] = MoneyInput(label=_("Route budget"),
                                                   help_text=_("Hard limit per period; empty for none."))
        self.fields["budget_period"] = forms.ChoiceField(label=_("Budget period"), choices=[
            ("day", _("Daily")), ("week", _("Weekly")), ("month", _("Monthly")), ("none", _("No reset"))],
            initial="month")
        self.fields["soft_limit"] = MoneyInput(label=_("Soft limit"),
                                                 help_text=_("Past it, the downgrade model serves."))

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        data["downgrade_model"] = data.get("downgrade_model") or None
        return data


class AutoRoutingForm(forms.Form):
    vision_route = forms.SlugField(label=_("Images or video →"), max_length=60)
    tools_route = forms.SlugField(label=_("Tools →"), max_length=60)
    long_prompt_route = forms.SlugField(label=_("Long prompt →"), max_length=60)
    long_prompt_tokens = forms.IntegerField(label=_("Long prompt from (tokens)"), required=False, min_value=1)
    default_route = forms.SlugField(label=_("Anything else →"), max_length=60)
    claude_route = forms.SlugField(
        label=_("Unknown Claude model ids →"), max_length=60, required=False,
        help_text=_("A Claude model id the catalog does not know (a new Claude Code release) goes to this route, "
                    "noted in X-Tollgate-Route. Empty: such ids are refused."))

    def __init__(self, *args, auto, **kwargs):
        kwargs.setdefault("initial", {f: getattr(auto, f) for f in self.base_fields})
        super().__init__(*args, **kwargs)
        self.fields["long_prompt_tokens"].help_text = _("Empty: the deployment's default (%(n)s).") % {
            "n": settings.TOLLGATE_AUTO_LONG_PROMPT_TOKENS}


class RouteTryForm(forms.Form):
    body = forms.CharField(label=_("Request body (JSON)"), widget=forms.Textarea(attrs={
        "rows": 7, "spellcheck": "false", "class": "mono"}),
        initial='{"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}')
    key = forms.ModelChoiceField(label=_("As key"), queryset=None, required=False, empty_label=_("—"))
    key_group = forms.ModelChoiceField(label=_("Or as a new key of group"), queryset=None, required=False,
                                       empty_label=_("—"))

    def __init__(self, *args, keys, groups, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].queryset = keys.select_related("team", "group")
        self.fields["key_group"].queryset = groups
        first = None if self.is_bound else groups.first()
        if first is not None:
            self.initial.setdefault("key_group", first.pk)

    def clean_body(self):
        return parse_request_body(self.cleaned_data["body"])

    def clean(self):
        data = super().clean()
        if not data.get("key") and not data.get("key_group") and not self.errors:
            raise ValidationError(_("Choose a key or a key group to try the request as."))
        return data
