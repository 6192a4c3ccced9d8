"""Cache prices and token parts: each part priced once, the providers' published ratios as defaults, and
upstream counts clamped into sane bounds before billing (issue 11)."""
import pytest

from billing.money import cache_price_defaults, cache_price_ratios, prompt_parts, usage_cost
from routing.adapters.base import Usage
from routing.relay.pipeline import sane_counts
from routing.relay.snapshot import PriceEntry
from tests import factories

# $1 input, $4 output, $0.10 read, $1.25 5-minute write, $2 1-hour write (per million tokens).
PRICE = PriceEntry(1_000_000, 4_000_000, 100_000, 0, 1_250_000, 2_000_000)


def test_each_prompt_part_is_priced_once_at_its_own_price():
    # 10,000 prompt tokens = 1,000 uncached + 5,000 read + 3,000 5-minute writes + 1,000 1-hour writes
    cost = usage_cost(prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=5_000, price=PRICE,
                      cache_write_5m_tokens=3_000, cache_write_1h_tokens=1_000)
    # 1,000 × 1 + 5,000 × 0.1 + 3,000 × 1.25 + 1,000 × 2 + 2,000 × 4 = 1,000 + 500 + 3,750 + 2,000 + 8,000
    assert cost == 15_250


def test_reasoning_is_inside_the_completion_and_billed_once():
    plain = usage_cost(prompt_tokens=100, completion_tokens=1_000, cached_tokens=0, price=PRICE)
    assert plain == 100 + 4_000   # 800 of the 1,000 being reasoning changes nothing: usage_cost never adds it
    assert sane_counts(Usage(100, 1_000, reasoning_tokens=800)).reasoning == 800


def test_parts_larger_than_the_prompt_are_cut_so_no_token_is_priced_twice():
    assert prompt_parts(100, 80, 50, 50) == (0, 80, 20, 0)
    assert prompt_parts(100, -5, 10, 0) == (90, 0, 10, 0)
    assert usage_cost(prompt_tokens=100, completion_tokens=0, cached_tokens=80, price=PRICE,
                      cache_write_5m_tokens=50, cache_write_1h_tokens=50) == (80 * 100_000 + 20 * 1_250_000) // 10**6


def test_a_price_without_write_prices_bills_writes_as_input():
    old = PriceEntry(1_000_000, 4_000_000, 100_000, 0)
    assert usage_cost(prompt_tokens=1_000, completion_tokens=0, cached_tokens=0, price=old,
                      cache_write_5m_tokens=600, cache_write_1h_tokens=400) == 1_000


@pytest.mark.parametrize(("provider", "model", "ratios"), [
    ("anthropic", "claude-sonnet-4-5", (100_000, 1_250_000, 2_000_000)),   # 0.1x read, 1.25x 5m, 2x 1h
    ("openai", "gpt-4o-mini", (500_000, 1_000_000, 1_000_000)),          # 0.5x, writes cost plain input
    ("openai", "o3-mini", (500_000, 1_000_000, 1_000_000)),
    ("openai", "gpt-4.1", (250_000, 1_000_000, 1_000_000)),
    ("openai", "o4-mini", (250_000, 1_000_000, 1_000_000)),
    ("openai", "gpt-5-mini", (100_000, 1_000_000, 1_000_000)),
    ("openai", "openai/gpt-5.1", (100_000, 1_000_000, 1_000_000)),
    ("google", "gemini-2.5-flash", (250_000, 1_000_000, 1_000_000)),
    ("deepseek", "deepseek-chat", (100_000, 1_000_000, 1_000_000)),
    ("mistral", "mistral-large", (500_000, 1_000_000, 1_000_000)),
])
def test_published_cache_ratios(provider, model, ratios):
    assert cache_price_ratios(provider, model) == ratios


def test_default_cache_prices_round_half_up():
    assert cache_price_defaults("anthropic", "claude-haiku-4-5", 1_000_001) == (100_000, 1_250_001, 2_000_002)
    assert cache_price_defaults("anthropic", "claude", 5) == (1, 6, 10)   # 0.5 → 1, 6.25 → 6


@pytest.mark.django_db
def test_a_price_typed_with_input_and_output_gets_the_providers_cache_prices():
    claude = factories.CatalogModelFactory(provider="anthropic", upstream_name="claude-opus-4-5")
    price = factories.PriceFactory(model=claude, input_per_m=5_000_000, output_per_m=25_000_000,
                                   cached_input_per_m=None)
    price.refresh_from_db()
    assert (price.cached_input_per_m, price.cache_write_5m_per_m, price.cache_write_1h_per_m) == (
        500_000, 6_250_000, 10_000_000)
    typed = factories.PriceFactory(model=claude, input_per_m=5_000_000, output_per_m=25_000_000,
                                   cached_input_per_m=1, cache_write_5m_per_m=2, cache_write_1h_per_m=3)
    typed.refresh_from_db()
    assert (typed.cached_input_per_m, typed.cache_write_5m_per_m, typed.cache_write_1h_per_m) == (1, 2, 3)


class _Model:
    context_length, max_output_tokens = 1_000, 100


@pytest.mark.parametrize(("usage", "expected"), [
    (Usage(500, 50, 100, 20, 50, 25), (500, 50, 100, 50, 25, 20, False)),
    (Usage(-3, 50), (0, 50, 0, 0, 0, 0, True)),                            # negative: never a credit
    (Usage(3_000_000_000, 50), (11_000, 50, 0, 0, 0, 0, True)),            # > 10x (context + output)
    (Usage(100, 50, cached_tokens=400), (100, 50, 100, 0, 0, 0, True)),    # a part larger than its whole
    (Usage(100, 50, reasoning_tokens=60), (100, 50, 0, 0, 0, 50, True)),   # reasoning beyond the completion
    (Usage(100.0, "x"), (100, 0, 0, 0, 0, 0, True)),                       # not a number
])
def test_upstream_counts_are_clamped_and_flagged(usage, expected):
    assert tuple(sane_counts(usage, _Model())) == expected
