"""Celery beat for the embedded default: the gateway process runs the periodic work itself.

With no broker (`make run`: no REDIS_URL) nothing would run `settings.CELERY_BEAT_SCHEDULE`, and usage would
never be billed. `start()` (called from the ASGI lifespan start-up, gateway_site/asgi.py) runs every entry of
that schedule — the one source of truth, the same intervals beat uses — in this process: one asyncio task
per entry sleeps, then runs the Celery task's body in a thread (the tasks use the ORM; the event loop never
waits for them), one run at a time per entry. An error is logged and the entry runs again next interval.
`stop()` at shutdown. Production (REDIS_URL set) keeps `make worker` + `make beat`; the setting
TOLLGATE_EMBEDDED_PERIODIC decides (default: on exactly when there is no REDIS_URL).
"""
import asyncio
import datetime as dt
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    name: str          # the beat entry's name, "reconcile-usage"
    task: str          # dotted path of the Celery task, "billing.tasks.reconcile_usage"
    interval: float    # seconds between runs (scaled)
    first_run: float   # seconds after start-up of the first run


def _seconds(schedule) -> float | None:
    if isinstance(schedule, (int, float)):
        return float(schedule)
    if isinstance(schedule, dt.timedelta):
        return schedule.total_seconds()
    return None    # a crontab: beat only (the embedded schedule is intervals)


def interval_of(name: str) -> float:
    """The effective interval of one beat entry: what beat uses, scaled when this process runs the schedule."""
    seconds = _seconds(settings.CELERY_BEAT_SCHEDULE[name]["schedule"])
    if settings.TOLLGATE_EMBEDDED_PERIODIC:
        seconds *= settings.TOLLGATE_PERIODIC_SCALE
    return seconds


def schedule() -> list[Entry]:
    """The beat schedule as the embedded runner sees it."""
    entries = []
    for name, spec in settings.CELERY_BEAT_SCHEDULE.items():
        seconds = _seconds(spec["schedule"])
        if seconds is None:
            log.warning("periodic: %s has a non-interval schedule; only Celery beat runs it", name)
            continue
        interval = max(seconds * settings.TOLLGATE_PERIODIC_SCALE, 0.05)
        entries.append(Entry(name, spec["task"], interval, min(interval, settings.TOLLGATE_PERIODIC_FIRST_RUN_SECONDS)))
    return entries


def unbilled_window() -> float:
    """How long usage may stay unbilled before `ledger_audit` calls it a problem: two reconcile intervals (a
    record written just after a run waits one; the next run may still be working through a backlog) plus one
    journal-replay interval (records of a process that died reach the database that much later).
    TOLLGATE_UNBILLED_WINDOW_SECONDS overrides."""
    if settings.TOLLGATE_UNBILLED_WINDOW_SECONDS is not None:
        return float(settings.TOLLGATE_UNBILLED_WINDOW_SECONDS)
    return math.ceil(2 * interval_of("reconcile-usage") + interval_of("flush-usage-journal"))


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def _run_in_thread(entry: Entry) -> None:
    """One run of an entry's task, in an executor thread with its own database connection."""
    close_old_connections()
    started = time.monotonic()
    try:
        result = _resolve(entry.task)()   # the task's body, run here (Celery's eager call)
        log.info("periodic: %s done in %.2fs (%s)", entry.name, time.monotonic() - started, result)
    except Exception:
        log.exception("periodic: %s failed; it runs again in %.0fs", entry.name, entry.interval)
    finally:
        connections.close_all()   # this thread's connections; the next run may land on another thread


class Runner:
    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.tasks: list[asyncio.Task] = []
        self.executor: ThreadPoolExecutor | None = None
        self.runs: dict[str, int] = {entry.name: 0 for entry in entries}

    async def _loop(self, entry: Entry) -> None:
        loop = asyncio.get_running_loop()
        delay = entry.first_run
        while True:
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                await loop.run_in_executor(self.executor, _run_in_thread, entry)
            except RuntimeError:   # the executor shut down under us: the process is stopping
                return
            self.runs[entry.name] += 1
            # Beat's cadence: the next run is one interval after this one started (never two at once).
            delay = max(entry.interval - (time.monotonic() - started), 0)

    def start(self) -> None:
        import gateway_site.celery  # noqa: F401 - the configured Celery app (eager) is the tasks' current app

        self.executor = ThreadPoolExecutor(max_workers=max(len(self.entries), 1),
                                           thread_name_prefix="tollgate-periodic")
        self.tasks = [asyncio.create_task(self._loop(entry), name=f"periodic:{entry.name}")
                      for entry in self.entries]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        if self.executor is not None:
            # A run in progress finishes (each batch commits on its own); nothing new starts.
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


runner: Runner | None = None


async def start() -> None:
    global runner
    if not settings.TOLLGATE_EMBEDDED_PERIODIC or runner is not None:
        return
    runner = Runner(schedule())
    runner.start()
    log.info("periodic: running %s in-process", ", ".join(f"{e.name} every {e.interval:g}s" for e in runner.entries))


async def stop() -> None:
    global runner
    if runner is not None:
        await runner.stop()
        runner = None
