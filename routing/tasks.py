"""Celery tasks of routing: scheduled channel probes (beat: routing.tasks.probe_channels)."""
from celery import shared_task

from routing import probes
from routing.models import Channel


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def probe_channels() -> int:
    """Probe every enabled channel, one task each (so a slow upstream holds up no other); prune old rows."""
    ids = list(probes.channels_to_probe().values_list("pk", flat=True))
    for channel_id in ids:
        probe_channel.delay(channel_id)
    probes.prune()
    return len(ids)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def probe_channel(channel_id: int) -> None:
    channel = Channel.objects.filter(pk=channel_id, status=Channel.ENABLED).select_related("test_model").first()
    if channel is not None:  # deleted or disabled by an admin since it was queued: skip
        probes.channel_probe_now(channel, manual=False)
