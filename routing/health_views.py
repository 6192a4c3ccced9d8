"""Channel health as JSON for the console (session-authenticated). Platform staff (operators, support) see
every channel; a team sees platform health per model only, and its admins (channels.manage) their own
channels too. "Test now" (POST) runs one probe. Nothing returned carries an upstream URL or key."""
from django.http import Http404, JsonResponse
from django.views.decorators.http import require_http_methods

from accounts import roles
from accounts.edge import team_view
from accounts.views import platform_view, render_operator, render_team
from routing import probes, selectors
from routing.models import Channel


def _detail(request, channel) -> JsonResponse:
    if request.method == "POST":
        probe = probes.channel_probe_now(channel)
        return JsonResponse({"probe": selectors.probe_summary(probe),
                             "channel": selectors.channel_health_detail(channel=channel)})
    return JsonResponse({"channel": selectors.channel_health_detail(channel=channel)})


@team_view(get=(roles.CHANNELS_MANAGE, roles.USAGE_OWN), post=roles.CHANNELS_MANAGE)
def team_health(request, access):
    """GET: per-model platform health (+ the team's own channels for channel admins); ?channel=ID: one of
    the team's own channels in detail. POST ?channel=ID: probe it now."""
    channel_id = request.GET.get("channel")
    if channel_id is not None or request.method == "POST":
        access.require(roles.CHANNELS_MANAGE)
        if not (channel_id or "").isdigit():
            return JsonResponse({"error": {"message": "Name a channel: ?channel=ID.", "type": "invalid_request_error",
                                           "code": "missing_channel"}}, status=400)
        channel = selectors.channel(team=access.team, pk=int(channel_id))
        if channel is None:
            raise Http404("No such channel.")
        return _detail(request, channel)
    stats = selectors.health_stats()
    data = {"models": selectors.model_health(team=access.team, stats=stats)}
    if access.can(roles.CHANNELS_MANAGE):
        data["channels"] = selectors.channel_health(channels=selectors.channels(team=access.team), stats=stats)
    return JsonResponse(data)


@platform_view()
@require_http_methods(["GET", "HEAD"])
def platform_health(request, platform):
    """Every model and every channel (platform and team channels)."""
    stats = selectors.health_stats()
    return JsonResponse({"models": selectors.model_health(stats=stats),
                         "channels": selectors.channel_health(channels=Channel.objects.order_by("team_id", "pk"),
                                                              stats=stats)})


@platform_view(model=Channel)
def platform_channel_health(request, platform, pk):
    """GET: one channel in detail (recent probes, breaker transitions); POST: probe it now."""
    channel = Channel.objects.filter(pk=pk).first()
    if channel is None:
        raise Http404("No such channel.")
    return _detail(request, channel)


@team_view(get=(roles.CHANNELS_MANAGE, roles.USAGE_OWN))
def team_status_page(request, access):
    """The console's status page: platform health per model, and the team's own channels for its admins."""
    stats = selectors.health_stats()
    channels = (selectors.channel_health(channels=selectors.channels(team=access.team), stats=stats)
                if access.can(roles.CHANNELS_MANAGE) else [])
    return render_team(request, access, "console/status.html", {
        "models": selectors.model_health(team=access.team, stats=stats), "channels": channels,
        "can_manage_channels": access.can(roles.CHANNELS_MANAGE)})


@platform_view(get=roles.PLATFORM_READ)
def platform_status_page(request, platform):
    """Every model and every channel, for operators and support staff."""
    stats = selectors.health_stats()
    return render_operator(request, platform, "console/status.html", {
        "models": selectors.model_health(stats=stats),
        "channels": selectors.channel_health(channels=Channel.objects.order_by("team_id", "pk"), stats=stats)})
