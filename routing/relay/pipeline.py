"""One relayed call, from key to usage record. Every inbound route goes through `RelayCall`, so no route can
skip auth, the allowed-model rule or recording."""
import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from billing import limits, usage_journal
from billing.money import MICRO, amount, combined_multiplier, prompt_parts, usage_cost
from core.redaction import redact
from keys.auth import AuthError, KeyContext, KeyStoreUnavailable, authenticate, secret_from_headers
from routing import tokens
from routing.adapters.base import FATAL, NEXT_CHANNEL, NEXT_MODEL, UpstreamError, UpstreamFormatError, Usage
from routing.adapters.registry import ACCOUNT_CODES, adapter_for
from routing.relay import errors, formats, generations, health, metrics, quota, router, snapshot
from routing.relay.upstream import session

log = logging.getLogger(__name__)
_in_flight: dict[int, int] = {}   # channel id → requests in flight in this process (channel concurrency caps)


def channel_label(channel, team_id: int) -> str:
    if channel is None:
        return "-"
    return f"channel '{channel.name}'" if channel.team_id == team_id else f"platform channel #{channel.id}"


_OK = "ok"


@dataclass(slots=True)
class _Outcome:
    """One attempt's result: _OK (with the open response, and the body unless streaming), or what to do
    next (NEXT_CHANNEL | NEXT_MODEL | FATAL) and why."""
    kind: str
    resp: aiohttp.ClientResponse | None = None
    body: bytes | None = None
    reason: str = ""
    timeout: int = 0
    error: UpstreamError | None = None
    retry_after: int | None = None   # an upstream 429's Retry-After, in seconds


@dataclass(slots=True)
class _Tries:
    tried: int = 0
    timeouts: int = 0
    rate_limited: int = 0            # attempts answered 429
    retry_after: int | None = None   # the soonest Retry-After of those
    model_error: UpstreamError | None = None
    runnable: int = 0                # candidates that can run the call's forced hosted tool (RelayCall.forced_tool)


_HEADER_UNSAFE = {code: "?" for code in (*range(32), 127)}


def _within_output_limit(request: dict, model) -> dict:
    """The canonical request with max_tokens no higher than the model can write (a client may ask for more than
    the model it was routed to allows: Claude Code asks 128000 of whatever serves it)."""
    limit = model.max_output_tokens
    over = {key: limit for key in ("max_tokens", "max_completion_tokens")
            if limit and isinstance(request.get(key), int) and request[key] > limit}
    return {**request, **over} if over else request


def _retry_after(value: str | None) -> int | None:
    """Retry-After in whole seconds (an HTTP date is read as "soon": 1 s); None when absent or garbage."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(int(value), 3600)
    return 1 if value[:3].isalpha() else None


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


class Counts(NamedTuple):
    """A call's token counts as billed: the parts of the prompt add up to no more than it, reasoning is part
    of the completion; `clamped` when the upstream's report had to be corrected to get there."""
    prompt: int = 0
    completion: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    clamped: bool = False


_NO_LIMIT = 2**31 - 1   # the usage columns' range, when no model bounds a count


def sane_counts(usage: Usage, model=None) -> Counts:
    """An upstream may report anything (issue 11): a negative count must not turn into a credit, nor an
    absurd one drain a balance. Counts below 0 or above 10x the model's context plus output limits are
    clamped into range, cache parts to what is left of the prompt, reasoning to the completion, and the
    record is flagged. (Column bounds and NUL bytes are usage_journal.sanitize's job.)"""
    limit = 10 * (model.context_length + model.max_output_tokens) if model is not None else _NO_LIMIT
    clamped = False

    def bounded(n, high: int) -> int:
        nonlocal clamped
        if isinstance(n, (int, float)) and 0 <= n <= high:
            return int(n)
        clamped = True
        return high if isinstance(n, (int, float)) and n > high else 0

    prompt, completion = bounded(usage.prompt_tokens, limit), bounded(usage.completion_tokens, limit)
    reported = tuple(bounded(n, limit) for n in (usage.cached_tokens, usage.cache_write_tokens,
                                                 usage.cache_write_1h_tokens))
    _, read, write_5m, write_1h = prompt_parts(prompt, *reported)
    reasoning = bounded(usage.reasoning_tokens, completion)
    return Counts(prompt, completion, read, write_5m, write_1h, reasoning,
                  clamped or (read, write_5m, write_1h) != reported)


