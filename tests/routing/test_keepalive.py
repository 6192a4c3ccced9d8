"""SSE keep-alive comments (`: TOLLGATE PROCESSING`) while a stream waits on a slow upstream, over real HTTP: a
gateway whose keep-alive interval is 0.3 s, the simulator's `delay:MS` fault holding the upstream's answer.
A fast stream gets none; once a comment went out the response is a 200 stream, so fallback still serves from
the next candidate and a failure of every candidate is an error event in the stream."""
import time

import httpx
import orjson
import pytest

from billing.models import UsageRecord
from tests.conftest import make_live_setup, wait_for
from tests.routing.test_routing_fallback import model_with_channel, ready

KEEPALIVE = ": TOLLGATE PROCESSING"
INTERVAL = 0.3


@pytest.fixture(scope="module")
def keepalive_gateway(gateway_factory):
    return gateway_factory(TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1", TOLLGATE_STREAM_KEEPALIVE_SECONDS=str(INTERVAL))


@pytest.fixture
def setup(transactional_db, keepalive_gateway, simulator):
    return make_live_setup(keepalive_gateway, simulator)


def stream(setup, content: str, **extra) -> tuple[httpx.Response, list[tuple[float, str]]]:
    """(the response, each non-empty SSE line with the seconds since the request went out)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "stream": True, **extra}
    lines = []
    start = time.monotonic()
    with httpx.stream("POST", f"{setup.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {setup.secret}"}) as resp:
        for line in resp.iter_lines():
            if line:
                lines.append((time.monotonic() - start, line))
    return resp, lines


def data_of(lines) -> list[dict]:
    return [orjson.loads(line[6:]) for _, line in lines if line.startswith("data: {")]


def test_keepalive_comments_arrive_while_the_upstream_is_slow(setup):
    resp, lines = stream(setup, "think long [[sim:tokens=5]] [[sim:fault=delay:1500]]")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    comments = [at for at, line in lines if line == KEEPALIVE]
    first_data = next(at for at, line in lines if line.startswith("data:"))
    assert len(comments) >= 3, lines            # ~1.5 s of waiting at 0.3 s apart
    assert all(at < first_data for at in comments)   # only before the first byte of the answer
    assert comments[0] < 1.0 and first_data >= 1.4   # they came during the wait, not with the answer
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in data_of(lines) if c["choices"])
    assert text and lines[-1][1] == "data: [DONE]"


def test_a_fast_stream_and_a_whole_answer_get_no_keepalive(setup):
    resp, lines = stream(setup, "quick [[sim:tokens=5]]")
    assert resp.status_code == 200
    assert not [line for _, line in lines if line.startswith(":")] and lines[-1][1] == "data: [DONE]"
    slow_whole = httpx.post(f"{setup.base_url}/chat/completions", timeout=30,
                            headers={"Authorization": f"Bearer {setup.secret}"},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content":
                                                                       "hi [[sim:fault=delay:800]]"}]})
    assert slow_whole.status_code == 200 and slow_whole.json()["choices"][0]["message"]["content"]


def test_a_fast_upstream_error_keeps_its_status_code(setup):
    resp, lines = stream(setup, "hi [[sim:fault=status:400]]")
    assert resp.status_code == 400 and not [line for _, line in lines if line == KEEPALIVE]


def test_after_keepalive_a_failure_is_an_error_event_in_the_stream(setup):
    resp, lines = stream(setup, "hi [[sim:fault=delay:900,status:500]]")
    assert resp.status_code == 200           # committed: the comments went out before the upstream failed
    assert [line for _, line in lines if line == KEEPALIVE]
    error = data_of(lines)[-1]
    assert error["choices"][0]["finish_reason"] == "error" and error["error"]["code"] == "upstream_unavailable"
    assert lines[-1][1] == "data: [DONE]"
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert record.status_code == 502 and record.stream


def test_after_keepalive_fallback_still_serves_from_the_next_model(setup, simulator, sim_faults):
    model_with_channel(simulator, "test/slow-primary", key="sk-sim-slow-primary")
    model_with_channel(simulator, "test/backup", key="sk-sim-backup")
    ready(setup)
    sim_faults("sk-sim-slow-primary", "delay:1200,status:503")   # comments at ~0.3, 0.6, 0.9 s: 2 even when slow
    resp, lines = stream(setup, "hi [[sim:tokens=4]]", model="test/slow-primary",
                         models=["test/slow-primary", "test/backup"])
    assert resp.status_code == 200
    comments = [at for at, line in lines if line == KEEPALIVE]
    chunks = data_of(lines)
    assert len(comments) >= 2 and all(c["model"] == "test/backup" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=resp.headers["x-request-id"]).first())
    assert record.status_code == 200 and record.served_model == "test/backup"


def test_a_client_that_leaves_during_keepalive_is_recorded_and_billed_only_its_prompt(setup):
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "hi [[sim:fault=delay:2000]]"}]}
    with httpx.stream("POST", f"{setup.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {setup.secret}"}) as resp:
        request_id = resp.headers["x-request-id"]
        assert next(line for line in resp.iter_lines() if line) == KEEPALIVE
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record.status_code == 499 and record.error_code == "client_closed_request"
    # As for any stream the client leaves: the prompt (the upstream had it) and no output; the hold is settled.
    assert record.completion_tokens == 0 and record.prompt_tokens > 0
    key = httpx.get(f"{setup.base_url}/key", headers={"Authorization": f"Bearer {setup.secret}"}).json()
    assert key["data"]["usage"] * 1_000_000 == pytest.approx(record.cost)


def test_gemini_streams_get_no_keepalive(setup):
    """google-genai reads a line that is not `data:` as JSON, and Gemini's default stream is a JSON array."""
    body = {"contents": [{"parts": [{"text": "hi [[sim:tokens=3]] [[sim:fault=delay:800]]"}]}]}
    for query in ("?alt=sse", ""):
        resp = httpx.post(f"{setup.server.url}/v1beta/models/gpt-4o-mini:streamGenerateContent{query}", json=body,
                          headers={"x-goog-api-key": setup.secret}, timeout=30)
        assert resp.status_code == 200 and "TOLLGATE PROCESSING" not in resp.text
        frames = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")] \
            if query else orjson.loads(resp.text)
        assert frames and all("candidates" in frame or "usageMetadata" in frame for frame in frames)


def test_the_sdks_read_a_stream_with_keepalives(setup):
    """The OpenAI and Anthropic SDKs skip the comments and read the answer that follows them."""
    import anthropic
    import openai

    prompt = "hi [[sim:tokens=4]] [[sim:fault=delay:900]]"
    client = anthropic.Anthropic(base_url=setup.server.url, api_key=setup.secret, max_retries=0)
    with client.messages.stream(model="gpt-4o-mini", max_tokens=20,
                                messages=[{"role": "user", "content": prompt}]) as events:
        assert "".join(events.text_stream)
    chat = openai.OpenAI(base_url=setup.base_url, api_key=setup.secret, max_retries=0)
    parts = chat.chat.completions.create(model="gpt-4o-mini", stream=True,
                                         messages=[{"role": "user", "content": prompt}])
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    _, lines = stream(setup, prompt)   # and the comments were there
    assert [line for _, line in lines if line == KEEPALIVE]
