"""Pure translations of One API / New API values into Tollgate's (no database here).

Units (oneapi-schema.md §4): 500,000 quota = US$1 by default (`QuotaPerUnit`); ModelRatio 1 = $2 per million
input tokens; output = input × CompletionRatio. Tollgate keeps integer micro-units of the deployment currency."""
import ipaddress
import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from routing.models import Channel

DEFAULT_QUOTA_PER_UNIT = Decimal(500_000)
MICRO = Decimal(1_000_000)
USD_PER_M_PER_RATIO = Decimal(2)

# Channel type → (Tollgate channel kind, catalog provider, default base URL). Only providers Tollgate's
# adapters speak: OpenAI's wire format (and the many OpenAI-compatible services), Anthropic and Gemini.
_OPENAI_LIKE = {
    # shared numbers (§2): 1 OpenAI, 8 Custom, 20 OpenRouter, 25 Moonshot
    1: ("openai", "https://api.openai.com"), 8: ("openai", ""), 20: ("openrouter", "https://openrouter.ai/api"),
    25: ("moonshot", "https://api.moonshot.cn"), 31: ("lingyiwanwu", "https://api.lingyiwanwu.com"),
}
ONE_API_TYPES = {
    **{t: (Channel.OPENAI, *v) for t, v in _OPENAI_LIKE.items()},
    14: (Channel.ANTHROPIC, "anthropic", "https://api.anthropic.com"),
    24: (Channel.GEMINI, "google", "https://generativelanguage.googleapis.com"),
    28: (Channel.OPENAI, "mistral", "https://api.mistral.ai"),
    29: (Channel.OPENAI, "groq", "https://api.groq.com/openai"),
    36: (Channel.OPENAI, "deepseek", "https://api.deepseek.com"),
    39: (Channel.OPENAI, "together", "https://api.together.xyz"),
    44: (Channel.OPENAI, "siliconflow", "https://api.siliconflow.cn"),
    45: (Channel.OPENAI, "xai", "https://api.x.ai"),
    50: (Channel.OPENAI, "openai", ""),
}
NEW_API_TYPES = {
    **{t: (Channel.OPENAI, *v) for t, v in _OPENAI_LIKE.items()},
    14: (Channel.ANTHROPIC, "anthropic", "https://api.anthropic.com"),
    24: (Channel.GEMINI, "google", "https://generativelanguage.googleapis.com"),
    27: (Channel.OPENAI, "perplexity", "https://api.perplexity.ai"),
    40: (Channel.OPENAI, "siliconflow", "https://api.siliconflow.cn"),
    42: (Channel.OPENAI, "mistral", "https://api.mistral.ai"),
    43: (Channel.OPENAI, "deepseek", "https://api.deepseek.com"),
    48: (Channel.OPENAI, "xai", "https://api.x.ai"),
}
TYPE_NAMES = {  # for the report's "cannot map" lines; the number's meaning differs between the products
    "one-api": {0: "Unknown", 3: "Azure", 11: "PaLM", 15: "Baidu", 16: "Zhipu", 17: "Ali", 18: "Xunfei",
                23: "Tencent", 27: "Minimax", 30: "Ollama", 33: "AWS Claude", 34: "Coze", 35: "Cohere",
                37: "Cloudflare", 40: "Doubao", 42: "Vertex AI", 46: "Replicate"},
    "new-api": {0: "Unknown", 2: "Midjourney", 3: "Azure", 4: "Ollama", 11: "PaLM", 15: "Baidu", 16: "Zhipu",
                17: "Ali", 18: "Xunfei", 23: "Tencent", 33: "AWS", 34: "Cohere", 35: "MiniMax", 36: "Suno",
                37: "Dify", 39: "Cloudflare", 41: "Vertex AI", 45: "VolcEngine", 49: "Coze", 57: "Codex"},
}


class MappingError(ValueError):
    """A source value that cannot become a Tollgate one; the message is the report's reason."""


