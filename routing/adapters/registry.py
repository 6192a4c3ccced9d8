from routing.adapters.base import Adapter
from routing.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {
    OpenAIAdapter.kind: OpenAIAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]