class RelayCall:
    __slots__ = ("request", "request_id", "hex_id", "started", "created", "ctx", "payload", "model", "channel",
                 "usage", "ttfb_ms", "status", "error_code", "error_text", "stream", "recorded", "attempts",
                 "snap", "route_plan", "fmt", "held", "reservation", "rate_headers", "produced", "canonical",
                 "stream_outcome", "finish_reason", "native", "native_answer", "answer", "billed", "estimate",
                 "forced_tool")
    # Set by the steps, in order: authenticate → ctx, plan → snap/route_plan/model, reserve_quota → reservation,
    # an attempt → channel (and held, the channel id whose concurrency slot this call holds).
    snap: snapshot.Snapshot | None
    route_plan: router.Plan | None
    held: int | None
    reservation: limits.Reservation | None

    def __init__(self, request, fmt: str = "openai"):
        self.request = request
        self.fmt = fmt
        self.snap = self.route_plan = self.held = self.reservation = None
        self.rate_headers: dict = {}
        self.produced = 0          # completion tokens streamed so far (for a stream the client aborts)
        self.finish_reason = ""    # what ended the generation, as the upstream said (OpenAI's words)
        self.canonical: dict | None = None
        self.stream_outcome: tuple | None = None   # an open stream's attempt, reported to health at its end
        self.native = False        # the channel that served speaks the client's format: relayed untranslated
        self.native_answer: tuple[bytes, Usage, str] | None = None    # a native whole answer: (body, usage, finish)
        self.answer: Any = None    # what the serving attempt's validator read of a whole answer: parsed once
        self.billed: tuple | None = None     # the last _billed answer: (usage, model, channel, counts, cost)
        self.estimate: tuple[dict, int] | None = None   # (request, its prompt estimate): counted once a call
        # A hosted tool the request forces that translation cannot carry (Responses' web_search, …): only
        # channels that speak the client's format natively are candidates (set by the route's view).
        self.forced_tool: str | None = None
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
            # Gemini clients may send the key as `?key=` (the recorded path never has the query string).
            secret = secret_from_headers(MetaHeaders(self.request.META)) or \
                (self.request.GET.get("key") if self.fmt == "gemini" else None)
            self.ctx = await authenticate(secret)
        except KeyStoreUnavailable as exc:  # PostgreSQL down and the key not cached: retry, not a 401
            raise errors.service_unavailable(exc.message) from None
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

    async def plan(self, request: dict, output: str = "text") -> router.Plan:
        """Resolve model / route / fallback list into ordered candidates (raises the 4xx of the table).
        `output`: "text" for chat and messages, "embeddings" for /v1/embeddings."""
        self.canonical = request
        self.snap = await snapshot.current()
        assert self.ctx is not None   # authenticated first
        self.route_plan = router.plan(self.snap, self.ctx, request, len(self.request.body), output)
        route_plan = self.route_plan   # router.plan raised unless it has a model or a downgrade
        self.model = route_plan.models[0] if route_plan.models else route_plan.downgrade
        return self.route_plan

    def count_prompt_tokens(self) -> int:
        """The planned request's prompt, every character counted by the serving model's tokenizer family (the
        count_tokens endpoints of every format)."""
        assert self.model is not None   # planned first
        return tokens.count_prompt_tokens(self.canonical or {}, tokens.family_of(self.model.provider))

    def prompt_estimate(self, request: dict | None = None) -> int:
        """The prompt's estimated tokens (tiktoken), counted once a call: the hold, the open stream's journal
        line and a partial bill all need it."""
        request = (self.canonical or {}) if request is None else request
        if self.estimate is None or self.estimate[0] is not request:
            self.estimate = (request, tokens.estimate_prompt_tokens(request))
        return self.estimate[1]

    @property
    def route_rule(self):
        return self.route_plan.rule if self.route_plan else None

    async def reserve_quota(self, request: dict) -> None:
        """Check every limit and hold the worst-case cost (one Redis script); 402/429 when refused."""
        checks, worst, minimum, estimate = quota.build(self, request)
        try:
            hold, used = await limits.reserve(worst, minimum, checks, self.request_id)
        except limits.LimitExceeded as exc:
            self.rate_headers = quota.rate_headers(checks, exc.counts)  # a 429 or 402 shows them too
            raise quota.refusal(exc, minimum) from None
        except limits.LimitsUnavailable as exc:  # a Redis or PostgreSQL outage (docs/reliability.md)
            raise errors.service_unavailable(exc.message, exc.retry_after) from None
        self.reservation = limits.Reservation(checks, hold, estimate, self.request_id)
        self.rate_headers = quota.rate_headers(checks, used)

    async def open_upstream(self, request: dict, *, stream: bool,
                            embeddings: bool = False) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """Try candidates (model × channel) until one answers, only before any byte reached the client.

        What moves on to the next channel, the next model or returns at once is the adapter's `classify`;
        timeouts and connection errors move to the next channel. Returns the open response and, for
        non-streaming calls, its whole (valid) body."""
        plan = self.route_plan
        assert plan is not None   # planned first
        if plan.unmet:   # the request's `provider` preferences exclude every channel (the route header says how)
            raise errors.no_provider_available(plan.unmet)
        if self.reservation is not None and router.watches_spend(plan):
            router.after_spend(plan, await limits.spent(self.reservation.checks, plan.rule))
        models = router.candidate_models(plan)
        tries = _Tries()
        candidates = self._candidates(models, tries, embeddings)
        outcome = None
        while True:
            try:
                model, channel = candidates.send(outcome)
            except StopIteration:
                break
            tries.tried += 1
            result = await self._attempt(request, model, channel, stream=stream, embeddings=embeddings)
            if result.kind is _OK:
                assert result.resp is not None   # an _OK outcome carries its response
                return result.resp, result.body
            outcome = result.kind
            if result.error is not None and result.error.outcome == FATAL:
                raise self._client_error_from_upstream(result.error)
            self.skip(model, channel, result.reason)
            tries.timeouts += result.timeout
            if result.error is not None and result.error.status == 429 and result.error.code not in ACCOUNT_CODES:
                tries.rate_limited += 1
                if result.retry_after is not None:
                    tries.retry_after = min(result.retry_after, tries.retry_after or result.retry_after)
            # The last "this model cannot" answer is returned if nothing else serves; a later channel's error
            # answer (of another model) clears it.
            if outcome == NEXT_MODEL:
                tries.model_error = result.error
            elif result.error is not None:
                tries.model_error = None
        self.channel = None
        raise self._final_error(models, tries)

    def _candidates(self, models: list, tries: "_Tries", embeddings: bool):
        """(model, channel) in the order the router gave, skipping (with a reason) channels whose circuit is
        open, that are at their concurrency cap or cannot do the call; stops at the attempt limit or the
        deadline. The caller sends each attempt's outcome back: NEXT_MODEL leaves the model's other channels.
        When every candidate was cooling down and none was tried, they are tried anyway (last resort) rather
        than failing fast. A call that forces a hosted tool (`forced_tool`) skips channels that would translate it."""
        deadline = self.started + settings.TOLLGATE_ROUTE_DEADLINE_SECONDS
        max_attempts = settings.TOLLGATE_MAX_ATTEMPTS
        cooling = 0
        assert self.ctx is not None and self.snap is not None and self.route_plan is not None   # planned
        sticky = router.cache_key(self.canonical or {}, self.ctx.team_id)   # same cache key, same channel
        for last_resort in (False, True):
            if last_resort:
                if tries.tried or not cooling:
                    return
                self.attempts.clear()
            for model in models:
                channels = router.channels_in_order(self.route_plan, self.snap, model, self.ctx.team_id, sticky)
                if not channels:
                    self.skip(model, None, "no channel serves it")
                for channel in channels:
                    if tries.tried >= max_attempts or time.perf_counter() > deadline:
                        break
                    if self.forced_tool and not adapter_for(channel.kind).speaks_natively(self.fmt, channel):
                        self.skip(model, channel, f"cannot run {self.forced_tool}")
                        continue
                    tries.runnable += 1
                    if not last_resort and not health.allow(channel.id, model.id):
                        self.skip(model, channel, "circuit open (cooling down)")
                        cooling += 1
                        continue
                    if channel.max_concurrency and _in_flight.get(channel.id, 0) >= channel.max_concurrency:
                        self.skip(model, channel, "at its concurrency cap")
                        continue
                    if embeddings and not adapter_for(channel.kind).capabilities.embeddings:
                        self.skip(model, channel, "no embeddings API")
                        continue
                    if (yield model, channel) == NEXT_MODEL:
                        break

    async def _attempt(self, request: dict, model, channel, *, stream: bool, embeddings: bool) -> "_Outcome":
        """One upstream call; reports its outcome to channel health (a stream's once it ended)."""
        adapter = adapter_for(channel.kind)
        upstream_model = channel.model_mapping.get(model.public_id, model.upstream_name)
        self.native = not embeddings and adapter.speaks_natively(self.fmt, channel)
        if embeddings:
            req = adapter.embeddings_request(request, upstream_model=upstream_model, base_url=channel.base_url,
                                             api_key=channel.api_key)
            validate = adapter.embeddings_from_upstream
        elif self.native:  # the client's own payload, as it sent it
            assert self.payload is not None   # read (or set by the route) before planning
            req = adapter.native_request(self.fmt, self.payload, upstream_model=upstream_model,
                                         base_url=channel.base_url, api_key=channel.api_key, stream=stream,
                                         headers=MetaHeaders(self.request.META))
            validate = self._native_validator(adapter, model)
        else:
            req = adapter.to_upstream(_within_output_limit(request, model), upstream_model=upstream_model,
                                      base_url=channel.base_url, api_key=channel.api_key, stream=stream)
            validate = adapter.from_upstream
        self.model, self.channel = model, channel
        self.hold_channel()
        sent = time.perf_counter()

        def report(ok, status=None, code=None, error_class=""):
            health.report(channel.id, model.id, ok=ok, status=status, code=code, error_class=error_class,
                          latency_ms=int((time.perf_counter() - sent) * 1000))

        try:
            resp = await session().post(req.url, data=req.body, headers=req.headers)
            if resp.status < 400 and stream:  # its outcome counts once it ended: one that breaks mid-way failed
                latency = int((time.perf_counter() - sent) * 1000)
                health.note_upstream_ms(latency)
                self.stream_outcome = (channel.id, model.id, resp.status, latency)
                return _Outcome(_OK, resp=resp)
            body = await resp.read()
            if resp.status >= 400:
                resp.release()
        except (asyncio.TimeoutError, TimeoutError):
            self.release_channel()
            report(False, error_class="timeout")
            return _Outcome(NEXT_CHANNEL, reason="timeout", timeout=1)
        except aiohttp.ClientError as exc:
            self.release_channel()
            report(False, error_class="connection")
            return _Outcome(NEXT_CHANNEL, reason=f"connection error ({type(exc).__name__})")
        if resp.status < 400:
            try:
                self.answer = validate(body)  # an invalid answer counts as a failed attempt
            except UpstreamFormatError as exc:
                self.release_channel()
                report(False, resp.status, error_class="invalid_response")
                return _Outcome(NEXT_CHANNEL, reason=str(exc))
            report(True, resp.status)
            return _Outcome(_OK, resp=resp, body=body)
        self.release_channel()
        error = adapter.error(resp.status, body)   # the error body, parsed once
        channel_fault = error.outcome == NEXT_CHANNEL
        # The request's own faults (and "this model cannot") say nothing against the channel.
        report(not channel_fault, resp.status, error.code, f"http_{resp.status}" if channel_fault else "")
        return _Outcome(error.outcome, reason=f"HTTP {resp.status}" + (f" {error.code}" if error.code else ""),
                        error=error, retry_after=_retry_after(resp.headers.get("Retry-After")))

    @property
    def response_id(self) -> str:
        """The id of the answer in the client's format (it embeds the request id: /v1/generation finds it)."""
        return formats.of(self.fmt).ID_PREFIX + self.hex_id

    def _native_validator(self, adapter, model):
        """Validates a whole native answer and keeps it parsed (the views return it)."""
        def validate(body: bytes) -> None:
            self.native_answer = adapter.native_answer(self.fmt, body, response_id=self.response_id,
                                                       model=model.public_id)
        return validate

    def _final_error(self, models: list, tries: "_Tries") -> errors.RelayError:
        """Nothing served: the error that says the most (a model's own refusal, all timeouts, the one
        upstream's failure, else every skip). A forced hosted tool no candidate can run is the client's 400."""
        if self.forced_tool and not tries.tried and not tries.runnable and \
                any(skip.endswith(f": cannot run {self.forced_tool}") for skip in self.attempts):
            return errors.RelayError(
                400, "invalid_request_error", "unsupported_tool",
                f"tool_choice forces the `{self.forced_tool}` tool, which no channel of this route can run: hosted "
                f"tools run only on a channel that speaks this API natively (OpenAI), and none serves "
                f"`{models[0].public_id if models else '-'}` or its fallbacks here. Use tool_choice \"auto\" (the "
                "tool is then left out where it cannot run), or a model served by an OpenAI channel.",
                param="tool_choice")
        if tries.model_error is not None:
            return self._client_error_from_upstream(tries.model_error)
        if tries.tried and tries.timeouts == tries.tried:
            return errors.upstream_timeout(settings.TOLLGATE_UPSTREAM_TIMEOUT)
        if tries.tried and tries.rate_limited == tries.tried:
            return errors.upstream_rate_limited(tries.retry_after, self.attempts)
        if tries.tried == 1 and len(self.attempts) == 1 and len(models) == 1:
            return errors.upstream_unavailable(self.attempts[0])
        assert self.route_plan is not None   # planned first
        return errors.no_available_channel(models[0].public_id, self.route_plan.skipped + self.attempts)

    def stream_ended(self, ok: bool, error_class: str = "") -> None:
        """Report an open stream's attempt to channel health, once: broken mid-way (the upstream dropped the
        connection or sent an error) is a failure; finished, or left by the client, a success."""
        outcome, self.stream_outcome = self.stream_outcome, None
        if outcome is None:
            return
        channel_id, model_id, status, latency = outcome
        health.report(channel_id, model_id, ok=ok, status=status if ok else None, code=None,
                      error_class=error_class, latency_ms=latency, track_time=False)

    def skip(self, model, channel, reason: str) -> None:
        assert self.ctx is not None   # attempts come after authentication
        self.attempts.append(f"{model.public_id} via {channel_label(channel, self.ctx.team_id)}: {reason}")

    def hold_channel(self) -> None:
        assert self.channel is not None   # the attempt's channel, just set
        if self.channel.max_concurrency:
            _in_flight[self.channel.id] = _in_flight.get(self.channel.id, 0) + 1
            self.held = self.channel.id

    def release_channel(self) -> None:
        if self.held is not None:
            _in_flight[self.held] -= 1
            self.held = None

    def route_header(self) -> str:
        """X-Tollgate-Route: what served and why others did not (platform channels stay anonymous)."""
        plan = self.route_plan
        assert plan is not None and self.ctx is not None   # only a planned call has a route header
        parts = [f"route={plan.route or 'direct'}", f"model={self.model.public_id if self.model else '-'}"]
        if plan.aliases:  # the team's model aliases that rewrote the asked name
            parts.insert(1, "alias=" + ",".join(plan.aliases))
        if plan.prefs is not None:   # how the request's provider preferences ordered the channels
            parts[1:1] = plan.prefs.describe()
        if self.channel is not None and self.status < 400:  # a team's own channel by name, platform ones not
            parts.append(f"channel={self.channel.name if self.channel.team_id == self.ctx.team_id else 'platform'}")
        parts.append(f"attempts={len(self.attempts) + (1 if self.status < 400 else 0)}")
        skipped = plan.skipped + self.attempts
        if skipped:
            parts.append("skipped=" + " | ".join(skipped))
        if self.status < 400 and not self.native and self.payload is not None:   # what a translation left out
            notes = formats.of(self.fmt).translation_notes(self.payload)
            if notes:
                parts.append("translated=" + ", ".join(notes))
        # Header values are ASCII without control characters (the client's own words may be in it): arrows in
        # skip reasons become "->", anything else left becomes "?".
        text = "; ".join(parts)
        if text.isascii() and text.isprintable():   # the common header: nothing to replace
            return text[:2000]
        text = text.replace("\u2192", "->").translate(_HEADER_UNSAFE)
        return text.encode("ascii", "replace").decode()[:2000]

    @staticmethod
    def _client_error_from_upstream(error: UpstreamError) -> errors.RelayError:
        """An error in the client's own request (every channel would repeat it): pass it on, redacted."""
        status = error.status
        code = error.code or ("model_not_found" if status == 404 else "invalid_value")
        return errors.RelayError(status if status in (400, 404, 413, 422) else 400, "invalid_request_error",
                                 code, redact(error.message), error.param)

    def client_closed(self) -> None:
        """The client went away mid-stream: bill what was produced."""
        self.status, self.error_code = 499, "client_closed_request"
        self.bill_partial()

    def bill_partial(self) -> None:
        """A stream that ended early (the client left, the upstream broke, the deadline passed) is billed for
        what was produced: upstream usage, if it already came, is real and wins; otherwise the streamed tokens
        counted so far and the prompt estimate."""
        if self.usage is None:
            self.usage = Usage(prompt_tokens=self.prompt_estimate(), completion_tokens=self.produced)

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    # --- the end of every call ----------------------------------------------------------------------
    def fail(self, err: errors.RelayError) -> None:
        self.status, self.error_code, self.error_text = err.status, err.code, redact(err.message)

    def end_failed(self, err: errors.RelayError, *, record: bool = True) -> None:
        """The end of a call that raised (a RelayError or anything unexpected): recorded as failed."""
        self.fail(err)
        self.end(record=record)

    def end(self, *, record: bool = True) -> None:
        """Record the call; whatever recording does, its holds, concurrency slots and channel slot are given
        back now, not by the 900 s sweep."""
        settled = False
        try:
            if record:
                self.record()
                settled = True   # record() settled the reservation
        except Exception:
            log.exception("request %s: recording the call raised", self.request_id)
        finally:
            if not settled:
                self.release_holds()
            self.release_channel()
            usage_journal.journal.stream_ended(self.request_id)

    def release_holds(self) -> None:
        """Give back the reservation without counting spend (a second settle of the same request is a no-op
        for the holds and moves the counters by nothing)."""
        res, self.reservation = self.reservation, None
        if res is not None:
            limits.settle_soon(res, 0, res.estimate_tokens)

    def _billed(self, usage: Usage) -> tuple[Counts, int | None]:
        """`usage`'s counts as billed and their cost. The last answer is kept: the answer's usage.cost, a
        stream's chunks and record() ask about the same usage (Usage is never changed once made)."""
        memo = self.billed
        if memo is not None and memo[0] is usage and memo[1] is self.model and memo[2] is self.channel:
            return memo[3], memo[4]
        n = sane_counts(usage, self.model)
        cost = self._price(n)
        self.billed = (usage, self.model, self.channel, n, cost)
        return n, cost

    def _cost(self, usage: Usage) -> int | None:
        return self._billed(usage)[1]

    def _price(self, n: Counts) -> int | None:
        """What counts `n` cost this call in micro-units (the team's price at the time of the request, times the
        team's and key group's multipliers); None when the model has no price."""
        if self.model is None or self.snap is None or self.ctx is None:
            return None
        price = self.snap.price_for(self.model, self.ctx.team_id, self.created)
        if price is None:
            return None
        multiplier = combined_multiplier(self.snap.policy(self.ctx.team_id).multiplier_ppm,
                                         self.ctx.group_multiplier_ppm)
        if self.channel is not None and self.channel.team_id == self.ctx.team_id:
            # The team's own upstream key (BYOK): the team pays its provider; the gateway charges only its fee.
            multiplier = multiplier * settings.TOLLGATE_BYOK_FEE_PPM // MICRO
        return usage_cost(prompt_tokens=n.prompt, completion_tokens=n.completion, cached_tokens=n.cache_read,
                          cache_write_5m_tokens=n.cache_write_5m, cache_write_1h_tokens=n.cache_write_1h,
                          price=price, multiplier_ppm=multiplier)

    def cost_now(self, usage: Usage | None) -> float | None:
        """What the call costs in the deployment currency, for `usage.cost` in answers: the same figure
        record() charges for this usage (so it equals the ledger entry), or None when the model has no price."""
        return amount(self._cost(usage or Usage()))

    def record(self) -> None:
        """Append the usage record to the journal (durable through kill -9); once per call."""
        if self.recorded or self.ctx is None:
            return
        self.recorded = True
        self.release_channel()
        usage = self.usage or Usage()
        model = self.model
        n, cost = self._billed(usage)
        if n.clamped:
            log.warning("request %s: upstream usage out of bounds, clamped: %s", self.request_id, usage)
        cost = (cost or 0) if self.usage is not None else 0
        metrics.observe(self, cost, clamped=n.clamped)
        if self.channel is not None and self.status < 400 and model is not None:   # provider sort's measurements
            health.observe_speed(self.channel.id, model.id, ttfb_ms=self.ttfb_ms, latency_ms=self.latency_ms(),
                                 tokens=n.completion, stream=self.stream)
        journaled = usage_journal.append(self._entry(n, cost))
        if self.reservation is not None:
            # Release the holds and count the real spend; off the response path, batched. After the journal
            # line, with where it ends: a counter rebuilt from a read that took it in is not moved again.
            limits.settle_soon(self.reservation, cost, n.prompt + n.completion, usage_journal.journal.position)
        generations.remember(journaled, **self._generation_source())   # as journaled

    def journal_stream(self) -> None:
        """A stream starts: journal now what it is billed if this process dies before its end (kill -9): the
        prompt and what it has streamed at the last progress mark (the lease renewal), as 499 worker_lost."""
        if self.ctx is None or self.recorded:
            return
        prompt = self.prompt_estimate()

        def lost() -> dict:
            usage = self.usage or Usage(prompt_tokens=prompt, completion_tokens=self.produced)
            n, cost = self._billed(usage)
            return self._entry(n, cost or 0,
                               status=499, code="worker_lost", text="the gateway process died mid-stream")

        try:
            usage_journal.journal.open_stream(self.request_id, lost)
        except Exception:   # the stream goes on; only a kill before its end would leave it unbilled
            log.warning("request %s: could not journal the open stream", self.request_id, exc_info=True)

    def _entry(self, n: Counts, cost: int, status: int | None = None, code: str | None = None,
               text: str | None = None) -> dict:
        """The usage record of this call (status, error code and text as given, else the call's own)."""
        assert self.ctx is not None   # only an authenticated call is recorded
        model = self.model
        status = self.status if status is None else status
        meta = self.request.META
        return {
            "request_id": self.request_id, "team_id": self.ctx.team_id, "api_key_id": self.ctx.key_id,
            "key_mask": self.ctx.mask,
            "requested_model": str((self.payload or {}).get("model") or ""),
            "served_model": model.public_id if model and status < 400 else "",
            "channel_id": self.channel.id if self.channel else None,
            "status_code": status, "error_code": self.error_code if code is None else code,
            "error_text": self.error_text if text is None else text,
            "prompt_tokens": n.prompt, "completion_tokens": n.completion, "cached_tokens": n.cache_read,
            "cache_write_5m_tokens": n.cache_write_5m, "cache_write_1h_tokens": n.cache_write_1h,
            "reasoning_tokens": n.reasoning, "usage_clamped": n.clamped, "cost": cost,
            "latency_ms": self.latency_ms(), "ttfb_ms": self.ttfb_ms,
            "stream": self.stream, "user_agent": meta.get("HTTP_USER_AGENT", ""), "sdk": sdk_of(meta),
            "path": self.request.path, "created_at": self.created, "finish_reason": self.finish_reason,
            "route": (self.route_plan.route or "") if self.route_plan else "",
            "attempts": ((self.route_plan.skipped + self.attempts) if self.route_plan else [])[:20],
            # App attribution (OpenRouter's headers); usage_journal.sanitize redacts and clips them.
            "http_referer": meta.get("HTTP_HTTP_REFERER") or meta.get("HTTP_REFERER") or "",
            "app_title": meta.get("HTTP_X_TITLE") or meta.get("HTTP_X_OPENROUTER_TITLE") or "",
        }

    def _generation_source(self) -> dict:
        """Who served, for /v1/generation: the channel's provider (the catalog model's when it declares none)."""
        channel = self.channel
        return {"provider_name": generations.provider_name(channel, self.model),
                "channel_kind": channel.kind if channel else None}
