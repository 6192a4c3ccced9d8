from billing.money import MICRO, format_money, token_cost, usage_cost
from routing.relay.snapshot import PriceEntry

PRICE = PriceEntry(input_per_m=150_000, output_per_m=600_000, cached_input_per_m=75_000, request_fee=0)


def test_token_cost_rounds_half_up_once():
    assert token_cost(1, 150_000) == 0           # 0.15 micro → 0
    assert token_cost(10, 150_000) == 2          # 1.5 micro → 2 (half up)
    assert token_cost(1_000_000, 150_000) == 150_000


def test_usage_cost_bills_cached_tokens_at_cached_price_and_rounds_per_record():
    # 1000 prompt of which 400 cached, 500 completion:
    # 600 × 0.15 + 400 × 0.075 + 500 × 0.6 = 90 + 30 + 300 = 420 micro-units
    assert usage_cost(prompt_tokens=1000, completion_tokens=500, cached_tokens=400, price=PRICE) == 420
    # Rounding happens once on the sum, not per component: 3 × 0.15 + 1 × 0.6 = 1.05 → 1
    assert usage_cost(prompt_tokens=3, completion_tokens=1, cached_tokens=0, price=PRICE) == 1


def test_request_fee_is_added():
    price = PriceEntry(0, 0, 0, request_fee=5_000)
    assert usage_cost(prompt_tokens=10, completion_tokens=10, cached_tokens=0, price=price) == 5_000


def test_format_money():
    assert format_money(1_234_567_890, "USD") == "$1,234.56789"
    assert format_money(2 * MICRO, "CNY") == "¥2.00"
    assert format_money(-1, "USD") == "-$0.000001"


def test_team_and_group_multipliers_round_once():
    from billing.money import combined_multiplier

    # 80% team discount × 150% group markup = 1.2; 1000 prompt + 500 completion at 0.15/0.6 = 450 → 540.
    m = combined_multiplier(800_000, 1_500_000)
    assert m == 1_200_000
    assert usage_cost(prompt_tokens=1000, completion_tokens=500, cached_tokens=0, price=PRICE, multiplier_ppm=m) == 540
    # Rounded once on the whole: 3 × 0.15 × 1.2 + 1 × 0.6 × 1.2 = 1.26 → 1 (not 1 + 1).
    assert usage_cost(prompt_tokens=3, completion_tokens=1, cached_tokens=0, price=PRICE, multiplier_ppm=m) == 1
    assert combined_multiplier(None, None) == 1_000_000
