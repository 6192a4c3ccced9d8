"""Money: integer micro-units (10⁻⁶ of the deployment currency). One rounding rule: half up, per record."""
import re

MICRO = 1_000_000


def token_cost(tokens: int, price_per_million: int) -> int:
    """Exact cost in micro-units of `tokens` at a per-million price, rounded half up."""
    return (tokens * price_per_million + MICRO // 2) // MICRO


def prompt_parts(prompt_tokens: int, cache_read: int, cache_write_5m: int = 0,
                 cache_write_1h: int = 0) -> tuple[int, int, int, int]:
    """prompt_tokens (everything the model read) split into (uncached input, cache reads, 5-minute writes,
    1-hour writes) that add up to it: a part the upstream reported larger than what is left of the prompt is
    cut to it, so no token is priced twice."""
    read = min(max(cache_read, 0), prompt_tokens)
    w5m = min(max(cache_write_5m, 0), prompt_tokens - read)
    w1h = min(max(cache_write_1h, 0), prompt_tokens - read - w5m)
    return prompt_tokens - read - w5m - w1h, read, w5m, w1h


def usage_cost(*, prompt_tokens: int, completion_tokens: int, cached_tokens: int, price,
               multiplier_ppm: int = MICRO, cache_write_5m_tokens: int = 0, cache_write_1h_tokens: int = 0) -> int:
    """Cost of one request. Each prompt token is priced once, by what it was: a cache read at the cached
    price, a cache write at its duration's write price, the rest at the input price. Reasoning tokens are
    part of completion_tokens (every provider counts them in its output) and so are billed with them, once,
    at the output price. The whole at the team's / group's multiplier (parts per million); rounded once,
    half up, per record."""
    uncached, read, w5m, w1h = prompt_parts(max(prompt_tokens, 0), cached_tokens, cache_write_5m_tokens,
                                            cache_write_1h_tokens)
    write_5m = getattr(price, "cache_write_5m_per_m", None)
    write_1h = getattr(price, "cache_write_1h_per_m", None)
    numerator = (uncached * price.input_per_m + read * price.cached_input_per_m
                 + w5m * (price.input_per_m if write_5m is None else write_5m)
                 + w1h * (price.input_per_m if write_1h is None else write_1h)
                 + max(completion_tokens, 0) * price.output_per_m + price.request_fee * MICRO) * multiplier_ppm
    denominator = MICRO * MICRO
    return (numerator + denominator // 2) // denominator


# The providers' published prompt-cache prices as parts per million of the input price: (cache read, 5-minute
# write, 1-hour write). Anthropic: reads 0.1x, 5-minute writes 1.25x, 1-hour writes 2x. OpenAI: cached input
# 0.5x (gpt-4o, o1, o3-mini), 0.25x (gpt-4.1, o3, o4-mini), 0.1x (gpt-5); writes cost plain input. Google
# Gemini: cached content 0.25x. DeepSeek: cache hits 0.1x. Others: reads 0.5x, writes plain input.
CACHE_PRICE_FIELDS = ("cached_input_per_m", "cache_write_5m_per_m", "cache_write_1h_per_m")
_CACHE_RATIOS = {
    "anthropic": (100_000, 1_250_000, 2_000_000),
    "google": (250_000, MICRO, MICRO),
    "gemini": (250_000, MICRO, MICRO),
    "deepseek": (100_000, MICRO, MICRO),
}
_OPENAI_READ = (("gpt-5", 100_000), ("gpt-4.1", 250_000), ("o3-mini", 500_000), ("o3", 250_000),
                ("o4", 250_000))
_DEFAULT_RATIOS = (500_000, MICRO, MICRO)


def cache_price_ratios(provider: str, model_name: str = "") -> tuple[int, int, int]:
    """(cache read, 5-minute write, 1-hour write) in parts per million of the input price, as the provider
    publishes them for this model."""
    provider = (provider or "").lower()
    if provider in _CACHE_RATIOS:
        return _CACHE_RATIOS[provider]
    if provider == "openai":
        name = (model_name or "").lower().rsplit("/", 1)[-1]
        read = next((ppm for prefix, ppm in _OPENAI_READ if name.startswith(prefix)), _DEFAULT_RATIOS[0])
        return read, MICRO, MICRO
    return _DEFAULT_RATIOS


def cache_price_defaults(provider: str, model_name: str, input_per_m: int) -> tuple[int, int, int]:
    """The cache prices (per million tokens, micro-units) a price gets when they are left unset."""
    return tuple((input_per_m * ratio + MICRO // 2) // MICRO for ratio in cache_price_ratios(provider, model_name))


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


def amount(micro: int | None) -> float | None:
    """Micro-units as a number of the currency, for JSON answers (`usage.cost`, /generation, /key); None stays."""
    return None if micro is None else micro / MICRO


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
