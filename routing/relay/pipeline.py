"""One relayed call, from key to usage record. Every inbound route goes through `RelayCall`, so no route can
skip auth, the allowed-model rule or recording."""
import asyncio
import os
import time

import aiohttp
import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from billing import usage_journal
from billing.money import usage_cost
from keys.auth import AuthError, KeyContext, authenticate, secret_from_headers
from keys.selectors import allowed_models
from routing.adapters.base import Usage
from routing.adapters.registry import adapter_for
from routing.relay import errors, snapshot
from routing.relay.upstream import session
from support.redaction import redact


class MetaHeaders:
    """Case-insensitive header access straight from the ASGI META dict (cheaper than request.headers)."""

    __slots__ = ("meta",)

    def __init__(self, meta):
        self.meta = meta

    def get(self, name, default=None):
        return self.meta.get("HTTP_" + name.upper().replace("-", "_"), default)


def sdk_of(meta) -> str:
    lang = meta.get("HTTP_X_STAINLESS_LANG")
    version = meta.get("HTTP_X_STAINLESS_PACKAGE_VERSION")
    if lang and version:
        return f"{meta.get('HTTP_USER_AGENT', '').split('/')[0] or 'sdk'}-{lang} {version}"[:80]
    return meta.get("HTTP_USER_AGENT", "").split(" ")[0][:80]


