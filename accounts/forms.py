from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator
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
