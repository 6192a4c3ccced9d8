from routing.adapters.base import Adapter
from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.gemini import GeminiAdapter
from routing.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {
    OpenAIAdapter.kind: OpenAIAdapter(),
    AnthropicAdapter.kind: AnthropicAdapter(),
    GeminiAdapter.kind: GeminiAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]
