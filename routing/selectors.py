from django.db.models import QuerySet

from routing.models import Channel, Model


def catalog_models(*, enabled_only: bool = False) -> QuerySet[Model]:
    qs = Model.objects.order_by("provider", "public_id")
    return qs.filter(enabled=True) if enabled_only else qs


def model_choices(*, team=None) -> list[tuple[str, str]]:
    """(public id, label) of the enabled catalog, narrowed to the team's allowed models when it has any."""
    qs = catalog_models(enabled_only=True)
    if team is not None and team.allowed_models:
        qs = qs.filter(public_id__in=team.allowed_models)
    return [(public_id, f"{public_id} · {name}") for public_id, name in qs.values_list("public_id", "display_name")]


def channels(*, team) -> QuerySet[Channel]:
    """A team's own channels, or the platform's (team=None)."""
    return Channel.objects.filter(team=team).prefetch_related("models").order_by("-priority", "name")


def channel(*, team, pk: int) -> Channel | None:
    return Channel.objects.filter(team=team, pk=pk).first()


# --- channel health (the status page and its JSON endpoint) -------------------------------------------------
# Figures come from the passive counters in the shared cache (routing/breaker.py) and ChannelProbe rows.
# Nothing here carries an upstream URL or key: channels are named, never addressed.
import datetime as dt  # noqa: E402 - the health selectors' own imports, kept with them
import time  # noqa: E402

from django.db.models import Count, F, Q, Window  # noqa: E402
from django.db.models.functions import RowNumber  # noqa: E402

from core.redaction import redact  # noqa: E402
from routing import breaker as br  # noqa: E402
from routing.models import ChannelProbe  # noqa: E402

HEALTH_WINDOWS = (("1h", 3600), ("24h", 86400), ("7d", 7 * 86400))


def _sum_buckets(buckets) -> dict[str, list[int]]:
    total: dict[str, list[int]] = {}
    for bucket in buckets:
        for scope, values in bucket.items():
            acc = total.setdefault(scope, br.new_counters())
            for i, n in enumerate(values):
                acc[i] += n
    return total


