from celery import shared_task

from billing import usage_journal


@shared_task(ignore_result=True)
def flush_orphan_journals() -> int:
    """Replay journal files left by gateway processes that died before flushing them."""
    return usage_journal.replay_orphans()
