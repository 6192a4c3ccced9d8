"""Resolve the team at the edge: console views and API endpoints get `access` (team, role, permissions)."""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseNotAllowed
from rest_framework.views import APIView

from accounts.selectors import team_access


def team_view(*, get, post=None, model=None):
    """Console view decorator: login, team from the URL (404 if not visible), role check per method (403).

    `get`/`post` name the permission (or a tuple: any of them); `model` is the team-owned object a `pk` in the
    URL refers to. Both are kept on the view so the tenancy test can read them from the URL resolver."""
    permissions = {"GET": get, "HEAD": get, "POST": post or get}

    def decorate(view):
        @login_required
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


class TeamAPIView(APIView):
    """DRF base: `self.access` is the caller's access to the team in the URL; `permission` per method."""

    permissions_by_method: dict[str, str | tuple[str, ...]] = {}
    team_object_model = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.access = team_access(user=request.user, team_slug=kwargs["team"])
        permission = self.permissions_by_method.get(request.method)
        if permission is not None:  # other methods fall through to DRF's 405
            self.access.require(permission)
