"""The OpenAPI side of the API's shared shapes (drf-spectacular): the schema class every view uses and the error
body every endpoint may answer (`{"error": {...}}`, written by gateway_site.api.exception_handler)."""
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class AutoSchema(SpectacularAutoSchema):
    """Names nested serializers after the class they sit in (`KeyListApi.InputSerializer` → `KeyListInput`),
    so every endpoint can keep HackSoft-style nested Input/Output serializers without component clashes."""

    def get_serializer_name(self, serializer, direction):
        cls = serializer.__class__
        outer = [part.removesuffix("Api") for part in cls.__qualname__.split(".")[:-1] if part[:1].isupper()]
        name = cls.__name__.removesuffix("Serializer")
        return "".join(outer) + name if outer else cls.__name__


class ErrorOutput(serializers.Serializer):
    class Detail(serializers.Serializer):
        message = serializers.CharField()
        type = serializers.CharField()
        param = serializers.CharField(allow_null=True)
        code = serializers.CharField()

    error = Detail()


def errors(*codes) -> dict:
    """`responses=` entries for the given error statuses, all with the one error body."""
    return {code: OpenApiResponse(ErrorOutput, description="Error") for code in codes}
