"""Sign-in throttling and lockout (django-axes; settings in gateway_site/settings.py, AXES_*).

Failed console sign-ins are counted per username and client address; AXES_FAILURE_LIMIT failures within the
cool-off lock that pair out until the cool-off has passed (or an operator runs `manage.py axes_reset`)."""
from axes.backends import AxesStandaloneBackend
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' backend, for sign-ins that come with a request. One without (a management command, the test
    client's login()) has no client to throttle: it goes on to the password check unthrottled."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def locked_out(request, original_response=None, credentials=None):
    """The lockout page (429): why sign-in is refused and for how long."""
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "console/locked_out.html", {"minutes": minutes, "limit": settings.AXES_FAILURE_LIMIT},
                  status=429)
