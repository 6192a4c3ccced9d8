"""Template context billing adds to every console page (registered in settings.TEMPLATES)."""
from accounts import roles
from billing.services import active_alerts


def budget_alerts(request) -> dict:
    """The team's budget alerts (80% / 100%) for the banner, shown to those who can act on them. A team page
    is one rendered by accounts.views.render_team, which puts the caller's access on the request."""
    access = getattr(request, "team_access", None)
    if access is None or not access.can((roles.BILLING_READ, roles.KEYS_MANAGE)):
        return {}
    return {"budget_alerts": active_alerts(team=access.team)}
