"""Money: integer micro-units (10⁻⁶ of the deployment currency). One rounding rule: half up, per record."""
import re

MICRO = 1_000_000


def token_cost(tokens: int, price_per_million: int) -> int:
    """Exact cost in micro-units of `tokens` at a per-million price, rounded half up."""
    return (tokens * price_per_million + MICRO // 2) // MICRO


def usage_cost(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int, price,
               multiplier_ppm: int = MICRO) -> int:
    """Cost of one request; cached prompt tokens are billed at the cached price, the whole at the team's /
    group's multiplier (parts per million). Rounded once, half up, per record."""
    uncached = max(prompt_tokens - cached_tokens, 0)
    numerator = (uncached * price.input_per_m + cached_tokens * price.cached_input_per_m
                 + completion_tokens * price.output_per_m + price.request_fee * MICRO) * multiplier_ppm
    denominator = MICRO * MICRO
    return (numerator + denominator // 2) // denominator


def combined_multiplier(*multipliers_ppm: int | None) -> int:
    """Team × group multipliers, each in parts per million (None = 1)."""
    result = MICRO
    for m in multipliers_ppm:
        if m is not None:
            result = result * m // MICRO
    return result


def format_money(micro: int, currency: str) -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    symbol = {"USD": "$", "CNY": "¥"}.get(currency, "")
    return f"{sign}{symbol}{whole:,}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{sign}{symbol}{whole:,}.00"


_PLAIN_DECIMAL = re.compile(r"^([+-]?)(\d+)(?:\.(\d*))?$|^([+-]?)\.(\d+)$", re.ASCII)


def parse_money(text: str) -> int:
    """A plain decimal typed by a person ("12.50", "-3", "0.000001") → integer micro-units, exactly. Refuses
    (ValueError) exponents (1e3), NaN/Infinity, thousands separators and more decimals than micro-units."""
    match = _PLAIN_DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a plain decimal amount: {text!r}")
    sign, whole, frac = (match[1], match[2], match[3] or "") if match[2] is not None else (match[4], "0", match[5])
    if len(frac) > 6:
        raise ValueError(f"more than 6 decimals: {text!r}")
    micro = int(whole) * MICRO + int(frac.ljust(6, "0"))
    return -micro if sign == "-" else micro
