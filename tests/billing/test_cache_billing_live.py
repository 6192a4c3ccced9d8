"""Prompt caching and reasoning billed to the token, through a live gateway and the simulator: cache reads,
5-minute and 1-hour cache writes and reasoning tokens are recorded apart and priced once each at known
prices, on the OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) inbound formats; the answer's
`usage.cost` is exactly the ledger charge of the same request; /v1/generation shows every part."""
import uuid
from types import SimpleNamespace

import httpx
import orjson
import pytest

from billing.models import LedgerEntry, UsageRecord
from billing.services import usage_reconcile
from routing.catalog import bump_version
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.live

# Known prices, micro-units per million tokens: (input, output, cache read, 5-minute write, 1-hour write).
GPT = (2_000_000, 8_000_000, 500_000, 2_500_000, 4_000_000)          # typed by the operator
CLAUDE = (3_000_000, 15_000_000, 300_000, 3_750_000, 6_000_000)      # Anthropic's ratios of $3 input: 0.1x 1.25x 2x
GEMINI = (300_000, 2_500_000, 75_000, 300_000, 300_000)              # Google's: cached content 0.25x


def expected_cost(record, prices) -> int:
    """The cost by hand: every prompt token priced once by what it was, completion (reasoning included) at the
    output price, rounded half up."""
    inp, out, read, w5m, w1h = prices
    uncached = record.prompt_tokens - record.cached_tokens - record.cache_write_5m_tokens - record.cache_write_1h_tokens
    numerator = (uncached * inp + record.cached_tokens * read + record.cache_write_5m_tokens * w5m
                 + record.cache_write_1h_tokens * w1h + record.completion_tokens * out)
    return (numerator + 500_000) // 1_000_000


@pytest.fixture
def setup(transactional_db, gateway, simulator):
    gpt = factories.CatalogModelFactory(public_id="openai/gpt-5-mini", provider="openai", upstream_name="gpt-5-mini")
    factories.PriceFactory(model=gpt, input_per_m=GPT[0], output_per_m=GPT[1], cached_input_per_m=GPT[2],
                           cache_write_5m_per_m=GPT[3], cache_write_1h_per_m=GPT[4])
    claude = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", provider="anthropic",
                                           upstream_name="claude-sonnet-4-5")
    # Only input and output typed: the cache prices come from Anthropic's published ratios.
    factories.PriceFactory(model=claude, input_per_m=CLAUDE[0], output_per_m=CLAUDE[1], cached_input_per_m=None)
    factories.channel(models=[gpt], base_url=f"{simulator.url}/v1", name="openai")
    factories.channel(models=[claude], base_url=simulator.url, kind="anthropic", name="anthropic")
    gemini = factories.CatalogModelFactory(public_id="google/gemini-2.5-flash", provider="google",
                                           upstream_name="gemini-2.5-flash")
    factories.PriceFactory(model=gemini, input_per_m=GEMINI[0], output_per_m=GEMINI[1], cached_input_per_m=None)
    factories.channel(models=[gemini], base_url=simulator.url, kind="gemini", name="gemini")
    key, secret = factories.api_key()
    factories.credit(key.team)
    bump_version()
    return SimpleNamespace(url=gateway.url, secret=secret, team=key.team)


def chat(setup, body: dict) -> httpx.Response:
    return httpx.post(f"{setup.url}/v1/chat/completions", json=body, timeout=15,
                      headers={"Authorization": f"Bearer {setup.secret}"})


def messages(setup, body: dict) -> httpx.Response:
    return httpx.post(f"{setup.url}/v1/messages", json=body, timeout=15,
                      headers={"x-api-key": setup.secret, "anthropic-version": "2023-06-01"})


