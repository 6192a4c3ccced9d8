"""Channels (upstream accounts): the operator's platform channels, and each team's own (bring your own key) in
the team console and the management API. Upstream keys are write-only: stored encrypted, shown as a mask.

Console page and API endpoint call the same services (routing.services.channel_create / channel_update /
channel_disable / channel_test), which validate and tell running gateways."""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView, team_view
from accounts.views import platform_view, render_operator, render_team
from routing import selectors, services
from routing.forms import ChannelForm
from routing.models import Channel


def with_health(channels) -> list[tuple[Channel, dict]]:
    """Each channel with its health (breaker, last probe, figures); `channels` is already scoped by the caller."""
    channels = list(channels)
    if not channels:
        return []
    health = {row["id"]: row for row in selectors.channel_health(
        channels=Channel.objects.filter(pk__in=[c.pk for c in channels]))}
    for row in health.values():  # for the templates: what cools down, and when the last probe ran
        row["cooling_models"] = [m["model"] for m in row["breaker"]["models"] if m["state"] != "closed"]
        row["last_probe_at"] = parse_datetime(row["last_probe"]["at"]) if row["last_probe"] else None
    return [(c, health[c.pk]) for c in channels]


def probe_message(request, channel, probe) -> None:
    """The result of "Test now" as a flash message: status, latency, the (redacted) error."""
    facts = {"name": channel.name, "model": probe.model.public_id if probe.model else "—",
             "status": probe.status_code or "—", "ms": probe.latency_ms if probe.latency_ms is not None else "—"}
    if probe.ok:
        messages.success(request, _("Test of “%(name)s” OK: %(model)s answered HTTP %(status)s in %(ms)s ms.") % facts)
    else:
        messages.error(request, _("Test of “%(name)s” failed (%(error)s, HTTP %(status)s, %(ms)s ms): %(text)s")
                       % {**facts, "error": probe.error_class or "—", "text": probe.error_text or "—"})


def _detail_context(channel) -> dict:
    (_channel, health), = with_health([channel])
    probes = channel.probes.select_related("model").order_by("-started_at", "-pk")[:10]
    return {"channel": channel, "health": health, "probes": probes}


# --- Operator pages: platform channels ---------------------------------------------------------------------
@platform_view()
def operator_channels(request, platform):
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (channel := form.save()) is not None:
        messages.success(request, _("Channel “%(name)s” created.") % {"name": channel.name})
        return redirect("operator-channels")
    return render_operator(request, platform, "operator/channels.html", {
        "rows": with_health(selectors.channels(team=None)), "form": form,
    }, status=400 if form.errors else 200)


def _platform_channel(pk) -> Channel:
    channel = selectors.channel(team=None, pk=pk)
    if channel is None:
        raise Http404("No such platform channel.")
    return channel


@platform_view(model=Channel)
def operator_channel(request, platform, pk):
    channel = _platform_channel(pk)
    form = ChannelForm(request.POST or None, channel=channel)
    if request.method == "POST" and form.is_valid() and form.save() is not None:
        messages.success(request, _("Channel “%(name)s” saved.") % {"name": channel.name})
        return redirect("operator-channels")
    return render_operator(request, platform, "operator/channel_detail.html", {
        **_detail_context(channel), "form": form}, status=400 if form.errors else 200)


@platform_view(get=roles.PLATFORM_MANAGE, post=roles.PLATFORM_MANAGE, model=Channel)
def operator_channel_test(request, platform, pk):
    """POST: "Test now" (one probe), back to the list or the channel's page. GET just goes to the page."""
    channel = _platform_channel(pk)
    if request.method == "POST":
        probe_message(request, channel, services.channel_test(channel=channel))
        if request.POST.get("back") == "list":
            return redirect("operator-channels")
    return redirect("operator-channel", pk=channel.pk)


# --- Team console: the team's own channels (bring your own key) ---------------------------------------------
def _team_channel(access, pk) -> Channel:
    channel = selectors.channel(team=access.team, pk=pk)
    if channel is None:  # a platform channel or another team's: not there
        raise Http404("No such channel.")
    return channel


@team_view(get=roles.CHANNELS_MANAGE, post=roles.CHANNELS_MANAGE)
def team_channels(request, access):
    form = ChannelForm(request.POST or None, team=access.team)
    if request.method == "POST" and form.is_valid() and (channel := form.save()) is not None:
        messages.success(request, _("Channel “%(name)s” added: the gateway uses it within a second.")
                         % {"name": channel.name})
        return redirect("console-channel-detail", team=access.team.slug, pk=channel.pk)
    return render_team(request, access, "console/channels.html", {
        "rows": with_health(selectors.channels(team=access.team)), "form": form,
    }, status=400 if form.errors else 200)


