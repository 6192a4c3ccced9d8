"""Usage records survive `kill -9` of the gateway once the client has the whole response, and replaying the
journal is idempotent. Plus the journal's replay rules at unit level (a cut last line, a deleted key)."""
import fcntl
import os
import shutil
import subprocess
import sys
import time
import uuid

import httpx
import orjson
import pytest
from django.db import connection

from billing import usage_journal
from billing.models import UsageRecord
from keys.models import ApiKey
from tests import factories
from tests.conftest import make_live_setup, wait_for
from tests.servers import ROOT, database_url

CHAT = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Each key's owner is a user with a password: PBKDF2 would cost ~0.3 s per key on this suite's clock."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def call(live, *, stream: bool, n: int) -> str:
    """One complete request (read to its last byte); returns the request id."""
    body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": f"[[sim:tokens=5]] call {n}"}]}
    headers = {"Authorization": f"Bearer {live.secret}"}
    with httpx.stream("POST", live.server.url + CHAT, json=body, headers=headers, timeout=15) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    if stream:
        assert text.rstrip().endswith("data: [DONE]")
    else:
        assert orjson.loads(text)["choices"][0]["message"]["content"]
    return resp.headers["x-request-id"]


def journal_files(directory) -> list:
    return sorted(directory.glob("usage-*.jsonl"))


def replay_command(journal_dir) -> str:
    env = dict(os.environ, DATABASE_URL=database_url(connection.settings_dict), TOLLGATE_JOURNAL_DIR=str(journal_dir))
    done = subprocess.run([sys.executable, "manage.py", "flush_usage_journal"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def counts(ids) -> dict:
    found = {rid: 0 for rid in ids}
    for rid in UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True):
        found[rid] += 1
    return found


def test_usage_survives_kill9_and_replay_is_idempotent(transactional_db, gateway_factory, simulator, tmp_path):
    server = gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="3600")
    live = make_live_setup(server, simulator)
    plan = [False, True, False, True, False]
    ids = [call(live, stream=stream, n=n) for n, stream in enumerate(plan)]
    assert len(set(ids)) == 5
    assert UsageRecord.objects.filter(request_id__in=ids).count() == 0  # nothing flushed in the background

    server.kill9()                                 # right after the last byte reached the client
    files = journal_files(server.journal_dir)
    assert len(files) == 1
    lines = [orjson.loads(line) for line in files[0].read_bytes().splitlines()]
    journaled = [r for r in lines if not r.get("_open")]
    assert [r["request_id"] for r in journaled] == ids
    # Each stream also journaled an open line when it started (what it is billed if the process dies first).
    assert [r["request_id"] for r in lines if r.get("_open")] == [rid for rid, s in zip(ids, plan) if s]
    backup = tmp_path / files[0].name
    shutil.copy(files[0], backup)
    assert UsageRecord.objects.filter(request_id__in=ids).count() == 0

    # The periodic replay (the management command) stores each record exactly once.
    assert replay_command(server.journal_dir) == "replayed 5 usage records"
    assert counts(ids) == {rid: 1 for rid in ids}
    assert journal_files(server.journal_dir) == []
    records = {r.request_id: r for r in UsageRecord.objects.filter(request_id__in=ids)}
    for rid, stream in zip(ids, plan):
        record = records[rid]
        assert (record.status_code, record.stream, record.served_model) == (200, stream, MODEL)
        assert record.completion_tokens == 5 and record.prompt_tokens > 0 and record.cost > 0
        assert record.api_key_id == live.key.id and record.team_id == live.team.id
    assert ApiKey.objects.get(pk=live.key.pk).last_used_at is not None

    # Again: nothing left to replay.
    assert usage_journal.replay_orphans(server.journal_dir) == 0
    # A crash between the insert and the unlink leaves the file behind: replaying it inserts nothing new.
    shutil.copy(backup, server.journal_dir / backup.name)
    assert usage_journal.replay_orphans(server.journal_dir) == 5
    assert counts(ids) == {rid: 1 for rid in ids}
    assert UsageRecord.objects.filter(team=live.team).count() == 5

    # The other way back: a new gateway on the same journal directory replays orphans at start-up,
    # before it reports ready.
    UsageRecord.objects.filter(request_id__in=ids).delete()
    shutil.copy(backup, server.journal_dir / backup.name)
    successor = gateway_factory(journal_dir=server.journal_dir, TOLLGATE_JOURNAL_FLUSH_SECONDS="3600")
    assert counts(ids) == {rid: 1 for rid in ids}
    assert journal_files(successor.journal_dir) == []
    successor.stop()


