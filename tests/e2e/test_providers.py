"""Every inbound format against every provider adapter, through a live gateway and the simulated upstream
(which validates each request body against the provider's schema): SDK → Tollgate → Anthropic / Gemini."""
import anthropic
import openai
import pytest

from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for

IMAGE = ("data:image/png;base64,"
         "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.fixture
def providers(live):
    specs = [("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", Channel.ANTHROPIC, ""),
             ("google/gemini-2.5-flash", "gemini-2.5-flash", Channel.GEMINI, ""),
             ("google/gemini-3-pro-preview", "gemini-3-pro-preview", Channel.GEMINI, "")]
    for public_id, upstream, kind, path in specs:
        model = factories.CatalogModelFactory(public_id=public_id, upstream_name=upstream, aliases=[upstream],
                                              supports_vision=True, input_modalities=["text", "image"])
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=live.simulator.url + path, kind=kind, name=kind,
                          api_key=f"sim-{kind}-key")
    bump_version()
    c = openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)
    wait_for(lambda: "google/gemini-3-pro-preview" in [m.id for m in c.models.list()])
    return live


def oai(live):
    return openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)


def ant(live):
    return anthropic.Anthropic(base_url=live.server.url, api_key=live.secret, max_retries=0)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
@pytest.mark.parametrize("kind", ["text", "tools", "image"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_to_each_provider(providers, model, kind, stream):
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": IMAGE}}] if kind == "image" else "Weather in Paris?"
    extra = {"tools": TOOLS} if kind == "tools" else {}
    c = oai(providers)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
    if not stream:
        result = c.chat.completions.create(model=model, messages=messages, max_tokens=200, **extra)
        message, finish, usage = result.choices[0].message, result.choices[0].finish_reason, result.usage
        calls = message.tool_calls or []
        text = message.content or ""
    else:
        chunks = list(c.chat.completions.create(model=model, messages=messages, max_tokens=200, stream=True,
                                                stream_options={"include_usage": True}, **extra))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        finish = next(ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason)
        usage = chunks[-1].usage
        args: dict[int, str] = {}
        for ch in chunks:
            for call in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
        calls = list(args.values())
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    if kind == "tools":
        assert finish == "tool_calls" and calls
        raw = calls[0] if isinstance(calls[0], str) else calls[0].function.arguments
        assert "city" in __import__("json").loads(raw)
    else:
        assert finish == "stop" and text


def test_anthropic_sdk_pointed_at_gemini(providers):
    message = ant(providers).messages.create(model="gemini-2.5-flash", max_tokens=200,
                                             messages=[{"role": "user", "content": "hello"}])
    assert message.model == "google/gemini-2.5-flash" and message.content[0].text
    with ant(providers).messages.stream(model="gemini-2.5-flash", max_tokens=200,
                                        messages=[{"role": "user", "content": "hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0


def test_thinking_on_the_anthropic_route_to_claude(providers):
    message = ant(providers).messages.create(
        model="claude-sonnet-4-5", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think, then answer"}])
    kinds = [b.type for b in message.content]
    assert kinds[0] == "thinking" and "text" in kinds
    assert message.content[0].thinking and message.content[0].signature
    with ant(providers).messages.stream(
            model="claude-sonnet-4-5", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "think, then answer"}]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert "thinking" in {getattr(e, "type", "") for e in final.content}
    assert "content_block_delta" in events


def test_reasoning_content_on_the_openai_route(providers):
    result = oai(providers).chat.completions.create(
        model="claude-sonnet-4-5", max_tokens=4000, reasoning_effort="low",
        messages=[{"role": "user", "content": "think, then answer"}])
    message = result.choices[0].message
    assert message.content and getattr(message, "reasoning_content", None)


def test_gemini3_tool_turn_carries_the_thought_signature(providers):
    c = oai(providers)
    first = c.chat.completions.create(model="gemini-3-pro-preview", tools=TOOLS,
                                      messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    assistant = first.choices[0].message.model_dump(exclude_none=True)
    follow = c.chat.completions.create(model="gemini-3-pro-preview", tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"}, assistant,
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'}])
    assert follow.choices[0].finish_reason == "stop" and follow.choices[0].message.content
    signature = assistant["tool_calls"][0]["thought_signature"]
    assert signature and signature != "skip_thought_signature_validator"
    sent = __import__("httpx").get(f"{providers.simulator.url}/_sim/requests?limit=5").json()
    sent = sent.get("requests", sent) if isinstance(sent, dict) else sent
    bodies = [r["body"] for r in sent if "generateContent" in r["path"] and len(r["body"]["contents"]) == 3]
    model_turn = bodies[-1]["contents"][1]
    assert model_turn["role"] == "model"
    assert any(part.get("thoughtSignature") == signature for part in model_turn["parts"])
