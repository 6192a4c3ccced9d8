"""An app written for OpenRouter, run unchanged against a live Tollgate: its client wrapper uses the `openai` SDK
with OpenRouter's base URL shape (`…/api/v1`) and only the base URL and key changed. Every call succeeds or
fails exactly as the wrapper expects: fallback lists, provider preferences, model suffixes, a tools loop, image
input, structured output (healed), streaming with usage, the SDK's own retries on 429/502/503, the balance
(`GET /key`) and generation look-ups."""
import json

import openai
import pytest

from tests import factories
from tests.conftest import wait_for, wait_for_config

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
         "AAAABJRU5ErkJggg==")


class OpenRouterApp:
    """The wrapper such an app has (as written for https://openrouter.ai/api/v1): app attribution headers, the
    SDK's retries, OpenRouter's extras in `extra_body`, raw responses where headers matter."""

    def __init__(self, base_url: str, api_key: str, *, retries: int = 2):
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=retries, timeout=30,
                                    default_headers={"HTTP-Referer": "https://wrapper.example/app",
                                                     "X-Title": "Wrapper test app"})

    def complete(self, messages, *, model, fallbacks=None, provider=None, plugins=None, **params):
        extra = {k: v for k, v in (("models", fallbacks), ("provider", provider), ("plugins", plugins)) if v}
        return self.client.chat.completions.with_raw_response.create(
            model=model, messages=messages, extra_body=extra or None, **params)

    def ask(self, prompt: str, **kwargs) -> openai.types.chat.ChatCompletion:
        return self.complete([{"role": "user", "content": prompt}], **kwargs).parse()

    def stream(self, prompt: str, *, model, provider=None):
        """(text, usage, chunk count) of a streamed answer, usage asked for as OpenRouter apps do."""
        text, usage, chunks = [], None, 0
        with self.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True,
                stream_options={"include_usage": True}, extra_body={"provider": provider} if provider else None,
        ) as stream:
            for chunk in stream:
                chunks += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
        return "".join(text), usage, chunks

    def run_tools(self, prompt: str, tools: dict, *, model, max_turns: int = 4):
        """The usual agent loop: call the tools the model asks for until it answers in text."""
        specs = [{"type": "function", "function": {"name": name, "description": f"the {name} tool",
                                                    "parameters": schema}} for name, (schema, _) in tools.items()]
        messages, called = [{"role": "user", "content": prompt}], []
        for _ in range(max_turns):
            completion = self.client.chat.completions.create(model=model, messages=messages, tools=specs)
            message = completion.choices[0].message
            if not message.tool_calls:
                return completion, called
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                handler = tools[call.function.name][1]
                called.append(call.function.name)
                result = handler(**json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        raise AssertionError("the model kept calling tools")

    def structured(self, prompt: str, schema: dict, *, model, heal: bool = False):
        raw = self.complete([{"role": "user", "content": prompt}], model=model,
                            plugins=[{"id": "response-healing"}] if heal else None,
                            response_format={"type": "json_schema",
                                             "json_schema": {"name": "answer", "strict": True, "schema": schema}})
        return json.loads(raw.parse().choices[0].message.content), raw

    def balance(self) -> dict:
        return self.client.get("/key", cast_to=object)["data"]

    def generation(self, generation_id: str) -> dict:
        return self.client.get("/generation", cast_to=object, options={"params": {"id": generation_id}})["data"]


@pytest.fixture
def app(live, simulator):
    """The live model on the platform's OpenAI channel and the team's own Azure one (no data retention, ZDR);
    "test/primary" and "test/backup" for fallback lists; "test/flaky" alone on its channel, for retries."""
    sim = f"{simulator.url}/v1"
    factories.channel(models=[live.model], base_url=sim, team=live.team, name="azure", api_key="sk-sim-azure",
                      provider_name="Azure", data_collection="deny", zdr=True, quantization="fp16")
    for name in ("primary", "backup", "flaky"):
        model = factories.CatalogModelFactory(public_id=f"test/{name}", upstream_name="gpt-4o-mini",
                                              supports_vision=True)
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=sim, api_key=f"sk-sim-{name}", name=name)
    wait_for_config(live.server)   # the gateway serves these channels (a call before that is a 404, raised)
    client = OpenRouterApp(live.server.url + "/api/v1", live.secret)
    assert client.complete([{"role": "user", "content": "hi"}], model="test/flaky").status_code == 200
    return client


def route_of(raw) -> str:
    return raw.headers["x-tollgate-route"]


def test_fallback_list_serves_from_the_backup(app, sim_faults):
    sim_faults("sk-sim-primary", "status:500")
    raw = app.complete([{"role": "user", "content": "hello"}], model="test/primary", fallbacks=["test/backup"])
    completion = raw.parse()
    assert completion.model == "test/backup" and completion.choices[0].message.content
    assert completion.id.startswith("gen-") and "test/primary via platform channel #" in route_of(raw)


