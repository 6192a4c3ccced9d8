"""The console's shared edge (page layout and navigation, one-time reveals, operator views), sign-in, language,
the members page, the account pages (password, personal access tokens) and the operator's staff page."""
from functools import lru_cache, wraps

import orjson
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import resolve, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from accounts import roles, selectors, services, tokens
from accounts.edge import console_login_required, team_view
from accounts.forms import (
    ROLE_LABELS,
    AccountPasswordForm,
    MemberInviteForm,
    MemberRoleForm,
    StaffInviteForm,
    TokenCreateForm,
)
from accounts.models import Membership, StaffRole
from gateway_site import crypto

# The team console's navigation: each link is shown only when its view's GET permission allows it (read from
# the view itself, so the menu and the role table cannot disagree).
TEAM_NAV = [
    (gettext_lazy("Dashboard"), "console-dashboard"),
    (gettext_lazy("API keys"), "console-keys"),
    (gettext_lazy("Key groups"), "console-key-groups"),
    (gettext_lazy("Routes"), "console-routes"),
    (gettext_lazy("Model aliases"), "console-model-aliases"),
    (gettext_lazy("Request logs"), "console-logs"),
    (gettext_lazy("Billing"), "console-billing"),
    (gettext_lazy("Spend report"), "console-spend"),
    (gettext_lazy("Models & prices"), "console-prices"),
    (gettext_lazy("Channels"), "console-channels"),
    (gettext_lazy("Status"), "console-status"),
    (gettext_lazy("Support tickets"), "console-tickets"),
    (gettext_lazy("Members"), "console-members"),
]
OPERATOR_NAV = [
    (gettext_lazy("Model catalog"), "operator-catalog"),
    (gettext_lazy("Platform channels"), "operator-channels"),
    (gettext_lazy("Teams"), "operator-teams"),
    (gettext_lazy("Redemption codes"), "operator-codes"),
    (gettext_lazy("Import from One API"), "operator-imports"),
    (gettext_lazy("Request logs"), "operator-logs"),
    (gettext_lazy("Channel status"), "operator-status"),
    (gettext_lazy("Support queue"), "support-queue"),
    (gettext_lazy("Staff accounts"), "operator-staff"),
]
# The account pages (every signed-in user; not team-scoped).
ACCOUNT_NAV = [
    (gettext_lazy("Account"), "console-account"),
    (gettext_lazy("Personal access tokens"), "console-account-tokens"),
]


@lru_cache(maxsize=64)
def _view_permission(url_name: str, kind: str):
    view = resolve(reverse(url_name, kwargs={"team": "x"} if kind == "team" else None)).func
    return view.team_permissions["GET"] if kind == "team" else view.platform_permissions["GET"]


def _nav(request, items, kind: str, can, url_kwargs=None) -> list[dict]:
    links = [{"label": label, "url": reverse(name, kwargs=url_kwargs)} for label, name in items
             if can(_view_permission(name, kind))]
    # The current page's link is the longest one its path starts with (a key's page is under "API keys").
    current = max((link["url"] for link in links if request.path.startswith(link["url"])), key=len, default=None)
    for link in links:
        link["active"] = link["url"] == current
    return links


def render_team(request, access, template: str, context=None, *, status: int = 200):
    """Render a team console page inside the shared layout (navigation, team switcher)."""
    staff = access.platform_role
    request.team_access = access  # for context processors (billing's budget alerts banner)
    return render(request, template, {
        "access": access, "team": access.team,
        "nav": _nav(request, TEAM_NAV, "team", access.can, {"team": access.team.slug}),
        "switch_teams": selectors.console_teams(user=request.user),
        "operator_home": reverse("operator-catalog") if staff else None,
        "role_label": ROLE_LABELS.get(access.role or staff, ""), "now": timezone.now(),
        **(context or {}),
    }, status=status)


def render_operator(request, platform, template: str, context=None, *, status: int = 200):
    """Render an operator page (platform staff) inside the shared layout."""
    return render(request, template, {
        "platform": platform, "operator": True, "role_label": ROLE_LABELS[platform.role],
        "nav": _nav(request, OPERATOR_NAV, "platform", platform.can),
        "switch_teams": selectors.console_teams(user=request.user),
        **(context or {}),
    }, status=status)


