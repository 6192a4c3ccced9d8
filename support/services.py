"""Ticket writes. Everything that enters a ticket goes through core.redaction here, with the team's own
upstream secrets named; status changes and assignments are audited as events in the same transaction."""
from django.db import transaction

from accounts.models import StaffRole
from billing.models import UsageRecord
from core.redaction import redact
from support import selectors
from support.models import Ticket, TicketEvent

HANDOFF_FIELDS = ("owner", "environment", "selected_capability", "last_known_good", "observed_symptom",
                  "evidence")


class TicketError(Exception):
    """A ticket operation the caller may not make now (shown to them as a form or API error)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


def ticket_prefill(*, record: UsageRecord | None, user=None, secrets=None) -> dict:
    """Suggested values for a new ticket: the opener as owner, and from the request (all redacted) a subject,
    the capability, the environment and the symptom."""
    initial = {"owner": user.get_full_name() or user.get_username()} if user is not None else {}
    if record is None:
        return initial
    secrets = selectors.team_secrets(team=record.team_id) if secrets is None else secrets
    model = record.requested_model or record.served_model or "a request"
    problem = " ".join(p for p in (f"HTTP {record.status_code}", record.error_code) if p)
    capability = "chat completions" + (" (streaming)" if record.stream else "")
    return initial | {
        "request_id": record.request_id,
        "subject": redact(f"{problem} on {model}", secrets)[:200],
        "selected_capability": redact(f"{model}, {capability}", secrets)[:200],
        "environment": redact(record.sdk or record.user_agent, secrets)[:200],
        "observed_symptom": redact(record.error_text, secrets),
    }


@transaction.atomic
def ticket_open(*, team, opened_by, subject: str, priority: str = Ticket.NORMAL, record: UsageRecord | None = None,
                request_id: str = "", next_review_at=None, by_staff: bool = False,
                category: str = Ticket.TECHNICAL, **handoff) -> Ticket:
    """Open a ticket, pre-filled with the redacted troubleshooting fields of `record` (the team's own)."""
    unknown = set(handoff) - set(HANDOFF_FIELDS)
    if unknown:
        raise TypeError(f"unknown handoff fields: {sorted(unknown)}")
    if record is not None and record.team_id != team.id:
        raise ValueError("usage record belongs to another team")
    secrets = selectors.team_secrets(team=team)
    snapshot = selectors.troubleshooting_snapshot(record=record, secrets=secrets)
    ticket = Ticket.objects.create(
        team=team, opened_by=opened_by, subject=redact(subject, secrets)[:200], priority=priority, category=category,
        request_id=record.request_id if record else redact(request_id, secrets)[:40], troubleshooting=snapshot,
        next_review_at=next_review_at, **{k: redact(v or "", secrets) for k, v in handoff.items()})
    TicketEvent.objects.create(ticket=ticket, author=opened_by, by_staff=by_staff, kind=TicketEvent.STATUS_CHANGE,
                               from_status="", to_status=Ticket.OPEN)
    return ticket


def _locked(ticket: Ticket) -> Ticket:
    return Ticket.objects.select_for_update().get(pk=ticket.pk)


def _status_change(ticket: Ticket, *, status: str, actor, by_staff: bool) -> None:
    TicketEvent.objects.create(ticket=ticket, author=actor, by_staff=by_staff, kind=TicketEvent.STATUS_CHANGE,
                               from_status=ticket.status, to_status=status)
    ticket.status = status
    ticket.save(update_fields=["status", "updated_at"])


@transaction.atomic
def ticket_set_status(*, ticket: Ticket, status: str, actor, by_staff: bool) -> Ticket:
    if status not in dict(Ticket.STATUSES):
        raise TicketError(f"Unknown status {status!r}.", field="status")
    ticket = _locked(ticket)
    if ticket.status != status:
        _status_change(ticket, status=status, actor=actor, by_staff=by_staff)
    return ticket


@transaction.atomic
def ticket_close(*, ticket: Ticket, actor) -> Ticket:
    """The team closes its own ticket (the problem is gone or was theirs); staff use ticket_set_status."""
    ticket = _locked(ticket)
    if ticket.status != Ticket.CLOSED:
        _status_change(ticket, status=Ticket.CLOSED, actor=actor, by_staff=False)
    return ticket


@transaction.atomic
def ticket_reply(*, ticket: Ticket, author, body: str, by_staff: bool) -> TicketEvent:
    """A reply the team sees. A team reply reopens a pending or resolved ticket; a closed one stays closed."""
    if not (body or "").strip():
        raise TicketError("Write a reply.", field="body")
    ticket = _locked(ticket)
    if ticket.status == Ticket.CLOSED and not by_staff:
        raise TicketError("This ticket is closed: open a new one.", field="body")
    event = TicketEvent.objects.create(ticket=ticket, author=author, by_staff=by_staff, kind=TicketEvent.REPLY,
                                       body=redact(body, selectors.team_secrets(team=ticket.team)))
    if not by_staff and ticket.status in (Ticket.PENDING, Ticket.RESOLVED):
        _status_change(ticket, status=Ticket.OPEN, actor=author, by_staff=False)
    else:
        ticket.save(update_fields=["updated_at"])
    return event


@transaction.atomic
def ticket_note_internal(*, ticket: Ticket, author, body: str) -> TicketEvent:
    """A note for support staff only: never shown to the team (nor in the team API)."""
    if not (body or "").strip():
        raise TicketError("Write a note.", field="body")
    ticket = _locked(ticket)
    event = TicketEvent.objects.create(ticket=ticket, author=author, by_staff=True, kind=TicketEvent.INTERNAL_NOTE,
                                       body=redact(body, selectors.team_secrets(team=ticket.team)))
    ticket.save(update_fields=["updated_at"])
    return event


@transaction.atomic
def ticket_assign(*, ticket: Ticket, assignee, actor) -> Ticket:
    """Assign to a support staff member (None: unassign)."""
    if assignee is not None and not StaffRole.objects.filter(user=assignee).exists():
        raise TicketError("Tickets are assigned to support staff only.", field="assignee")
    ticket = _locked(ticket)
    if ticket.assignee_id != (assignee.pk if assignee else None):
        ticket.assignee = assignee
        ticket.save(update_fields=["assignee", "updated_at"])
        TicketEvent.objects.create(ticket=ticket, author=actor, by_staff=True, kind=TicketEvent.ASSIGNMENT,
                                   assignee=assignee)
    return ticket

