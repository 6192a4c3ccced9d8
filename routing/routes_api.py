"""Management API for routes (task tiers) and the team's `auto` rules. The same service functions as the
console page (routing/routes_views.py); a save answers the route plus `warnings: [...]` naming what a backup
or the downgrade model cannot serve that the default serves. Money fields are integer micro-units."""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView
from keys import selectors as key_selectors
from routing import selectors, services
from routing.models import AutoRouting, RoutingRule
from routing.routes_views import READ, rule_for

TAGS = ["routes"]


def _errors(*codes) -> dict:
    return {code: OpenApiResponse(description="Error (`{\"error\": {...}}`)") for code in codes}


class RouteOutput(serializers.ModelSerializer):
    default_model = serializers.CharField(source="default_model.public_id")
    downgrade_model = serializers.CharField(source="downgrade_model.public_id", allow_null=True, default=None)
    key_group_id = serializers.IntegerField(allow_null=True)
    backup_models = serializers.ListField(child=serializers.CharField())
    forbidden_models = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = RoutingRule
        fields = ["id", "name", "key_group_id", "default_model", "backup_models", "downgrade_model",
                  "forbidden_models", "budget_limit", "budget_period", "soft_limit", "created_at"]


class SavedRouteOutput(RouteOutput):
    warnings = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(RouteOutput.Meta):
        fields = RouteOutput.Meta.fields + ["warnings"]


class RouteInput(serializers.Serializer):
    name = serializers.SlugField(max_length=60)
    key_group_id = serializers.IntegerField(required=False, allow_null=True, default=None,
                                            help_text="Scope the route to one key group (null: the whole team)")
    default_model = serializers.CharField(max_length=120, help_text="A catalog model id")
    backup_models = serializers.ListField(child=serializers.CharField(max_length=120), required=False,
                                          default=list, help_text="Ordered catalog ids")
    downgrade_model = serializers.CharField(max_length=120, required=False, allow_null=True, allow_blank=True,
                                            default=None)
    forbidden_models = serializers.ListField(child=serializers.CharField(max_length=120), required=False,
                                             default=list)
    budget_limit = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                            help_text="Micro-units per period (null: no route budget)")
    budget_period = serializers.ChoiceField(choices=RoutingRule._meta.get_field("budget_period").choices,
                                            required=False, default="month")
    soft_limit = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                          help_text="Micro-units; past it the downgrade model serves")


def _service_fields(access, data: dict) -> dict:
    fields = dict(data)
    if "key_group_id" in fields:
        group_id = fields.pop("key_group_id")
        group = None
        if group_id is not None:
            group = key_selectors.key_groups(team=access.team).filter(pk=group_id).first()
            if group is None:
                raise serializers.ValidationError({"key_group_id": ["No key group with this id in this team."]})
        fields["key_group"] = group
    return fields


def _run(service, **kwargs):
    try:
        return service(**kwargs)
    except DjangoValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        fields = {("key_group_id" if k == "key_group" else k): v for k, v in detail.items()}
        raise serializers.ValidationError(fields) from None


def _saved(rule, warnings, status=200):
    rule.warnings = warnings
    return Response(SavedRouteOutput(rule).data, status=status)


class RouteListApi(TeamAPIView):
    permissions_by_method = {"GET": READ, "POST": roles.ROUTES_MANAGE}

    @extend_schema(tags=TAGS, responses={200: RouteOutput(many=True), **_errors(401, 403, 404)})
    def get(self, request, team):
        return Response(RouteOutput(selectors.routing_rules(team=self.access.team), many=True).data)

    @extend_schema(tags=TAGS, request=RouteInput, responses={201: SavedRouteOutput, **_errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = RouteInput(data=request.data)
        data.is_valid(raise_exception=True)
        rule, warnings = _run(services.routing_rule_create, team=self.access.team,
                              **_service_fields(self.access, data.validated_data))
        return _saved(rule, warnings, status=201)


class RouteDetailApi(TeamAPIView):
    permissions_by_method = {"GET": READ, "PUT": roles.ROUTES_MANAGE, "PATCH": roles.ROUTES_MANAGE,
                             "DELETE": roles.ROUTES_MANAGE}
    team_object_model = RoutingRule

    @extend_schema(tags=TAGS, responses={200: SavedRouteOutput, **_errors(401, 403, 404)})
    def get(self, request, team, pk):
        rule = rule_for(self.access, pk)
        return _saved(rule, services.routing_rule_warnings(rule=rule))

    def _update(self, request, pk, partial):
        rule = rule_for(self.access, pk)
        data = RouteInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        rule, warnings = _run(services.routing_rule_update, rule=rule,
                              **_service_fields(self.access, data.validated_data))
        return _saved(rule, warnings)

    @extend_schema(tags=TAGS, request=RouteInput, responses={200: SavedRouteOutput, **_errors(400, 401, 403, 404)})
    def put(self, request, team, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(tags=TAGS, request=RouteInput, responses={200: SavedRouteOutput, **_errors(400, 401, 403, 404)})
    def patch(self, request, team, pk):
        return self._update(request, pk, partial=True)

    @extend_schema(tags=TAGS, responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request, team, pk):
        services.routing_rule_delete(rule=rule_for(self.access, pk))
        return Response(status=204)


class AutoRoutingSerializer(serializers.ModelSerializer):
    class Meta:
        model = AutoRouting
        fields = list(services.AUTO_FIELDS)
        extra_kwargs = {"long_prompt_tokens": {"min_value": 1,
                                               "help_text": "Null: the deployment's default threshold"},
                        "claude_route": {"help_text": "The route for Claude model ids the catalog does not know "
                                                      "(empty: they are refused)"}}


class AutoRoutingOutput(AutoRoutingSerializer):
    warnings = serializers.ListField(child=serializers.CharField(), read_only=True, required=False)

    class Meta(AutoRoutingSerializer.Meta):
        fields = AutoRoutingSerializer.Meta.fields + ["warnings"]


class AutoRoutingApi(TeamAPIView):
    """Which route `model: "auto"` picks: images/video, tools, a long prompt, anything else."""

    permissions_by_method = {"GET": READ, "PUT": roles.ROUTES_MANAGE}

    @extend_schema(tags=TAGS, responses={200: AutoRoutingSerializer, **_errors(401, 403, 404)})
    def get(self, request, team):
        return Response(AutoRoutingSerializer(services.auto_routing_of(team=self.access.team)).data)

    @extend_schema(tags=TAGS, request=AutoRoutingSerializer,
                   responses={200: AutoRoutingOutput, **_errors(400, 401, 403, 404)})
    def put(self, request, team):
        data = AutoRoutingSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        auto, warnings = _run(services.auto_routing_update, team=self.access.team, **data.validated_data)
        auto.warnings = warnings
        return Response(AutoRoutingOutput(auto).data)
