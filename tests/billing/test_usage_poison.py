"""Nothing a client or an upstream sends can stop recording (issue 11): a NUL byte, an over-long upstream error
code or an absurd token count is cleaned before it is journaled; a row the database still refuses is
quarantined, not retried forever, and never blocks the rows behind it; a poisoned journal file does not stop
the replay of the files after it; `ledger_audit` reports what is quarantined."""
import json
import os
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from types import SimpleNamespace

import httpx
import orjson
import pytest
from django.core.management import CommandError, call_command

from billing import usage_journal
from billing.models import UsageRecord
from tests import factories
from tests.conftest import make_live_setup, wait_for

CHAT = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"
LONG_CODE = "c" * 300
HUGE = 3_000_000_000


@pytest.fixture(autouse=True)
def _journal_dir(settings, tmp_path):
    """Quarantine files of in-process calls go to this test's directory, never the shared default."""
    settings.TOLLGATE_JOURNAL_DIR = tmp_path / "journal"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.TOLLGATE_JOURNAL_DIR


def record(team, **fields) -> dict:
    return {
        "request_id": "req_" + uuid.uuid4().hex[:24], "team_id": team.id, "api_key_id": None, "key_mask": "",
        "requested_model": MODEL, "served_model": MODEL, "channel_id": None, "status_code": 200,
        "error_code": "", "error_text": "", "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0,
        "cost": 123, "latency_ms": 42, "ttfb_ms": 40, "stream": False, "user_agent": "test", "sdk": "test",
        "path": CHAT, "created_at": time.time(), "finish_reason": "stop", "route": "", "attempts": [], **fields,
    }


def poisoned(team) -> list[dict]:
    """Records as an unpatched gateway journaled them: each one is refused by PostgreSQL."""
    return [record(team, requested_model="\x00"), record(team, user_agent="evil\x00agent"),
            record(team, error_code=LONG_CODE, status_code=502), record(team, prompt_tokens=HUGE),
            record(team, completion_tokens=-5), record(team, attempts=[{"reason": "nul\x00"}])]


def stored_ids() -> set:
    return set(UsageRecord.objects.values_list("request_id", flat=True))


def rejected_lines(directory) -> list[dict]:
    return [orjson.loads(line) for path in sorted(directory.glob("rejected-*.jsonl")) if path.is_file()
            for line in path.read_bytes().splitlines() if line.strip()]


