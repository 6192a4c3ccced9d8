from django import forms
from django.utils.translation import gettext_lazy as _

from support import selectors
from support.models import Ticket


class TicketOpenForm(forms.Form):
    """Open a ticket; a request id (or the response id `chatcmpl-…`) pulls in that request's evidence."""

    request_id = forms.CharField(max_length=60, required=False, label=_("Request id"),
                                 help_text=_("req_… from the X-Request-Id header, or the response id chatcmpl-…"))
    subject = forms.CharField(max_length=200, label=_("Subject"))
    category = forms.ChoiceField(choices=Ticket.CATEGORIES, initial=Ticket.TECHNICAL, label=_("Category"),
                                 required=False)
    priority = forms.ChoiceField(choices=Ticket.PRIORITIES, initial=Ticket.NORMAL, label=_("Priority"))
    owner = forms.CharField(max_length=120, required=False, label=_("Owner"),
                            help_text=_("Who on your side owns this problem"))
    environment = forms.CharField(max_length=200, required=False, label=_("Environment"),
                                  help_text=_("Where it happens: app, SDK, host"))
    selected_capability = forms.CharField(max_length=200, required=False, label=_("Selected capability"),
                                          help_text=_("The model and capability you chose"))
    last_known_good = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                                      label=_("Last known good"), help_text=_("When and how it last worked"))
    observed_symptom = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                       label=_("Observed symptom"))
    evidence = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label=_("Evidence"),
                               help_text=_("Logs, commands, screenshots described; secrets are redacted"))
    next_review_at = forms.DateTimeField(required=False, label=_("Next review"),
                                         widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def __init__(self, *args, team, usage_owner, billing_only=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.team, self.usage_owner, self.record = team, usage_owner, None
        if billing_only:  # a billing member opens billing tickets only
            self.fields["category"].choices = [c for c in Ticket.CATEGORIES if c[0] == Ticket.BILLING]
            self.fields["category"].initial = Ticket.BILLING

    def clean_category(self):
        # Left out (older clients, scripts): the only category this caller may open, else technical.
        return self.cleaned_data["category"] or self.fields["category"].initial

    def clean_request_id(self):
        value = self.cleaned_data["request_id"].strip()
        if value:
            self.record = selectors.usage_record(team=self.team, owner=self.usage_owner, request_id=value)
            if self.record is None:
                raise forms.ValidationError(_("No request with this id in this team."))
        return value

    def ticket_fields(self) -> dict:
        """What services.ticket_open takes from this form (the request comes as `self.record`)."""
        return {k: v for k, v in self.cleaned_data.items() if k != "request_id"}


class ReplyForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label=_("Reply"))


class NoteForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label=_("Internal note"))


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Ticket.STATUSES, label=_("Status"))


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label=_("Unassigned"),
                                      label=_("Assignee"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = selectors.support_staff()


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, label=_("Status"),
                               choices=[("active", _("Open and pending")), ("all", _("All"))] + Ticket.STATUSES)
    priority = forms.ChoiceField(required=False, label=_("Priority"),
                                 choices=[("", _("Any priority"))] + Ticket.PRIORITIES)
    assignee = forms.CharField(required=False, max_length=20, label=_("Assignee"))  # "me", "none" or a user id
    team = forms.SlugField(required=False, max_length=60, label=_("Team"))

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        return {"status": data.get("status") or "active", "priority": data.get("priority") or "",
                "assignee": data.get("assignee") or "", "team": data.get("team") or ""}