def test_provider_preferences(app):
    raw = app.complete([{"role": "user", "content": "private"}], model="openai/gpt-4o-mini",
                       provider={"data_collection": "deny", "zdr": True})
    assert raw.parse().choices[0].message.content and "channel=azure" in route_of(raw)
    raw = app.complete([{"role": "user", "content": "hi"}], model="openai/gpt-4o-mini",
                       provider={"order": ["OpenAI"], "allow_fallbacks": False, "sort": "latency"})
    assert "channel=platform" in route_of(raw)
    with pytest.raises(openai.BadRequestError) as bad:   # a 400 is not retried
        app.ask("hi", model="openai/gpt-4o-mini", provider={"sort": "cheapest"})
    assert bad.value.body["metadata"]["param"] == "provider.sort"
    with pytest.raises(openai.InternalServerError) as unmet:   # 503: nothing meets the requirements
        app.ask("hi", model="openai/gpt-4o-mini", provider={"only": ["Groq"]})
    assert unmet.value.status_code == 503 and unmet.value.body["code"] == 503
    assert "provider 'Azure' not in provider.only" in unmet.value.body["message"]


def test_model_suffixes(app):
    assert app.ask("hi", model="openai/gpt-4o-mini:floor").model == "openai/gpt-4o-mini"
    assert app.ask("hi", model="gpt-4o-mini:nitro").model == "openai/gpt-4o-mini"
    with pytest.raises(openai.BadRequestError) as online:
        app.ask("news today?", model="openai/gpt-4o-mini:online")
    assert online.value.body["code"] == 400 and "`web`" in online.value.body["message"]
    assert online.value.body["metadata"]["error_code"] == "unsupported_plugin"


def test_tools_loop(app):
    seen = {}

    def weather(city: str):
        seen["city"] = city
        return {"city": city, "forecast": "sunny", "celsius": 21}

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    final, called = app.run_tools("What is the weather in Lisbon? Use the tool.", {"weather": (schema, weather)},
                                  model="openai/gpt-4o-mini")
    assert called == ["weather"] and isinstance(seen["city"], str)
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content


def test_image_input(app):
    raw = app.complete([{"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                                     {"type": "image_url", "image_url": {"url": PIXEL}}]}],
                       model="openai/gpt-4o-mini")
    completion = raw.parse()
    assert completion.choices[0].message.content and completion.usage.prompt_tokens > 10


def test_structured_output_and_healing(app):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    answer, _ = app.structured("Invent a person.", schema, model="openai/gpt-4o-mini")
    assert isinstance(answer["name"], str) and isinstance(answer["age"], int)
    healed, raw = app.structured("Invent a person. [[sim:fault=broken_json]]", schema, model="openai/gpt-4o-mini",
                                 heal=True)
    assert isinstance(healed["name"], str) and isinstance(healed["age"], int)
    assert raw.headers.get("x-tollgate-healing")


def test_streaming_with_usage_and_cost(app):
    text, usage, chunks = app.stream("Tell me a story", model="openai/gpt-4o-mini", provider={"ignore": ["Azure"]})
    assert text and chunks > 2
    assert usage.completion_tokens > 0 and usage.model_extra["cost"] > 0   # the platform's channel: priced
    text, usage, _ = app.stream("Tell me a story", model="openai/gpt-4o-mini", provider={"zdr": True})
    assert text and usage.model_extra["cost"] == 0    # the team's own Azure key: no BYOK fee configured


@pytest.mark.parametrize("status", [429, 502, 503])
def test_sdk_retries_a_passing_upstream_failure(app, sim_faults, status):
    sim_faults("sk-sim-flaky", f"status:{status}", count=1)
    raw = app.complete([{"role": "user", "content": "hello"}], model="test/flaky")
    assert raw.status_code == 200 and raw.retries_taken == 1 and raw.parse().choices[0].message.content
    no_retry = OpenRouterApp(app.client.base_url, app.client.api_key, retries=0)
    sim_faults("sk-sim-flaky", f"status:{status}", count=1)
    with pytest.raises(openai.APIStatusError) as failed:
        no_retry.ask("hello", model="test/flaky")
    assert failed.value.status_code == (429 if status == 429 else 502)
    assert failed.value.body["code"] == failed.value.status_code


def test_balance_and_generation_lookups(app):
    before = app.balance()
    assert before["limit"] is None or before["limit_remaining"] is not None
    raw = app.complete([{"role": "user", "content": "what does this cost?"}], model="openai/gpt-4o-mini")
    completion = raw.parse()
    generation = app.generation(raw.headers.get("x-generation-id") or completion.id)   # right after the answer
    assert generation["model"] == "openai/gpt-4o-mini" and generation["tokens_completion"] > 0
    assert generation["total_cost"] == pytest.approx(completion.usage.model_extra["cost"])
    assert generation["finish_reason"] == "stop" and generation["streamed"] is False
    assert app.generation(completion.id)["id"] == generation["id"]
    wait_for(lambda: app.balance()["usage"] > before["usage"])
    assert app.balance()["usage"] > before["usage"]
