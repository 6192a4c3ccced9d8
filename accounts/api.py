"""Management API for platform staff accounts (operators only): list, invite (one-time password returned
once), deactivate, reactivate. The same accounts.services functions as the operator's staff page.

The OpenAPI descriptions are view extensions (drf-spectacular), attached at schema generation time; the
shared error schema is core.api_schema's."""
from django.core.exceptions import ValidationError
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from accounts import selectors, services
from accounts.edge import PlatformAPIView


class Refused(APIException):
    """A service's ValidationError (a taken username, the last operator…) as a 400 in the error shape."""

    status_code = 400
    default_code = "invalid_request"


def _refused(error: ValidationError) -> Refused:
    return Refused(" ".join(error.messages))


class StaffOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")
    role = serializers.CharField(help_text="operator or support")
    is_active = serializers.BooleanField(source="user.is_active", help_text="False: deactivated")
    last_login = serializers.DateTimeField(source="user.last_login", allow_null=True)


class StaffCreatedOutput(StaffOutput):
    password = serializers.CharField(help_text="The one-time password: shown once; changed at first sign-in")


class StaffListApi(PlatformAPIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=sorted(services.PLATFORM_ROLE_CODES))

    def get(self, request):
        return Response(StaffOutput(selectors.staff_members(), many=True).data)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            staff, password = services.staff_invite(**data.validated_data)
        except ValidationError as error:
            raise _refused(error) from None
        staff.password = password
        return Response(StaffCreatedOutput(staff).data, status=201)


class StaffDeactivateApi(PlatformAPIView):
    """Deactivate: no sign-in, sessions end, personal access tokens revoked."""

    def post(self, request, pk):
        staff = selectors.staff_member(pk=pk)
        try:
            services.staff_deactivate(staff=staff, by=request.user)
        except ValidationError as error:
            raise _refused(error) from None
        return Response(StaffOutput(staff).data)


class StaffReactivateApi(PlatformAPIView):
    def post(self, request, pk):
        staff = selectors.staff_member(pk=pk)
        services.staff_reactivate(staff=staff)
        return Response(StaffOutput(staff).data)


# --- OpenAPI -------------------------------------------------------------------------------------------------

class StaffListApiSchema(OpenApiViewExtension):
    target_class = "accounts.api.StaffListApi"

    def view_replacement(self):
        from core.api_schema import errors

        return extend_schema_view(
            get=extend_schema(tags=["operator"], responses={200: StaffOutput(many=True), **errors(401, 403)}),
            post=extend_schema(tags=["operator"], request=self.target_class.InputSerializer,
                               responses={201: StaffCreatedOutput, **errors(400, 401, 403)}),
        )(type("StaffListApi", (self.target_class,), {}))


class StaffDeactivateApiSchema(OpenApiViewExtension):
    target_class = "accounts.api.StaffDeactivateApi"

    def view_replacement(self):
        from core.api_schema import errors

        return extend_schema_view(post=extend_schema(
            tags=["operator"], request=None, responses={200: StaffOutput, **errors(400, 401, 403, 404)}),
        )(type("StaffDeactivateApi", (self.target_class,), {}))


class StaffReactivateApiSchema(OpenApiViewExtension):
    target_class = "accounts.api.StaffReactivateApi"

    def view_replacement(self):
        from core.api_schema import errors

        return extend_schema_view(post=extend_schema(
            tags=["operator"], request=None, responses={200: StaffOutput, **errors(401, 403, 404)}),
        )(type("StaffReactivateApi", (self.target_class,), {}))
