"""Real processes for tests: the simulated upstream and gateway workers (granian), on free loopback ports."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
GATEWAYS: list["Server"] = []   # every gateway started by this test run (see `mark` and `drain_gateways`)
# routing/relay/health.py logs each breaker transition it makes before it records it as a ChannelHealthEvent.
_TRANSITION = re.compile(rb"circuit (c:\d+|m:\d+:\d+) (\w+) \xe2\x86\x92 (\w+)")


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


class Gateway(Server):
    """A gateway worker and what the tests can observe of its background writes without asking it: the lines
    of its usage journal (one per finished request, flushed to the database in batches) and the breaker
    transitions in its log (recorded as ChannelHealthEvent rows from a thread)."""

    journal_dir: Path
    database_url: str | None     # None: the embedded default (SQLite)

    def mark(self) -> dict:
        """Where this gateway's journal files and log end now."""
        files = {}
        for path in self.journal_dir.glob("usage-*.jsonl"):
            try:
                files[path.name] = path.stat().st_size
            except FileNotFoundError:
                pass
        return {"files": files, "log": self.log_path.stat().st_size}

    def journaled_since(self, mark: dict | None) -> list[dict]:
        """The usage records this gateway's live worker(s) appended to the journal since `mark` (a file
        of a dead worker is skipped: only a replay flushes it, which is no background write)."""
        mark = mark or {"files": {}}
        records = []
        for path in self.journal_dir.glob("usage-*.jsonl"):
            if not _pid_alive(path.name.split("-")[1]):
                continue
            try:
                with open(path, "rb") as fh:
                    fh.seek(mark["files"].get(path.name, 0))
                    data = fh.read()
            except FileNotFoundError:    # rotated away: flushed
                continue
            for line in data.split(b"\n")[:-1]:     # the last piece is empty or a line still being written
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    pass
        return records

    def transitions_since(self, mark: dict | None) -> list[tuple[str, str, str]]:
        """(scope, from_state, to_state) of every breaker transition this gateway made since `mark`."""
        with open(self.log_path, "rb") as fh:
            fh.seek((mark or {}).get("log", 0))
            return [tuple(part.decode() for part in m.groups()) for m in _TRANSITION.finditer(fh.read())]


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


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


# What `make serve` runs granian with besides host, port and workers (the Makefile passes the same).
GRANIAN_FLAGS = ["--interface", "asgi", "--loop", "uvloop", "--respawn-failed-workers", "--respawn-interval", "0.5"]


def start_gateway(*, settings_dict: dict | None, log_dir: Path, journal_dir: Path, extra_env: dict | None = None,
                  workers: int = 1) -> Gateway:
    """Granian workers on the test database (`settings_dict`), or on whatever DATABASE_URL `extra_env` names;
    a None value in `extra_env` removes that variable (REDIS_URL=None: the embedded default)."""
    port = free_port()
    env = dict(os.environ, TOLLGATE_JOURNAL_DIR=str(journal_dir), PORT=str(port), LOG_LEVEL="INFO",
               **({"DATABASE_URL": database_url(settings_dict)} if settings_dict else {}), **(extra_env or {}))
    env = {name: value for name, value in env.items() if value is not None}
    argv = [str(VENV_BIN / "granian"), *GRANIAN_FLAGS, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "gateway_site.asgi:application"]
    server = Gateway("gateway", argv, port, env, log_dir / f"gateway-{port}.log", "/healthz")
    server.journal_dir, server.database_url = Path(journal_dir), env.get("DATABASE_URL")
    server.redis_url = env.get("REDIS_URL")   # None: the embedded default (an in-process cache)
    GATEWAYS.append(server)
    return server


class RedisServer:
    """A private redis-server on a free loopback port, keeping nothing on disk: a test may stop it and start
    it again empty (never the shared Redis on 6379)."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.log_path.parent), "--logfile", str(self.log_path)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class TcpProxy:
    """Forwards a free loopback port to `target` (host, port) from threads; `cut()` drops every connection and
    refuses new ones (the dependency looks down, its data intact), `restore()` accepts again on the same port.
    What a test points a gateway at to take PostgreSQL (or Redis) away from it alone."""

    def __init__(self, target: tuple[str, int]):
        import threading

        self.target, self.port = target, free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept() (close alone does not)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return   # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class FixedUpstream:
    """A tiny upstream on a free loopback port that answers every POST with the same SSE body (what the
    simulator cannot say: pretty-printed JSON, odd first lines). `base_url` ends in /v1; `stop()` when done."""

    def __init__(self, body: bytes):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