def audit() -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("ledger_audit", stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


# --- the sanitizer ------------------------------------------------------------------------------------

def test_sanitize_makes_every_field_fit_its_column(db):
    team = factories.TeamFactory()
    fields = {f.attname: f for f in UsageRecord._meta.concrete_fields}
    raw = record(team, requested_model="gpt\x00" + "m" * 500, user_agent="ua\x00" * 200, error_code=LONG_CODE,
                 error_text="bad\x00text", prompt_tokens=HUGE, completion_tokens=-7, cached_tokens="12",
                 status_code=10 ** 6, latency_ms=None, ttfb_ms=None, stream=1, cost=2 ** 70,
                 attempts=[{"channel": "a\x00b", "why\x00": ["x\x00"]}], finish_reason=None, surprise="dropped")
    clean = usage_journal.sanitize(raw)

    for name, value in clean.items():
        if isinstance(value, str):
            assert "\x00" not in value, name
            if fields[name].max_length:
                assert len(value) <= fields[name].max_length, name
    assert clean["requested_model"] == ("gpt" + "m" * 500)[:fields["requested_model"].max_length]
    assert clean["error_code"] == LONG_CODE[:fields["error_code"].max_length]
    assert clean["user_agent"] == ("ua" * 200)[:300] and clean["error_text"] == "badtext"
    assert (clean["prompt_tokens"], clean["completion_tokens"], clean["cached_tokens"]) == (2 ** 31 - 1, 0, 12)
    assert clean["status_code"] == 32767 and clean["cost"] == 2 ** 63 - 1
    assert clean["latency_ms"] == 0 and clean["ttfb_ms"] is None and clean["stream"] is True
    assert clean["attempts"] == [{"channel": "ab", "why": ["x"]}] and clean["finish_reason"] == ""
    assert "surprise" not in clean
    assert (clean["request_id"], clean["team_id"], clean["created_at"]) == (
        raw["request_id"], raw["team_id"], raw["created_at"])
    assert raw["requested_model"].startswith("gpt\x00"), "sanitize must not change the caller's dict"

    usage_journal.insert_records([clean])
    assert UsageRecord.objects.get(request_id=raw["request_id"]).prompt_tokens == 2 ** 31 - 1


def test_every_poisoned_record_is_stored_once_sanitized(db):
    team = factories.TeamFactory()
    batch = [usage_journal.sanitize(r) for r in poisoned(team)]
    usage_journal.insert_records(batch)
    assert stored_ids() == {r["request_id"] for r in batch}


# --- flush: a bad row is isolated and quarantined ----------------------------------------------------------

def test_a_refused_row_is_quarantined_and_the_rest_of_the_batch_is_stored(transactional_db, _journal_dir):
    team = factories.TeamFactory()
    good = [record(team) for _ in range(3)]
    bad = poisoned(team)
    usage_journal.insert_records([good[0], *bad[:3], good[1], *bad[3:], good[2]], _journal_dir)

    assert stored_ids() == {r["request_id"] for r in good}
    quarantined = rejected_lines(_journal_dir)
    assert sorted(q["record"]["request_id"] for q in quarantined) == sorted(r["request_id"] for r in bad)
    assert all(q["reason"] and q["rejected_at"] for q in quarantined)
    assert usage_journal.quarantined(_journal_dir) == (len(bad), 1)


def test_the_flush_does_not_retry_a_poisoned_batch_forever(transactional_db, tmp_path):
    team = factories.TeamFactory()
    journal = usage_journal.Journal(tmp_path)
    try:
        journal.pending = [record(team, requested_model="\x00"), record(team)]  # as an unpatched append left it
        journal.flush_sync()
        assert journal.pending == [] and UsageRecord.objects.count() == 1
        # The hot path cleans what it journals: the same record goes in.
        journal.append(record(team, requested_model="\x00", error_code=LONG_CODE, prompt_tokens=HUGE))
        line = orjson.loads(journal.path.read_bytes().splitlines()[-1])
        assert line["requested_model"] == "" and line["prompt_tokens"] == 2 ** 31 - 1
        assert journal.flush_sync() == 1
        assert UsageRecord.objects.count() == 2
        assert len(rejected_lines(tmp_path)) == 1
    finally:
        journal.close()


# --- replay: a poisoned file does not block the files after it -----------------------------------------------

def test_replay_goes_past_a_poisoned_file_and_replays_the_good_ones(transactional_db, tmp_path):
    team = factories.TeamFactory()
    pid = os.getpid() + 100000
    bad = poisoned(team)
    # Sorted first: an old (unsanitized) file with every kind of poison, garbage lines, a non-record,
    # a record whose created_at is not a timestamp, then a "file" that cannot be read at all.
    first = tmp_path / f"usage-{pid}-00000000.jsonl"
    first.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in bad) + b"\xff\xfe not json\n[1, 2]\n"
                      + orjson.dumps(record(team, created_at="yesterday")) + b"\n")
    (tmp_path / f"usage-{pid}-11111111.jsonl").mkdir()
    good = [[record(team) for _ in range(2)] for _ in range(2)]
    for n, records in enumerate(good):
        (tmp_path / f"usage-{pid}-2222222{n}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))

    usage_journal.replay_orphans(tmp_path)

    assert stored_ids() == {r["request_id"] for r in [*bad, *good[0], *good[1]]}, \
        "old poisoned lines are cleaned on replay and the good files after them are replayed"
    assert list(tmp_path.glob("usage-*.jsonl")) == []
    assert (tmp_path / f"rejected-usage-{pid}-11111111.jsonl").exists()
    reasons = [q["reason"] for q in rejected_lines(tmp_path) if isinstance(q, dict) and "reason" in q]
    assert len(reasons) == 3 and "not a JSON line" in reasons and "not a usage record" in reasons
    assert usage_journal.replay_orphans(tmp_path) == 0


# --- ledger_audit ------------------------------------------------------------------------------------------

def test_ledger_audit_fails_while_records_are_quarantined(transactional_db, _journal_dir):
    assert audit() == (True, "ledger OK\n")
    team = factories.TeamFactory()
    usage_journal.insert_records([record(team, requested_model="\x00"), record(team)])
    ok, report = audit()
    assert not ok
    assert "1 quarantined usage record(s) in 1 rejected-*.jsonl file(s)" in report and str(_journal_dir) in report
    for path in _journal_dir.glob("rejected-*.jsonl"):   # the operator fixed and replayed them
        path.unlink()
    assert audit() == (True, "ledger OK\n")


# --- live: after poison from a client or an upstream, later calls are still recorded ------------------------

def call(live, content="hi", **body) -> httpx.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": content}], **body}
    return httpx.post(live.server.url + CHAT, json=payload, headers={"Authorization": f"Bearer {live.secret}"},
                      timeout=15)


def raw_post(live, user_agent: bytes) -> int:
    """A request httpx would refuse to send: a NUL byte in a header."""
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    host, port = live.server.url.removeprefix("http://").split(":")
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {live.secret}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request + b"User-Agent: " + user_agent + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def recorded(ids) -> bool:
    return UsageRecord.objects.filter(request_id__in=ids).count() == len(ids)


def assert_later_calls_recorded(live, before):
    later = []
    for _ in range(3):
        resp = call(live)
        assert resp.status_code == 200
        later.append(resp.headers["x-request-id"])
    assert wait_for(lambda: recorded(later), timeout=10), "usage stopped reaching PostgreSQL"
    assert wait_for(lambda: recorded(before), timeout=10)
    assert list(live.server.journal_dir.glob("rejected-*.jsonl")) == []


@pytest.mark.live
def test_client_poison_does_not_stop_recording(live):
    poison = call(live, model="\x00")
    assert poison.status_code in (400, 404)
    with_nul_content = call(live, content="a\x00b")
    assert with_nul_content.status_code == 200
    status = raw_post(live, b"evil\x00agent")
    assert status < 500
    assert_later_calls_recorded(live, [poison.headers["x-request-id"], with_nul_content.headers["x-request-id"]])
    assert UsageRecord.objects.get(request_id=poison.headers["x-request-id"]).requested_model == ""


class FakeUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that answers what the simulator cannot: a 300-character error code or
    3,000,000,000 prompt tokens, chosen by a marker in the prompt."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if b"[[fake:long_code]]" in body:
            status, answer = 400, {"error": {"message": "nope\u0000", "type": "invalid_request_error",
                                             "code": LONG_CODE + "\u0000", "param": None}}
        else:
            prompt = HUGE if b"[[fake:huge_usage]]" in body else 7
            answer = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                      "model": "gpt-4o-mini",
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "ok"}}],
                      "usage": {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2}}
            status = 200
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


@pytest.mark.live
def test_upstream_poison_does_not_stop_recording(transactional_db, gateway, fake_upstream):
    live = make_live_setup(gateway, fake_upstream)
    factories.credit(live.team, amount=10 ** 13)
    wait_for(lambda: call(live).status_code == 200, timeout=5)
    long_code = call(live, content="[[fake:long_code]]")
    assert 400 <= long_code.status_code < 500
    huge = call(live, content="[[fake:huge_usage]]")
    assert huge.status_code == 200
    ids = [long_code.headers["x-request-id"], huge.headers["x-request-id"]]
    assert_later_calls_recorded(live, ids)
    huge_record = UsageRecord.objects.get(request_id=ids[1])
    # 3e9 prompt tokens: clamped to 10x the model's context and output limits, and flagged (issue 11).
    model = live.model
    assert huge_record.prompt_tokens == 10 * (model.context_length + model.max_output_tokens)
    assert huge_record.usage_clamped and huge_record.cost > 0
    long_record = UsageRecord.objects.get(request_id=ids[0])
    assert len(long_record.error_code) <= 60 and "\x00" not in long_record.error_text + long_record.error_code