def platform_view(*, get=roles.PLATFORM_READ, post=roles.PLATFORM_MANAGE, model=None):
    """Operator console view decorator: login, platform role check per method (403), like team_view.

    The view gets `platform` (role and permissions); `model` names the object a `pk` in the URL refers to.
    Both are kept on the view for the operator URL test."""
    permissions = {"GET": get, "HEAD": get, "POST": post}

    def decorate(view):
        @console_login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in permissions:
                return HttpResponseNotAllowed(["GET", "POST"])
            platform = selectors.platform_access(user=request.user, permission=permissions[request.method])
            return view(request, platform, *args, **kwargs)

        wrapper.platform_permissions, wrapper.platform_object_model = permissions, model
        return wrapper

    return decorate


# --- one-time reveals (a new key's secret, a new user's password) ------------------------------------------
# Post/redirect/get: the value rides in the session, encrypted, until the next page shows it once.

_REVEAL = "tg_reveal"


def reveal_once_put(request, kind: str, **values) -> None:
    request.session[_REVEAL] = {"kind": kind, "data": crypto.encrypt(orjson.dumps(values).decode())}


def reveal_once_pop(request, kind: str) -> dict | None:
    stored = request.session.get(_REVEAL)
    if not stored or stored.get("kind") != kind:
        return None
    del request.session[_REVEAL]
    return orjson.loads(crypto.decrypt(stored["data"]))


def never_cache_if(response, condition):
    """A page that shows a secret must not stay in the browser's cache (back button, shared machines)."""
    if condition:
        add_never_cache_headers(response)
    return response


# --- sign-in, language, team list ---------------------------------------------------------------------------

class LoginView(auth_views.LoginView):
    template_name = "console/login.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        language = selectors.user_language(user=form.get_user())
        if language:
            _set_language_cookie(response, language)
        return response


def _set_language_cookie(response, language: str) -> None:
    response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, max_age=settings.LANGUAGE_COOKIE_AGE,
                        path=settings.LANGUAGE_COOKIE_PATH, samesite=settings.LANGUAGE_COOKIE_SAMESITE)


@require_POST
def language_set(request):
    """Django's set_language (cookie, safe `next`), and the choice kept on the user for their next sign-in."""
    response = set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        services.user_language_set(user=request.user, language=language)
    return response


@console_login_required
def home(request):
    teams, staff = list(selectors.console_teams(user=request.user)), selectors.platform_role(request.user)
    if len(teams) == 1 and not staff:
        return redirect("console-dashboard", team=teams[0].slug)
    return render(request, "console/teams.html", {
        "teams": teams, "switch_teams": teams, "operator_home": reverse("operator-catalog") if staff else None})


# --- members ------------------------------------------------------------------------------------------------

@team_view(get=roles.MEMBERS_MANAGE)
def members(request, access):
    form = MemberInviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership, password = services.member_invite(team=access.team, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if password:
                reveal_once_put(request, "password", username=membership.user.username, password=password)
            messages.success(request, _("%(user)s joined the team.") % {"user": membership.user.username})
            return redirect("console-members", team=access.team.slug)
    reveal = reveal_once_pop(request, "password")
    response = render_team(request, access, "console/members.html", {
        "form": form, "members": selectors.team_members(team=access.team), "reveal": reveal,
        "role_form": MemberRoleForm(),
    }, status=400 if form.errors else 200)
    return never_cache_if(response, reveal)


def _member_action(request, access, pk, action, done_message):
    membership = selectors.team_member(team=access.team, pk=pk)
    if request.method == "POST":
        try:
            action(membership)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, done_message % {"user": membership.user.username})
    return redirect("console-members", team=access.team.slug)


@team_view(get=roles.MEMBERS_MANAGE, model=Membership)
def member_role(request, access, pk):
    form = MemberRoleForm(request.POST or None)

    def change(membership):
        if not form.is_valid():
            raise ValidationError(_("Choose a role."))
        services.member_role_set(membership=membership, role=form.cleaned_data["role"])

    return _member_action(request, access, pk, change, _("%(user)s now has a new role."))


@team_view(get=roles.MEMBERS_MANAGE, model=Membership)
def member_remove(request, access, pk):
    return _member_action(request, access, pk, lambda m: services.member_remove(membership=m),
                          _("%(user)s was removed from the team; their keys here were revoked."))


# --- the account pages: password, personal access tokens -----------------------------------------------------

def render_account(request, template: str, context=None, *, status: int = 200, locked: bool = False):
    """Render an account page in the shared layout; `locked` (a one-time password still to change) shows no
    navigation, since every other page would send the user back here."""
    staff = selectors.platform_role(request.user)
    links = [] if locked else [{"label": label, "url": reverse(name)} for label, name in ACCOUNT_NAV]
    for link in links:
        link["active"] = link["url"] == request.path
    return render(request, template, {
        "nav": links, "switch_teams": [] if locked else selectors.console_teams(user=request.user),
        "operator_home": reverse("operator-catalog") if staff and not locked else None,
        "role_label": ROLE_LABELS.get(staff, ""), "now": timezone.now(),
        **(context or {}),
    }, status=status)


