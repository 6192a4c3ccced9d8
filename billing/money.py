"""Money: integer micro-units (10⁻⁶ of the deployment currency). One rounding rule: half up, per record."""

MICRO = 1_000_000


def token_cost(tokens: int, price_per_million: int) -> int:
    """Exact cost in micro-units of `tokens` at a per-million price, rounded half up."""
    return (tokens * price_per_million + MICRO // 2) // MICRO


def usage_cost(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int, price) -> int:
    """Cost of one request; cached prompt tokens are billed at the cached price. Rounded once, per record."""
    uncached = max(prompt_tokens - cached_tokens, 0)
    numerator = (uncached * price.input_per_m + cached_tokens * price.cached_input_per_m
                 + completion_tokens * price.output_per_m)
    return (numerator + MICRO // 2) // MICRO + price.request_fee


def format_money(micro: int, currency: str) -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    symbol = {"USD": "$", "CNY": "¥"}.get(currency, "")
    return f"{sign}{symbol}{whole:,}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{sign}{symbol}{whole:,}.00"