@team_view(get=roles.CHANNELS_MANAGE, post=roles.CHANNELS_MANAGE, model=Channel)
def team_channel(request, access, pk):
    channel = _team_channel(access, pk)
    form = ChannelForm(request.POST or None, channel=channel, team=access.team)
    if request.method == "POST" and form.is_valid() and form.save() is not None:
        messages.success(request, _("Channel “%(name)s” saved.") % {"name": channel.name})
        return redirect("console-channel-detail", team=access.team.slug, pk=channel.pk)
    return render_team(request, access, "console/channel_detail.html", {
        **_detail_context(channel), "form": form}, status=400 if form.errors else 200)


@team_view(get=roles.CHANNELS_MANAGE, post=roles.CHANNELS_MANAGE, model=Channel)
def team_channel_test(request, access, pk):
    """POST: "Test now" (one probe), back to the list or the channel's page. GET just goes to the page."""
    channel = _team_channel(access, pk)
    if request.method == "POST":
        probe_message(request, channel, services.channel_test(channel=channel))
        if request.POST.get("back") == "list":
            return redirect("console-channels", team=access.team.slug)
    return redirect("console-channel-detail", team=access.team.slug, pk=channel.pk)


# --- Management API: /api/teams/<team>/channels/ ------------------------------------------------------------
class ProbeOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    model = serializers.CharField(allow_null=True, help_text="The catalog id the probe asked")
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    ttfb_ms = serializers.IntegerField(allow_null=True)
    error_class = serializers.CharField(help_text="timeout, connection, http_401, invalid_response, no_model, …")
    error_text = serializers.CharField(help_text="Redacted")
    manual = serializers.BooleanField(help_text="“Test now” rather than the schedule")


class HealthOutput(serializers.Serializer):
    breaker = serializers.CharField(source="breaker.state", help_text="closed, open or half_open")
    models_cooling_down = serializers.SerializerMethodField(help_text="Models whose own breaker is not closed")
    needs_attention = serializers.BooleanField(help_text="Raised on upstream credential or billing errors")
    attention_reason = serializers.CharField()
    availability_1h = serializers.FloatField(source="availability.1h", allow_null=True)
    last_probe = ProbeOutput(allow_null=True)

    def get_models_cooling_down(self, health) -> list[str]:
        return health["cooling_models"]


class ChannelOutput(serializers.ModelSerializer):
    models = serializers.SlugRelatedField(slug_field="public_id", many=True, read_only=True)
    test_model = serializers.SlugRelatedField(slug_field="public_id", read_only=True, allow_null=True)
    api_key_mask = serializers.CharField(help_text="The upstream key's last four characters; the key is write-only")
    kind = serializers.CharField(help_text="openai, anthropic or gemini")
    status = serializers.CharField(help_text="enabled or disabled")
    model_mapping = serializers.DictField(child=serializers.CharField(), help_text="Catalog id → upstream name")
    health = HealthOutput(read_only=True)

    class Meta:
        model = Channel
        fields = ["id", "name", "kind", "base_url", "api_key_mask", "models", "model_mapping", "priority", "weight",
                  "max_concurrency", "test_model", "status", "health", "created_at", "provider_name",
                  "data_collection", "zdr", "quantization"]


def _output(pairs) -> list[dict]:
    out = []
    for channel, health in pairs:
        channel.health = health
        out.append(ChannelOutput(channel).data)
    return out