# --- unit level: billing.usage_journal -----------------------------------------------------------------

def record(team, key=None, channel=None, **fields) -> dict:
    return {
        "request_id": "req_" + uuid.uuid4().hex[:24], "team_id": team.id, "api_key_id": key.id if key else None,
        "key_mask": key.mask if key else "", "requested_model": MODEL, "served_model": MODEL,
        "channel_id": channel.id if channel else None, "status_code": 200, "error_code": "", "error_text": "",
        "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0, "cost": 123, "latency_ms": 42,
        "ttfb_ms": 40, "stream": False, "user_agent": "test", "sdk": "test", "path": CHAT,
        "created_at": time.time(), **fields,
    }


def test_replay_skips_a_last_line_cut_mid_write(transactional_db, tmp_path):
    key, _ = factories.api_key()
    records = [record(key.team, key) for _ in range(3)]
    lines = [orjson.dumps(r) + b"\n" for r in records]
    path = tmp_path / f"usage-{os.getpid() + 100000}-cafebabe.jsonl"
    path.write_bytes(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])

    assert usage_journal.replay_orphans(tmp_path) == 2
    stored = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert stored == {records[0]["request_id"], records[1]["request_id"]}
    assert not path.exists()


def test_replay_leaves_the_file_of_a_live_process_alone(transactional_db, tmp_path):
    key, _ = factories.api_key()
    path = tmp_path / "usage-1-0000live.jsonl"
    path.write_bytes(orjson.dumps(record(key.team, key)) + b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # what a running gateway holds on its own file
        assert usage_journal.replay_orphans(tmp_path) == 0
        assert path.exists() and UsageRecord.objects.count() == 0
    finally:
        os.close(fd)
    assert usage_journal.replay_orphans(tmp_path) == 1
    assert UsageRecord.objects.count() == 1 and not path.exists()


def test_record_of_a_deleted_key_is_kept_with_api_key_null(transactional_db):
    key, _ = factories.api_key()
    gone_key, _ = factories.api_key(team=key.team)
    batch = [record(key.team, key), record(key.team, gone_key), record(key.team, key)]
    gone_mask = gone_key.mask
    gone_key.delete()

    usage_journal.insert_records(batch)

    stored = {r.request_id: r for r in UsageRecord.objects.all()}
    assert set(stored) == {r["request_id"] for r in batch}
    first, of_gone_key, last = (stored[r["request_id"]] for r in batch)
    assert first.api_key_id == key.id and last.api_key_id == key.id
    assert of_gone_key.api_key_id is None and of_gone_key.key_mask == gone_mask
    assert (of_gone_key.cost, of_gone_key.team_id, of_gone_key.status_code) == (123, key.team_id, 200)
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None

    # Replaying the same batch (e.g. after a crash before the journal file was removed) adds nothing.
    usage_journal.insert_records(batch)
    assert UsageRecord.objects.count() == 3


def test_a_dangling_link_clears_only_that_link(transactional_db):
    """A deleted channel must not cost the record its (existing) key, nor a deleted key its channel:
    per-key usage and per-channel troubleshooting both read these links."""
    key, _ = factories.api_key()
    gone_key, _ = factories.api_key(team=key.team)
    model = factories.CatalogModelFactory()
    channel = factories.channel(models=[model], base_url="http://127.0.0.1:9/v1")
    gone_channel = factories.channel(models=[model], base_url="http://127.0.0.1:9/v1", name="gone")
    batch = [record(key.team, key, gone_channel), record(key.team, gone_key, channel)]
    gone_key.delete()
    gone_channel.delete()

    usage_journal.insert_records(batch)

    of_gone_channel, of_gone_key = (UsageRecord.objects.get(request_id=r["request_id"]) for r in batch)
    assert of_gone_channel.channel_id is None
    assert of_gone_channel.api_key_id == key.id, "the record lost its key because its channel was deleted"
    assert of_gone_key.api_key_id is None
    assert of_gone_key.channel_id == channel.id, "the record lost its channel because its key was deleted"


def test_record_of_a_deleted_team_is_dropped_without_blocking_the_batch(transactional_db):
    key, _ = factories.api_key()
    gone_team = factories.TeamFactory()
    batch = [record(key.team, key), record(gone_team), record(key.team, key)]
    gone_team.delete()

    usage_journal.insert_records(batch)

    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {batch[0]["request_id"],
                                                                             batch[2]["request_id"]}


@pytest.mark.parametrize("cut", [1, 10, -2])
def test_a_cut_line_anywhere_in_the_last_record_is_skipped(transactional_db, tmp_path, cut):
    key, _ = factories.api_key()
    good, broken = record(key.team, key), record(key.team, key)
    data = orjson.dumps(broken)
    path = tmp_path / "usage-2-cut.jsonl"
    path.write_bytes(orjson.dumps(good) + b"\n" + data[:cut])
    assert usage_journal.replay_orphans(tmp_path) == 1
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == [good["request_id"]]
    assert wait_for(lambda: not path.exists(), timeout=1)


def _progress(journal_dir, request_id: str) -> int:
    """The completion tokens of the stream's last open line (its progress mark), -1 if none yet."""
    marks = [-1]
    for path in journal_files(journal_dir):
        for line in path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:   # a line being written
                continue
            if record.get("_open") and record.get("request_id") == request_id:
                marks.append(record["completion_tokens"])
    return marks[-1]


def test_a_stream_cut_by_kill9_is_billed_for_what_it_streamed(transactional_db, gateway_factory, simulator):
    """kill -9 of the gateway mid-stream: the replay of its journal records the stream (499 worker_lost) with
    the prompt and what it had streamed at its last progress mark, and settles it in Redis (hold given back,
    budget counter moved by its cost)."""
    from billing import limits
    from gateway_site import shared_cache

    # A short lease: the renewal, which carries the progress marks, runs every 0.1 s.
    server = gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="3600", TOLLGATE_HOLD_LEASE_SECONDS="0.3")
    live = make_live_setup(server, simulator, budget_limit=10 ** 12, budget_period="day")
    body = {"model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": "[[sim:tokens=400]] [[sim:chunk_delay_ms=20]] a long one"}]}
    headers = {"Authorization": f"Bearer {live.secret}"}
    seen = 0
    with httpx.stream("POST", live.server.url + CHAT, json=body, headers=headers, timeout=15) as resp:
        assert resp.status_code == 200
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()   # kept: a dropped iterator would close the stream (a client that left)
        for line in lines:
            seen += '"content":"' in line
            if seen >= 30:
                break
        assert wait_for(lambda: _progress(server.journal_dir, request_id) >= seen, timeout=10)
        client = shared_cache.sync_client()
        assert client.hexists(limits.HOLDS_DATA, request_id)      # in flight: its hold is taken
        server.kill9()

    assert not UsageRecord.objects.filter(request_id=request_id).exists()
    assert replay_command(server.journal_dir) == "replayed 1 usage records"
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.status_code, record.error_code, record.stream) == (499, "worker_lost", True)
    assert seen <= record.completion_tokens < 400 and record.prompt_tokens > 0 and record.cost > 0
    assert not client.hexists(limits.HOLDS_DATA, request_id) and not client.hexists(limits.SWEPT, request_id)
    budget = next(k.decode() for k in client.scan_iter(f"tg:spent:key:{live.key.id}:*"))
    assert int(client.get(budget)) == record.cost


def test_a_stream_cut_by_kill9_while_its_upstream_thinks_is_billed_its_prompt(transactional_db, gateway_factory,
                                                                             simulator):
    """kill -9 while a committed stream waits on a slow upstream (keep-alive comments went out, no answer yet):
    the upstream has the prompt, so the replay records the stream (499 worker_lost) billed for it."""
    server = gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="3600", TOLLGATE_STREAM_KEEPALIVE_SECONDS="0.2")
    live = make_live_setup(server, simulator)
    body = {"model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": "a long think [[sim:fault=delay:20000]]"}]}
    with httpx.stream("POST", live.server.url + CHAT, json=body, timeout=15,
                      headers={"Authorization": f"Bearer {live.secret}"}) as resp:
        assert resp.status_code == 200
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()   # kept: a dropped iterator would close the stream (a client that left)
        assert next(line for line in lines if line) == ": TOLLGATE PROCESSING"
        assert wait_for(lambda: _progress(server.journal_dir, request_id) == 0, timeout=10)
        server.kill9()

    assert replay_command(server.journal_dir) == "replayed 1 usage records"
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.status_code, record.error_code, record.stream) == (499, "worker_lost", True)
    assert record.completion_tokens == 0 and record.prompt_tokens > 0 and record.cost > 0
