"""The embedded default bills: with no broker the gateway process runs Celery beat's schedule itself
(gateway_site/periodic.py), and `ledger_audit` holds it to the reconcile window. The live proof on `make run`'s
configuration is tests/e2e/test_make_run.py."""
import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from billing.models import UsageRecord
from gateway_site import periodic
from tests.billing.factories import UsageRecordFactory
from tests.conftest import wait_for
from tests.servers import ROOT

HERE = __name__
calls = {"slow": [], "boom": 0, "in_flight": 0, "max_in_flight": 0}
_lock = threading.Lock()


def slow_task():
    """Takes longer than its interval: the runner must not start a second run beside it."""
    with _lock:
        calls["in_flight"] += 1
        calls["max_in_flight"] = max(calls["max_in_flight"], calls["in_flight"])
    calls["slow"].append(threading.current_thread().name)
    time.sleep(0.4)
    with _lock:
        calls["in_flight"] -= 1
    return "slept"


def failing_task():
    calls["boom"] += 1
    raise RuntimeError("upstream of the task is away")


async def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        await asyncio.sleep(0.01)
    return predicate()


def test_the_embedded_schedule_is_celery_beats_schedule():
    with override_settings(TOLLGATE_EMBEDDED_PERIODIC=True, TOLLGATE_PERIODIC_SCALE=1.0,
                           TOLLGATE_PERIODIC_FIRST_RUN_SECONDS=5.0):
        entries = {e.name: e for e in periodic.schedule()}
        assert {name: (e.task, e.interval) for name, e in entries.items()} == {
            name: (spec["task"], float(spec["schedule"])) for name, spec in settings.CELERY_BEAT_SCHEDULE.items()}
        assert entries["reconcile-usage"].interval == 60.0
        assert entries["reconcile-usage"].first_run == 5.0           # soon after start, not a minute later
        assert entries["expire-credit-bundles"].interval == 3600.0
    with override_settings(TOLLGATE_EMBEDDED_PERIODIC=True, TOLLGATE_PERIODIC_SCALE=0.1):
        assert {e.name: e.interval for e in periodic.schedule()}["reconcile-usage"] == pytest.approx(6.0)


@pytest.mark.parametrize("env, expected", [({}, "True True"),
                                           ({"REDIS_URL": "redis://127.0.0.1:6379/8"}, "False False"),
                                           ({"REDIS_URL": "redis://127.0.0.1:6379/8",
                                             "TOLLGATE_EMBEDDED_PERIODIC": "1"}, "True False")])
def test_on_by_default_exactly_when_there_is_no_broker(env, expected):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TOLLGATE_EMBEDDED_PERIODIC")}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.TOLLGATE_EMBEDDED_PERIODIC, s.CELERY_TASK_ALWAYS_EAGER)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**base, "DJANGO_SETTINGS_MODULE": "gateway_site.settings", **env})
    assert out.stdout.strip() == expected, out.stderr


def test_each_task_runs_in_a_thread_one_at_a_time_and_an_error_is_logged_not_fatal(caplog):
    schedule = {"slow": {"task": f"{HERE}.slow_task", "schedule": 0.05},
                "boom": {"task": f"{HERE}.failing_task", "schedule": 0.05}}
    calls.update(slow=[], boom=0, in_flight=0, max_in_flight=0)

    async def scenario():
        lags = []

        async def ticker():   # the event loop must stay responsive while the tasks run
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - before)

        tick = asyncio.create_task(ticker())
        await periodic.start()
        try:
            assert await wait_until(lambda: len(calls["slow"]) >= 3 and calls["boom"] >= 3)
        finally:
            await periodic.stop()
            tick.cancel()
        return lags

    with caplog.at_level(logging.ERROR, logger="gateway_site.periodic"), \
            override_settings(TOLLGATE_EMBEDDED_PERIODIC=True, CELERY_BEAT_SCHEDULE=schedule,
                              TOLLGATE_PERIODIC_SCALE=1.0, TOLLGATE_PERIODIC_FIRST_RUN_SECONDS=0.01):
        lags = asyncio.run(scenario())
    assert calls["max_in_flight"] == 1                                  # never two runs of one entry at once
    assert all(name.startswith("tollgate-periodic") for name in calls["slow"])
    assert max(lags) < 0.3                                              # 0.4 s runs never blocked the loop
    failures = [r for r in caplog.records if "periodic: boom failed" in r.getMessage()]
    assert len(failures) >= 3 and failures[0].exc_info[0] is RuntimeError
    assert periodic.runner is None


def test_off_means_nothing_starts():
    with override_settings(TOLLGATE_EMBEDDED_PERIODIC=False):
        asyncio.run(periodic.start())
        assert periodic.runner is None


@pytest.mark.django_db(transaction=True)
def test_the_real_reconcile_task_bills_usage_from_the_runner():
    records = [UsageRecordFactory(cost=cost) for cost in (120, 0, 33)]
    schedule = {"reconcile-usage": settings.CELERY_BEAT_SCHEDULE["reconcile-usage"]}

    def billed():
        try:
            return not UsageRecord.objects.filter(pk__in=[r.pk for r in records], billed_at__isnull=True).exists()
        finally:
            connections.close_all()   # this runs in a worker thread: leave no connection behind

    async def scenario():
        await periodic.start()
        try:
            return await asyncio.to_thread(wait_for, billed, timeout=20)   # the ORM, off the event loop
        finally:
            await periodic.stop()

    with override_settings(TOLLGATE_EMBEDDED_PERIODIC=True, CELERY_BEAT_SCHEDULE=schedule,
                           TOLLGATE_PERIODIC_FIRST_RUN_SECONDS=0.05):
        assert asyncio.run(scenario())
    call_command("ledger_audit")


def test_the_unbilled_window_follows_the_reconcile_schedule():
    # Two reconcile intervals (60 s) plus one journal replay interval (30 s).
    assert periodic.unbilled_window() == 150
    with override_settings(TOLLGATE_EMBEDDED_PERIODIC=True, TOLLGATE_PERIODIC_SCALE=0.1):
        assert periodic.unbilled_window() == 15
    with override_settings(TOLLGATE_UNBILLED_WINDOW_SECONDS=900.0):
        assert periodic.unbilled_window() == 900


@pytest.mark.django_db
def test_ledger_audit_fails_on_usage_unbilled_past_the_window():
    now = timezone.now()
    UsageRecordFactory(cost=5, created_at=now - timedelta(seconds=100))    # inside the 150 s window
    out = StringIO()
    call_command("ledger_audit", stdout=out)
    assert out.getvalue().strip() == "ledger OK"
    old = UsageRecordFactory(cost=7, created_at=now - timedelta(seconds=200))
    UsageRecordFactory(team=old.team, cost=9, created_at=now - timedelta(seconds=400))
    out = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("ledger_audit", stdout=out)
    oldest = (now - timedelta(seconds=400)).strftime("%Y-%m-%d %H:%M:%S")
    assert f"2 usage record(s) unbilled for over 150s (oldest {oldest})" in out.getvalue()
    with override_settings(TOLLGATE_UNBILLED_WINDOW_SECONDS=1000.0):
        call_command("ledger_audit", stdout=StringIO())
    call_command("ledger_audit", "--max-unbilled-age", "500", stdout=StringIO())
