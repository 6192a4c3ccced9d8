import datetime

from django import forms
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import roles


ROLE_LABELS = {roles.OWNER: _("Owner"), roles.ADMIN: _("Admin"), roles.BILLING: _("Billing"),
               roles.MEMBER: _("Member"), roles.OPERATOR: _("Operator"), roles.SUPPORT: _("Support")}


def team_role_choices():
    return [(code, ROLE_LABELS[code]) for code, _label in roles.TEAM_ROLES]


class MemberInviteForm(forms.Form):
    identifier = forms.CharField(
        label=_("Username or email"), max_length=150,
        help_text=_("An existing user is added; a new one is created with a one-time password shown once."),
        validators=[UnicodeUsernameValidator(message=_(
            "Use letters, digits and @ . + - _ only (a username or an email address)."))])
    role = forms.ChoiceField(label=_("Role"), choices=team_role_choices, initial=roles.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=team_role_choices)


class AccountPasswordForm(PasswordChangeForm):
    """Old password, the new one twice, Django's password validators (Django's own translated messages)."""

    def __init__(self, user, *args, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.fields["old_password"].label = _("Current password")
        self.fields["old_password"].widget.attrs.pop("autofocus", None)


class TokenCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80,
                           help_text=_("What the token is for, e.g. “CI deploys”."))
    expires_on = forms.DateField(
        label=_("Expires on"), required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Optional: the token stops working after this day. Leave empty for no expiry."))

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is not None and day < timezone.localdate():
            raise forms.ValidationError(_("Choose today or a later day."))
        return day

    @property
    def expires_at(self):
        """The end of the chosen day (the start of the next one), in the server's time zone."""
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return timezone.make_aware(datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min))


def platform_role_choices():
    return [(code, ROLE_LABELS[code]) for code, _label in roles.PLATFORM_ROLES]


class StaffInviteForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150, validators=[UnicodeUsernameValidator(
        message=_("Use letters, digits and @ . + - _ only."))])
    email = forms.EmailField(label=_("Email"))
    role = forms.ChoiceField(label=_("Role"), choices=platform_role_choices, initial=roles.SUPPORT,
                             help_text=_("Support staff work tickets and read request logs; operators run "
                                         "the platform."))
