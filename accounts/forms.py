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
    expires_at = forms.DateTimeField(
        label=_("Expires at"), required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Optional (UTC): the token stops working then. Leave empty for no expiry."))

    def clean_expires_at(self):
        when = self.cleaned_data["expires_at"]
        if when is not None and when <= timezone.now():
            raise forms.ValidationError(_("Choose a time in the future."))
        return when


def platform_role_choices():
    return [(code, ROLE_LABELS[code]) for code, _label in roles.PLATFORM_ROLES]


class StaffInviteForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150, validators=[UnicodeUsernameValidator(
        message=_("Use letters, digits and @ . + - _ only."))])
    email = forms.EmailField(label=_("Email"))
    role = forms.ChoiceField(label=_("Role"), choices=platform_role_choices, initial=roles.SUPPORT,
                             help_text=_("Support staff work tickets and read request logs; operators run "
                                         "the platform."))
