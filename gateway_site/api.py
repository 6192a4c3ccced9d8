"""Management API conventions: DRF errors in the same `{"error": {...}}` shape as the relay."""
from django.db import DataError
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler


class Unstorable(APIException):
    status_code = 400
    default_detail = "A value is out of range or cannot be stored."
    default_code = "invalid_value"


def exception_handler(exc, context):
    if isinstance(exc, DataError):   # a value the database cannot hold (out of range, NUL): the caller's input
        exc = Unstorable()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and "detail" in detail:
        message, param = str(detail["detail"]), None
        code = getattr(detail["detail"], "code", "error")
    else:
        message, param, code = "Invalid input.", None, "invalid_value"
        if isinstance(detail, dict) and detail:
            param = next(iter(detail))
            first = detail[param]
            message = f"{param}: {first[0] if isinstance(first, list) else first}"
    type_ = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}.get(
        response.status_code, "invalid_request_error")
    response.data = {"error": {"message": message, "type": type_, "param": param, "code": str(code)}}
    return response
