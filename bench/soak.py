"""`make soak`: the books under fire. Minutes of mixed traffic through one granian server with 2 gateway
workers sharing PostgreSQL and Redis, while the simulator injects upstream faults, a fuzzer sends malformed
bodies, a worker is killed with -9 (granian respawns it), Redis is stopped and started again empty and
PostgreSQL is stopped and started again. Then the client's view is compared with the database and Redis.

Every server is the soak's own, on free ports: a private PostgreSQL cluster (initdb under a temporary
directory, stopped and started with pg_ctl), a private redis-server, the simulator, the gateway. Nothing
touches the shared PostgreSQL on 5432 or Redis on 6379.

Knobs (environment): SOAK_SECONDS (traffic, default 180), SOAK_CONCURRENCY (clients, default 8), SOAK_SEED,
SOAK_SETTLE_SECONDS (how long the books may take to settle once traffic stops, default 60).
The last line of the output is the SOAK line; the exit status is 1 when lost_usage, double_charged,
leaked_holds or counter_drift is not 0. Logs: bench/results/soak-<time>/.
"""
import asyncio
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import soak_books, soak_traffic  # noqa: E402
from tests.servers import RedisServer, free_port, start_gateway, start_simulator  # noqa: E402

DEMO_KEY = "sk-tg-soak-only-key-00000000000000000000000"
ENV = {
    "DJANGO_SETTINGS_MODULE": "gateway_site.settings", "DEBUG": "0",
    "SECRET_KEY": "soak-only-secret-key-not-for-production",
    "TOLLGATE_ENCRYPTION_KEY": "c29hay1vbmx5LWZlcm5ldC1rZXktMDAwMDAwMDAwMDA=",
    "DEMO_API_KEY": DEMO_KEY, "DEMO_PASSWORD": "soak-demo-password", "OPERATOR_PASSWORD": "soak-operator-password",
    # A daily budget counter to keep equal to the database, too large to stop the traffic (absurd usage costs
    # $26 a request even clamped).
    "DEMO_RPM_LIMIT": "0", "DEMO_DAILY_BUDGET": "1000000",
    # During the Redis outage each worker may let the team spend $1,000 a minute (default $1): the in-process
    # accounting then serves real traffic through the outage instead of 503s.
    "TOLLGATE_REDIS_OUTAGE_SPEND_PER_MINUTE": "1000000000",
    "TOLLGATE_JOURNAL_FLUSH_SECONDS": "0.5",
    "TOLLGATE_UPSTREAM_TIMEOUT": "3",          # the simulator's timeout fault hangs 6 s
    # Celery beat's schedule run by the gateway workers themselves, ten times as often (reconcile every 6 s,
    # orphan journals replayed every 3 s, holds swept every 6 s), so a 1-minute soak sees it run. The hold
    # lease stays 30 s: a killed worker's holds must come back within SOAK_SETTLE_SECONDS.
    "TOLLGATE_EMBEDDED_PERIODIC": "1", "TOLLGATE_PERIODIC_SCALE": "0.1",
}


