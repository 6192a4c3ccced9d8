"""Real provider answers and streams (tests/routing/adapters/fixtures/, sources in its README.md) replayed through
each adapter: the canonical text, tool calls, reasoning, usage and finish reason, and how errors are read."""
import asyncio
import importlib
from pathlib import Path

import orjson
import pytest

from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.base import Finish, ReasoningDelta, StreamError, TextDelta, ToolCallDelta, Usage, UsageEvent
from routing.adapters.gemini import GeminiAdapter
from routing.adapters.openai import OpenAIAdapter
from tests.routing.adapters.exchange import Result, aiter_lines

FIXTURES = Path(__file__).parent / "fixtures"
OPENAI, ANTHROPIC, GEMINI = OpenAIAdapter(), AnthropicAdapter(), GeminiAdapter()


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def answer(adapter, name: str) -> tuple[dict, Usage]:
    return adapter.from_upstream(raw(name))


def sse_lines(name: str) -> list[bytes]:
    """The stream's lines as the relay reads an upstream: line endings stripped, blank separators skipped."""
    return [line.rstrip(b"\r") for line in raw(name).split(b"\n") if line.strip()]


def replay(adapter, name: str) -> Result:
    """The adapter's canonical events for a recorded stream, folded as a client would see them."""
    async def collect():
        return [e async for e in adapter.stream_events(aiter_lines(sse_lines(name)))]
    result = Result(200, events=asyncio.run(collect()))
    result.usage = result.last_usage()
    return result


def message_of(data: dict) -> dict:
    [choice] = data["choices"]
    return choice["message"]


# --- OpenAI ----------------------------------------------------------------------------------------------------
def test_openai_chat_completion():
    data, usage = answer(OPENAI, "openai/chat_completion.json")
    assert data == orjson.loads(raw("openai/chat_completion.json"))  # the OpenAI shape is the canonical one
    assert message_of(data)["content"] == "Hello! How can I assist you today?"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert usage == Usage(prompt_tokens=19, completion_tokens=10)


def test_openai_chat_completion_with_a_tool_call():
    data, usage = answer(OPENAI, "openai/chat_completion_tool_calls.json")
    [call] = message_of(data)["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_abc123", "get_current_weather")
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Boston, MA"}
    assert data["choices"][0]["finish_reason"] == "tool_calls" and message_of(data)["content"] is None
    assert usage == Usage(prompt_tokens=82, completion_tokens=17)


def test_openai_stream_with_parallel_tool_calls_and_the_usage_chunk():
    result = replay(OPENAI, "openai/stream_parallel_tool_calls.sse")
    assert result.tool_calls() == {
        0: {"id": "call_lQnnsesjFMWMQ5IeWPHzR4th", "name": "GetWeatherArgs", "signature": None,
            "arguments": '{"city": "Edinburgh", "country": "UK", "units": "c"}'},
        1: {"id": "call_2xjOUgaCdiwAcl9ZBL9LyMUU", "name": "get_stock_price", "signature": None,
            "arguments": '{"ticker": "AAPL", "exchange": "NASDAQ"}'}}
    assert result.text() == "" and result.reasoning() == "" and result.finishes() == ["tool_calls"]
    assert [e for e in result.events if isinstance(e, UsageEvent)] == [UsageEvent(Usage(149, 60))]
    assert result.events[-1] == UsageEvent(Usage(149, 60))  # the usage chunk comes last, after the finish


def test_openai_stream_passthrough_forwards_every_frame_and_bills_the_usage_chunk():
    lines = sse_lines("openai/stream_parallel_tool_calls.sse")
    passed = [OPENAI.passthrough(line) for line in lines]
    assert [out for out, _ in passed] == lines  # every line of this stream is a data line, [DONE] included
    assert [usage for _, usage in passed if usage is not None] == [Usage(149, 60)]


def test_openai_error_body():
    message, code, param = OPENAI.error_detail(404, raw("openai/error_model_not_found.json"))
    assert message == "The model `fake-model` does not exist or you do not have access to it."
    assert (code, param) == ("model_not_found", None)


