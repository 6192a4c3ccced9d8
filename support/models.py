"""Support tickets: the troubleshooting evidence chain, from a failed request to its resolution.

Everything stored here went through core.redaction first (support.services does it); the models
themselves hold no logic beyond choices and ordering.
"""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Team


class Ticket(models.Model):
    OPEN, PENDING, RESOLVED, CLOSED = "open", "pending", "resolved", "closed"
    STATUSES = [(OPEN, _("Open")), (PENDING, _("Pending (waiting on the team)")), (RESOLVED, _("Resolved")),
                (CLOSED, _("Closed"))]
    ACTIVE_STATUSES = (OPEN, PENDING)
    LOW, NORMAL, HIGH, URGENT = "low", "normal", "high", "urgent"
    PRIORITIES = [(LOW, _("Low")), (NORMAL, _("Normal")), (HIGH, _("High")), (URGENT, _("Urgent"))]
    # Billing members (roles.TICKETS_BILLING) open and follow billing tickets; the rest need tickets.write.
    TECHNICAL, BILLING = "technical", "billing"
    CATEGORIES = [(TECHNICAL, _("Technical")), (BILLING, _("Billing"))]

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tickets")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                  related_name="opened_tickets")
    subject = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=STATUSES, default=OPEN)
    priority = models.CharField(max_length=10, choices=PRIORITIES, default=NORMAL)
    category = models.CharField(max_length=10, choices=CATEGORIES, default=TECHNICAL)
    # Support staff (a StaffRole holder) working the ticket.
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="assigned_tickets")
    request_id = models.CharField(max_length=40, blank=True, db_index=True)
    # The failed request's troubleshooting fields at the time the ticket was opened (redacted).
    troubleshooting = models.JSONField(default=dict, blank=True)
    # The handoff note: enough for someone else to pick the problem up.
    owner = models.CharField(max_length=120, blank=True)
    environment = models.CharField(max_length=200, blank=True)
    selected_capability = models.CharField(max_length=200, blank=True)
    last_known_good = models.TextField(blank=True)
    observed_symptom = models.TextField(blank=True)
    evidence = models.TextField(blank=True)
    next_review_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["team", "-created_at"], name="ticket_team_newest"),
            models.Index(fields=["status", "created_at"], name="ticket_queue"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.subject}"


class TicketEvent(models.Model):
    """One entry in a ticket's history. Status changes and assignments are written by the service that makes
    them, in the same transaction; internal notes are never shown to the team."""

    REPLY, INTERNAL_NOTE, STATUS_CHANGE, ASSIGNMENT = "reply", "internal_note", "status_change", "assignment"
    KINDS = [(REPLY, _("Reply")), (INTERNAL_NOTE, _("Internal note")), (STATUS_CHANGE, _("Status change")),
             (ASSIGNMENT, _("Assignment"))]
    TEAM_VISIBLE = (REPLY, STATUS_CHANGE)

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    by_staff = models.BooleanField(default=False)      # written by platform support, not by the team
    kind = models.CharField(max_length=16, choices=KINDS)
    body = models.TextField(blank=True)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def from_status_label(self) -> str:
        return dict(Ticket.STATUSES).get(self.from_status, self.from_status)

    def to_status_label(self) -> str:
        return dict(Ticket.STATUSES).get(self.to_status, self.to_status)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["ticket", "kind", "created_at"], name="ticketevent_ticket_kind")]
