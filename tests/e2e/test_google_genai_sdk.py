"""The official `google-genai` SDK against the native Gemini routes of a live gateway (`http_options.base_url`
is the gateway, no /v1beta): to a Gemini channel (relayed natively), to an OpenAI and to an Anthropic channel
(translated)."""
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for
from tests.routing.test_tokens import CORPUS, REFERENCE, TOLERANCE

MODELS = ["gemini-2.5-flash", "gpt-4o-mini", "claude-sonnet-4-5"]   # natively, to OpenAI, to Anthropic
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]))])


@pytest.fixture
def gemini(live):
    factories.provider_models(kind=Channel.GEMINI, base_url=live.simulator.url, names=["gemini-2.5-flash"],
                              provider="google", api_key="sim-gemini-key")
    factories.provider_models(kind=Channel.ANTHROPIC, base_url=live.simulator.url, names=["claude-sonnet-4-5"],
                              provider="anthropic", api_key="sim-anthropic-key")
    bump_version()
    sdk = client(live)
    wait_for(lambda: any(m.name == "models/google/gemini-2.5-flash" for m in sdk.models.list()))
    return live


def client(live, key=None, api_version=None) -> genai.Client:
    """The SDK as a user sets it up: the gateway's URL as base_url (the SDK's default API version is v1;
    Gemini CLI's is v1beta: both are served)."""
    return genai.Client(api_key=key or live.secret, http_options=types.HttpOptions(
        base_url=live.server.url, api_version=api_version, retry_options=types.HttpRetryOptions(attempts=1)))


def record_of(response_id: str) -> UsageRecord:
    return wait_for(lambda: UsageRecord.objects.filter(request_id=response_id).first())


@pytest.mark.parametrize("model", MODELS)
def test_generate_content(gemini, model):
    sdk = client(gemini)   # kept: the SDK closes its HTTP client when the Client is collected
    response = sdk.models.generate_content(
        model=model, contents="Say hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=60, temperature=0.2))
    assert response.text
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    record = record_of(response.response_id)
    assert record.path == f"/v1/models/{model}:generateContent" and record.cost > 0
    assert record.prompt_tokens == usage.prompt_token_count
    assert record.sdk.startswith("google-genai-sdk") or "google-genai" in record.user_agent


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_stream(gemini, model):
    sdk = client(gemini, api_version="v1beta")
    chunks = list(sdk.models.generate_content_stream(model=model, contents="Tell me a story"))
    assert len(chunks) > 1 and "".join(c.text or "" for c in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0
    record = record_of(chunks[0].response_id)
    assert record.stream and record.completion_tokens > 0 and record.cost > 0
    assert record.path == f"/v1beta/models/{model}:streamGenerateContent"


@pytest.mark.parametrize("model", MODELS)
def test_function_calling_round_trip(gemini, model):
    sdk = client(gemini)
    config = types.GenerateContentConfig(
        tools=[WEATHER], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    first = sdk.models.generate_content(model=model, contents="Weather in Paris?", config=config)
    call = first.function_calls[0]
    assert call.name == "get_weather" and "city" in call.args
    history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
               first.candidates[0].content,
               types.Content(role="user", parts=[types.Part.from_function_response(
                   name="get_weather", response={"output": "18C, sunny"})])]
    second = sdk.models.generate_content(model=model, contents=history, config=config)
    assert second.text and not second.function_calls


def test_count_tokens_and_models(gemini):
    sdk = client(gemini)
    counted = sdk.models.count_tokens(model="gemini-2.5-flash", contents="hello " * 100)
    assert 100 <= counted.total_tokens <= 400
    # the mixed English, Chinese and code corpus of tests/routing/test_tokens.py: within 10% of the count of
    # Gemini's published (Gemma) tokenizer
    corpus = sdk.models.count_tokens(model="gemini-2.5-flash", contents="\n\n".join(CORPUS.values())).total_tokens
    reference = sum(counts[2] for counts in REFERENCE.values())
    assert abs(corpus - reference) <= TOLERANCE * reference, (corpus, reference)
    model = sdk.models.get(model="gemini-2.5-flash")
    assert model.name == "models/google/gemini-2.5-flash" and "generateContent" in model.supported_actions


def test_errors_come_in_gemini_shape(gemini):
    wrong, sdk = client(gemini, key="sk-tg-wrong-key-000000000000000000"), client(gemini)
    with pytest.raises(genai_errors.ClientError) as exc:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"
    with pytest.raises(genai_errors.ClientError) as exc:
        sdk.models.generate_content(model="no-such-model", contents="x")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"
