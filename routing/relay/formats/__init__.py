"""The inbound formats the relay speaks, one module each (one registry line per format).

A format module provides `ID_PREFIX` (its response ids are `ID_PREFIX + call.hex_id`), `to_canonical(payload)`
(validate — a 400 naming the field — and translate to the canonical OpenAI chat request),
`complete(call, data, usage)` (a canonical chat.completion → the format's whole answer),
`renderer(call, payload)` (canonical stream events → the format's SSE: `render(event)`, `finish()`,
`error(err, request_id)`), `error_response(err, request_id)` (an error in the format's own shape), and
`translation_notes(payload)` (what a translation for a channel of another format leaves out, for
X-Tollgate-Route), and `with_native_cost(data, cost)` (a native answer, or the stream event with its final
usage, with what the call cost added where the format's usage is: OpenRouter's `usage.cost`)."""
from routing.relay.formats import anthropic, gemini, openai, openrouter, responses

FORMATS = {
    "openai": openai,
    "anthropic": anthropic,
    "gemini": gemini,
    "responses": responses,
    "openrouter": openrouter,   # /api/v1: OpenAI's bodies, OpenRouter's error shape
}


def of(fmt: str):
    return FORMATS[fmt]