def sse_data(response: httpx.Response) -> list[dict]:
    return [orjson.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: {")]


def charged(setup, response: httpx.Response) -> tuple[UsageRecord, int]:
    """The request's usage record once flushed, and what the ledger charged for it (reconciled alone)."""
    request_id = response.headers["x-request-id"]
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first(), timeout=5)
    assert record is not None, "the usage record was not flushed"
    usage_reconcile()
    record.refresh_from_db()
    assert record.billed_at is not None
    entry = record.ledger_entry
    assert entry.kind == LedgerEntry.USAGE and list(entry.usage_records.all()) == [record]
    return record, -entry.amount


def cost_micro(cost: float) -> int:
    return round(cost * 1_000_000)


def long_text(label: str, words: int = 120) -> str:
    return f"{label} {uuid.uuid4().hex} " + " ".join(f"word{i}" for i in range(words))


# --- OpenAI inbound ----------------------------------------------------------------------------------------------
def test_openai_cache_read_and_reasoning_are_priced_once_and_usage_cost_is_the_ledger_charge(setup):
    body = {"model": "openai/gpt-5-mini", "messages": [
        {"role": "user", "content": long_text("[[sim:cached=64]] [[sim:reasoning=30]]")}]}
    response = chat(setup, body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 64
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 30
    record, charge = charged(setup, response)
    assert (record.prompt_tokens, record.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert (record.cached_tokens, record.reasoning_tokens) == (64, 30)
    assert record.cache_write_5m_tokens == record.cache_write_1h_tokens == 0 and not record.usage_clamped
    assert record.completion_tokens > 30            # the reasoning is inside the completion...
    assert record.cost == expected_cost(record, GPT) == charge == cost_micro(usage["cost"])
    # ...and billed once: adding it on top of the completion would have cost this much more.
    assert record.cost < expected_cost(record, GPT) + 30 * GPT[1] // 1_000_000

    generation = httpx.get(f"{setup.url}/v1/generation", params={"id": response.json()["id"]},
                           headers={"Authorization": f"Bearer {setup.secret}"}, timeout=5).json()["data"]
    assert (generation["tokens_cached"], generation["tokens_reasoning"]) == (64, 30)
    assert generation["tokens_cache_write_5m"] == generation["tokens_cache_write_1h"] == 0
    assert generation["total_cost_micro"] == charge


def test_openai_stream_final_usage_chunk_says_the_cost(setup):
    body = {"model": "openai/gpt-5-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": long_text("[[sim:cached=32]] [[sim:reasoning=12]]")}]}
    response = chat(setup, body)
    assert response.status_code == 200
    usage = [c for c in sse_data(response) if c.get("usage")][-1]["usage"]
    record, charge = charged(setup, response)
    assert (record.cached_tokens, record.reasoning_tokens, record.stream) == (32, 12, True)
    assert record.cost == expected_cost(record, GPT) == charge == cost_micro(usage["cost"])


def test_openai_content_parts_with_cache_control_write_5m_and_1h_then_read_on_anthropic(setup):
    """OpenRouter-style cache_control on OpenAI content parts reaches an Anthropic channel: the first call
    writes (1-hour and 5-minute stretches apart), the same prompt again reads."""
    system = [{"type": "text", "text": long_text("stable"), "cache_control": {"type": "ephemeral", "ttl": "1h"}},
              {"type": "text", "text": long_text("session"), "cache_control": {"type": "ephemeral"}}]
    body = {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]}
    first = chat(setup, body)
    assert first.status_code == 200, first.text
    record, charge = charged(setup, first)
    assert record.cache_write_1h_tokens > 0 and record.cache_write_5m_tokens > 0 and record.cached_tokens == 0
    details = first.json()["usage"]["prompt_tokens_details"]
    assert details["cache_write_tokens"] == record.cache_write_5m_tokens + record.cache_write_1h_tokens
    assert record.cost == expected_cost(record, CLAUDE) == charge == cost_micro(first.json()["usage"]["cost"])

    second = chat(setup, body)
    again, charge = charged(setup, second)
    assert again.cached_tokens == record.cache_write_1h_tokens + record.cache_write_5m_tokens
    assert again.cache_write_5m_tokens == again.cache_write_1h_tokens == 0
    assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == again.cached_tokens
    assert again.cost == expected_cost(again, CLAUDE) == charge == cost_micro(second.json()["usage"]["cost"])
    assert again.cost < record.cost    # a read costs a tenth of input, a write more than input


