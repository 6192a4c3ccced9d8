import pytest

from tests.servers import start_simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A simulator process for the module (it validates request bodies as strictly as the real APIs)."""
    server = start_simulator(tmp_path_factory.mktemp("adapter-sim"))
    yield server
    server.stop()
