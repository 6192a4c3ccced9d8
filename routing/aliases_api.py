"""Management API for a team's model aliases (old names → catalog models): the same services as the console
page (routing/aliases_views.py). Another team's alias is a 404."""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView
from routing import aliases
from routing.aliases_views import READ, alias_for
from routing.models import TeamModelAlias

TAGS = ["model-aliases"]


def _errors(*codes) -> dict:
    return {code: OpenApiResponse(description="Error (`{\"error\": {...}}`)") for code in codes}


class AliasOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="model.public_id", help_text="The catalog model id the alias means")

    class Meta:
        model = TeamModelAlias
        fields = ["id", "alias", "model", "note", "created_at", "updated_at"]


class AliasInput(serializers.Serializer):
    alias = serializers.CharField(max_length=aliases.MAX_ALIAS,
                                  help_text="The old name clients send, e.g. gpt-4-turbo-preview")
    model = serializers.CharField(max_length=120, help_text="A catalog model id, e.g. openai/gpt-4o")
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


def _run(service, **kwargs):
    try:
        return service(**kwargs)
    except DjangoValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        raise serializers.ValidationError(detail) from None


class AliasListApi(TeamAPIView):
    permissions_by_method = {"GET": READ, "POST": roles.ROUTES_MANAGE}

    @extend_schema(tags=TAGS, responses={200: AliasOutput(many=True), **_errors(401, 403, 404)})
    def get(self, request, team):
        return Response(AliasOutput(aliases.model_aliases(team=self.access.team), many=True).data)

    @extend_schema(tags=TAGS, request=AliasInput, responses={201: AliasOutput, **_errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = AliasInput(data=request.data)
        data.is_valid(raise_exception=True)
        alias = _run(aliases.model_alias_create, team=self.access.team, **data.validated_data)
        return Response(AliasOutput(alias).data, status=201)


class AliasDetailApi(TeamAPIView):
    permissions_by_method = {"GET": READ, "PUT": roles.ROUTES_MANAGE, "PATCH": roles.ROUTES_MANAGE,
                             "DELETE": roles.ROUTES_MANAGE}
    team_object_model = TeamModelAlias

    @extend_schema(tags=TAGS, responses={200: AliasOutput, **_errors(401, 403, 404)})
    def get(self, request, team, pk):
        return Response(AliasOutput(alias_for(self.access, pk)).data)

    def _update(self, request, pk, partial):
        alias = alias_for(self.access, pk)
        data = AliasInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        return Response(AliasOutput(_run(aliases.model_alias_update, entry=alias, **data.validated_data)).data)

    @extend_schema(tags=TAGS, request=AliasInput, responses={200: AliasOutput, **_errors(400, 401, 403, 404)})
    def put(self, request, team, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(tags=TAGS, request=AliasInput, responses={200: AliasOutput, **_errors(400, 401, 403, 404)})
    def patch(self, request, team, pk):
        return self._update(request, pk, partial=True)

    @extend_schema(tags=TAGS, responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request, team, pk):
        aliases.model_alias_delete(alias=alias_for(self.access, pk))
        return Response(status=204)
