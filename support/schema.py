"""OpenAPI schema (drf-spectacular): the token authentication scheme and schemas for the key endpoints of
keys/views.py (which declare no serializers the generator can find). The extensions are registered when a schema
is built (core.api_schema.SchemaGenerator imports this module); the schema class and the error body are
core.api_schema's."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers


class PersonalAccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.tokens.PersonalAccessTokenAuthentication"
    name = "personalAccessToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "tgp_…",
                "description": "A personal access token: `Authorization: Bearer tgp_…`"}


def _key_outputs():
    from keys.views import KeyOutput

    class KeyCreatedOutput(KeyOutput):
        secret = serializers.CharField(help_text="The key's secret: shown once, store it now")

        class Meta(KeyOutput.Meta):
            fields = KeyOutput.Meta.fields + ["secret"]

    return KeyOutput, KeyCreatedOutput


class KeyListApiSchema(OpenApiViewExtension):
    target_class = "keys.views.KeyListApi"

    def view_replacement(self):
        from core.api_schema import errors

        key_output, key_created = _key_outputs()
        return extend_schema_view(
            get=extend_schema(tags=["keys"], responses={200: key_output(many=True), **errors(401, 403, 404)}),
            post=extend_schema(tags=["keys"], request=self.target_class.InputSerializer,
                               responses={201: key_created, **errors(400, 401, 403, 404)}),
        )(type("KeyListApi", (self.target_class,), {}))


class KeyDetailApiSchema(OpenApiViewExtension):
    target_class = "keys.views.KeyDetailApi"

    def view_replacement(self):
        from core.api_schema import errors

        key_output, _ = _key_outputs()
        return extend_schema_view(
            get=extend_schema(tags=["keys"], responses={200: key_output, **errors(401, 403, 404)}),
            delete=extend_schema(tags=["keys"], responses={204: None, **errors(401, 403, 404)}),
        )(type("KeyDetailApi", (self.target_class,), {}))
