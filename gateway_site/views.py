"""Error pages: API paths always answer JSON (never Django's HTML page or a traceback)."""
import os

import orjson
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseNotFound, HttpResponseServerError
from django.template import loader

API_PREFIXES = ("/v1", "/v1beta", "/api/")


def _json_error(status, type_, code, message):
    request_id = "req_" + os.urandom(12).hex()
    response = HttpResponse(orjson.dumps({"error": {"message": message, "type": type_, "param": None,
                                                    "code": code, "request_id": request_id}}),
                            status=status, content_type="application/json")
    response["X-Request-Id"] = request_id
    return response


def not_found(request, exception=None):
    if request.path.startswith(API_PREFIXES):
        return _json_error(404, "invalid_request_error", "not_found", "Not found.")
    return HttpResponseNotFound(loader.render_to_string("404.html", request=request))


def bad_request(request, exception=None):
    if request.path.startswith(API_PREFIXES):
        return _json_error(400, "invalid_request_error", "bad_request",
                           "The gateway could not read this request. Check the body and headers.")
    return HttpResponseBadRequest("Bad request.")


def server_error(request):
    if request.path.startswith(API_PREFIXES):
        return _json_error(500, "server_error", "internal_error",
                           "The gateway hit an internal error. Retry; if it persists, open a ticket with this "
                           "request id.")
    return HttpResponseServerError(loader.render_to_string("500.html", request=request))
