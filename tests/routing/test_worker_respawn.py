"""kill -9 of one gateway worker: granian starts another (--respawn-failed-workers), the server keeps
answering, and the dead worker's journal is replayed into PostgreSQL."""
import os
import signal
from pathlib import Path

import httpx
import pytest

from billing.models import UsageRecord
from tests.conftest import wait_for
from tests.servers import GRANIAN_FLAGS

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]


def workers_of(pid: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.add(int(entry.name))
    return children


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def chat(server, secret) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def test_a_killed_worker_is_replaced_and_the_server_keeps_serving(transactional_db, gateway_factory, simulator):
    from tests.conftest import make_live_setup

    server = gateway_factory(workers=2, TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")
    live = make_live_setup(server, simulator)
    workers = wait_for(lambda: workers_of(server.proc.pid) if len(workers_of(server.proc.pid)) == 2 else None,
                       timeout=10)
    assert workers and len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    # Dead before the requests (a zombie or gone): a victim still running its last instructions can take a
    # connection off the shared socket and die with it (a reset, not what this test is about).
    assert wait_for(lambda: not _running(victim), timeout=5)
    answers = [chat(server, live.secret).status_code for _ in range(20)]
    assert answers == [200] * 20, answers   # the other worker serves while the dead one is replaced
    replaced = wait_for(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(
        workers_of(server.proc.pid)), timeout=15)
    assert replaced, "granian did not start a new worker"
    assert chat(server, live.secret).status_code == 200
    assert wait_for(lambda: UsageRecord.objects.filter(team=live.team, status_code=200).count() >= 21, timeout=10)


def test_production_serve_respawns_workers_too():
    """`make serve` and `make run` run granian with the flags the tests run it with."""
    makefile = (ROOT / "Makefile").read_text()
    demo = (ROOT / "bin" / "run-demo").read_text()
    for text in (makefile, demo):
        assert " ".join(GRANIAN_FLAGS) in text.replace("\\\n", " ").replace("  ", " ").replace("\t", "")