def _posted(request):
    """The form data of a POST, even an empty one (a bound form, so an empty POST is a 400, not a page)."""
    return request.POST if request.method == "POST" else None


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                              require_https=request.is_secure())
    return target if allowed else ""


@login_required  # not console_login_required: this is where a one-time password is changed
def account(request):
    """Change one's password (old one, new one twice, Django's validators); the session stays signed in."""
    must_change = selectors.password_change_required(user=request.user)
    form = AccountPasswordForm(request.user, _posted(request))
    next_url = _safe_next(request)
    if request.method == "POST" and form.is_valid():
        try:
            services.user_password_change(user=request.user, password=form.cleaned_data["new_password1"])
        except ValidationError as error:
            form.add_error("new_password1", error)
        else:
            update_session_auth_hash(request, request.user)
            messages.success(request, _("Your password was changed."))
            return redirect(next_url or ("console-home" if must_change else "console-account"))
    return render_account(request, "console/account.html", {
        "form": form, "must_change": must_change, "next": next_url,
        "language": selectors.user_language(user=request.user),
    }, status=400 if form.errors else 200, locked=must_change)


@console_login_required
def account_tokens(request):
    """Personal access tokens for the management API: create (secret shown once), list, revoke."""
    allowed = tokens.token_create_allowed(user=request.user)
    form = TokenCreateForm(_posted(request))
    if request.method == "POST":
        if not allowed:
            raise PermissionDenied("Only team owners and admins may create personal access tokens.")
        if form.is_valid():
            token, secret = tokens.personal_access_token_create(
                user=request.user, name=form.cleaned_data["name"], expires_at=form.cleaned_data["expires_at"])
            reveal_once_put(request, "token", name=token.name, secret=secret)
            return redirect("console-account-tokens")
    reveal = reveal_once_pop(request, "token")
    response = render_account(request, "console/account_tokens.html", {
        "form": form, "can_create": allowed, "reveal": reveal,
        "tokens": tokens.personal_access_tokens(user=request.user),
        "api_base": settings.TOLLGATE_PUBLIC_BASE_URL.rstrip("/"),
    }, status=400 if form.errors else 200)
    return never_cache_if(response, reveal)


@console_login_required
@require_POST
def account_token_revoke(request, pk):
    token = get_object_or_404(tokens.personal_access_tokens(user=request.user), pk=pk)
    tokens.personal_access_token_revoke(token=token)
    messages.success(request, _("Token “%(name)s” was revoked; it no longer works.") % {"name": token.name})
    return redirect("console-account-tokens")


# --- platform staff accounts (operators only) ----------------------------------------------------------------

@platform_view(get=roles.PLATFORM_MANAGE)
def operator_staff(request, platform):
    form = StaffInviteForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            staff, password = services.staff_invite(**form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            reveal_once_put(request, "password", username=staff.user.username, password=password)
            messages.success(request, _("Staff account %(user)s created.") % {"user": staff.user.username})
            return redirect("operator-staff")
    reveal = reveal_once_pop(request, "password")
    response = render_operator(request, platform, "operator/staff.html", {
        "form": form, "staff": [_with_role_label(staff) for staff in selectors.staff_members()], "reveal": reveal,
    }, status=400 if form.errors else 200)
    return never_cache_if(response, reveal)


def _with_role_label(staff):
    staff.role_label = ROLE_LABELS.get(staff.role, staff.role)
    return staff


def _staff_action(request, pk, action, done_message):
    staff = selectors.staff_member(pk=pk)
    if request.method == "POST":
        try:
            action(staff)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, done_message % {"user": staff.user.username})
    return redirect("operator-staff")


@platform_view(get=roles.PLATFORM_MANAGE, model=StaffRole)
def operator_staff_deactivate(request, platform, pk):
    return _staff_action(request, pk, lambda staff: services.staff_deactivate(staff=staff, by=request.user),
                         _("%(user)s was deactivated: they cannot sign in, their tokens were revoked."))


@platform_view(get=roles.PLATFORM_MANAGE, model=StaffRole)
def operator_staff_reactivate(request, platform, pk):
    return _staff_action(request, pk, lambda staff: services.staff_reactivate(staff=staff),
                         _("%(user)s can sign in again."))