def say(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Postgres:
    """A private cluster under `base`, on its own port; stopped and started with pg_ctl. initdb refuses to run
    as root, so as root the cluster belongs to the postgres user."""

    def __init__(self, base: Path, log_dir: Path):
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.data, self.port, self.log = base / "pgdata", free_port(), log_dir / "postgres.log"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(base, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/tollgate_soak"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT if tool != "initdb" else subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(p for child in children for p in tree(int(child)))]


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def kill_a_worker(gateway, redis_url: str, in_flight: list) -> str:
    """kill -9 of one worker, noting the reservations in flight at that moment (some are the killed ones)."""
    import redis

    from billing.limits import HOLDS_DATA

    workers = tree(gateway.proc.pid)[1:]
    if not workers:
        return "no worker to kill"
    held = {rid.decode() for rid in redis.Redis.from_url(redis_url).hkeys(HOLDS_DATA)}
    os.kill(workers[-1], signal.SIGKILL)
    in_flight.append(held)
    return f"kill -9 of gateway worker {workers[-1]} ({len(held)} reservations in flight)"


class Chaos(threading.Thread):
    """The bad day, on a timeline in fractions of the traffic time."""

    def __init__(self, seconds: float, gateway, redis_server, postgres):
        super().__init__(daemon=True)
        self.seconds, self.gateway, self.redis, self.postgres = seconds, gateway, redis_server, postgres
        self.rss_start: float | None = None
        self.events: list[str] = []
        self.in_flight_at_kills: list[set[str]] = []   # per kill, the reservations in flight just before

    def _at(self, fraction: float, started: float) -> None:
        time.sleep(max(0.0, started + fraction * self.seconds - time.monotonic()))

    def _event(self, text: str) -> None:
        self.events.append(text)
        say(text)

    def _kill(self) -> None:
        self._event(kill_a_worker(self.gateway, self.redis.url, self.in_flight_at_kills))

    def run(self) -> None:
        started = time.monotonic()
        plan = [
            (0.10, lambda: setattr(self, "rss_start", rss_mb(self.gateway.proc.pid))),
            (0.15, self._kill),
            (0.30, lambda: (self.redis.stop(), self._event("Redis stopped"))),
            (0.40, lambda: (self.redis.start(), self._event("Redis started again, empty"))),
            (0.55, lambda: (self.postgres.stop(), self._event("PostgreSQL stopped"))),
            (0.65, lambda: (self.postgres.start(), self._event("PostgreSQL started again"))),
            (0.80, self._kill),
        ]
        for fraction, action in plan:
            self._at(fraction, started)
            try:
                action()
            except Exception as exc:   # the soak reports a failed step and carries on
                self._event(f"chaos step at {fraction:.0%} failed: {exc!r}")


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def credit_the_demo_team() -> None:
    """Enough balance that minutes of traffic (absurd usage included) never run the team dry: a 402 would
    stop exercising the books."""
    import django

    django.setup()
    from django.db import connections

    from billing.money import MICRO
    from billing.services import balance_credit
    from keys.models import ApiKey
    from keys.secrets import hash_secret

    team = ApiKey.objects.get(secret_hash=hash_secret(DEMO_KEY)).team
    balance_credit(team=team, amount=10_000_000 * MICRO, reason="soak credit", created_by=None,
                   idempotency_key="soak-credit")
    connections.close_all()


def books(outcomes, journal_dir: Path, settle: float, in_flight_at_kills: list[set[str]]) -> dict:
    """Wait for the books to settle, then compare (Django set up on the soak's own database and Redis)."""
    from io import StringIO

    from django.core.management import CommandError, call_command
    from django.db import connections
    from django.db.models import Max, Sum

    from billing import limits, services
    from billing.models import LedgerEntry, UsageRecord
    from gateway_site import shared_cache

    connections.close_all()    # the soak's own connection died with the PostgreSQL restart
    complete = {o.request_id for o in outcomes if o.complete and o.request_id}
    deadline = time.monotonic() + settle
    while True:
        stored = set(UsageRecord.objects.filter(request_id__in=list(complete)).values_list("request_id", flat=True))
        if stored >= complete or time.monotonic() > deadline:
            break
        time.sleep(1)
    answered = {o.request_id for o in outcomes if o.status == 200 and o.request_id}
    unrecorded_200 = answered - set(UsageRecord.objects.filter(request_id__in=list(answered))
                                    .values_list("request_id", flat=True))
    say(f"answers with a 200 status (complete or cut) without a usage record: {len(unrecorded_200)} "
        f"{sorted(unrecorded_200)[:5]}")

    clamped = UsageRecord.objects.filter(usage_clamped=True)
    say(f"usage records: {UsageRecord.objects.count()}, {clamped.count()} with absurd upstream usage clamped "
        f"(dearest {clamped.aggregate(m=Max('cost'))['m'] or 0} micro-units)")
    pasted = UsageRecord.objects.filter(requested_model__contains=soak_traffic.PASTED_SECRET).count()
    say(f"usage records that kept the secret the fuzzer pasted as a model, unredacted: {pasted}")
    services.usage_reconcile()    # what the gateways' periodic run has not billed yet
    records = list(UsageRecord.objects.values_list("request_id", "ledger_entry_id"))
    entries = dict(LedgerEntry.objects.filter(kind=LedgerEntry.USAGE).values_list("id", "amount"))
    costs = dict(UsageRecord.objects.filter(ledger_entry__isnull=False).values("ledger_entry_id")
                 .annotate(total=Sum("cost")).values_list("ledger_entry_id", "total"))
    twice = soak_books.double_charged(records, entries, costs)

    client = shared_cache.sync_client()
    held: dict[str, int] = {}
    hold_records = hold_index = 0
    holds_deadline = time.monotonic() + settle
    while True:     # holds of requests still in flight at the end (or of killed workers) may take a while
        held = {k.decode(): int(client.get(k) or 0) for pattern in ("tg:held:*", "tg:cc:*")
                for k in client.scan_iter(pattern, count=1000)}
        hold_records, hold_index = client.hlen(limits.HOLDS_DATA), client.zcard(limits.HOLDS)
        if not soak_books.leaked_holds(hold_records, hold_index, held) or time.monotonic() > holds_deadline:
            break
        time.sleep(1)
    leaked = soak_books.leaked_holds(hold_records, hold_index, held)
    lost_streams = set(UsageRecord.objects.filter(error_code="worker_lost").values_list("request_id", flat=True))
    for n, in_flight in enumerate(in_flight_at_kills, 1):
        cut_off = in_flight & unrecorded_200
        say(f"kill {n}: {len(in_flight)} reservations in flight, {len(in_flight & lost_streams)} of them streams "
            f"recorded as 499 worker_lost, {len(cut_off)} answers cut without a usage record; still held now: "
            f"{sum(1 for rid in in_flight if client.hexists(limits.HOLDS_DATA, rid))}")
    if leaked:
        say(f"holds left: {hold_records} records, {hold_index} index entries, "
            f"{ {k: v for k, v in held.items() if v} }")

    out = StringIO()
    try:
        call_command("ledger_audit", "--settle-window", "10", "--journal-dir", str(journal_dir), stdout=out)
    except CommandError as exc:
        out.write(f"{exc}\n")
    say("ledger_audit:\n" + out.getvalue().rstrip())
    lost = soak_books.lost_usage(outcomes, UsageRecord.objects.filter(request_id__in=list(complete))
                                 .values_list("request_id", flat=True))
    if lost:
        say(f"lost usage, first request ids: {lost[:10]}")
    if twice:
        say(f"double charged, first request ids: {twice[:10]}")
    return {"lost_usage": len(lost), "double_charged": len(twice), "leaked_holds": leaked,
            "counter_drift": soak_books.counter_drift(out.getvalue())}


def keep_evidence(postgres: "Postgres", redis_server: RedisServer, journal_dir: Path, log_dir: Path) -> None:
    """A failed soak keeps what it found: the database (pg_dump), the journal files and Redis's `tg:` keys,
    next to the logs."""
    try:
        import redis

        client = redis.Redis.from_url(redis_server.url)
        keys = {key.decode(): (client.hgetall(key) if client.type(key) == b"hash" else client.get(key))
                for key in client.scan_iter("tg:*") if client.type(key) in (b"hash", b"string")}
        (log_dir / "redis-keys.txt").write_text("".join(f"{k} {v!r}\n" for k, v in sorted(keys.items())))
        subprocess.run([str(postgres.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
                        "-Fc", "-f", str(log_dir / "tollgate_soak.dump"), "tollgate_soak"], check=True, timeout=120)
        if journal_dir.exists():
            shutil.copytree(journal_dir, log_dir / "journal")
    except Exception as exc:   # the SOAK line matters more than the evidence
        say(f"could not keep the evidence: {exc}")


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", 180))
    concurrency = int(os.environ.get("SOAK_CONCURRENCY", 8))
    seed = int(os.environ.get("SOAK_SEED", int(time.time())))
    settle = float(os.environ.get("SOAK_SETTLE_SECONDS", 60))
    log_dir = ROOT / "bench" / "results" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True)
    base = Path(tempfile.mkdtemp(prefix="tollgate-soak-"))
    journal_dir = base / "journal"
    started: list = []
    postgres = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so the servers below are stopped (finally)
    try:
        say(f"{seconds:g} s of traffic, {concurrency} clients, seed {seed}; logs in {log_dir}")
        postgres = Postgres(base, log_dir)
        postgres.start()
        redis_server = RedisServer(log_dir)
        started.append(redis_server)
        subprocess.run([str(postgres.bin / "createdb"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
                        "tollgate_soak"], check=True)
        simulator = start_simulator(log_dir)
        started.append(simulator)
        os.environ.update(ENV, DATABASE_URL=postgres.url, REDIS_URL=redis_server.url,
                          TOLLGATE_JOURNAL_DIR=str(journal_dir), SIMULATOR_URL=simulator.url)
        manage("migrate", "--noinput", "-v", "0", env=dict(os.environ))
        manage("seed_demo", env=dict(os.environ))
        credit_the_demo_team()
        gateway = start_gateway(settings_dict=None, log_dir=log_dir, journal_dir=journal_dir, workers=2)
        started.append(gateway)
        say(f"gateway on {gateway.url} (2 workers), PostgreSQL on {postgres.port}, Redis on {redis_server.port}")

        chaos = Chaos(seconds, gateway, redis_server, postgres)
        chaos.start()
        outcomes = asyncio.run(soak_traffic.run(gateway.url, DEMO_KEY, seconds=seconds, concurrency=concurrency,
                                                seed=seed))
        chaos.join()
        rss_end = rss_mb(gateway.proc.pid)
        say(f"traffic done: {len(outcomes)} requests; statuses "
            f"{dict(sorted(Counter(o.status for o in outcomes).items()))}")
        for status in sorted({o.status for o in outcomes} - {200}):
            sample = next(o for o in outcomes if o.status == status)
            say(f"  {status} e.g. ({sample.kind}) {sample.detail[:200]}")
        internal = [o for o in outcomes if o.internal]
        if internal:
            say(f"gateway 5xx by kind: {dict(Counter((o.kind, o.status) for o in internal))}")
        figures = books(outcomes, journal_dir, settle, chaos.in_flight_at_kills)
        ok = [o for o in outcomes if o.status == 200 and o.complete]
        figures.update(requests=len(outcomes), ok=len(ok), gateway_5xx=len(internal),
                       p99_ms=round(soak_books.p99(o.latency_ms for o in ok)),
                       rss_growth_mb=round(rss_end - (chaos.rss_start or rss_end), 1))
        crashes = gateway.log().count("Traceback")
        say(f"tracebacks in the gateway log: {crashes}")
        bad = soak_books.failed(figures)
        if bad:
            keep_evidence(postgres, redis_server, journal_dir, log_dir)
            say(f"FAILED: {', '.join(bad)} not 0 (see {log_dir})")
        print(soak_books.soak_line(figures), flush=True)
        return 1 if bad else 0
    finally:
        for server in reversed(started):
            try:
                server.stop()
            except Exception:
                pass
        if postgres is not None and postgres.running():
            try:
                postgres.stop()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
