"""The OpenRouter inbound format (every route under /api/v1 that answers OpenAI-shaped bodies): OpenAI's
requests, answers and chunks, OpenRouter's extras, and OpenRouter's error shape
`{"error": {"code": <HTTP status>, "message", "metadata"}}` — `metadata` says what OpenAI's shape would have
said (type, code, param), the request id, and what the error carries (402: `limit_source`)."""
from decimal import Decimal

import orjson
from django.http import HttpResponse

from billing.money import MICRO
from routing import tokens
from routing.relay import errors, generations
from routing.relay.formats import checks, openai


def error_object(err: errors.RelayError, request_id: str) -> dict:
    metadata = {"error_type": err.type, "error_code": err.code, "request_id": request_id}
    if err.param:
        metadata["param"] = err.param
    metadata.update((key, value) for key, value in (err.metadata or {}).items() if value is not None)
    return {"code": err.status, "message": err.message, "metadata": metadata}


def error_response(err: errors.RelayError, request_id: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps({"error": error_object(err, request_id)}), status=err.status,
                            content_type="application/json")
    response["X-Request-Id"] = request_id
    for name, value in (err.headers or {}).items():
        response[name] = value
    return response


class ChunkRenderer(openai.ChunkRenderer):
    """OpenAI chunks; a stream that breaks after bytes went out ends (status 200) with one chunk carrying
    OpenRouter's error object and `finish_reason: "error"`."""

    def error(self, err: errors.RelayError, request_id: str) -> list[bytes]:
        chunk = dict(self.base, choices=[{"index": 0, "delta": {}, "finish_reason": "error"}],
                     error=error_object(err, request_id))
        return [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: [DONE]\n\n"]


# --- the format's registry interface (routing/relay/formats/__init__.py) -------------------------------------
ID_PREFIX = "gen-"   # OpenRouter's generation ids: the answer's id is what /generation?id= takes


def translation_notes(payload: dict) -> list[str]:
    return []   # the canonical shape itself


def complete(call, data: dict, usage) -> dict:
    """OpenAI's answer, OpenRouter's id; each choice also says its finish reason in the provider's words."""
    data = openai.complete(call, data, usage)
    data["id"] = ID_PREFIX + call.hex_id
    for choice in data.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            choice.setdefault("native_finish_reason",
                              generations.native_finish_reason(call.channel.kind, 200, choice["finish_reason"]))
    return data


def to_canonical(payload: dict) -> dict:
    """An OpenAI chat request; `models` / legacy `route: "fallback"` checked (the router reads `models`)."""
    canonical = openai.validate_chat(payload)
    checks.fallback(payload)
    return canonical


def renderer(call, payload: dict) -> ChunkRenderer:
    """As OpenRouter, a stream always ends with its usage chunk (`choices: []`, `usage.cost`), asked for or not:
    its `stream_options.include_usage` and `usage.include` are deprecated no-ops."""
    return ChunkRenderer(chunk_id=ID_PREFIX + call.hex_id, model=call.model.public_id, include_usage=True,
                         cost=call.cost_now)


# --- OpenRouter's model schema (GET /api/v1/models, /v1/models?detail=full) ---------------------------------
_TOKENIZERS = {"openai": "GPT", "anthropic": "Claude", "gemini": "Gemini"}
_PER_TOKEN = Decimal(MICRO) * Decimal(1_000_000)   # a price per million tokens in micro-units → per token


def _decimal(value: Decimal) -> str:
    """A price as OpenRouter writes it: a plain decimal string ("0.0000025", "0")."""
    text = format(value.normalize(), "f")
    return "0" if Decimal(text) == 0 else text


def pricing(price, multiplier_ppm: int) -> dict:
    """The price a team pays (its override, its and its key group's multipliers), per token in the deployment
    currency; every figure "0" when the model has no price."""
    if price is None:
        return dict.fromkeys(("prompt", "completion", "request", "image", "input_cache_read", "input_cache_write"),
                             "0")
    scale = Decimal(multiplier_ppm) / MICRO

    def per_token(per_m: int | None) -> str:
        return _decimal(Decimal(price.input_per_m if per_m is None else per_m) * scale / _PER_TOKEN)

    return {"prompt": per_token(price.input_per_m), "completion": per_token(price.output_per_m),
            "request": _decimal(Decimal(price.request_fee) * scale / MICRO), "image": "0",
            "input_cache_read": per_token(price.cached_input_per_m),
            "input_cache_write": per_token(price.cache_write_5m_per_m)}


def supported_parameters(model) -> list[str]:
    params = ["max_tokens", "temperature", "top_p", "stop", "stream"]
    if tokens.family_of(model.provider) == "openai":
        params += ["frequency_penalty", "presence_penalty", "seed", "logit_bias", "logprobs", "top_logprobs"]
    if model.supports_tools:
        params += ["tools", "tool_choice"]
    if model.supports_json_schema:
        params += ["response_format", "structured_outputs"]
    return params


def model_object(model, price, multiplier_ppm: int) -> dict:
    inputs, outputs = list(model.input_modalities), list(model.output_modalities)
    return {
        "id": model.public_id, "canonical_slug": model.public_id,
        "name": f"{model.provider}: {model.public_id.rpartition('/')[2]}" if model.provider else model.public_id,
        "created": model.created, "description": f"{model.public_id} via Tollgate ({model.provider}).",
        "context_length": model.context_length,
        "architecture": {"modality": f"{'+'.join(inputs)}->{'+'.join(outputs)}", "input_modalities": inputs,
                         "output_modalities": outputs,
                         "tokenizer": _TOKENIZERS[tokens.family_of(model.provider)], "instruct_type": None},
        "pricing": pricing(price, multiplier_ppm),
        "top_provider": {"context_length": model.context_length, "max_completion_tokens": model.max_output_tokens,
                         "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": supported_parameters(model),
    }
