"""Support console: the team's tickets (under /console/t/<team>/tickets/) and the staff queue (/console/support/).

Views are thin: resolve access, validate a form, call one service or selector, render or redirect.
"""
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from accounts import roles
from accounts.edge import team_view
from accounts.views import platform_view, render_operator, render_team
from support import forms, selectors, services
from support.models import Ticket

# Support staff and operators both hold platform.read; team roles get 403 on every /console/support/ page.
STAFF = roles.PLATFORM_READ
# Team side: tickets.write follows every ticket of the team; tickets.billing (billing members) billing ones.
TEAM_TICKETS = (roles.TICKETS_WRITE, roles.TICKETS_BILLING)


def _log_record_pk(access, user, ticket) -> int | None:
    """The usage record a ticket came from, when this viewer may open it in the request logs."""
    if not ticket.request_id or not access.can((roles.LOGS_READ, roles.USAGE_OWN)):
        return None
    record = selectors.usage_record(team=access.team, owner=selectors.usage_owner(access=access, user=user),
                                    request_id=ticket.request_id)
    return record.pk if record else None


# --- Team side -------------------------------------------------------------------------------------------
@team_view(get=TEAM_TICKETS)
def ticket_list(request, access):
    status = request.GET.get("status", "")
    tickets = selectors.tickets(team=access.team, status=status if status in dict(Ticket.STATUSES) else None,
                                reader=selectors.ticket_reader(access=access, user=request.user))
    return render_team(request, access, "support/ticket_list.html", {
        "tickets": tickets, "statuses": Ticket.STATUSES, "status": status})


@team_view(get=TEAM_TICKETS, post=TEAM_TICKETS)
def ticket_new(request, access):
    """Open a ticket; `?request_id=` (or the response id) pre-fills it from that request of the team."""
    owner = selectors.usage_owner(access=access, user=request.user)
    billing_only = selectors.ticket_reader(access=access, user=request.user) is not None
    lookup_error = ""
    if request.method == "POST":
        form = forms.TicketOpenForm(request.POST, team=access.team, usage_owner=owner, billing_only=billing_only)
        if form.is_valid():
            ticket = services.ticket_open(team=access.team, opened_by=request.user, record=form.record,
                                          by_staff=access.role is None, **form.ticket_fields())
            return redirect("console-ticket", team=access.team.slug, pk=ticket.pk)
        record = form.record
    else:
        request_id = request.GET.get("request_id", "").strip()
        record = selectors.usage_record(team=access.team, owner=owner, request_id=request_id)
        if request_id and record is None:
            lookup_error = _("No request with this id in this team.")
        form = forms.TicketOpenForm(initial=services.ticket_prefill(record=record, user=request.user),
                                    team=access.team, usage_owner=owner, billing_only=billing_only)
    return render_team(request, access, "support/ticket_new.html", {
        "form": form, "lookup_error": lookup_error,
        "rows": selectors.snapshot_rows(selectors.troubleshooting_snapshot(record=record))},
        status=400 if form.errors else 200)


@team_view(get=TEAM_TICKETS, post=TEAM_TICKETS, model=Ticket)
def ticket_detail(request, access, pk):
    ticket = selectors.ticket(team=access.team, pk=pk,
                              reader=selectors.ticket_reader(access=access, user=request.user))
    form = forms.ReplyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.ticket_reply(ticket=ticket, author=request.user, body=form.cleaned_data["body"],
                                  by_staff=access.role is None)
            return redirect("console-ticket", team=access.team.slug, pk=ticket.pk)
        except services.TicketError as exc:
            form.add_error("body", exc.message)
    return render_team(request, access, "support/ticket_detail.html", {
        "ticket": ticket, "form": form, "rows": selectors.snapshot_rows(ticket.troubleshooting),
        "events": selectors.ticket_events(ticket=ticket, include_internal=False),
        "log_pk": _log_record_pk(access, request.user, ticket)},
        status=400 if form.errors else 200)


@team_view(get=TEAM_TICKETS, post=TEAM_TICKETS, model=Ticket)
def ticket_close(request, access, pk):
    ticket = selectors.ticket(team=access.team, pk=pk,
                              reader=selectors.ticket_reader(access=access, user=request.user))
    if request.method == "POST" and ticket.status != Ticket.CLOSED:
        services.ticket_close(ticket=ticket, actor=request.user)
        messages.success(request, _("Ticket #%(pk)s closed.") % {"pk": ticket.pk})
    return redirect("console-ticket", team=access.team.slug, pk=ticket.pk)


# --- Support staff ---------------------------------------------------------------------------------------
@platform_view(get=STAFF)
def queue(request, platform):
    filter_form = forms.QueueFilterForm(request.GET or None)
    tickets = selectors.support_queue(user=request.user, **filter_form.filters())
    page = Paginator(tickets, 50).get_page(request.GET.get("page"))
    return render_operator(request, platform, "support/queue.html", {"filter_form": filter_form, "page": page})


@platform_view(get=STAFF, post=STAFF, model=Ticket)
def staff_ticket(request, platform, pk):
    """The ticket with its whole history (internal notes too); its forms post to the actions below."""
    ticket = selectors.support_ticket(pk=pk)
    return render_operator(request, platform, "support/staff_ticket.html", {
        "ticket": ticket, "rows": selectors.snapshot_rows(ticket.troubleshooting), "staff_page": True,
        "events": selectors.ticket_events(ticket=ticket, include_internal=True),
        "reply_form": forms.ReplyForm(), "note_form": forms.NoteForm(),
        "status_form": forms.StatusForm(initial={"status": ticket.status}),
        "assign_form": forms.AssignForm(initial={"assignee": ticket.assignee_id}),
    })


def _staff_action(request, pk, form_class, action):
    """Validate one form, run one service; errors come back as messages on the ticket page (a GET just goes
    back to the ticket)."""
    ticket = selectors.support_ticket(pk=pk)
    if request.method != "POST":
        return redirect("support-ticket", pk=ticket.pk)
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
    else:
        try:
            action(ticket, form.cleaned_data)
        except services.TicketError as exc:
            messages.error(request, exc.message)
    return redirect("support-ticket", pk=ticket.pk)


@platform_view(get=STAFF, post=STAFF, model=Ticket)
def staff_reply(request, platform, pk):
    return _staff_action(request, pk, forms.ReplyForm, lambda t, d: services.ticket_reply(
        ticket=t, author=request.user, body=d["body"], by_staff=True))


@platform_view(get=STAFF, post=STAFF, model=Ticket)
def staff_note(request, platform, pk):
    return _staff_action(request, pk, forms.NoteForm, lambda t, d: services.ticket_note_internal(
        ticket=t, author=request.user, body=d["body"]))


@platform_view(get=STAFF, post=STAFF, model=Ticket)
def staff_status(request, platform, pk):
    return _staff_action(request, pk, forms.StatusForm, lambda t, d: services.ticket_set_status(
        ticket=t, status=d["status"], actor=request.user, by_staff=True))


@platform_view(get=STAFF, post=STAFF, model=Ticket)
def staff_assign(request, platform, pk):
    return _staff_action(request, pk, forms.AssignForm, lambda t, d: services.ticket_assign(
        ticket=t, assignee=d["assignee"], actor=request.user))