def channel_type(product: str, type_: int) -> tuple[str, str, str]:
    """(kind, provider, default base URL) of a channel type, or MappingError naming the type."""
    table = NEW_API_TYPES if product == "new-api" else ONE_API_TYPES
    if type_ in table:
        return table[type_]
    name = TYPE_NAMES.get(product, {}).get(type_, "unknown")
    raise MappingError(f"channel type {type_} ({name}) has no Tollgate provider (OpenAI-compatible, Anthropic "
                       f"and Gemini only)")


def base_url(kind: str, given: str | None, default: str) -> str:
    """One API keeps the host (it appends /v1/… itself); Tollgate's OpenAI-kind base URL includes /v1."""
    url = (given or "").strip().rstrip("/") or default
    if not url:
        raise MappingError("no base URL (a custom channel needs one)")
    if kind == Channel.OPENAI and not url.endswith("/v1"):
        url += "/v1"
    return url


def csv(value) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def json_object(value, what: str) -> dict:
    if value in (None, "", "{}"):
        return {}
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise MappingError(f"{what} is not JSON") from None
    if not isinstance(parsed, dict):
        raise MappingError(f"{what} is not a JSON object")
    return parsed


def channel_keys(row: dict) -> list[tuple[str, bool]]:
    """The upstream keys of a channel and whether each is enabled: New API multi-key channels hold one key a
    line or a JSON array, with per-key statuses in channel_info.multi_key_status_list ({"index": status})."""
    raw = str(row.get("key") or "").strip()
    info = json_object(row.get("channel_info"), "channel_info") if row.get("channel_info") else {}
    if not info.get("is_multi_key"):
        return [(raw, True)] if raw else []
    if raw.startswith("["):
        try:
            keys = [str(k).strip() for k in json.loads(raw)]
        except ValueError:
            raise MappingError("multi-key channel: its key is neither lines nor a JSON array") from None
    else:
        keys = [line.strip() for line in raw.splitlines()]
    statuses = info.get("multi_key_status_list") or {}
    return [(key, int(statuses.get(str(i), 1)) == 1) for i, key in enumerate(keys) if key]


def to_micro(quota, *, quota_per_unit: Decimal, usd_rate: Decimal) -> tuple[int, bool]:
    """Quota units → micro-units of the deployment currency, and whether rounding was needed (never with
    the default 500,000 quota per dollar and a whole-number rate: 1 quota = 2 micro-USD)."""
    exact = Decimal(int(quota)) * MICRO * usd_rate / quota_per_unit
    whole = exact.to_integral_value(rounding=ROUND_HALF_UP)
    return int(whole), whole != exact


def decimal(value, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise MappingError(f"{what} {value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise MappingError(f"{what} {value!r} is not a non-negative number")
    return number


def per_m(ratio: Decimal, usd_rate: Decimal) -> int:
    """A ratio → micro-units per million tokens (ratio 1 = $2 per million)."""
    return int((ratio * USD_PER_M_PER_RATIO * MICRO * usd_rate).to_integral_value(rounding=ROUND_HALF_UP))


def ratio_model_name(key: str) -> str:
    """One API ratio keys may be `model(type)`: the model is the part before the parenthesis."""
    return key.split("(", 1)[0].strip() if key.endswith(")") else key


def networks(value, *, lines: bool) -> list[str]:
    """A token's IP restriction (One API: comma-separated CIDRs; New API: one per line) as Tollgate's
    allowed_ips; a value that is no IP or network is refused rather than dropped (that would widen access)."""
    parts = [p.strip() for p in (str(value or "").splitlines() if lines else str(value or "").split(","))]
    out = []
    for part in filter(None, parts):
        try:
            out.append(str(ipaddress.ip_network(part, strict=False) if "/" in part else ipaddress.ip_address(part)))
        except ValueError:
            raise MappingError(f"allowed IP {part!r} is not an IP address or network") from None
    return out
