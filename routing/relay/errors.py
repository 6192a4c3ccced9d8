"""The relay's error table and its two renderings (OpenAI's shape; Anthropic's comes with that route)."""
from dataclasses import dataclass

import orjson
from django.http import HttpResponse


@dataclass
class RelayError(Exception):
    status: int
    type: str
    code: str
    message: str
    param: str | None = None
    headers: dict | None = None
    metadata: dict | None = None    # what OpenRouter's error shape carries besides (402: limit_source)

    def __str__(self):
        return f"{self.status} {self.code}: {self.message}"


def invalid_json(detail: str) -> RelayError:
    return RelayError(400, "invalid_request_error", "invalid_json",
                      f"The request body is not valid JSON ({detail}). Send a JSON object with "
                      "`Content-Type: application/json`.")


def missing_field(field: str) -> RelayError:
    return RelayError(400, "invalid_request_error", "missing_field",
                      f"Missing required parameter: '{field}'.", param=field)


def invalid_value(field: str, why: str) -> RelayError:
    return RelayError(400, "invalid_request_error", "invalid_value", f"Invalid value for '{field}': {why}",
                      param=field)


def invalid_api_key(message: str) -> RelayError:
    return RelayError(401, "invalid_request_error", "invalid_api_key", message)


def model_not_found(model: str, *, claude: bool = False) -> RelayError:
    """`claude`: an unknown Claude id (a Claude Code release ahead of the catalog): says how a team serves it."""
    hint = (" A team admin can send Claude ids the catalog does not know to a route (console: Routes, "
            "\"Unknown Claude model ids\"; API: the team's auto-routing `claude_route`), or an operator can add "
            "this id as an alias of a catalog model.") if claude else ""
    return RelayError(404, "invalid_request_error", "model_not_found",
                      f"The model `{model}` does not exist or you do not have access to it. "
                      "GET /v1/models lists the models this key may use." + hint, param="model")


def model_not_allowed(model: str) -> RelayError:
    return RelayError(403, "permission_error", "model_not_allowed",
                      f"This API key may not use the model `{model}`. Ask a team admin to allow it for the key "
                      "or its group, or pick one from GET /v1/models.", param="model")


def routes_only(model: str) -> RelayError:
    return RelayError(403, "permission_error", "model_not_allowed",
                      f"This API key's group may only call routes: send `model: \"route:NAME\"` or "
                      f"`model: \"auto\"` instead of `{model}`. A team admin sets routes in the console "
                      "(Routes).", param="model")


def ip_not_allowed(ip: str) -> RelayError:
    return RelayError(403, "permission_error", "ip_not_allowed",
                      f"This API key may not be used from {ip}. Ask a team admin to add this address to the "
                      "key's IP allowlist.")


def request_too_large(limit: int) -> RelayError:
    return RelayError(413, "invalid_request_error", "request_too_large",
                      f"The request body is larger than the gateway's limit of {limit} bytes. Send less context "
                      "or fewer/lower-resolution images.")


def upstream_unavailable(detail: str) -> RelayError:
    return RelayError(502, "upstream_error", "upstream_unavailable",
                      f"The upstream provider failed to answer: {detail}. Retry shortly; if it persists, "
                      "open a ticket with the request id.")


def upstream_timeout(seconds: float) -> RelayError:
    return RelayError(504, "upstream_error", "upstream_timeout",
                      f"The upstream provider did not answer within {seconds:g} s. Retry, or lower max_tokens.")


def service_unavailable(message: str, retry_after: int = 5) -> RelayError:
    """A dependency (Redis, PostgreSQL) is down and this request cannot be served safely now: retry shortly."""
    return RelayError(503, "server_error", "service_unavailable", message,
                      headers={"Retry-After": str(retry_after)})


def stream_deadline(seconds: float) -> RelayError:
    return RelayError(504, "upstream_error", "stream_deadline_exceeded",
                      f"The stream ran longer than the gateway's limit of {seconds:g} s and was ended; what was "
                      "streamed is billed. Ask for less output (max_tokens) or split the task.")


def no_available_channel(model: str, attempts: list[str]) -> RelayError:
    tried = "; ".join(attempts) if attempts else "no channel serves it"
    return RelayError(503, "upstream_error", "no_available_channel",
                      f"No upstream could serve `{model}` right now ({tried}). Retry shortly.")


def upstream_rate_limited(retry_after: int | None, attempts: list[str]) -> RelayError:
    """Every channel that was tried answered 429: the client waits as long as the soonest of them asked."""
    wait = f" Retry after {retry_after} s." if retry_after is not None else " Retry shortly."
    return RelayError(429, "rate_limit_error", "upstream_rate_limited",
                      f"The upstream provider is rate limiting this model ({'; '.join(attempts)}).{wait}",
                      headers={"Retry-After": str(retry_after)} if retry_after is not None else None)


def route_not_found(route: str) -> RelayError:
    return RelayError(404, "invalid_request_error", "model_not_found",
                      f"No route `{route}` is configured for this key's team. Ask a team admin to create it in "
                      "the console (Routes), or send a model id.", param="model")


def unsupported_plugin(name: str, param: str = "plugins") -> RelayError:
    """An OpenRouter plugin (or the `:online` suffix, which means the web plugin) this gateway does not run: a
    400 naming it, never silently ignored."""
    return RelayError(400, "invalid_request_error", "unsupported_plugin",
                      f"The plugin `{name}` is not supported by this gateway (it has no internet access: no web "
                      "search). Supported plugins: response-healing. Remove the plugin (or the `:online` "
                      "suffix) and retry.", param=param)


def no_provider_available(excluded: list[str]) -> RelayError:
    """OpenRouter's 503: no channel meets the request's `provider` preferences (each says what excluded it)."""
    return RelayError(503, "upstream_error", "no_provider_available",
                      f"No channel meets this request's provider requirements: {'; '.join(excluded)}. Loosen "
                      "`provider` (only, ignore, order with allow_fallbacks, data_collection, zdr, quantizations, "
                      "require_parameters, max_price) or pick another model.", param="provider")


def no_capable_model(names: list[str], skipped: list[str]) -> RelayError:
    code = "context_length_exceeded" if skipped and all("context" in s for s in skipped) else \
        "unsupported_capability"
    return RelayError(400, "invalid_request_error", code,
                      f"No requested model can serve this request: {'; '.join(skipped) or ', '.join(names)}. "
                      "Pick a model that supports what the request needs.", param="model")


def openai_body(err: RelayError, request_id: str) -> bytes:
    return orjson.dumps({"error": {"message": err.message, "type": err.type, "param": err.param,
                                   "code": err.code, "request_id": request_id}})


def openai_response(err: RelayError, request_id: str) -> HttpResponse:
    response = HttpResponse(openai_body(err, request_id), status=err.status, content_type="application/json")
    response["X-Request-Id"] = request_id
    for name, value in (err.headers or {}).items():
        response[name] = value
    return response