# --- Anthropic -------------------------------------------------------------------------------------------------
def test_anthropic_message_with_text_and_cache_fields():
    data, usage = answer(ANTHROPIC, "anthropic/message_text.json")
    message = message_of(data)
    assert orjson.loads(message["content"])["total"] == 14.0 and "tool_calls" not in message
    assert "reasoning_content" not in message and data["choices"][0]["finish_reason"] == "stop"
    assert usage == Usage(prompt_tokens=406, completion_tokens=50)
    assert data["usage"]["total_tokens"] == 456


def test_anthropic_message_with_thinking():
    data, usage = answer(ANTHROPIC, "anthropic/message_thinking.json")
    message = message_of(data)
    assert message["content"] == "925 ÷ 5 = 185" and message["reasoning_content"] == "925 divided by 5 = 185"
    assert message["thinking_signature"] == orjson.loads(raw("anthropic/message_thinking.json"))["content"][0][
        "signature"] and message["thinking_signature"].startswith("Er4BCkYICxgCKkCoxqLHLrx4mFL9Ox7")
    assert data["choices"][0]["finish_reason"] == "stop" and usage == Usage(prompt_tokens=69, completion_tokens=33)


def test_anthropic_message_with_thinking_and_a_tool_call():
    data, usage = answer(ANTHROPIC, "anthropic/message_thinking_tool_use.json")
    message = message_of(data)
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "toolu_017R7ACrx7NF7sLDDtvdQ1u9", "type": "function",
                                      "function": {"name": "checkSandboxErrors", "arguments": "{}"}}]
    assert message["reasoning_content"] == "The user wants me to call checkSandboxErrors immediately."
    assert message["thinking_signature"].startswith("Eq4CCpIBCBIYAipAM+SGYGx7V1aPBT2")
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert (usage.prompt_tokens, usage.completion_tokens) == (599, 59)


def test_anthropic_thinking_tokens_are_reasoning_tokens():
    _, usage = answer(ANTHROPIC, "anthropic/message_thinking_tool_use.json")
    assert usage.reasoning_tokens == 18


