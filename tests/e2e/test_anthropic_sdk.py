"""The official `anthropic` SDK against /v1/messages of a live gateway (what Claude Code speaks)."""
import anthropic
import pytest

from billing.models import UsageRecord
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for, wait_for_config
from tests.routing.test_tokens import CORPUS, REFERENCE, TOLERANCE


def client(live, key=None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.server.url, api_key=key or live.secret, max_retries=0)


def test_messages_create_translated_to_an_openai_channel(live):
    message = client(live).messages.create(
        model="gpt-4o-mini", max_tokens=200, system="You are terse.",
        messages=[{"role": "user", "content": "Say hello"}])
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "openai/gpt-4o-mini"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    record = wait_for(lambda: UsageRecord.objects.filter(request_id="req_" + message.id.removeprefix("msg_")).first())
    assert record.path == "/v1/messages" and record.completion_tokens == message.usage.output_tokens


def test_messages_stream_with_tools(live):
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with client(live).messages.stream(model="gpt-4o-mini", max_tokens=300, tools=tools,
                                      messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and "content_block_start" in events
    tool_uses = [b for b in final.content if b.type == "tool_use"]
    assert tool_uses and tool_uses[0].name == "get_weather" and isinstance(tool_uses[0].input, dict)
    assert "city" in tool_uses[0].input
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 0


def test_tool_result_round_trip(live):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C, sunny"}]},
    ]
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    message = client(live).messages.create(model="gpt-4o-mini", max_tokens=200, tools=tools, messages=messages)
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"


def test_count_tokens(live):
    result = client(live).messages.count_tokens(model="gpt-4o-mini",
                                                messages=[{"role": "user", "content": "hello " * 100}])
    assert 100 <= result.input_tokens <= 400


def test_count_tokens_of_a_claude_model_is_within_ten_percent_of_claudes_tokenizer(live):
    """Through the SDK, a Claude model's prompt (the mixed English, Chinese and code corpus of
    tests/routing/test_tokens.py) is counted by the Claude tokenizer the repository ships: within 10% of the
    reference count of Anthropic's published tokenizer, and not the OpenAI count."""
    factories.provider_models(kind=Channel.ANTHROPIC, base_url=live.simulator.url, names=["claude-sonnet-4-5"],
                              provider="anthropic", api_key="sim-anthropic-key")
    wait_for_config(live.server)   # served before the first call
    text = "\n\n".join(CORPUS.values())
    claude, openai = (sum(counts[i] for counts in REFERENCE.values()) for i in (1, 0))
    counted = wait_for(lambda: _count(live, "claude-sonnet-4-5", text))
    assert abs(counted - claude) <= TOLERANCE * claude, (counted, claude)
    assert abs(_count(live, "gpt-4o-mini", text) - openai) <= TOLERANCE * openai and counted > openai * 1.05


def _count(live, model: str, text: str) -> int | None:
    try:
        counted = client(live).messages.count_tokens(model=model, messages=[{"role": "user", "content": text}])
        return counted.input_tokens
    except anthropic.NotFoundError:   # not in the gateway's catalog snapshot yet
        return None


def test_errors_come_in_anthropic_shape(live):
    with pytest.raises(anthropic.AuthenticationError) as exc:
        client(live, key="sk-tg-wrong-key-000000000000000000").messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    body = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert exc.value.response.headers["request-id"].startswith("req_")
    with pytest.raises(anthropic.NotFoundError) as exc:
        client(live).messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client(live).messages.create(model="gpt-4o-mini", max_tokens=10, messages=[])
