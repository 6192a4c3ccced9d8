"""A realistic OpenRouter client wrapper, written against the `openai` SDK as for openrouter.ai with only the
base URL and the key changed, run against a live Tollgate (issue 12's "must show"): fallback list, provider
preferences, suffixes, a tools loop, image input, structured output with healing, streaming, its own retry on
429/502/503 (Retry-After honoured), balance and generation look-ups. Every call succeeds or fails exactly as
the wrapper expects."""
import json
import time

import httpx
import openai
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from tests import factories
from tests.conftest import wait_for

RETRIED = (429, 502, 503)


class OpenRouterClient:
    """What an app built for OpenRouter carries: app headers, OpenRouter's extras in extra_body, a retry loop
    on 429/502/503 that waits Retry-After, and the /credits and /generation look-ups."""

    def __init__(self, base_url: str, api_key: str, *, attempts: int = 3):
        self.sdk = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                 default_headers={"HTTP-Referer": "https://wrapper.example", "X-Title": "Wrapper"})
        self.attempts = attempts
        self.retries: list[int] = []   # the statuses it retried on

    def _with_retry(self, send):
        for attempt in range(self.attempts):
            try:
                return send()
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRIED or attempt == self.attempts - 1:
                    raise
                self.retries.append(exc.status_code)
                time.sleep(min(float(exc.response.headers.get("retry-after") or 0.2), 2))
        raise AssertionError("unreachable")

    def chat(self, model: str, messages: list, *, models=None, provider=None, plugins=None, **kwargs):
        extra = {k: v for k, v in (("models", models), ("provider", provider), ("plugins", plugins)) if v}
        return self._with_retry(lambda: self.sdk.chat.completions.create(
            model=model, messages=messages, extra_body=extra or None, **kwargs))

    def stream_text(self, model: str, messages: list) -> tuple[str, object, str]:
        def send():
            with self.sdk.chat.completions.with_streaming_response.create(
                    model=model, messages=messages, stream=True, stream_options={"include_usage": True}) as resp:
                chunks = list(resp.parse())
            return chunks
        chunks = self._with_retry(send)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].usage, chunks[-1].id

    def credits(self) -> dict:
        return self.sdk.get("/credits", cast_to=object)["data"]

    def generation(self, generation_id: str) -> dict:
        return self.sdk.get("/generation", cast_to=object, options={"params": {"id": generation_id}})["data"]


@pytest.fixture
def sim_faults(simulator):
    def script(key, fault, count=None):
        httpx.post(f"{simulator.url}/_sim/faults", json={"key": key, "fault": fault, "count": count}).raise_for_status()
    yield script
    httpx.delete(f"{simulator.url}/_sim/faults")


@pytest.fixture
def wrapper(live, sim_faults):
    """The live team, plus a model whose only channel fails (502) and a backup model, both priced."""
    down = factories.CatalogModelFactory(public_id="test/wrapper-down", upstream_name="gpt-4o-mini")
    backup = factories.CatalogModelFactory(public_id="test/wrapper-backup", upstream_name="gpt-4o-mini",
                                           supports_vision=True)
    for model in (down, backup):
        factories.PriceFactory(model=model)
        factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", api_key=f"sk-sim-{model.public_id}",
                          name=model.public_id)
    sim_faults("sk-sim-test/wrapper-down", "status:502")
    bump_version()
    client = OpenRouterClient(live.server.url + "/api/v1", live.secret)
    assert wait_for(lambda: "test/wrapper-backup" in [m.id for m in client.sdk.models.list().data])
    return client


def retried_id(completion) -> str:
    return "req_" + completion.id.removeprefix("gen-")


USER = [{"role": "user", "content": "[[sim:tokens=6]] hello"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_the_wrapper_against_a_live_tollgate(live, wrapper, sim_faults):
    before = wrapper.credits()

    # A fallback list: the first model's channel is down, the next serves; the bill names it.
    served = wrapper.chat("test/wrapper-down", USER, models=["test/wrapper-backup"])
    assert served.model == "test/wrapper-backup" and served.choices[0].message.content
    assert wrapper.generation(served.id)["model"] == "test/wrapper-backup"

    # Provider preferences: an order it can meet serves; a provider no channel is excluded (503, not retried
    # forever: the wrapper gives up after its attempts).
    ordered = wrapper.chat("openai/gpt-4o-mini", USER, provider={"order": ["OpenAI"], "allow_fallbacks": False})
    assert ordered.choices[0].finish_reason == "stop"
    with pytest.raises(openai.InternalServerError) as unmet:
        wrapper.chat("openai/gpt-4o-mini", USER, provider={"only": ["Azure"]})
    assert unmet.value.status_code == 503 and unmet.value.response.json()["error"]["code"] == 503
    assert wrapper.retries[-2:] == [503, 503]

    # Suffixes: :floor and :nitro serve the model; :online is a 400 naming the plugin (never retried).
    assert wrapper.chat("openai/gpt-4o-mini:floor", USER).model == "openai/gpt-4o-mini"
    assert wrapper.chat("openai/gpt-4o-mini:nitro", USER).model == "openai/gpt-4o-mini"
    with pytest.raises(openai.BadRequestError) as online:
        wrapper.chat("openai/gpt-4o-mini:online", USER)
    assert online.value.response.json()["error"]["code"] == 400 and "web" in online.value.message

    # A tools loop: the model calls the tool, the wrapper answers it, the model replies in text.
    messages = [{"role": "user", "content": "weather in Paris?"}]
    first = wrapper.chat("openai/gpt-4o-mini", messages, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})}]
    second = wrapper.chat("openai/gpt-4o-mini", messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content

    # Image input to a vision model.
    image = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    seen = wrapper.chat("openai/gpt-4o-mini", [{"role": "user", "content": image}])
    assert seen.choices[0].message.content

    # Structured output: a broken JSON reply is healed by the response-healing plugin.
    healed = wrapper.chat("openai/gpt-4o-mini", [{"role": "user", "content": "json please [[sim:fault=broken_json]]"}],
                          plugins=[{"id": "response-healing"}], response_format={"type": "json_object"})
    assert isinstance(json.loads(healed.choices[0].message.content), dict)

    # Streaming, with usage and its cost; the generation answers the moment the stream ended.
    text, usage, generation_id = wrapper.stream_text("openai/gpt-4o-mini", USER)
    assert text and usage.completion_tokens == 6
    assert wrapper.generation(generation_id)["total_cost"] == usage.model_extra["cost"]

    # Retry: one upstream 429 (Retry-After: 1), then the call goes through.
    sim_faults("sk-sim-test-channel", "status:429", count=1)
    retried = wrapper.chat("openai/gpt-4o-mini", USER)
    assert retried.choices[0].message.content and wrapper.retries[-1] == 429

    # The usage went up by what the calls cost, as soon as their records are written (before reconciliation).
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=retried_id(retried)).first())
    spent = sum(UsageRecord.objects.filter(team=live.team).values_list("cost", flat=True))
    assert record.cost > 0
    after = wait_for(lambda: (now := wrapper.credits())["total_usage"] == before["total_usage"] + spent / 1e6 and now)
    assert after and after["total_credits"] == before["total_credits"]
    assert wrapper.generation(retried.id)["app_title"] == "Wrapper"