class ChannelInput(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    # Plain strings, not choice enums (validated by the service): kinds are documented here.
    kind = serializers.CharField(default=Channel.OPENAI, help_text="openai, anthropic or gemini")
    base_url = serializers.CharField(max_length=300, help_text="http:// or https://, up to and including /v1")
    api_key = serializers.CharField(max_length=500, write_only=True, help_text="Write-only; never returned")
    models = serializers.ListField(child=serializers.CharField(max_length=120), default=list,
                                   help_text="Catalog ids this channel serves")
    model_mapping = serializers.DictField(child=serializers.CharField(max_length=120), default=dict,
                                          help_text="Catalog id → the name this upstream knows it by")
    priority = serializers.IntegerField(default=0, help_text="Higher is tried first")
    weight = serializers.IntegerField(default=1)
    max_concurrency = serializers.IntegerField(allow_null=True, default=None)
    test_model = serializers.CharField(max_length=120, allow_null=True, allow_blank=True, default=None)
    status = serializers.CharField(default=Channel.ENABLED, help_text="enabled or disabled")
    provider_name = serializers.CharField(max_length=60, allow_blank=True, default="",
                                          help_text="Who serves it (OpenAI, Azure, DeepInfra); matched by requests' "
                                                    "provider.order / only / ignore. Empty: the kind's name")
    data_collection = serializers.CharField(default="allow", help_text="allow (may retain prompts) or deny")
    zdr = serializers.BooleanField(default=False, help_text="Zero data retention")
    quantization = serializers.CharField(allow_blank=True, default="",
                                         help_text="int4, int8, fp4, fp6, fp8, fp16, bf16, fp32; empty: unknown")


class ChannelUpdateInput(ChannelInput):
    """Every field optional; an empty or missing `api_key` keeps the stored key."""

    api_key = serializers.CharField(max_length=500, write_only=True, required=False, allow_blank=True,
                                    help_text="Write-only; empty or missing keeps the stored key")


def _saved(call):
    try:
        return call()
    except ValidationError as exc:
        raise serializers.ValidationError(exc.message_dict) from None


class ChannelListApi(TeamAPIView):
    """The team's own channels (bring your own key): list, add."""

    permissions_by_method = {"GET": roles.CHANNELS_MANAGE, "POST": roles.CHANNELS_MANAGE}

    def get(self, request, team):
        return Response(_output(with_health(selectors.channels(team=self.access.team))))

    def post(self, request, team):
        data = ChannelInput(data=request.data)
        data.is_valid(raise_exception=True)
        channel = _saved(lambda: services.channel_create(team=self.access.team, **data.validated_data))
        return Response(_output(with_health([channel]))[0], status=201)


class ChannelDetailApi(TeamAPIView):
    """One of the team's channels: read, change (PATCH, partial), disable (DELETE: kept for its history and
    usage records, status `disabled`; PATCH `{"status": "enabled"}` brings it back)."""

    permissions_by_method = {"GET": roles.CHANNELS_MANAGE, "PATCH": roles.CHANNELS_MANAGE,
                             "DELETE": roles.CHANNELS_MANAGE}
    team_object_model = Channel

    def get(self, request, team, pk):
        return Response(_output(with_health([_team_channel(self.access, pk)]))[0])

    def patch(self, request, team, pk):
        channel = _team_channel(self.access, pk)
        data = ChannelUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        _saved(lambda: services.channel_update(channel=channel, **data.validated_data))
        return Response(_output(with_health([channel]))[0])

    def delete(self, request, team, pk):
        services.channel_disable(channel=_team_channel(self.access, pk))
        return Response(status=204)


class ChannelTestApi(TeamAPIView):
    """"Test now": one probe of the channel through its adapter; the result and the channel's health after it."""

    permissions_by_method = {"POST": roles.CHANNELS_MANAGE}
    team_object_model = Channel

    class OutputSerializer(serializers.Serializer):
        probe = ProbeOutput()
        channel = ChannelOutput()

    def post(self, request, team, pk):
        channel = _team_channel(self.access, pk)
        probe = services.channel_test(channel=channel)
        return Response({"probe": selectors.probe_summary(probe), "channel": _output(with_health([channel]))[0]})


# OpenAPI: schemas are attached here, at generation time (the error body is core.api_schema's).
def _errors(*codes):
    from core.api_schema import errors

    return errors(*codes)


class ChannelListApiSchema(OpenApiViewExtension):
    target_class = "routing.views.ChannelListApi"

    def view_replacement(self):
        return extend_schema_view(
            get=extend_schema(tags=["channels"], responses={200: ChannelOutput(many=True), **_errors(401, 403, 404)}),
            post=extend_schema(tags=["channels"], request=ChannelInput,
                               responses={201: ChannelOutput, **_errors(400, 401, 403, 404)}),
        )(type("ChannelListApi", (self.target_class,), {}))


class ChannelDetailApiSchema(OpenApiViewExtension):
    target_class = "routing.views.ChannelDetailApi"

    def view_replacement(self):
        return extend_schema_view(
            get=extend_schema(tags=["channels"], responses={200: ChannelOutput, **_errors(401, 403, 404)}),
            patch=extend_schema(tags=["channels"], request=ChannelUpdateInput,
                                responses={200: ChannelOutput, **_errors(400, 401, 403, 404)}),
            delete=extend_schema(tags=["channels"], responses={204: None, **_errors(401, 403, 404)}),
        )(type("ChannelDetailApi", (self.target_class,), {}))


class ChannelTestApiSchema(OpenApiViewExtension):
    target_class = "routing.views.ChannelTestApi"

    def view_replacement(self):
        return extend_schema_view(
            post=extend_schema(tags=["channels"], request=None,
                               responses={200: ChannelTestApi.OutputSerializer, **_errors(401, 403, 404)}),
        )(type("ChannelTestApi", (self.target_class,), {}))