class RelayCall:
    __slots__ = ("request", "request_id", "hex_id", "started", "created", "ctx", "payload", "model", "channel",
                 "usage", "ttfb_ms", "status", "error_code", "error_text", "stream", "recorded", "attempts")

    def __init__(self, request):
        self.request = request
        self.hex_id = os.urandom(12).hex()
        self.request_id = "req_" + self.hex_id
        self.started = time.perf_counter()
        self.created = time.time()
        self.ctx: KeyContext | None = None
        self.payload: dict | None = None
        self.model: snapshot.ModelEntry | None = None
        self.channel: snapshot.ChannelEntry | None = None
        self.usage: Usage | None = None
        self.ttfb_ms: int | None = None
        self.status = 200
        self.error_code = ""
        self.error_text = ""
        self.stream = False
        self.recorded = False
        self.attempts: list[str] = []

    # --- the steps every route shares ---------------------------------------------------------------
    async def authenticate(self) -> KeyContext:
        try:
            self.ctx = await authenticate(secret_from_headers(MetaHeaders(self.request.META)))
        except AuthError as exc:
            raise errors.invalid_api_key(exc.message) from None
        if self.ctx.allowed_ips:
            ip = self.request.META.get("REMOTE_ADDR", "")
            if not self.ctx.ip_allowed(ip):
                raise errors.ip_not_allowed(ip)
        return self.ctx

    def read_json(self) -> dict:
        limit = settings.TOLLGATE_MAX_BODY_BYTES
        if int(self.request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise errors.request_too_large(limit)
        try:
            body = self.request.body
        except RequestDataTooBig:  # a chunked body with no Content-Length
            raise errors.request_too_large(limit) from None
        if len(body) > limit:
            raise errors.request_too_large(limit)
        if not body:
            raise errors.invalid_json("the body is empty")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise errors.invalid_json(str(exc).split(":")[0]) from None
        if not isinstance(payload, dict):
            raise errors.invalid_json("expected a JSON object at the top level")
        self.payload = payload
        return payload

    async def resolve_model(self, name) -> snapshot.ModelEntry:
        if name is None:
            raise errors.missing_field("model")
        if not isinstance(name, str) or not name:
            raise errors.invalid_value("model", "expected a model id string such as `openai/gpt-4o-mini`.")
        snap = await snapshot.current()
        model = snap.resolve(name)
        if model is None:
            raise errors.model_not_found(name)
        ctx = self.ctx
        allowed = allowed_models(team_models=ctx.team_models, group_models=ctx.group_models,
                                 key_models=ctx.key_models)
        if allowed is not None and model.public_id not in allowed:
            raise errors.model_not_allowed(name)
        self.model = model
        return model

    async def open_upstream(self, *, stream: bool) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """Try the model's channels in order until one answers; only before any byte reached the client.

        Returns the open response and, for non-streaming calls, its whole body."""
        snap = await snapshot.current()
        candidates = snap.channels_for(self.model, self.ctx.team_id)
        if not candidates:
            raise errors.no_available_channel(self.model.public_id, [])
        timeouts = 0
        last_detail = ""
        for channel in candidates:
            adapter = adapter_for(channel.kind)
            upstream_model = channel.model_mapping.get(self.model.public_id, self.model.upstream_name)
            req = adapter.to_upstream(self.payload, upstream_model=upstream_model, base_url=channel.base_url,
                                      api_key=channel.api_key, stream=stream)
            label = channel.name if channel.team_id else f"channel {len(self.attempts) + 1}"
            self.channel = channel
            try:
                resp = await session().post(req.url, data=req.body, headers=req.headers)
                if resp.status < 400:
                    return resp, (None if stream else await resp.read())
                body = await resp.read()
                resp.release()
            except (asyncio.TimeoutError, TimeoutError):
                timeouts += 1
                self.attempts.append(f"{label}: timeout")
                continue
            except aiohttp.ClientError as exc:
                last_detail = f"connection error ({type(exc).__name__})"
                self.attempts.append(f"{label}: {last_detail}")
                continue
            if resp.status == 429 or resp.status >= 500 or resp.status in (401, 402, 403):
                # Worth another channel: overload, outage, or this channel's own credentials/balance.
                last_detail = f"HTTP {resp.status}"
                self.attempts.append(f"{label}: {last_detail}")
                continue
            raise self._client_error_from_upstream(resp.status, body)
        if timeouts == len(self.attempts):
            raise errors.upstream_timeout(settings.TOLLGATE_UPSTREAM_TIMEOUT)
        raise errors.upstream_unavailable("; ".join(self.attempts) or last_detail)

    def _client_error_from_upstream(self, status: int, body: bytes) -> errors.RelayError:
        """An error in the client's own request (every channel would repeat it): pass it on, redacted."""
        try:
            err = orjson.loads(body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            err = {}
        message = redact(str(err.get("message") or f"The upstream rejected the request (HTTP {status})."))
        code = err.get("code") or ("model_not_found" if status == 404 else "invalid_value")
        return errors.RelayError(status if status in (400, 404, 413, 422) else 400, "invalid_request_error",
                                 str(code), message, err.get("param"))

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    # --- the end of every call ----------------------------------------------------------------------
    def fail(self, err: errors.RelayError) -> None:
        self.status, self.error_code, self.error_text = err.status, err.code, redact(err.message)

    def record(self) -> None:
        """Append the usage record to the journal (durable through kill -9); once per call."""
        if self.recorded or self.ctx is None:
            return
        self.recorded = True
        usage = self.usage or Usage()
        model = self.model
        cost = 0
        if model is not None and model.price is not None and self.usage is not None:
            cost = usage_cost(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                              cached_tokens=usage.cached_tokens, price=model.price)
        meta = self.request.META
        usage_journal.append({
            "request_id": self.request_id, "team_id": self.ctx.team_id, "api_key_id": self.ctx.key_id,
            "key_mask": self.ctx.mask,
            "requested_model": str((self.payload or {}).get("model") or "")[:200],
            "served_model": model.public_id if model and self.status < 400 else "",
            "channel_id": self.channel.id if self.channel else None,
            "status_code": self.status, "error_code": self.error_code, "error_text": self.error_text,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens, "cost": cost,
            "latency_ms": self.latency_ms(), "ttfb_ms": self.ttfb_ms,
            "stream": self.stream, "user_agent": meta.get("HTTP_USER_AGENT", "")[:300], "sdk": sdk_of(meta),
            "path": self.request.path[:300], "created_at": self.created,
        })
