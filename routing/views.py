"""Operator pages for the platform's channels (upstream accounts). Upstream keys are write-only."""
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from accounts.views import platform_view, render_operator
from routing import selectors, services
from routing.forms import ChannelForm
from routing.models import Channel


@platform_view()
def operator_channels(request, platform):
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        channel = services.channel_create(team=None, **form.service_fields())
        messages.success(request, _("Channel “%(name)s” created.") % {"name": channel.name})
        return redirect("operator-channels")
    return render_operator(request, platform, "operator/channels.html", {
        "channels": selectors.channels(team=None), "form": form,
    }, status=400 if form.errors else 200)


@platform_view(model=Channel)
def operator_channel(request, platform, pk):
    channel = selectors.channel(team=None, pk=pk)
    if channel is None:
        raise Http404("No such platform channel.")
    form = ChannelForm(request.POST or None, channel=channel)
    if request.method == "POST" and form.is_valid():
        services.channel_update(channel=channel, **form.service_fields())
        messages.success(request, _("Channel “%(name)s” saved.") % {"name": channel.name})
        return redirect("operator-channels")
    return render_operator(request, platform, "operator/channel_detail.html", {
        "channel": channel, "form": form,
    }, status=400 if form.errors else 200)
