"""Reads for tickets, the support queue and the usage records a ticket (or the API) may look at.

Every team-side read takes `team`: another team's ticket or request id is "not found", never "forbidden".
"""
import re

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, DateTimeField, F, IntegerField, Max, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

from accounts import roles
from billing import selectors as billing_selectors
from billing.models import UsageRecord
from core.redaction import redact
from routing.models import Channel
from support.models import Ticket, TicketEvent

_HEX_ID = re.compile(r"^[0-9a-f]{16,36}$")


# --- Request ids and usage records ---------------------------------------------------------------------
def normalize_request_id(value: str) -> str:
    """`req_<hex>` from a request id, the response id a client saw (`chatcmpl-<hex>`) or the bare hex."""
    value = (value or "").strip().strip('"').strip()
    for prefix in ("chatcmpl-", "req_"):
        if value.startswith(prefix) and _HEX_ID.match(value[len(prefix):]):
            return "req_" + value[len(prefix):]
    return "req_" + value if _HEX_ID.match(value) else value


def usage_owner(*, access, user):
    """Whose usage a caller may read: None (the whole team) with logs.read, else only their own keys'."""
    return None if access.can(roles.LOGS_READ) else user


def usage_record(*, team, owner=None, request_id: str) -> UsageRecord | None:
    """A team's usage record by request id or response id; None for unknown or another team's id."""
    if not request_id:
        return None
    return billing_selectors.usage_scope(team=team, owner=owner).select_related("api_key").filter(
        request_id=normalize_request_id(request_id)).first()


def team_secrets(*, team) -> list[str]:     # team: a Team or its id
    """Upstream secrets a ticket of this team must never show: its own channels' keys and the platform's."""
    found = []
    for channel in Channel.objects.filter(Q(team=team) | Q(team__isnull=True)).only("api_key_encrypted"):
        try:
            found.append(channel.api_key())
        except (InvalidToken, ValueError):
            continue
    return found


def path_hint(path: str) -> str:
    """The most common client mistake, read from the path the client called: a base URL without /v1 or
    with /v1 twice."""
    if not path:
        return ""
    base = f"{settings.TOLLGATE_PUBLIC_BASE_URL}/v1"
    if "/v1/v1/" in path + "/":
        return (f"The client called {path}: its base URL ends in /v1 and the SDK added another. "
                f"OpenAI SDKs take base_url={base}; the Anthropic SDK takes the URL without /v1.")
    if not path.startswith(("/v1/", "/v1beta/")) and path not in ("/v1", "/v1beta"):
        return f"The client called {path} without /v1: set the base URL to {base}."
    return ""


def redact_value(value, secrets=()):
    """Redact every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, secrets) for v in value]
    return value


# The troubleshooting snapshot's fields, in display order.
SNAPSHOT_FIELDS = [
    ("request_id", _("Request id")), ("response_id", _("Response id")), ("requested_at", _("Request time")),
    ("user_agent", _("Client user-agent")), ("sdk", _("SDK and version")), ("path", _("Path the client called")),
    ("path_hint", _("Base URL check")), ("requested_model", _("Model requested")),
    ("served_model", _("Model served")), ("status_code", _("Status code")), ("error_code", _("Error code")),
    ("error_text", _("Error text")), ("key_mask", _("Key (masked)")), ("key_name", _("Key name")),
    ("stream", _("Streaming")), ("latency_ms", _("Latency (ms)")), ("ttfb_ms", _("Time to first byte (ms)")),
    ("route", _("Route")), ("attempts", _("Attempts")),
]


def troubleshooting_snapshot(*, record: UsageRecord | None, secrets=None) -> dict:
    """A usage record's troubleshooting fields, every one of them through the redaction engine (with the
    team's own secrets named, looked up when not given)."""
    if record is None:
        return {}
    if secrets is None:
        secrets = team_secrets(team=record.team_id)
    hex_id = record.request_id[4:] if record.request_id.startswith("req_") else ""
    snapshot = {
        "request_id": record.request_id, "response_id": f"chatcmpl-{hex_id}" if hex_id else "",
        "requested_at": record.created_at.isoformat(), "user_agent": record.user_agent, "sdk": record.sdk,
        "path": record.path, "path_hint": path_hint(record.path), "requested_model": record.requested_model,
        "served_model": record.served_model, "status_code": record.status_code, "error_code": record.error_code,
        "error_text": record.error_text, "key_mask": record.key_mask,
        "key_name": record.api_key.name if record.api_key_id and record.api_key else "",
        "stream": record.stream, "latency_ms": record.latency_ms, "ttfb_ms": record.ttfb_ms,
        # Routing evidence, when the relay records it.
        "route": getattr(record, "route", None) or "", "attempts": getattr(record, "attempts", None) or [],
    }
    return {k: redact_value(v, secrets) for k, v in snapshot.items() if v not in ("", None, [])}


