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


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_stale_holds() -> int:
    """Holds and concurrency slots of requests whose gateway died mid-flight go back after the window."""
    from billing import limits

    return limits.sweep_stale_holds()


CREDIT_SOFT_LIMIT = 240


@shared_task(ignore_result=True, soft_time_limit=CREDIT_SOFT_LIMIT, time_limit=CREDIT_SOFT_LIMIT + 60)
def expire_credit_bundles(batch_size: int = 200) -> int:
    """Hourly: apply debits to credit bundles and expire what is due (one entry per bundle, idempotent;
    overlapping runs queue on each team's balance lock). Returns the expiry entries written."""
    return services.credit_bundles_sweep(batch_size=batch_size,
                                         deadline=time.monotonic() + CREDIT_SOFT_LIMIT / 2)


@shared_task(ignore_result=True, soft_time_limit=CREDIT_SOFT_LIMIT, time_limit=CREDIT_SOFT_LIMIT + 60)
def check_budget_alerts(batch_size: int = 200) -> int:
    """Every 5 minutes: fire (and mail) the 80% / 100% budget alerts, each once per period. Returns the
    number of alerts created."""
    return services.budget_alerts_check(batch_size=batch_size, deadline=time.monotonic() + CREDIT_SOFT_LIMIT / 2)


# The operator console's One API imports run here too (a worker registers the tasks of this module).
from billing.import_jobs import run_import_job  # noqa: E402,F401
