"""The OpenAPI side of the API's shared shapes (drf-spectacular): the schema class every view uses and the error
body every endpoint may answer (`{"error": {...}}`, written by gateway_site.api.exception_handler), and the
generator that loads the apps' schema extensions."""
from django.utils.module_loading import autodiscover_modules
from drf_spectacular.generators import SchemaGenerator as SpectacularSchemaGenerator
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


class SchemaGenerator(SpectacularSchemaGenerator):
    """Imports each app's `schema` module (its drf-spectacular extensions, e.g. support/schema.py) when a schema
    is built (/api/schema/, `manage.py spectacular`), not in every process at start-up: a Celery worker or a
    management command never needs them (~11 MB of imports)."""

    def __init__(self, *args, **kwargs):
        autodiscover_modules("schema")
        super().__init__(*args, **kwargs)


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
