"""Mail from billing, through Django's mail backend: budget alerts to the team's alert recipients (its
billing policy's list, else its owners and admins)."""
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts import roles
from accounts.models import Membership, Team
from billing.models import TeamBillingPolicy
from billing.money import money_display as _money

log = logging.getLogger(__name__)

DEFAULT_RECIPIENT_ROLES = (roles.OWNER, roles.ADMIN)


def default_alert_recipients(*, team_id: int) -> list[str]:
    """Who is mailed when the team's policy names nobody: its active owners and admins with an address."""
    return sorted(set(Membership.objects.filter(team_id=team_id, role__in=DEFAULT_RECIPIENT_ROLES,
                                                user__is_active=True)
                      .exclude(user__email="").values_list("user__email", flat=True)))


def _policy(team_id: int) -> tuple[list[str], list[int]]:
    """(alert recipients, alert thresholds) of the team's billing policy; the defaults without one."""
    from billing.services import ALERT_THRESHOLDS  # services imports this module

    row = TeamBillingPolicy.objects.filter(team_id=team_id).values_list("alert_recipients", "alert_thresholds").first()
    return (row[0], row[1]) if row else ([], list(ALERT_THRESHOLDS))


def alert_recipients(*, team_id: int) -> list[str]:
    chosen, _thresholds = _policy(team_id)
    return sorted(set(chosen)) if chosen else default_alert_recipients(team_id=team_id)


def budget_alerts_send(*, team_id: int, alerts) -> int:
    """One mail listing the alerts a run fired for a team. Returns the number of messages sent (0 or 1)."""
    team = Team.objects.filter(pk=team_id).first()
    chosen, thresholds = _policy(team_id)
    recipients = sorted(set(chosen)) if chosen else default_alert_recipients(team_id=team_id)
    if team is None or not recipients:
        log.info("budget alerts for team %s: nobody to mail", team_id)
        return 0
    context = {
        "team": team,
        "alerts": [{"label": a.label, "threshold": a.threshold, "spent": _money(a.spent), "limit": _money(a.limit),
                    "balance": a.scope_kind == "balance", "left": 100 - a.threshold}
                   for a in sorted(alerts, key=lambda a: -a.threshold)],
        "chosen_recipients": bool(chosen), "thresholds": ", ".join(f"{t}%" for t in thresholds),
        "url": f"{settings.TOLLGATE_PUBLIC_BASE_URL.rstrip('/')}/console/t/{team.slug}/billing/",
    }
    subject = " ".join(render_to_string("billing/budget_alert_subject.txt", context).split())
    body = render_to_string("billing/budget_alert.txt", context)
    return send_mail(subject, body, None, recipients)
