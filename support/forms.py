from django import forms

from support import selectors
from support.models import Ticket


class TicketOpenForm(forms.Form):
    """Open a ticket; a request id (or the response id `chatcmpl-…`) pulls in that request's evidence."""

    request_id = forms.CharField(max_length=60, required=False, label="Request id",
                                 help_text="req_… from the X-Request-Id header, or the response id chatcmpl-…")
    subject = forms.CharField(max_length=200)
    priority = forms.ChoiceField(choices=Ticket.PRIORITIES, initial=Ticket.NORMAL)
    owner = forms.CharField(max_length=120, required=False, help_text="Who on your side owns this problem")
    environment = forms.CharField(max_length=200, required=False, help_text="Where it happens: app, SDK, host")
    selected_capability = forms.CharField(max_length=200, required=False,
                                          help_text="The model and capability you chose")
    last_known_good = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                                      help_text="When and how it last worked")
    observed_symptom = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    evidence = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                               help_text="Logs, commands, screenshots described; secrets are redacted")
    next_review_at = forms.DateTimeField(required=False, label="Next review",
                                         widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def __init__(self, *args, team, usage_owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.team, self.usage_owner, self.record = team, usage_owner, None

    def clean_request_id(self):
        value = self.cleaned_data["request_id"].strip()
        if value:
            self.record = selectors.usage_record(team=self.team, owner=self.usage_owner, request_id=value)
            if self.record is None:
                raise forms.ValidationError("No request with this id in this team.")
        return value

    def ticket_fields(self) -> dict:
        """What services.ticket_open takes from this form (the request comes as `self.record`)."""
        return {k: v for k, v in self.cleaned_data.items() if k != "request_id"}


class ReplyForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Reply")


class NoteForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Internal note")


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Ticket.STATUSES)


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label="Unassigned")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = selectors.support_staff()


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("active", "Open and pending"), ("all", "All")]
                               + Ticket.STATUSES)
    priority = forms.ChoiceField(required=False, choices=[("", "Any priority")] + Ticket.PRIORITIES)
    assignee = forms.CharField(required=False, max_length=20)    # "me", "none" or a user id
    team = forms.SlugField(required=False, max_length=60)

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        return {"status": data.get("status") or "active", "priority": data.get("priority") or "",
                "assignee": data.get("assignee") or "", "team": data.get("team") or ""}
