"""`make run`'s configuration with no services at all — SQLite, no REDIS_URL, no Celery worker or beat — bills:
the gateway process runs the periodic work itself (gateway_site/periodic.py), so paid calls lower the team's
balance by exactly their recorded cost, every record gets billed_at, and `ledger_audit` is clean. And
`bin/run-demo` itself works on a copy of the tree: it prints a key that answers, and the logins it prints
work. Intervals are shortened with TOLLGATE_PERIODIC_SCALE (the schedule stays beat's)."""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest

from tests.conftest import wait_for
from tests.servers import ROOT, VENV_BIN, free_port, start_gateway

pytestmark = pytest.mark.live

DEMO_KEY = "sk-tg-make-run-test-key-00000000000000000000"
# What the test run's own environment points at that the embedded default must not see.
SERVICES = ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "TOLLGATE_EMBEDDED_PERIODIC",
            "TOLLGATE_JOURNAL_DIR")


def query(db, sql, *args):
    """Read the gateway's SQLite file from outside (WAL: readers never block the gateway's writers)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def books(db) -> dict:
    records = query(db, "SELECT request_id, cost, billed_at FROM billing_usagerecord")
    balance = query(db, "SELECT b.balance FROM billing_teambalance b JOIN accounts_team t ON t.id = b.team_id "
                        "WHERE t.slug = 'demo'")
    return {"records": records, "balance": balance[0][0] if balance else None}


def chat(base_url, key, model):
    return httpx.post(f"{base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": f"Hello {model}"}]})


def manage(env, *command):
    done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def embedded_env(db, journal_dir, simulator_url) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in SERVICES}
    env.update(DATABASE_URL=f"sqlite:///{db}", TOLLGATE_JOURNAL_DIR=str(journal_dir),
               DEMO_API_KEY=DEMO_KEY, DEMO_PASSWORD="demo-password-1", OPERATOR_PASSWORD="operator-password-1",
               SUPPORT_PASSWORD="support-password-1", SIMULATOR_URL=simulator_url,
               TOLLGATE_PERIODIC_SCALE="0.1")     # reconcile every 6 s instead of 60 s
    return env


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, simulator):
    """A migrated SQLite file, copied by each test (migrating SQLite takes ~15 s)."""
    db = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    manage(embedded_env(db, db.parent / "journal", simulator.url), "migrate", "--noinput", "-v", "0")
    return db


@pytest.fixture
def embedded(tmp_path, simulator, migrated):
    """bin/run-demo's steps on a temp SQLite file: migrate (the module's template), seed_demo, the simulator,
    one granian worker."""
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(migrated, db)
    env = embedded_env(db, tmp_path / "journal", simulator.url)
    manage(env, "seed_demo")
    gateway = start_gateway(settings_dict=None, log_dir=tmp_path, journal_dir=tmp_path / "journal",
                            extra_env={**{name: None for name in SERVICES if name not in env},
                                       "DATABASE_URL": env["DATABASE_URL"],
                                       "TOLLGATE_PERIODIC_SCALE": env["TOLLGATE_PERIODIC_SCALE"]})
    yield gateway, db, env
    gateway.stop()


def test_five_paid_calls_are_billed_exactly_within_a_minute_with_no_services(embedded):
    gateway, db, env = embedded
    start = books(db)
    assert start["records"] == [] and start["balance"] == 100_000_000       # the demo credit, 100.00

    request_ids = []
    for model in ("openai/gpt-4o-mini", "auto", "route:batch", "route:long-review", "route:vision"):
        response = chat(gateway.url, DEMO_KEY, model)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-requests"] == "60"       # the demo key group's rpm
        request_ids.append(response.headers["x-request-id"])

    def billed():
        now = books(db)
        costs = [cost for _, cost, _ in now["records"]]
        done = (len(now["records"]) == 5 and all(at for _, _, at in now["records"])
                and now["balance"] == start["balance"] - sum(costs))
        return now if done else None

    final = wait_for(billed, timeout=60, interval=0.5)
    assert final, f"not billed within 60 s: {books(db)}\n{gateway.log()[-3000:]}"
    assert sorted(rid for rid, _, _ in final["records"]) == sorted(request_ids)
    assert all(cost > 0 for _, cost, _ in final["records"])                 # paid calls, each priced
    audit = subprocess.run([sys.executable, "manage.py", "ledger_audit"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert (audit.returncode, audit.stdout.strip()) == (0, "ledger OK"), audit.stdout + audit.stderr
    # The team's log detail says so.
    with closing(signed_in(gateway.url, "demo", "demo-password-1")) as owner:
        for (pk,) in query(db, "SELECT id FROM billing_usagerecord"):
            page = owner.get(f"/console/t/demo/logs/{pk}/")
            state = re.search(r'data-testid="billing-state">(.*?)</dd>', page.text, re.S).group(1)
            assert "billed" in state and "pending" not in state, state
    assert "Traceback" not in gateway.log()


def test_a_second_gateway_process_without_redis_refuses_to_start(embedded, tmp_path):
    gateway, db, env = embedded
    with pytest.raises(RuntimeError, match="another gateway process already serves this database without Redis"):
        start_gateway(settings_dict=None, log_dir=tmp_path, journal_dir=tmp_path / "journal2",
                      extra_env={**{name: None for name in SERVICES if name not in env},
                                 "DATABASE_URL": env["DATABASE_URL"]})
    assert chat(gateway.url, DEMO_KEY, "openai/gpt-4o-mini").status_code == 200   # the first one serves on


def test_a_change_saved_in_the_console_reaches_the_embedded_gateway_within_a_second(embedded):
    """One gateway process, in-process shared cache: a price (the catalog version) and a revoked key (the key's
    context) saved through the console take effect on the relay within 1 s, no restart."""
    gateway, db, env = embedded
    (model_pk,), = query(db, "SELECT id FROM routing_model WHERE public_id = 'openai/gpt-4o-mini'")
    (key_pk,), = query(db, "SELECT id FROM keys_apikey WHERE name = 'demo'")
    assert chat(gateway.url, DEMO_KEY, "openai/gpt-4o-mini").status_code == 200   # warm: snapshot loaded

    with closing(signed_in(gateway.url, "operator", "operator-password-1")) as operator:
        saved = csrf_post(operator, f"/console/operator/catalog/{model_pk}/price/",
                          {"input_per_m": "100", "output_per_m": "100", "cached_input_per_m": "100",
                           "request_fee": "0"})
    assert saved.status_code == 302, saved.text
    changed_at, calls = time.monotonic(), []
    while time.monotonic() - changed_at < 1.5:
        response = chat(gateway.url, DEMO_KEY, "openai/gpt-4o-mini")
        calls.append((time.monotonic() - changed_at, response.headers["x-request-id"]))
        time.sleep(0.05)

    def costs():
        rows = dict(query(db, "SELECT request_id, cost FROM billing_usagerecord"))
        return rows if all(rid in rows for _, rid in calls) else None

    recorded = wait_for(costs, timeout=10)
    new_price = [(at, recorded[rid]) for at, rid in calls if recorded[rid] >= 1000]   # 100.00 per 1M tokens
    assert new_price and new_price[0][0] <= 1.0, calls
    assert all(recorded[rid] >= 1000 for at, rid in calls if at > 1.0)

    with closing(signed_in(gateway.url, "demo", "demo-password-1")) as owner:
        revoked = csrf_post(owner, f"/console/t/demo/keys/{key_pk}/revoke/", {})
    assert revoked.status_code == 302
    revoked_at = time.monotonic()
    refused = wait_for(lambda: chat(gateway.url, DEMO_KEY, "openai/gpt-4o-mini").status_code == 401,
                       timeout=3, interval=0.05)
    assert refused and time.monotonic() - revoked_at <= 1.0 + 0.3   # + one call's round trip


def copy_of_the_tree(target):
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(VENV_BIN.parent)


class RunDemo:
    """`bash bin/run-demo` in its own session, its output in a file."""

    def __init__(self, checkout, env, port):
        self.log_path = checkout / f"run-demo-{time.monotonic_ns()}.log"
        self.port = port
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["bash", "bin/run-demo"], cwd=checkout, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"bin/run-demo exited {self.proc.returncode}: {self.output()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def printed(self, label) -> str:
        return re.search(rf"{label}\s+(\S+)", self.output()).group(1)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)     # Ctrl-C
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def csrf_post(client, path, data):
    page = client.get(path if "login" in path else "/console/")
    token = client.cookies.get("csrftoken") or re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return client.post(path, data={**data, "csrfmiddlewaretoken": token},
                       headers={"Referer": f"{client.base_url}{path}"})


def signed_in(base_url, username, password) -> httpx.Client:
    """A console session (the login form, as a browser posts it); fails the test if the login is refused."""
    client = httpx.Client(base_url=base_url, timeout=10)
    response = csrf_post(client, "/console/login/", {"username": username, "password": password})
    assert response.status_code == 302 and "/console/login/" not in response.headers["location"], username
    return client


def test_bin_run_demo_on_a_copy_of_the_tree(tmp_path):
    checkout = tmp_path / "tollgate"
    copy_of_the_tree(checkout)
    port, simulator_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items()
           if name not in (*SERVICES, "SECRET_KEY", "TOLLGATE_ENCRYPTION_KEY", "DEBUG")}
    env.update(PORT=str(port), SIMULATOR_PORT=str(simulator_port), TOLLGATE_PERIODIC_SCALE="0.1")
    base_url = f"http://127.0.0.1:{port}"

    demo = RunDemo(checkout, env, port)
    try:
        assert wait_for(demo.ready, timeout=180, interval=0.2)
        key = demo.printed("API key:")
        assert key.startswith("sk-tg-")
        assert re.search(r"Support:\s+user: support\s+password: \S+", demo.output())
        response = chat(base_url, key, "openai/gpt-4o-mini")
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
        assert chat(base_url, key, "auto").headers["x-tollgate-route"].startswith("route=auto")
        for user, label in (("demo", r"user: demo\s+password:"), ("operator", r"user: operator\s+password:"),
                            ("support", r"user: support\s+password:")):
            signed_in(base_url, user, demo.printed(label)).close()
        db = checkout / "db.sqlite3"
        assert wait_for(lambda: (rows := query(db, "SELECT billed_at FROM billing_usagerecord"))
                        and len(rows) == 2 and all(at for (at,) in rows), timeout=60, interval=0.5)
    finally:
        demo.stop()
    assert demo.proc.returncode is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{simulator_port}/_sim/health", timeout=1)   # the simulator went too

    again = RunDemo(checkout, env, port)                    # a second run reuses .env, the database, the key
    try:
        assert wait_for(again.ready, timeout=120, interval=0.2)
        assert again.printed("API key:") == key
        assert "created:" not in again.output()
        assert chat(base_url, key, "route:batch").status_code == 200
    finally:
        again.stop()