# --- Anthropic inbound -------------------------------------------------------------------------------------------
def cached_messages_body(**changes) -> dict:
    body = {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 200,
            "system": [{"type": "text", "text": long_text("rules"),
                        "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                       {"type": "text", "text": long_text("today"), "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hello"}]}
    body.update(changes)
    return body


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_bill_both_write_durations_then_the_read(setup, stream):
    body = cached_messages_body(stream=stream)
    first = messages(setup, body)
    assert first.status_code == 200, first.text
    record, charge = charged(setup, first)
    assert record.cache_write_1h_tokens > 0 and record.cache_write_5m_tokens > 0 and record.cached_tokens == 0
    assert record.cost == expected_cost(record, CLAUDE) == charge
    # the native answer (or its last message_delta) says what it cost: the ledger charge
    said = [e for e in sse_data(first) if e.get("type") == "message_delta"][-1]["usage"] if stream else \
        first.json()["usage"]
    assert cost_micro(said["cost"]) == charge
    if not stream:  # the native answer, as the provider counted it
        usage = first.json()["usage"]
        assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": record.cache_write_5m_tokens,
                                           "ephemeral_1h_input_tokens": record.cache_write_1h_tokens}
        assert record.prompt_tokens == (usage["input_tokens"] + usage["cache_creation_input_tokens"]
                                        + usage["cache_read_input_tokens"])

    second = messages(setup, body)
    again, charge = charged(setup, second)
    assert again.cached_tokens == record.cache_write_1h_tokens + record.cache_write_5m_tokens
    assert again.cache_write_5m_tokens == again.cache_write_1h_tokens == 0
    assert again.cost == expected_cost(again, CLAUDE) == charge

    generation = httpx.get(f"{setup.url}/v1/generation", params={"id": first.headers["x-request-id"]},
                           headers={"Authorization": f"Bearer {setup.secret}"}, timeout=5).json()["data"]
    assert (generation["tokens_cache_write_5m"], generation["tokens_cache_write_1h"]) == (
        record.cache_write_5m_tokens, record.cache_write_1h_tokens)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_translated_bill_reasoning_once_and_say_the_cost(setup, stream):
    """/v1/messages to an OpenAI channel: the cache read and reasoning the upstream reported are recorded, and
    the Anthropic-shaped usage (the answer's, or the stream's last message_delta) carries the ledger charge."""
    body = {"model": "openai/gpt-5-mini", "max_tokens": 300, "stream": stream,
            "messages": [{"role": "user", "content": long_text("[[sim:cached=48]] [[sim:reasoning=20]]")}]}
    response = messages(setup, body)
    assert response.status_code == 200, response.text
    if stream:
        usage = [e for e in sse_data(response) if e.get("type") == "message_delta"][-1]["usage"]
    else:
        usage = response.json()["usage"]
    record, charge = charged(setup, response)
    assert (record.cached_tokens, record.reasoning_tokens) == (48, 20)
    assert usage["cache_read_input_tokens"] == 48 and usage["output_tokens"] == record.completion_tokens
    assert record.cost == expected_cost(record, GPT) == charge == cost_micro(usage["cost"])


def test_gemini_cached_content_and_thoughts_are_billed_at_googles_ratio(setup):
    body = {"model": "google/gemini-2.5-flash", "stream_options": {"include_usage": True}, "stream": True,
            "messages": [{"role": "user", "content": long_text("[[sim:cached=56]] [[sim:reasoning=18]]")}]}
    response = chat(setup, body)
    assert response.status_code == 200, response.text
    usage = [c for c in sse_data(response) if c.get("usage")][-1]["usage"]
    record, charge = charged(setup, response)
    assert (record.cached_tokens, record.reasoning_tokens) == (56, 18) and record.completion_tokens > 18
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 18
    assert record.cost == expected_cost(record, GEMINI) == charge == cost_micro(usage["cost"])
