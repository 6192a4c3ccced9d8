"""Management API twins of the operator's team and price pages (platform.manage), and the team's own prices
(any member). Amounts are integer micro-units and multipliers parts per million, as in the ledger; each
method calls the same service function as its console page."""
import datetime as dt

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import PlatformAPIView, TeamAPIView
from accounts.models import Team
from billing import selectors, services
from billing.api import MAX_AMOUNT, Refused
from billing.models import PriceOverride
from billing.serializers import UsageFilters, UsageOutput
from core.api_schema import errors
from keys.models import KeyGroup
from routing.selectors import catalog_models

MAX_MULTIPLIER_PPM = 100 * 1_000_000


class _PriceFields(serializers.Serializer):
    input_per_m = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, help_text="Micro-units per 1M tokens")
    output_per_m = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT)
    # Cache prices: omitted or null, the provider's published ratio of the input price (billing.money).
    cached_input_per_m = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, required=False, allow_null=True)
    cache_write_5m_per_m = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, required=False,
                                                    allow_null=True)
    cache_write_1h_per_m = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, required=False,
                                                    allow_null=True)
    request_fee = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, default=0)


class PriceOverrideOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="model.public_id")

    class Meta:
        model = PriceOverride
        fields = ["id", "model", "input_per_m", "output_per_m", "cached_input_per_m", "cache_write_5m_per_m",
                  "cache_write_1h_per_m", "request_fee", "effective_from", "created_at"]


class KeyGroupMultiplierOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    multiplier_ppm = serializers.IntegerField(source="price_multiplier_ppm", allow_null=True)


def _team(team_id) -> Team:
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise Http404("No such team.")
    return team


# --- the team's own prices ----------------------------------------------------------------------------------
class TeamPriceListApi(TeamAPIView):
    """Each catalog model with its list price and the team's price ("your price": the team's override in
    force, else the list price, times the team's multiplier; a key group's multiplier applies on top)."""

    permissions_by_method = {"GET": roles.USAGE_OWN}

    class TeamPriceOutput(serializers.Serializer):
        model = serializers.CharField(source="model.public_id")
        list_input_per_m = serializers.IntegerField(source="list_price.input_per_m", allow_null=True, default=None)
        list_output_per_m = serializers.IntegerField(source="list_price.output_per_m", allow_null=True,
                                                     default=None)
        input_per_m = serializers.IntegerField(allow_null=True, help_text="Your price, micro-units per 1M tokens")
        output_per_m = serializers.IntegerField(allow_null=True)
        cached_input_per_m = serializers.IntegerField(allow_null=True)
        cache_write_5m_per_m = serializers.IntegerField(allow_null=True)
        cache_write_1h_per_m = serializers.IntegerField(allow_null=True)
        request_fee = serializers.IntegerField(allow_null=True)
        override_since = serializers.DateTimeField(source="override.effective_from", allow_null=True, default=None,
                                                   help_text="Set when the team has its own rate for the model")
        multiplier_ppm = serializers.IntegerField(help_text="The team's multiplier, parts per million")

    @extend_schema(tags=["billing"], responses={200: TeamPriceOutput(many=True), **errors(401, 403, 404)})
    def get(self, request, team):
        return Response(self.TeamPriceOutput(selectors.team_model_prices(team=self.access.team), many=True).data)


