import time

from celery import shared_task

from billing import services, usage_journal

RECONCILE_SOFT_LIMIT = 240


@shared_task(ignore_result=True)
def flush_orphan_journals() -> int:
    """Replay journal files left by gateway processes that died before flushing them."""
    return usage_journal.replay_orphans()


@shared_task(ignore_result=True, soft_time_limit=RECONCILE_SOFT_LIMIT, time_limit=RECONCILE_SOFT_LIMIT + 60)
def reconcile_usage(batch_size: int = 500) -> int:
    """Charge unbilled usage to the ledger, batch after batch until none is left. Stops starting batches
    well before the soft limit (each batch commits on its own, so what is left waits for the next run);
    overlapping runs are safe. Returns the number of ledger entries written."""
    return services.usage_reconcile(batch_size=batch_size, deadline=time.monotonic() + RECONCILE_SOFT_LIMIT / 2)
