"""Fault injection: by header, by magic token in a message, and scripted per API key via /_sim/faults."""

import json
import time

import httpx
import openai
import pytest

from tests.simulator.sim_helpers import KEY, raw_chat, sse_events

pytestmark = pytest.mark.live

ONE = [{"role": "user", "content": "hi"}]
BODY = {"model": "gpt-4o-mini", "messages": ONE}
STREAM = {**BODY, "stream": True}
NO_DELAY = {"x-sim-chunk-delay-ms": "0"}


def fault(spec):
    return {"x-sim-fault": spec, **NO_DELAY}


@pytest.mark.parametrize(("status", "error_class", "kind", "code"), [
    (400, openai.BadRequestError, "invalid_request_error", None),
    (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
    (402, openai.APIStatusError, "insufficient_quota", "insufficient_balance"),
    (403, openai.PermissionDeniedError, "request_forbidden", "unsupported_country_region_territory"),
    (404, openai.NotFoundError, "invalid_request_error", "model_not_found"),
    (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
    (500, openai.InternalServerError, "server_error", None),
    (503, openai.InternalServerError, "server_error", None),
])
def test_status_fault_by_header(sdk, status, error_class, kind, code):
    with pytest.raises(error_class) as e:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=ONE, extra_headers=fault(f"status:{status}"))
    assert e.value.status_code == status and (e.value.type, e.value.code) == (kind, code)
    assert set(e.value.response.json()["error"]) == {"message", "type", "param", "code"}
    assert e.value.response.headers.get("retry-after") == ("1" if status == 429 else None)


def test_status_fault_by_magic_token_in_any_message(sdk):
    messages = [{"role": "system", "content": "x [[sim:fault=status:503]]"}, *ONE]
    with pytest.raises(openai.InternalServerError) as e:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert e.value.status_code == 503
    with pytest.raises(openai.InternalServerError):  # also on a streamed request, before any frame
        sdk.chat.completions.create(model="m", messages=messages, stream=True)


def test_delay_fault(sdk):
    start = time.monotonic()
    r = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi [[sim:fault=delay:300]]"}])
    assert time.monotonic() - start >= 0.29 and r.choices[0].finish_reason == "stop"


def test_timeout_fault_hangs_until_the_client_gives_up(sdk):
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sdk.with_options(timeout=0.5).chat.completions.create(model="m", messages=ONE,
                                                              extra_headers=fault("timeout"))
    assert 0.5 <= time.monotonic() - start < 3
    assert sdk.chat.completions.create(model="m", messages=ONE).choices  # the simulator is still responsive


def test_break_drops_the_connection(sdk, sim):
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(model="m", messages=ONE, extra_headers=fault("break"))
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with sim.stream("POST", "/v1/chat/completions", json=STREAM,
                        headers={"Authorization": f"Bearer {KEY}", **fault("break:3")}) as r:
            for line in r.iter_lines():
                received.append(line)
    events = [line for line in received if line.startswith("data: ")]
    assert len(events) == 3 and "data: [DONE]" not in events


def test_stream_error_fault_sends_an_error_frame(sdk):
    chunks = []
    with pytest.raises(openai.APIError) as e:
        for chunk in sdk.chat.completions.create(model="m", messages=ONE, stream=True,
                                                 extra_headers=fault("stream_error:2")):
            chunks.append(chunk)
    assert len(chunks) == 2 and "server had an error" in e.value.message
    with pytest.raises(openai.InternalServerError):  # not streamed: a plain 500
        sdk.chat.completions.create(model="m", messages=ONE, extra_headers=fault("stream_error"))


def test_invalid_json_fault(sim):
    r = raw_chat(sim, BODY, headers=fault("invalid_json"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    events = sse_events(raw_chat(sim, STREAM, headers=fault("invalid_json")).text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1])
    assert [json.loads(e)["object"] for e in events[2:-1]] and events[-1] == "[DONE]"


def test_truncate_fault_cuts_the_body_in_half(sim):
    whole = raw_chat(sim, BODY).content
    cut = raw_chat(sim, BODY, headers=fault("truncate"))
    assert cut.status_code == 200 and len(cut.content) == len(whole) // 2
    assert int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    streamed = raw_chat(sim, STREAM, headers=NO_DELAY).content
    cut = raw_chat(sim, STREAM, headers=fault("truncate")).content
    assert len(cut) == len(streamed) // 2 and b"[DONE]" not in cut


def test_empty_fault(sim):
    for body in (BODY, STREAM):
        r = raw_chat(sim, body, headers=fault("empty"))
        assert r.status_code == 200 and r.content == b""


def test_context_length_fault(sdk):
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[sim:fault=context_length]]"}])
    assert (e.value.code, e.value.param) == ("context_length_exceeded", "messages")
    assert "maximum context length" in e.value.message


def test_model_not_found_fault(sdk):
    with pytest.raises(openai.NotFoundError) as e:
        sdk.chat.completions.create(model="gpt-9", messages=ONE, extra_headers=fault("model_not_found"))
    assert e.value.code == "model_not_found"
    assert e.value.body["message"] == "The model `gpt-9` does not exist or you do not have access to it."


def test_quota_fault(sdk):
    with pytest.raises(openai.RateLimitError) as e:
        sdk.chat.completions.create(model="m", messages=ONE, extra_headers=fault("quota"))
    assert e.value.code == "insufficient_quota" and e.value.type == "insufficient_quota"


def test_content_filter_fault(sdk):
    messages = [{"role": "user", "content": "hi [[sim:fault=content_filter]]"}]
    r = sdk.chat.completions.create(model="m", messages=messages)
    assert r.choices[0].finish_reason == "content_filter" and r.usage.completion_tokens == 6
    chunks = list(sdk.chat.completions.create(model="m", messages=messages, stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_faults_combine_and_bad_specs_are_rejected(sim):
    start = time.monotonic()
    r = raw_chat(sim, BODY, headers=fault("delay:200, status:502"))
    assert r.status_code == 502 and time.monotonic() - start >= 0.19
    for spec in ("bogus", "status", "status:200", "delay:soon"):
        r = raw_chat(sim, BODY, headers=fault(spec))
        assert r.status_code == 400 and r.json()["error"]["code"] == "simulator_error", spec


def test_scripted_faults_per_key(sim, sim_url):
    channel = openai.OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-channel-a", max_retries=0)
    other = openai.OpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0)
    r = sim.post("/_sim/faults", json={"key": "sk-sim-channel-a", "fault": "status:503", "count": 2})
    assert r.status_code == 200 and r.json()["fault"] == {"key": "sk-sim-channel-a", "fault": "status:503",
                                                          "remaining": 2}
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            channel.chat.completions.create(model="m", messages=ONE)
        assert other.chat.completions.create(model="m", messages=ONE).choices  # other keys are unaffected
    assert channel.chat.completions.create(model="m", messages=ONE).choices  # count used up
    assert sim.get("/_sim/faults").json() == {"faults": []}


def test_scripted_faults_until_cleared_and_wildcard(sim, sim_url):
    channel = openai.OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-channel-b", max_retries=0)
    sim.post("/_sim/faults", json={"key": "*", "fault": "quota", "count": None})
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            channel.chat.completions.create(model="m", messages=ONE)
    assert sim.delete("/_sim/faults").json() == {"ok": True}
    assert channel.chat.completions.create(model="m", messages=ONE).choices


@pytest.mark.parametrize("payload", [
    {"key": "k", "fault": "explode"}, {"key": "k", "fault": "status:503", "count": 0}, {"fault": "status:503"},
])
def test_scripted_fault_validation(sim, payload):
    r = sim.post("/_sim/faults", json=payload)
    assert r.status_code == 400 and r.json()["error"]
    assert sim.get("/_sim/faults").json() == {"faults": []}
