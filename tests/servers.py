"""Real processes for tests: the simulated upstream and gateway workers (granian), on free loopback ports."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env: dict, log_path: Path, ready_path: str):
        self.name, self.port, self.log_path = name, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait(ready_path)

    def _wait(self, ready_path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + ready_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready: {self.log_path.read_text()[-3000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def start_simulator(log_dir: Path) -> Server:
    port = free_port()
    return Server("simulator", [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)],
                  port, dict(os.environ), log_dir / f"simulator-{port}.log", "/_sim/health")


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def start_gateway(*, settings_dict: dict | None, log_dir: Path, journal_dir: Path, extra_env: dict | None = None
                  ) -> Server:
    """A granian worker on the test database (`settings_dict`), or on whatever DATABASE_URL `extra_env` names;
    a None value in `extra_env` removes that variable (REDIS_URL=None: the embedded default)."""
    port = free_port()
    env = dict(os.environ, TOLLGATE_JOURNAL_DIR=str(journal_dir), PORT=str(port), LOG_LEVEL="INFO",
               **({"DATABASE_URL": database_url(settings_dict)} if settings_dict else {}), **(extra_env or {}))
    env = {name: value for name, value in env.items() if value is not None}
    argv = [str(VENV_BIN / "granian"), "--interface", "asgi", "--loop", "uvloop", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "gateway_site.asgi:application"]
    return Server("gateway", argv, port, env, log_dir / f"gateway-{port}.log", "/healthz")
