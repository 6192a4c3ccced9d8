"""routing/relay/formats/responses.py without a server: the Responses → canonical translation, and what it
renders checked against the official SDK's own types (openai.types.responses: every stream event parses as a
ResponseStreamEvent, every answer as a Response)."""
import time
from types import SimpleNamespace

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.relay import errors
from routing.relay.formats import responses

EVENT = TypeAdapter(ResponseStreamEvent)
FUNCTION = {"type": "function", "name": "exec_command", "strict": False,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
NAMESPACE = {"type": "namespace", "name": "agents", "description": "Sub-agents", "tools": [
    {"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}]}
CODEX = {"model": "claude-sonnet-4-5", "stream": True, "store": False, "tool_choice": "auto",
         "parallel_tool_calls": True, "reasoning": {"summary": "auto", "effort": "medium"},
         "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread", "client_metadata": {"a": "b"},
         "tools": [FUNCTION, NAMESPACE, {"type": "web_search", "external_web_access": False}],
         "input": [
             {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
             {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should run ls"}],
              "encrypted_content": "tgsig:SIG"},
             {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
             {"type": "function_call", "call_id": "call_2", "namespace": "agents", "name": "exec_command",
              "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
             {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
         ]}


def fake_call(payload, **extra):
    return SimpleNamespace(hex_id="ab" * 12, created=time.time(), model=SimpleNamespace(public_id="anthropic/claude"),
                           payload=payload, cost_now=lambda usage: 0.0042, **{"native": False, **extra})


def test_codex_request_to_canonical():
    canonical = responses.to_canonical(CODEX)
    developer, user, assistant, tool_1, tool_2 = canonical["messages"]
    assert developer == {"role": "developer", "content": "You are Codex."}
    assert user == {"role": "user", "content": [{"type": "text", "text": "list files"}]}
    assert assistant["reasoning_content"] == "I should run ls" and assistant["thinking_signature"] == "SIG"
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["exec_command", "agents__exec_command"]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_1", "call_2"]
    assert tool_1 == {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}
    assert tool_2["content"] == "ok"
    assert [t["function"]["name"] for t in canonical["tools"]] == ["exec_command", "spawn", "agents__exec_command"]
    assert (canonical["tool_choice"], canonical["parallel_tool_calls"], canonical["stream"]) == ("auto", True, True)
    assert canonical["reasoning_effort"] == "medium" and canonical["prompt_cache_key"] == "thread"
    for absent in ("store", "include", "client_metadata", "input", "reasoning"):
        assert absent not in canonical
    assert responses.dropped_tools(CODEX) == ["web_search"]


def test_instructions_text_format_and_limits():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    canonical = responses.to_canonical({"model": "m", "input": "hi", "instructions": "Be brief.",
                                        "max_output_tokens": 99, "temperature": 0.2,
                                        "text": {"format": {"type": "json_schema", "name": "out", "schema": schema,
                                                            "strict": True}}})
    assert canonical["messages"][0] == {"role": "system", "content": "Be brief."}
    assert canonical["max_tokens"] == 99 and canonical["temperature"] == 0.2
    assert canonical["response_format"] == {"type": "json_schema",
                                            "json_schema": {"name": "out", "schema": schema, "strict": True}}


def test_only_hosted_tools_leave_no_tools_and_no_tool_choice():
    canonical = responses.to_canonical({"model": "m", "input": "hi", "tools": [{"type": "web_search"}],
                                        "tool_choice": "auto", "parallel_tool_calls": False})
    assert "tools" not in canonical and "tool_choice" not in canonical and "parallel_tool_calls" not in canonical


@pytest.mark.parametrize("choice", [{"type": "web_search"}, {"type": "file_search"}])
def test_forcing_a_hosted_tool_names_it(choice):
    """Translation cannot carry it (no tool_choice in the canonical request); the request is marked so that only
    a native channel serves it (the relay's 400 when none can: test_responses_hosted_tools.py)."""
    payload = {"model": "m", "input": "hi", "tools": [{"type": choice["type"]}], "tool_choice": choice}
    canonical = responses.to_canonical(payload)
    assert "tool_choice" not in canonical and "tools" not in canonical
    assert responses.forced_hosted_tool(payload) == choice["type"]


def parse(chunks: list[bytes]) -> list:
    out = []
    for event in b"".join(chunks).split(b"\n\n"):
        if event:
            name, data = event.split(b"\n")
            parsed = EVENT.validate_python(orjson.loads(data.removeprefix(b"data: ")))
            assert name == b"event: " + parsed.type.encode()
            out.append(parsed)
    return out


def test_the_stream_is_the_sdks_own_event_types_in_order():
    call = fake_call(CODEX)
    renderer = responses.renderer(call, CODEX)
    chunks = []
    for event in (ReasoningDelta("I should "), ReasoningDelta("run ls"), ReasoningDelta(signature="SIG2"),
                  TextDelta("Run"), TextDelta("ning."), ToolCallDelta(0, "call_a", "exec_command", '{"cmd"'),
                  ToolCallDelta(0, None, None, ':"ls"}'), ToolCallDelta(1, "call_b", "agents__exec_command", "{}"),
                  Finish("tool_calls"), UsageEvent(Usage(100, 20, 30, 5, 7))):
        chunks += renderer.render(event)
    chunks += renderer.finish()
    events = parse(chunks)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    final = events[-1].response
    assert final.status == "completed" and final.id == "resp_" + "ab" * 12
    reasoning, message, call_a, call_b = final.output
    assert reasoning.summary[0].text == "I should run ls" and reasoning.encrypted_content == "tgsig:SIG2"
    assert message.content[0].text == "Running."
    assert (call_a.call_id, call_a.name, call_a.arguments) == ("call_a", "exec_command", '{"cmd":"ls"}')
    assert (call_b.name, call_b.namespace) == ("exec_command", "agents")
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [d.model_dump() for d in done] == [o.model_dump() for o in final.output]
    for event in events:   # every item-level event points at its item
        if hasattr(event, "item_id"):
            assert final.output[event.output_index].id == event.item_id
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (100, 20, 120)
    assert usage.input_tokens_details.cached_tokens == 30 and usage.input_tokens_details.cache_write_tokens == 7
    assert usage.output_tokens_details.reasoning_tokens == 5 and final.usage.model_extra["cost"] == 0.0042


def test_a_cut_answer_is_incomplete_and_a_broken_stream_failed():
    payload = {"model": "m", "input": "hi"}
    renderer = responses.renderer(fake_call(payload), payload)
    chunks = renderer.render(TextDelta("par")) + renderer.render(Finish("length")) + renderer.finish()
    final = parse(chunks)[-1]
    assert final.type == "response.incomplete" and final.response.incomplete_details.reason == "max_output_tokens"
    renderer = responses.renderer(fake_call(payload), payload)
    chunks = renderer.render(TextDelta("par"))
    with pytest.raises(errors.RelayError):
        renderer.render(StreamError("overloaded"))
    chunks += renderer.error(errors.upstream_unavailable("the stream broke"), "req_1")
    failed = parse(chunks)[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert "the stream broke" in failed.response.error.message


def test_a_native_streams_failure_adds_only_response_failed():
    payload = {"model": "m", "input": "hi"}
    renderer = responses.renderer(fake_call(payload, native=True), payload)
    assert [e.type for e in parse(renderer.error(errors.upstream_unavailable("x"), "req_1"))] == ["response.failed"]


def test_complete_is_the_sdks_response():
    data = {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Let me look.", "reasoning_content": "think", "thinking_signature": "S",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "agents__exec_command", "arguments": "{}"}}]}}]}
    body = responses.complete(fake_call(CODEX), data, Usage(10, 4, 0, 1))
    response = Response.model_validate(body)
    assert [o.type for o in response.output] == ["reasoning", "message", "function_call"]
    assert response.output[2].namespace == "agents" and response.output[2].name == "exec_command"
    assert response.output_text == "Let me look." and response.usage.total_tokens == 14
    assert response.store is False and response.tool_choice == "auto"


PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}


def test_a_custom_tool_is_a_function_of_one_string_and_comes_back_as_custom_tool_call():
    payload = {"model": "m", "tools": [PATCH], "tool_choice": {"type": "custom", "name": "apply_patch"}, "input": [
        {"role": "user", "content": "fix it"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"}]}
    canonical = responses.to_canonical(payload)
    [tool] = canonical["tools"]
    assert tool["function"]["parameters"]["required"] == ["input"] and "start: /.+/" in tool["function"]["description"]
    assert canonical["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assistant, result = canonical["messages"][1:]
    assert orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"input": "*** Begin Patch"}
    assert result == {"role": "tool", "tool_call_id": "c1", "content": "Done"}
    arguments = orjson.dumps({"input": "*** Begin Patch\n*** End Patch"}).decode()
    data = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "apply_patch",
                                                                         "arguments": arguments}}]}}]}
    [item] = Response.model_validate(responses.complete(fake_call(payload), data, Usage(5, 5))).output
    assert (item.type, item.call_id, item.input) == ("custom_tool_call", "c2", "*** Begin Patch\n*** End Patch")
    renderer = responses.renderer(fake_call(payload), payload)
    chunks = renderer.render(ToolCallDelta(0, "c2", "apply_patch", arguments[:10]))
    chunks += renderer.render(ToolCallDelta(0, None, None, arguments[10:])) + renderer.finish()
    events = parse(chunks)
    assert [e.type for e in events][2:] == [
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done", "response.completed"]
    assert events[-1].response.output[0].input == "*** Begin Patch\n*** End Patch"
