import ipaddress

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from keys import selectors
from keys.models import KeyGroup


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


class KeyCreateForm(KeyFormMixin, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    group = forms.ModelChoiceField(label=_("Group"), queryset=KeyGroup.objects.none(),
                                   empty_label=None)
    allowed_models = ModelsField()
    expires_at = forms.DateTimeField(
        label=_("Expires"), required=False, help_text=_("Optional (UTC)."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    allowed_ips = IpListField()

    def __init__(self, *args, team, model_choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup(team=team, model_choices=model_choices)


class KeyEditForm(KeyCreateForm):
    def __init__(self, *args, api_key, model_choices, **kwargs):
        initial = {"name": api_key.name, "group": api_key.group_id, "allowed_models": api_key.allowed_models,
                   "expires_at": api_key.expires_at, "allowed_ips": api_key.allowed_ips}
        super().__init__(*args, team=api_key.team, model_choices=model_choices, initial=initial, **kwargs)
        self.fields["allowed_models"].choices = _with_current(model_choices, api_key.allowed_models)

    def clean_expires_at(self):  # an existing key may keep an expiry that has passed (it just stays expired)
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at and expires_at != self.initial["expires_at"]:
            return super().clean_expires_at()
        return expires_at


class KeyGroupForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    allowed_models = ModelsField(help_text=_("Leave all unchecked to allow every model the team allows."))

    def __init__(self, *args, team, model_choices, group=None, **kwargs):
        if group is not None:
            kwargs["initial"] = {"name": group.name, "allowed_models": group.allowed_models}
        super().__init__(*args, **kwargs)
        self.team, self.group = team, group
        self.fields["allowed_models"].choices = _with_current(model_choices, group.allowed_models if group else ())

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        taken = selectors.key_groups(team=self.team).filter(name__iexact=name)
        if self.group is not None:
            taken = taken.exclude(pk=self.group.pk)
        if taken.exists():
            raise ValidationError(_("This team already has a group with that name."))
        return name
