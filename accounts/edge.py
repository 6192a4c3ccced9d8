"""Resolve the team at the edge: console views and API endpoints get `access` (team, role, permissions)."""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from rest_framework.views import APIView

from accounts import roles
from accounts.selectors import password_change_required, require_platform, team_access


def password_change_redirect(request):
    """To the change-password page, coming back here afterwards (a GET's own address)."""
    url = reverse("console-account")
    if request.method == "GET":
        url += "?" + urlencode({"next": request.get_full_path()})
    return redirect(url)


def console_login_required(view):
    """`login_required`, and a user still on an invite's one-time password is sent to change it first.

    Every console page goes through this (team_view, platform_view, the team list and the account pages);
    only the change-password page itself, sign-in, sign-out and the language switch do not."""
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if password_change_required(user=request.user):
            return password_change_redirect(request)
        return view(request, *args, **kwargs)

    return wrapper


def team_view(*, get, post=None, model=None):
    """Console view decorator: login, team from the URL (404 if not visible), role check per method (403).

    `get`/`post` name the permission (or a tuple: any of them); `model` is the team-owned object a `pk` in the
    URL refers to. Both are kept on the view so the tenancy test can read them from the URL resolver."""
    permissions = {"GET": get, "HEAD": get, "POST": post or get}

    def decorate(view):
        @console_login_required
        @wraps(view)
        def wrapper(request, team, *args, **kwargs):
            access = team_access(user=request.user, team_slug=team)
            if request.method not in permissions:
                return HttpResponseNotAllowed(["GET", "POST"])
            access.require(permissions[request.method])
            return view(request, access, *args, **kwargs)

        wrapper.team_permissions, wrapper.team_object_model = permissions, model
        return wrapper

    return decorate


def _refuse_one_time_password_session(request) -> None:
    if request.auth is None and password_change_required(user=request.user):  # a console session
        raise PermissionDenied("Change your one-time password in the console first.")


class PlatformAPIView(APIView):
    """DRF base for operator endpoints: the caller's platform role must grant `platform_permission`."""

    platform_permission = roles.PLATFORM_MANAGE

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        _refuse_one_time_password_session(request)
        require_platform(user=request.user, permission=self.platform_permission)


class TeamAPIView(APIView):
    """DRF base: `self.access` is the caller's access to the team in the URL; `permission` per method."""

    permissions_by_method: dict[str, str | tuple[str, ...]] = {}
    team_object_model = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        _refuse_one_time_password_session(request)
        self.access = team_access(user=request.user, team_slug=kwargs["team"])
        permission = self.permissions_by_method.get(request.method)
        if permission is not None:  # other methods fall through to DRF's 405
            self.access.require(permission)
