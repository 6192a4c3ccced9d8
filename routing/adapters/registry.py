"""Every provider the relay speaks: one line each. Channel kinds and their console labels come from here
(routing.models.Channel.KINDS), and so do the error codes the circuit breaker treats as the account's fault."""
from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.base import Adapter
from routing.adapters.gemini import GeminiAdapter
from routing.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {adapter.kind: adapter for adapter in (
    OpenAIAdapter(),
    AnthropicAdapter(),
    GeminiAdapter(),
)}
KINDS = [(kind, adapter.label) for kind, adapter in ADAPTERS.items()]
# Union over the providers (the breaker sees a status and a code, not the adapter that parsed them).
ACCOUNT_CODES = frozenset().union(*(a.account_codes for a in ADAPTERS.values()))
CHANNEL_CODES = ACCOUNT_CODES.union(*(a.channel_codes for a in ADAPTERS.values()))


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]
