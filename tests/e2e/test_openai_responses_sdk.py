"""The official `openai` SDK's Responses API (`responses.create`, `responses.stream`, `retrieve`, `delete`)
against a live gateway: natively to an OpenAI channel, translated to an Anthropic and a Gemini channel."""
import openai
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for

MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"]
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(live, secret=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=secret or live.secret, max_retries=0)


@pytest.fixture
def every_kind(live):
    for public_id, upstream, kind in (("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", Channel.ANTHROPIC),
                                      ("google/gemini-2.5-flash", "gemini-2.5-flash", Channel.GEMINI)):
        model = factories.CatalogModelFactory(public_id=public_id, upstream_name=upstream, aliases=[upstream])
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=live.simulator.url, kind=kind, name=kind, api_key=f"sim-{kind}")
    bump_version()
    wait_for(lambda: "google/gemini-2.5-flash" in [m.id for m in client(live).models.list()])
    return live


def _record(response_id: str):
    return wait_for(lambda: UsageRecord.objects.filter(request_id="req_" + response_id.removeprefix("resp_")).first())


@pytest.mark.parametrize("model", MODELS)
def test_responses_create(every_kind, model):
    response = client(every_kind).responses.create(model=model, instructions="Be brief.", input="Say hello",
                                                   max_output_tokens=100)
    assert response.status == "completed" and response.output_text
    assert response.id.startswith("resp_") and response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    record = _record(response.id)
    assert record.path == "/v1/responses" and record.completion_tokens == response.usage.output_tokens
    assert record.cost > 0


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream(every_kind, model):
    with client(every_kind).responses.stream(model=model, input="Count to three") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.status == "completed" and final.usage.total_tokens > 0
    assert _record(final.id).stream


@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(every_kind, model):
    c = client(every_kind)
    first = c.responses.create(model=model, input="What is the weather in Paris? Use get_weather.", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.call_id
    second = c.responses.create(model=model, tools=[WEATHER], previous_response_id=first.id,
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": '{"temperature": 18}'}])
    assert second.output_text and second.previous_response_id == first.id


def test_retrieve_delete_and_store_false(every_kind):
    c = client(every_kind)
    stored = c.responses.create(model="claude-sonnet-4-5", input="keep this")
    assert c.responses.retrieve(stored.id).output_text == stored.output_text
    c.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(stored.id)
    unstored = c.responses.create(model="gpt-4o-mini", input="not this", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unstored.id)


def test_another_teams_response_is_not_found(every_kind):
    ours = client(every_kind).responses.create(model="gemini-2.5-flash", input="ours")
    _, secret = factories.api_key()
    with pytest.raises(openai.NotFoundError):
        client(every_kind, secret).responses.retrieve(ours.id)
    with pytest.raises(openai.NotFoundError):
        client(every_kind, secret).responses.delete(ours.id)
    assert client(every_kind).responses.retrieve(ours.id).id == ours.id
