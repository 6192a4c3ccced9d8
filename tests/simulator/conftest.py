"""One `python -m simulator` process for the session (tests.servers: free port, waits for /_sim/health).

Nothing here needs Django: `pytest tests/simulator -p no:django --confcutdir=tests/simulator` runs alone."""

import anthropic
import httpx
import openai
import pytest

from tests.servers import start_simulator
from tests.simulator.sim_helpers import KEY


@pytest.fixture(scope="session")
def sim_url(tmp_path_factory):
    server = start_simulator(tmp_path_factory.mktemp("simulator-logs"))
    yield server.url
    server.stop()


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


@pytest.fixture
def claude(sim_url, sim):
    """The official Anthropic SDK pointed at the simulator, streams without inter-chunk delay."""
    return anthropic.Anthropic(base_url=sim_url, api_key=KEY, max_retries=0, timeout=10,
                               default_headers={"x-sim-chunk-delay-ms": "0"})