def _readable(key: str, value):
    """A snapshot value as a person reads it: Yes/No for booleans, times without the ISO clutter."""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if key == "requested_at" and isinstance(value, str):
        parsed = parse_datetime(value)
        return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else value
    return "\n".join(map(str, value)) if isinstance(value, list) else value


def snapshot_rows(snapshot: dict) -> list[tuple[str, object, bool]]:
    """(label, value, is_block) for display; unknown keys (older snapshots) come last under their own name."""
    labels = dict(SNAPSHOT_FIELDS)
    shown = {k: _readable(k, v) for k, v in snapshot.items()}
    order = [k for k, _label in SNAPSHOT_FIELDS if k in shown] + [k for k in shown if k not in labels]
    return [(labels.get(k, k), shown[k], isinstance(shown[k], str) and (len(shown[k]) > 80 or "\n" in shown[k]))
            for k in order]


# --- Tickets, team side -------------------------------------------------------------------------------
def ticket_reader(*, access, user):
    """Whose tickets a caller follows: None (every ticket of the team) with tickets.write; a billing member
    (tickets.billing only) follows billing tickets and the ones they opened."""
    return None if access.can(roles.TICKETS_WRITE) else user


def _team_tickets(*, team, reader=None) -> QuerySet[Ticket]:
    qs = Ticket.objects.filter(team=team)
    return qs if reader is None else qs.filter(Q(category=Ticket.BILLING) | Q(opened_by=reader))


def tickets(*, team, status: str | None = None, reader=None) -> QuerySet[Ticket]:
    qs = _team_tickets(team=team, reader=reader).select_related("opened_by").order_by("-created_at", "-id")
    return qs.filter(status=status) if status else qs


def ticket(*, team, pk, reader=None) -> Ticket:
    found = _team_tickets(team=team, reader=reader).filter(pk=pk).select_related(
        "team", "opened_by", "assignee").first()
    if found is None:
        raise Http404("No such ticket.")
    return found


def ticket_events(*, ticket: Ticket, include_internal: bool) -> QuerySet[TicketEvent]:
    qs = ticket.events.select_related("author", "assignee")
    return qs if include_internal else qs.filter(kind__in=TicketEvent.TEAM_VISIBLE)


# --- The support queue (platform staff) ---------------------------------------------------------------
_PRIORITY_RANK = Case(*(When(priority=p, then=Value(i)) for i, p in enumerate(
    [Ticket.URGENT, Ticket.HIGH, Ticket.NORMAL, Ticket.LOW])), default=Value(9), output_field=IntegerField())
_STATUS_RANK = Case(*(When(status=s, then=Value(i)) for i, (s, _) in enumerate(Ticket.STATUSES)),
                    default=Value(9), output_field=IntegerField())


def support_queue(*, user, status: str = "active", priority: str = "", assignee: str = "",
                  team: str = "") -> QuerySet[Ticket]:
    """All teams' tickets with SLA ages: `last_team_reply_at` (the team's last reply, or the opening) and
    `waiting_since` (set while an open ticket's last word is the team's: the clock support is judged by)."""
    qs = Ticket.objects.select_related("team", "assignee", "opened_by").annotate(
        last_team_reply_at=Coalesce(
            Max("events__created_at", filter=Q(events__kind=TicketEvent.REPLY, events__by_staff=False)),
            F("created_at")),
        last_staff_reply_at=Max("events__created_at",
                                filter=Q(events__kind=TicketEvent.REPLY, events__by_staff=True)),
    ).annotate(
        waiting_since=Case(When(Q(status=Ticket.OPEN) & (Q(last_staff_reply_at__isnull=True)
                                                         | Q(last_team_reply_at__gt=F("last_staff_reply_at"))),
                                then=F("last_team_reply_at")), default=None, output_field=DateTimeField()),
        priority_rank=_PRIORITY_RANK, status_rank=_STATUS_RANK,
    )
    if status == "active":
        qs = qs.filter(status__in=Ticket.ACTIVE_STATUSES)
    elif status and status != "all":
        qs = qs.filter(status=status)
    if priority:
        qs = qs.filter(priority=priority)
    if assignee == "me":
        qs = qs.filter(assignee=user)
    elif assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif assignee.isdigit():
        qs = qs.filter(assignee_id=int(assignee))
    if team:
        qs = qs.filter(team__slug=team)
    return qs.order_by("status_rank", "priority_rank", F("waiting_since").asc(nulls_last=True), "created_at")


def support_ticket(*, pk) -> Ticket:
    found = Ticket.objects.filter(pk=pk).select_related("team", "opened_by", "assignee").first()
    if found is None:
        raise Http404("No such ticket.")
    return found


def support_staff():
    """Users who may be assigned tickets."""
    return get_user_model().objects.filter(staff_role__isnull=False).order_by("username")
