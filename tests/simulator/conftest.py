"""Starts `python -m simulator` on a free port once per session; no Django involved."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.simulator.sim_helpers import KEY

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sim_url(tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("simulator") / "simulator.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{url}/_sim/health", timeout=0.5).json() == {"ok": True}:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"simulator did not start; see {log.name}")
        time.sleep(0.05)
    yield url
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created: granian and its worker
        proc.wait()
    log.close()


@pytest.fixture
def sim(sim_url):
    """A raw HTTP client on the simulator; every test starts with no scripted faults and no request log."""
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        client.delete("/_sim/faults")
        client.delete("/_sim/requests")
        yield client


@pytest.fixture
def sdk(sim_url, sim):
    """The official OpenAI SDK pointed at the simulator; streams without inter-chunk delay unless asked."""
    return openai.OpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0, timeout=10,
                         default_headers={"x-sim-chunk-delay-ms": "0"})

