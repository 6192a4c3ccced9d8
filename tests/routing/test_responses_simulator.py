"""The simulator's POST /v1/responses, with the official SDK: the Responses request schema is enforced (so an
adapter that sends a wrong field fails its test), the answer and every stream event parse as the SDK's own
types, cached and reasoning tokens are reported, and tools are called as its docstring says."""
import httpx
import openai
import orjson
import pytest

KEY = "sk-sim-responses-test"
SHELL = {"type": "function", "name": "exec_command", "strict": False,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


@pytest.fixture
def sdk(simulator):
    return openai.OpenAI(base_url=f"{simulator.url}/v1", api_key=KEY, max_retries=0, timeout=10,
                         default_headers={"x-sim-chunk-delay-ms": "0"})


def raw(simulator, body) -> httpx.Response:
    return httpx.post(f"{simulator.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"})


def test_create_reports_cached_and_reasoning_tokens(sdk):
    response = sdk.responses.create(model="gpt-5", input="hello [[sim:cached=4]] [[sim:reasoning=6]]",
                                    reasoning={"summary": "auto"}, include=["reasoning.encrypted_content"])
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text and reasoning.encrypted_content
    assert message.type == "message" and response.output_text.startswith("Simulated reply to: hello")
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_stream_is_the_real_event_sequence(sdk):
    with sdk.responses.stream(model="gpt-4o-mini", input="count [[sim:reasoning=3]]",
                              reasoning={"summary": "auto"}) as stream:
        events = list(stream)   # the SDK parses each event into its own type (an unknown shape raises)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.reasoning_summary_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_tool_named_in_the_prompt_is_called_with_the_backticked_text(sdk):
    response = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL, {"type": "web_search"}],
                                    input="Use exec_command to run `echo hi`")
    [call] = response.output
    assert call.type == "function_call" and orjson.loads(call.arguments) == {"cmd": "echo hi"}
    follow = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL], input=[
        {"role": "user", "content": "Use exec_command to run `echo hi`"}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "hi"}])
    assert follow.output[0].type == "message" and follow.output_text
    plain = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL], input="Say hello")
    assert plain.output[0].type == "message"   # no tool named: a plain answer
    forced = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL], input="hi", tool_choice="required")
    assert forced.output[0].type == "function_call"


def test_max_output_tokens_cuts_the_answer(sdk):
    response = sdk.responses.create(model="gpt-4o-mini", input="[[sim:tokens=40]] talk", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16


@pytest.mark.parametrize("body, param", [
    ({"model": "m", "input": "x", "messages": []}, "messages"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "input[0].content[0]"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].function"),
    ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0]"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
])
def test_the_request_schema_is_enforced(simulator, body, param):
    r = raw(simulator, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_a_stream_error_fault_ends_with_response_failed(simulator):
    r = httpx.post(f"{simulator.url}/v1/responses", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "m", "input": "[[sim:fault=stream_error:3]] hi", "stream": True})
    frames = [orjson.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert [f["type"] for f in frames][:2] == ["response.created", "response.in_progress"]
    assert frames[-1]["type"] == "response.failed" and frames[-1]["response"]["error"]["code"] == "server_error"


def test_the_tool_directive_narrows_the_choice(sdk):
    other = {**SHELL, "name": "view_image"}
    called = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL, other], input="look [[sim:tool=view_image]]")
    assert called.output[0].type == "function_call" and called.output[0].name == "view_image"
    none = sdk.responses.create(model="gpt-4o-mini", tools=[SHELL], input="exec_command [[sim:tool=none]]")
    assert none.output[0].type == "message"
