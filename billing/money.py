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


SYMBOLS = {"USD": "$", "CNY": "¥", "EUR": "€", "GBP": "£"}


def format_money(micro: int, currency: str) -> str:
    """The one display format: exact (every micro-unit shown), at least cents, thousands separated, the
    currency's symbol: $1,234.56789, $7.50, -$0.000045, ¥2.00. Cards, tables, mails and error messages
    all use it (through `money_display` / the `money` template filter), so one figure reads the same."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{SYMBOLS.get(currency, '')}{whole:,}.{digits}"


def money_display(micro: int | None) -> str:
    """format_money in the deployment's currency; "" for None (no amount)."""
    if micro is None:
        return ""
    from django.conf import settings  # read at call time: the relay imports this module early

    return format_money(int(micro), settings.TOLLGATE_CURRENCY)


def money_plain(micro: int | None) -> str:
    """An amount as typed into a form (no symbol, no separators, no trailing zeros): 12.5, -3, 0.000001."""
    if micro is None:
        return ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"-{text}" if micro < 0 else text


class MoneyParseError(ValueError):
    """Why a typed amount was refused: `reason` is "format" (not a plain decimal) or "precision" (more
    decimals than micro-units)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


_PLAIN_DECIMAL = re.compile(r"^([+-]?)(\d+)(?:\.(\d*))?$|^([+-]?)\.(\d+)$", re.ASCII)


def parse_money(text: str) -> int:
    """A plain decimal typed by a person ("12.50", "-3", "0.000001") → integer micro-units, exactly. Refuses
    (MoneyParseError, a ValueError) exponents (1e3), NaN/Infinity, thousands separators and more decimals
    than micro-units. Signs are parsed; whether one is allowed is the caller's rule (billing.forms.MoneyField)."""
    match = _PLAIN_DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise MoneyParseError("format", f"not a plain decimal amount: {text!r}")
    sign, whole, frac = (match[1], match[2], match[3] or "") if match[2] is not None else (match[4], "0", match[5])
    if len(frac) > 6:
        raise MoneyParseError("precision", f"more than 6 decimals: {text!r}")
    micro = int(whole) * MICRO + int(frac.ljust(6, "0"))
    return -micro if sign == "-" else micro
