"""Request metrics and GET /metrics (Prometheus text format).

`observe` is called once per finished relayed call (calls refused before a key was recognised are not
counted). The request counters and histograms live in this process; breaker states and the backlog of
unreconciled usage are read when scraped.

Several gateway worker processes (granian --workers N): set PROMETHEUS_MULTIPROC_DIR to an empty directory
writable by all of them, emptied before the server starts (`rm -rf "$PROMETHEUS_MULTIPROC_DIR"/*`); every
worker then writes its counters there and any worker's /metrics sums them all (prometheus_client's
multiprocess mode). Without it each process answers with its own counts, right for one worker.
With TOLLGATE_METRICS_TOKEN set, /metrics wants `Authorization: Bearer <token>`.
"""
import hmac
import os
import re
from typing import Any

from django.conf import settings
from django.http import HttpResponse

from accounts import roles
from accounts.selectors import platform_role
from billing import limits
from routing import breaker as br
from routing.relay import health

try:
    import prometheus_client as prom
    from prometheus_client import multiprocess
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - a dependency of the app; without it metrics are off
    prom = None  # type: ignore[assignment]  # the module, or None when absent: every use checks for None

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

if prom is not None:
    REGISTRY = prom.CollectorRegistry()
    _kw: dict[str, Any] = {"registry": REGISTRY}
    REQUESTS = prom.Counter("tollgate_requests", "Relayed calls by endpoint, route, model, channel and status",
                            ["endpoint", "route", "model", "channel", "status"], **_kw)
    DURATION = prom.Histogram("tollgate_request_duration_seconds", "Whole call, as the client saw it",
                              ["endpoint", "model", "stream"], buckets=SECONDS, **_kw)
    TTFB = prom.Histogram("tollgate_time_to_first_byte_seconds", "Time to the first byte sent to the client",
                          ["endpoint", "model", "stream"], buckets=SECONDS, **_kw)
    UPSTREAM = prom.Histogram("tollgate_upstream_duration_seconds",
                              "Time spent on upstream attempts (streams: until the response headers)",
                              ["model", "channel"], buckets=SECONDS, **_kw)
    OVERHEAD = prom.Histogram("tollgate_gateway_overhead_seconds",
                              "Non-streaming calls: whole call less the time spent on upstream attempts",
                              ["endpoint"], buckets=OVERHEAD_SECONDS, **_kw)
    TOKENS = prom.Counter("tollgate_tokens", "Tokens by model and kind (prompt, completion, cached, cache_write, "
                          "reasoning)",
                          ["model", "kind"], **_kw)
    COST = prom.Counter("tollgate_cost_micro", "Cost charged, in micro-units of the currency", ["model"], **_kw)
    CLAMPED = prom.Counter("tollgate_usage_clamped", "Calls whose upstream-reported usage was out of bounds "
                           "(negative, or beyond 10x the model's limits) and was clamped before billing", ["model"],
                           **_kw)

# Paths with a client-chosen part (a model name, a response id) are counted under one label each, so a client
# cannot grow the metrics without bound.
_VARIABLE_PATH = re.compile(r"/models/.+?(?=:\w+$)|/responses/(?!input_tokens$)[^/]+")


_FIXED_PATHS: dict[str, str] = {}   # paths without a client-chosen part (the URLconf's few): label known


def endpoint_label(path: str) -> str:
    label = _FIXED_PATHS.get(path)
    if label is None:
        label = _VARIABLE_PATH.sub(lambda m: "/models/{model}" if m[0].startswith("/models/")
                                   else "/responses/{id}", path)
        if label == path and len(_FIXED_PATHS) < 256:
            _FIXED_PATHS[path] = label
    return label


_TOKEN_KINDS = ("prompt", "completion", "cached", "cache_write", "reasoning")
_series_cache: dict[tuple, list] = {}   # the label values of a call → its metrics' children, made when first used
_REQUESTS, _DURATION, _TTFB, _UPSTREAM, _OVERHEAD, _COST, _CLAMPED = range(7)   # then the _TOKEN_KINDS'


def _series(labels: tuple) -> list:
    """The children a call with these label values moves, looked up once (the same few series serve most
    calls); each is made when first used, so a series nothing moved is not shown."""
    found = _series_cache.get(labels)
    if found is None:
        found = [None] * (7 + len(_TOKEN_KINDS))
        if len(_series_cache) < 4096:   # label values are bounded (endpoint_label); the cache is too
            _series_cache[labels] = found
    return found


