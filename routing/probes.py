"""Active health: one minimal request to a channel in its own wire format (through its adapter), recorded as a
ChannelProbe and fed to the shared circuit breaker like live traffic (routing/breaker.py)."""
import datetime as dt
import time

import httpx
from django.utils import timezone

from core.redaction import redact
from routing import breaker as br
from routing.adapters.base import UpstreamFormatError
from routing.adapters.registry import adapter_for
from routing.models import Channel, ChannelProbe, Model

PING = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 5}


def test_model_of(channel: Channel) -> Model | None:
    """The channel's test model, or the first model it serves."""
    if channel.test_model_id and channel.models.filter(pk=channel.test_model_id).exists():
        return channel.test_model
    return channel.models.order_by("pk").first()


def _ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)


def channel_probe_now(channel: Channel, *, manual: bool = True) -> ChannelProbe:
    """Probe one channel now (the console's "test now", and the scheduled task) and feed the breaker.
    Works on an admin-disabled channel too; nothing here changes `Channel.status`."""
    started_at, model = timezone.now(), test_model_of(channel)
    if model is None:
        return ChannelProbe.objects.create(channel=channel, started_at=started_at, ok=False, manual=manual,
                                           error_class="no_model", error_text="The channel serves no model.")
    adapter, api_key = adapter_for(channel.kind), channel.api_key()
    req = adapter.to_upstream(dict(PING, model=model.public_id), base_url=channel.base_url.rstrip("/"),
                              upstream_model=channel.model_mapping.get(model.public_id, model.upstream_name),
                              api_key=api_key, stream=False)
    status = ttfb = latency = code = None
    ok, error_class, text = False, "", ""
    t0 = time.perf_counter()
    try:
        with httpx.Client(timeout=br.setting("TOLLGATE_PROBE_TIMEOUT_SECONDS", 15.0)) as client:
            with client.stream("POST", req.url, content=req.body, headers=req.headers) as resp:
                ttfb, status = _ms(t0), resp.status_code
                body = resp.read()
        latency = _ms(t0)
        if status < 400:
            adapter.from_upstream(body)
            ok = True
        else:
            text, code, _ = adapter.error_detail(status, body)
            error_class = f"http_{status}"
    except httpx.TimeoutException:
        error_class, text = "timeout", "no answer within the probe timeout"
    except httpx.HTTPError as exc:
        error_class, text = "connection", f"{type(exc).__name__}: {exc}"
    except UpstreamFormatError as exc:
        error_class, text = "invalid_response", str(exc)
    probe = ChannelProbe.objects.create(
        channel=channel, model=model, started_at=started_at, latency_ms=latency, ttfb_ms=ttfb, status_code=status,
        ok=ok, error_class=error_class, manual=manual,
        error_text=redact(f"{code}: {text}" if code else text, [api_key])[:2000])
    # A probe the upstream refused as a bad request says nothing against the channel (like live traffic).
    channel_ok = ok or (error_class.startswith("http_") and not br.is_channel_failure(status, code))
    failed_in_a_row = 0
    if not channel_ok:
        failures = br.Policy.from_settings().failures
        recent = channel.probes.order_by("-started_at", "-pk").values_list("ok", flat=True)[:failures]
        failed_in_a_row = next((i for i, was_ok in enumerate(recent) if was_ok), len(recent))
    br.apply_probe(channel.id, model.id, ok=channel_ok, status=status, code=code,
                   error_class=error_class, failed_in_a_row=failed_in_a_row)
    return probe


def channels_to_probe():
    """Every enabled channel: a channel an admin disabled is never probed on schedule (nor re-enabled)."""
    return Channel.objects.filter(status=Channel.ENABLED).order_by("pk")


def prune(days: int = 8) -> None:
    ChannelProbe.objects.filter(started_at__lt=timezone.now() - dt.timedelta(days=days)).delete()
    br.prune_closed()
