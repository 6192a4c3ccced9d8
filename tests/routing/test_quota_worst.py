"""The hold covers the dearest way a prompt can be billed: a prompt written to Anthropic's 1-hour cache costs
2x input, so the hold is at least that (and never below plain input when writes are cheaper)."""
from billing.money import MICRO
from routing.relay.quota import _worst_cost
from routing.relay.snapshot import PriceEntry

USD = MICRO   # micro-units per unit of currency


def test_worst_case_prices_the_prompt_at_its_dearest():
    anthropic = PriceEntry(input_per_m=3 * USD, output_per_m=15 * USD, cached_input_per_m=USD * 3 // 10,
                           request_fee=0, cache_write_5m_per_m=USD * 375 // 100, cache_write_1h_per_m=6 * USD)
    # 1M prompt tokens all written for an hour (6) + 1M output tokens (15)
    assert _worst_cost(anthropic, 1_000_000, 1_000_000, MICRO) == 21 * USD
    cheap_writes = PriceEntry(input_per_m=2 * USD, output_per_m=8 * USD, cached_input_per_m=USD // 2,
                              request_fee=0, cache_write_5m_per_m=USD, cache_write_1h_per_m=USD)
    assert _worst_cost(cheap_writes, 1_000_000, 0, MICRO) == 2 * USD   # plain input is the dearest here
    assert _worst_cost(cheap_writes, 1_000_000, 0, 2 * MICRO) == 4 * USD   # at the team's multiplier
