"""/generation answers from the moment the response is complete, whichever worker gets the look-up: with
`make serve`'s two workers a client on another connection may reach the worker that did not serve the call
before that worker's summary is in the shared cache (a 2 ms batch) and before its usage record is in
PostgreSQL; that worker reads the record in the serving worker's journal."""
import httpx
import orjson
import pytest

from billing.usage_journal import Journal
from routing.relay import generations
from tests.conftest import make_live_setup, wait_for

pytestmark = pytest.mark.live
SUMMARY_FIELDS = ("id", "model", "provider_name", "total_cost", "tokens_prompt", "tokens_completion", "streamed",
                  "cancelled", "finish_reason", "native_finish_reason", "http_referer", "app_title")


def worker_of(server, request_id: str) -> str | None:
    """The pid of the worker that journaled `request_id` (journal files are usage-<pid>-….jsonl)."""
    needle = f'{{"request_id":"{request_id}"'.encode()
    for path in server.journal_dir.glob("usage-*.jsonl"):
        if needle in path.read_bytes():
            return path.name.split("-")[1]
    return None


def chat(client, server) -> httpx.Response:
    resp = client.post(f"{server.url}/api/v1/chat/completions", json={
        "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "[[sim:tokens=4]] hi"}]})
    assert resp.status_code == 200, resp.text
    return resp


def test_a_look_up_on_the_other_worker_the_moment_the_response_ended(transactional_db, gateway_factory, simulator):
    server = gateway_factory(workers=2, TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")
    live = make_live_setup(server, simulator)
    headers = {"Authorization": f"Bearer {live.secret}", "X-Title": "Two workers", "HTTP-Referer": "https://w.example"}
    clients: dict[str, httpx.Client] = {}   # worker pid → a kept-alive connection to it

    def one_more_connection():
        client = httpx.Client(headers=headers, timeout=10)
        pid = wait_for(lambda: worker_of(server, chat(client, server).headers["x-request-id"]))
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
        return len(clients) == 2

    try:
        assert wait_for(one_more_connection, timeout=20), "the connections all reached one worker"
        serving, asking = clients.values()
        for _ in range(10):
            resp = chat(serving, server)
            # At once, on a connection to the other worker: nothing of this call is in its process.
            looked_up = asking.get(f"{server.url}/api/v1/generation", params={"id": resp.json()["id"]})
            assert looked_up.status_code == 200, looked_up.text
            mine = serving.get(f"{server.url}/api/v1/generation", params={"id": resp.headers["x-request-id"]})
            theirs, kept = looked_up.json()["data"], mine.json()["data"]
            assert {k: theirs[k] for k in SUMMARY_FIELDS} == {k: kept[k] for k in SUMMARY_FIELDS}
            assert (theirs["provider_name"], theirs["app_title"], theirs["tokens_completion"]) == \
                ("OpenAI", "Two workers", 4)
            assert theirs["total_cost"] == resp.json()["usage"]["cost"] > 0
    finally:
        for client in clients.values():
            client.close()


def _record(hex_id: str, team_id: int = 7, **extra) -> dict:
    return {"request_id": "req_" + hex_id, "team_id": team_id, "status_code": 200, "served_model": "openai/m",
            "prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 0, "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "usage_clamped": False, "cost": 2_500,
            "stream": True, "latency_ms": 12, "ttfb_ms": 5, "finish_reason": "stop", "created_at": 1.0, **extra}


def test_journaled_reads_the_final_record_of_another_processs_journal(db, tmp_path):
    other = Journal(tmp_path)   # another worker's journal, in the shared directory
    done, running = "ab" * 12, "cd" * 12
    other.open_stream("req_" + done, lambda: _record(done, completion_tokens=1))
    other.open_stream("req_" + running, lambda: _record(running, completion_tokens=1))
    other.append(_record(done))
    other.mark_progress()   # the running stream's progress line comes after the finished one's record
    found = generations.journaled(tmp_path, done)
    assert (found["request_id"], found["completion_tokens"], found["team_id"]) == ("req_" + done, 4, 7)
    assert "_open" not in found
    assert generations.journaled(tmp_path, running) is None   # still streaming: not a finished generation
    assert generations.journaled(tmp_path, "ef" * 12) is None
    assert generations.journaled(tmp_path, "AB" * 12) is None and generations.journaled(tmp_path, "x") is None
    summary = generations.summary(found, provider_name="OpenAI", channel_kind="openai")
    assert orjson.loads(orjson.dumps(summary))["total_cost"] == 0.0025
    other.close()