def health_stats(*, now: float | None = None) -> dict:
    """Passive counters per scope for 1h / 24h / 7d, the last 24 hourly buckets (for the chart), probe counts
    and breaker states: read once per page, then passed to model_health / channel_health."""
    now = now or time.time()
    minutes = br.read_buckets(br.MINUTE_BUCKETS, 60, now)
    hours = br.read_buckets(br.HOUR_BUCKETS, 24 * 7, now)
    passive = {"1h": _sum_buckets(minutes), "24h": _sum_buckets(hours[-24:]), "7d": _sum_buckets(hours)}
    probes: dict[str, dict[tuple[int, int | None], tuple[int, int]]] = {}
    for name, seconds in HEALTH_WINDOWS:
        since = dt.datetime.fromtimestamp(now - seconds, dt.timezone.utc)
        rows = (ChannelProbe.objects.filter(started_at__gte=since).values("channel_id", "model_id")
                .annotate(total=Count("id"), ok=Count("id", filter=Q(ok=True))))
        probes[name] = {(r["channel_id"], r["model_id"]): (r["ok"], r["total"]) for r in rows}
    first_hour = int(now // 3600) - 23
    return {"now": now, "passive": passive, "probes": probes, "breakers": br.read_breakers(),
            "hours": [(dt.datetime.fromtimestamp((first_hour + i) * 3600, dt.timezone.utc), b)
                      for i, b in enumerate(hours[-24:])]}


def _figures(stats: dict, scopes: list[str], probe_keys) -> dict:
    """Availability (1h/24h/7d), p50/p95 latency (1h/24h) and the hourly chart of some scopes taken together."""
    out = {"availability": {}, "requests": {}, "probes": {}, "latency_ms": {}}
    for name, _ in HEALTH_WINDOWS:
        values = br.new_counters()
        for scope in scopes:
            for i, n in enumerate(stats["passive"][name].get(scope, ())):
                values[i] += n
        probe_ok = probe_total = 0
        for key in probe_keys:
            ok, total = stats["probes"][name].get(key, (0, 0))
            probe_ok, probe_total = probe_ok + ok, probe_total + total
        requests = values[0] + values[1]
        total = requests + probe_total
        out["availability"][name] = round((values[0] + probe_ok) / total, 4) if total else None
        out["requests"][name], out["probes"][name] = requests, probe_total
        if name != "7d":
            out["latency_ms"][name] = {"p50": br.percentile(values, 0.5), "p95": br.percentile(values, 0.95)}
    out["series"] = []
    for hour, bucket in stats["hours"]:
        ok = sum(bucket[s][0] for s in scopes if s in bucket)
        failed = sum(bucket[s][1] for s in scopes if s in bucket)
        out["series"].append({"hour": hour.isoformat(), "requests": ok + failed,
                              "availability": round(ok / (ok + failed), 4) if ok + failed else None})
    return out


def _breaker_view(entry: dict | None, now: float) -> dict:
    state = br.entry_state(entry, now)
    view = {"state": state}
    if state != br.CLOSED:
        view["until"] = dt.datetime.fromtimestamp(entry["until"], dt.timezone.utc).isoformat()
        view["reason"] = redact(entry.get("reason", ""))
    return view


def probe_summary(probe) -> dict | None:
    if probe is None:
        return None
    return {"at": probe.started_at.isoformat(), "model": probe.model.public_id if probe.model else None,
            "ok": probe.ok, "status_code": probe.status_code, "latency_ms": probe.latency_ms,
            "ttfb_ms": probe.ttfb_ms, "error_class": probe.error_class, "error_text": probe.error_text,
            "manual": probe.manual}


def channel_health(*, channels, stats: dict | None = None) -> list[dict]:
    """Per-channel figures (the caller scopes `channels`: a team's own, or all for platform staff): admin
    status, attention flag, breaker of the channel and of each model, availability, latency, last probe."""
    stats = stats or health_stats()
    now = stats["now"]
    channels = list(channels.select_related("test_model").prefetch_related("models"))
    ids = [c.pk for c in channels]
    since = dt.datetime.fromtimestamp(now - 7 * 86400, dt.timezone.utc)
    last = {p.channel_id: p for p in ChannelProbe.objects.filter(channel_id__in=ids, started_at__gte=since)
            .select_related("model").annotate(n=Window(RowNumber(), partition_by=[F("channel_id")],
                                                       order_by=[F("started_at").desc(), F("pk").desc()]))
            .filter(n=1)}
    out = []
    for c in channels:
        models = list(c.models.all())
        breaker = _breaker_view(stats["breakers"].get(br.channel_scope(c.pk)), now)
        breaker["models"] = [{"model": m.public_id, **_breaker_view(stats["breakers"].get(key), now)}
                             for m in models if (key := br.model_scope(c.pk, m.pk)) in stats["breakers"]]
        probe_keys = {k for name, _ in HEALTH_WINDOWS for k in stats["probes"][name] if k[0] == c.pk}
        out.append({"id": c.pk, "name": c.name, "kind": c.kind, "platform": c.team_id is None,
                    "status": c.status, "needs_attention": c.needs_attention,
                    "attention_reason": c.attention_reason, "models": [m.public_id for m in models],
                    "test_model": c.test_model.public_id if c.test_model_id else None, "breaker": breaker,
                    **_figures(stats, [br.channel_scope(c.pk)], probe_keys),
                    "last_probe": probe_summary(last.get(c.pk))})
    return out


def model_health(*, team=None, stats: dict | None = None) -> list[dict]:
    """Platform health per catalog model (all platform channels serving it taken together): what teams see.
    `state` is ok, degraded (some channels cooling down) or unavailable (all of them); no channel appears."""
    stats = stats or health_stats()
    now = stats["now"]
    models = catalog_models(enabled_only=True).prefetch_related("channels")
    if team is not None and team.allowed_models:
        models = models.filter(public_id__in=team.allowed_models)
    out = []
    for m in models:
        serving = [c.pk for c in m.channels.all() if c.team_id is None and c.status == Channel.ENABLED]
        if not serving:
            continue
        down = sum(1 for cid in serving if any(
            br.entry_state(stats["breakers"].get(s), now) != br.CLOSED
            for s in (br.channel_scope(cid), br.model_scope(cid, m.pk))))
        state = "ok" if not down else "unavailable" if down == len(serving) else "degraded"
        figures = _figures(stats, [br.model_scope(cid, m.pk) for cid in serving],
                           [(cid, m.pk) for cid in serving])
        out.append({"model": m.public_id, "state": state, **figures})
    return out


def channel_health_detail(*, channel, stats: dict | None = None, limit: int = 20) -> dict:
    """One channel's figures with its recent probes and breaker transitions (reasons and errors redacted)."""
    detail = channel_health(channels=Channel.objects.filter(pk=channel.pk), stats=stats)[0]
    detail["recent_probes"] = [probe_summary(p) for p in channel.probes.select_related("model")
                               .order_by("-started_at", "-pk")[:limit]]
    detail["events"] = [{"at": e.created_at.isoformat(), "model": e.model.public_id if e.model else None,
                         "from": e.from_state, "to": e.to_state, "reason": e.reason,
                         "cooldown_seconds": e.cooldown_seconds, "source": e.source}
                        for e in channel.health_events.select_related("model").order_by("-created_at", "-pk")[:limit]]
    return detail


# --- routes (task tiers) -----------------------------------------------------------------------------------
def routing_rules(*, team):
    """A team's routes, team-wide ones first, then by key group and name."""
    from routing.models import RoutingRule

    return (RoutingRule.objects.filter(team=team).select_related("default_model", "downgrade_model", "key_group")
            .order_by("key_group__name", "name"))