def _made(series: list, slot: int, labels: tuple):
    """The child for `slot`, made once per label set (prometheus_client validates labels on every .labels())."""
    endpoint, route, model, channel, status, stream = labels
    child: Any
    if slot >= 7:
        child = TOKENS.labels(model, _TOKEN_KINDS[slot - 7])
    else:
        metric, names = ((REQUESTS, (endpoint, route, model, channel, str(status))),
                         (DURATION, (endpoint, model, stream)), (TTFB, (endpoint, model, stream)),
                         (UPSTREAM, (model, channel)), (OVERHEAD, (endpoint,)), (COST, (model,)),
                         (CLAMPED, (model,)))[slot]
        child = metric.labels(*names)
    series[slot] = child
    return child


def observe(call, cost: int, *, clamped: bool = False) -> None:
    """Count one finished call (route, model, channel, status, tokens, cost, latency; `clamped`: the upstream
    reported usage out of bounds)."""
    if prom is None:
        return
    labels = (endpoint_label(call.request.path),
              (call.route_plan.route or "direct") if call.route_plan is not None else "-",
              call.model.public_id if call.model is not None else "-",
              str(call.channel.id) if call.channel is not None else "-", call.status,
              "true" if call.stream else "false")
    series = _series(labels)
    total_ms = call.latency_ms()
    (series[_REQUESTS] or _made(series, _REQUESTS, labels)).inc()
    (series[_DURATION] or _made(series, _DURATION, labels)).observe(total_ms / 1000)
    if call.ttfb_ms is not None:
        (series[_TTFB] or _made(series, _TTFB, labels)).observe(call.ttfb_ms / 1000)
    upstream = health.take_upstream_ms()
    if upstream is not None:
        (series[_UPSTREAM] or _made(series, _UPSTREAM, labels)).observe(upstream / 1000)
        if not call.stream:
            (series[_OVERHEAD] or _made(series, _OVERHEAD, labels)).observe(max(total_ms - upstream, 0) / 1000)
    usage = call.usage
    if usage is not None:
        for slot, n in enumerate((usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                                  usage.cache_write_tokens + usage.cache_write_1h_tokens, usage.reasoning_tokens),
                                 start=7):
            if isinstance(n, int) and 0 < n < 2**53:
                (series[slot] or _made(series, slot, labels)).inc(n)
        if cost:
            (series[_COST] or _made(series, _COST, labels)).inc(cost)
    if clamped:
        (series[_CLAMPED] or _made(series, _CLAMPED, labels)).inc()


class StateCollector:
    """Read at scrape time: every breaker's state and the backlog of unreconciled usage."""

    def collect(self):
        import time

        from billing.models import UsageRecord
        from routing.models import Channel

        gauge = GaugeMetricFamily("tollgate_breaker_state",
                                  "Circuit breaker: 0 closed, 1 half-open (cool-down over), 2 open; model "
                                  "\"*\" is the channel's own breaker", labels=["channel", "model"])
        now = time.time()
        states = br.read_breakers()
        for channel_id in Channel.objects.filter(status=Channel.ENABLED).values_list("pk", flat=True):
            entry = states.pop(br.channel_scope(channel_id), None)
            gauge.add_metric([str(channel_id), "*"], br.STATE_VALUES[br.entry_state(entry, now)])
        for scope, entry in sorted(states.items()):
            channel_id, model_id = br.parse_scope(scope)
            gauge.add_metric([str(channel_id), str(model_id) if model_id else "*"],
                             br.STATE_VALUES[br.entry_state(entry, now)])
        yield gauge
        backlog = GaugeMetricFamily("tollgate_usage_unreconciled", "Usage records not yet billed (billed_at NULL)")
        backlog.add_metric([], UsageRecord.objects.filter(billed_at__isnull=True).count())
        yield backlog


if prom is not None:
    REGISTRY.register(StateCollector())
    REGISTRY.register(limits.OutageCollector())   # a Redis outage (docs/reliability.md)


_LOOPBACK = ("127.0.0.1", "::1")


def _authorized(request) -> bool:
    """With TOLLGATE_METRICS_TOKEN: that bearer token. Without one, a production gateway serves its metrics to
    a scraper on the same host only (loopback) or a signed-in operator; DEBUG serves everyone."""
    token = br.setting("TOLLGATE_METRICS_TOKEN", "")
    if not token:
        user = getattr(request, "user", None)
        return settings.DEBUG or request.META.get("REMOTE_ADDR") in _LOOPBACK or (
            user is not None and platform_role(user) == roles.OPERATOR)
    given = request.META.get("HTTP_AUTHORIZATION", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def metrics_view(request):
    """GET /metrics."""
    if not _authorized(request):
        response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if prom is None:
        return HttpResponse("prometheus-client is not installed\n", status=503, content_type="text/plain")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StateCollector())
        registry.register(limits.OutageCollector())
    return HttpResponse(prom.generate_latest(registry), content_type=prom.CONTENT_TYPE_LATEST)