# --- operator: teams ----------------------------------------------------------------------------------------
class OperatorTeamCreateApi(PlatformAPIView):
    """Create a team with its owner (username or email). An unknown owner becomes a new user whose one-time
    password is in this response only."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120)
        slug = serializers.SlugField(max_length=60)
        owner = serializers.CharField(max_length=150, help_text="Username or email")

    class TeamCreatedOutput(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        slug = serializers.CharField()
        owner = serializers.CharField()
        one_time_password = serializers.CharField(allow_null=True, help_text="Shown once; null for an existing user")

    @extend_schema(tags=["operator"], request=InputSerializer,
                   responses={201: TeamCreatedOutput, **errors(400, 401, 403)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            team, password = services.team_create(**data.validated_data)
        except ValidationError as exc:
            raise Refused(" ".join(exc.messages), "invalid_value") from None
        return Response(self.TeamCreatedOutput({"id": team.pk, "name": team.name, "slug": team.slug,
                                                "owner": data.validated_data["owner"].strip(),
                                                "one_time_password": password}).data, status=201)


# --- operator: prices per customer --------------------------------------------------------------------------
class OperatorTeamPricesApi(PlatformAPIView):
    """A team's price terms: its multiplier, its key groups' multipliers and its per-model overrides (GET);
    a new override from a date on (POST; default now; usage already recorded keeps its cost)."""

    class TeamPricesOutput(serializers.Serializer):
        multiplier_ppm = serializers.IntegerField()
        groups = KeyGroupMultiplierOutput(many=True)
        overrides = PriceOverrideOutput(many=True)

    class OverrideInput(_PriceFields):
        model = serializers.CharField(max_length=200, help_text="A catalog model's public id")
        effective_from = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema(tags=["operator"], responses={200: TeamPricesOutput, **errors(401, 403, 404)})
    def get(self, request, team_id):
        team = _team(team_id)
        return Response(self.TeamPricesOutput({
            "multiplier_ppm": selectors.team_multiplier_ppm(team=team),
            "groups": KeyGroup.objects.filter(team=team).order_by("name"),
            "overrides": selectors.price_overrides(team=team)}).data)

    @extend_schema(tags=["operator"], request=OverrideInput,
                   responses={201: PriceOverrideOutput, **errors(400, 401, 403, 404)})
    def post(self, request, team_id):
        team = _team(team_id)
        data = self.OverrideInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        model = catalog_models().filter(public_id=fields.pop("model")).first()
        if model is None:
            raise Refused("No catalog model has this id.", "model_not_found")
        try:
            override = services.price_override_set(team=team, model=model, created_by=request.user, **fields)
        except ValueError as exc:
            raise Refused(str(exc), "invalid_value") from None
        return Response(PriceOverrideOutput(override).data, status=201)


class OperatorPriceOverrideApi(PlatformAPIView):
    @extend_schema(tags=["operator"], responses={204: None, **errors(401, 403, 404)})
    def delete(self, request, team_id, override_id):
        override = PriceOverride.objects.filter(team_id=team_id, pk=override_id).first()
        if override is None:
            raise Http404("No such override.")
        services.price_override_delete(override=override)
        return Response(status=204)


class _MultiplierInput(serializers.Serializer):
    multiplier_ppm = serializers.IntegerField(min_value=0, max_value=MAX_MULTIPLIER_PPM,
                                              help_text="Parts per million: 1000000 = list price")


class OperatorTeamMultiplierApi(PlatformAPIView):
    class TeamMultiplierOutput(serializers.Serializer):
        multiplier_ppm = serializers.IntegerField(source="price_multiplier_ppm")

    @extend_schema(tags=["operator"], request=_MultiplierInput,
                   responses={200: TeamMultiplierOutput, **errors(400, 401, 403, 404)})
    def put(self, request, team_id):
        team = _team(team_id)
        data = _MultiplierInput(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.team_multiplier_set(team=team, multiplier_ppm=data.validated_data["multiplier_ppm"])
        return Response(self.TeamMultiplierOutput(policy).data)


class OperatorGroupMultiplierApi(PlatformAPIView):
    class GroupMultiplierInput(serializers.Serializer):
        multiplier_ppm = serializers.IntegerField(min_value=0, max_value=MAX_MULTIPLIER_PPM, allow_null=True,
                                                  help_text="Parts per million on top of the team's; null: none")

    @extend_schema(tags=["operator"], request=GroupMultiplierInput,
                   responses={200: KeyGroupMultiplierOutput, **errors(400, 401, 403, 404)})
    def put(self, request, team_id, group_id):
        group = KeyGroup.objects.filter(team_id=team_id, pk=group_id).first()
        if group is None:
            raise Http404("No such key group.")
        data = self.GroupMultiplierInput(data=request.data)
        data.is_valid(raise_exception=True)
        group = services.group_multiplier_set(group=group, multiplier_ppm=data.validated_data["multiplier_ppm"])
        return Response(KeyGroupMultiplierOutput(group).data)


# --- operator and support: every team's usage records -------------------------------------------------------
class TeamUsageOutput(UsageOutput):
    team = serializers.CharField(source="team.slug")

    class Meta(UsageOutput.Meta):
        fields = ["team", *UsageOutput.Meta.fields]


class OperatorUsageListApi(PlatformAPIView):
    """Every team's usage records, newest first (platform.read: operators and support staff); the filters of
    the team usage list, with a team slug instead of a key. Bounded by time: `since` defaults to 7 days ago."""

    class FilterSerializer(UsageFilters):
        team = serializers.SlugField(required=False, help_text="A team's slug")

    class PlatformUsageOutput(serializers.Serializer):
        data = TeamUsageOutput(many=True)
        has_more = serializers.BooleanField()

    platform_permission = roles.PLATFORM_READ

    @extend_schema(tags=["operator"], operation_id="operator_usage_list", parameters=[FilterSerializer],
                   responses={200: PlatformUsageOutput, **errors(400, 401, 403)})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        d = dict(filters.validated_data)
        limit, offset, slug = d.pop("limit"), d.pop("offset"), d.pop("team", None)
        team_id = None
        if slug:
            team_id = Team.objects.filter(slug=slug).values_list("pk", flat=True).first()
            if team_id is None:
                raise Refused("No team has this slug.", "team_not_found")
        d.setdefault("since", timezone.now() - dt.timedelta(days=7))
        records = list(selectors.platform_usage_search(team_id=team_id, **d)[offset:offset + limit + 1])
        return Response(self.PlatformUsageOutput({"data": records[:limit], "has_more": len(records) > limit}).data)