def test_anthropic_stream_with_text_ping_and_a_tool_call():
    result = replay(ANTHROPIC, "anthropic/stream_tool_use.sse")
    assert result.events == [
        TextDelta("I"), TextDelta("'ll check the current weather in Paris for you."),
        ToolCallDelta(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather"),
        ToolCallDelta(0, arguments='{"locati'), ToolCallDelta(0, arguments='on": "P'), ToolCallDelta(0, arguments="ar"),
        ToolCallDelta(0, arguments='is"}'),
        Finish("tool_calls"), UsageEvent(Usage(prompt_tokens=377, completion_tokens=65))]
    assert orjson.loads(result.tool_calls()[0]["arguments"]) == {"location": "Paris"}


def test_anthropic_stream_with_thinking_and_its_signature():
    result = replay(ANTHROPIC, "anthropic/stream_thinking.sse")
    assert result.reasoning() == "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
    [signature] = result.signatures()
    assert signature.startswith("EvQBCkYICxgCKkAxhD4NUKFzudtZ6NzbZdEiBACIScTzqjPViM596iWLZIk4")
    assert result.text() == "925 ÷ 5 = 185" and result.tool_calls() == {} and result.finishes() == ["stop"]
    # the final message_delta repeats input_tokens (cumulative usage): counted once
    assert result.usage == Usage(prompt_tokens=69, completion_tokens=53)


def test_anthropic_documented_thinking_stream():
    result = replay(ANTHROPIC, "anthropic/stream_thinking_docs.sse")
    assert result.reasoning() == ("I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n"
                                  "1071 = 2 × 462 + 147\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n"
                                  "The remainder is 0, so GCD(1071, 462) = 21.")
    assert result.signatures() == ["EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."]
    assert result.text() == "The greatest common divisor of 1071 and 462 is **21**."
    assert result.finishes() == ["stop"] and result.usage == Usage()  # the example carries no usage
    reasoning = [e for e in result.events if isinstance(e, ReasoningDelta)]
    assert reasoning[-1] == ReasoningDelta(signature=result.signatures()[0])  # the signature closes the block


def test_anthropic_stream_error_event():
    assert replay(ANTHROPIC, "anthropic/stream_error.sse").events == [StreamError("Overloaded", "overloaded_error")]


def test_anthropic_error_bodies():
    assert ANTHROPIC.error_detail(529, raw("anthropic/error_overloaded.json")) == (
        "Overloaded", "overloaded_error", None)
    assert ANTHROPIC.error_detail(404, raw("anthropic/error_not_found.json")) == (
        "The requested resource could not be found.", "not_found_error", None)


# --- Gemini ----------------------------------------------------------------------------------------------------
def test_gemini_answer_with_a_signed_function_call():
    data, usage = answer(GEMINI, "gemini/generate_content_tool_call.json")
    message = message_of(data)
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and call["function"] == {"name": "weather",
                                                                  "arguments": '{"location":"San Francisco"}'}
    assert call["thought_signature"].startswith("Eqo+Cqc+Ab4+9vtgONaaz6qwy6WXdp7gCd2w0X+Wz2gaBgY0Gv6A12JKo0y5vQwf9YQ")
    assert message["content"] is None and data["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == Usage(prompt_tokens=29, completion_tokens=15 + 1801, reasoning_tokens=1801)
    assert (data["id"], data["model"]) == ("JniLacKqGqH0xs0P0O776As", "gemini-3-pro-preview")


def test_gemini_answer_with_a_signed_text_part():
    data, usage = answer(GEMINI, "gemini/generate_content_reasoning.json")
    message = message_of(data)
    assert message["content"] == 'There are **3** "r"s in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y.'
    assert "reasoning_content" not in message and "tool_calls" not in message  # a text part's signature is dropped
    assert data["choices"][0]["finish_reason"] == "stop"
    assert usage == Usage(prompt_tokens=9, completion_tokens=29 + 282, reasoning_tokens=282)


def test_gemini_stream_with_a_signed_function_call():
    result = replay(GEMINI, "gemini/stream_tool_call.sse")
    [(index, call)] = result.tool_calls().items()
    assert index == 0 and call["id"].startswith("call_") and call["name"] == "weather"
    assert orjson.loads(call["arguments"]) == {"location": "San Francisco"}
    assert call["signature"].startswith("EpEgCo4gAb4+9vvWwdN+NkNiCCwrqvFI8uf9IiD2A47Bm4Sga0kUTm4e")
    assert len(call["signature"]) > 5000  # kept whole: Gemini 3 refuses the tool loop without it
    assert result.text() == "" and result.finishes() == ["tool_calls"]
    assert result.usage == Usage(prompt_tokens=29, completion_tokens=15 + 804, reasoning_tokens=804)
    assert result.events[-1] == UsageEvent(result.usage)  # one usage, after the finish


def test_gemini_stream_of_text_ending_with_a_signature_part():
    result = replay(GEMINI, "gemini/stream_reasoning.sse")
    assert result.events[:-1] == [TextDelta('There are **3** "r"s in'),
                                  TextDelta(" strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y."),
                                  Finish("stop")]
    # the usage of the last frame (usageMetadata is cumulative), not a sum of the frames
    assert result.usage == Usage(prompt_tokens=9, completion_tokens=29 + 256, reasoning_tokens=256)


def test_gemini_error_body():
    assert GEMINI.error_detail(429, raw("gemini/error_quota.json")) == (
        "You exceeded your current quota, please check your plan.", "RESOURCE_EXHAUSTED", None)


# --- what the relay does with each error ------------------------------------------------------------------------
ERRORS = [(OPENAI, 404, "openai/error_model_not_found.json", "model"),
          (ANTHROPIC, 529, "anthropic/error_overloaded.json", "channel"),
          (ANTHROPIC, 404, "anthropic/error_not_found.json", "model"),
          (GEMINI, 429, "gemini/error_quota.json", "channel")]


@pytest.mark.parametrize("adapter, status, name, outcome", ERRORS, ids=[e[2] for e in ERRORS])
def test_error_classification(adapter, status, name, outcome):
    """An unknown model moves on to the next model; overload and quota move on to the next channel."""
    base = importlib.import_module("routing.adapters.base")
    if not hasattr(base.Adapter, "classify"):
        pytest.skip("Adapter.classify (issue 14) has not landed")
    expected = {"model": base.NEXT_MODEL, "channel": base.NEXT_CHANNEL}[outcome]
    assert adapter.classify(status, raw(name)) == expected
