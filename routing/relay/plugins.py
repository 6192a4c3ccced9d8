"""OpenRouter's request extras the gateway acts on itself, never an upstream's parameters: `plugins`
(response-healing; any other plugin is a 400 naming it), `debug: {echo_upstream_body}` (debug keys only, on
streams), `transforms`, `usage: {include}` — and SSE keep-alive comments while a stream waits on a slow upstream.

Healing: a non-streaming JSON-mode / JSON-schema answer that is not valid JSON is repaired with json_repair and,
when the request gave a schema, validated against it with jsonschema; a repaired choice's message says
`healed: true` and the `X-Tollgate-Healing` header lists what was repaired (or why it could not be)."""
import asyncio
import contextvars
import json
import logging
from dataclasses import dataclass

import json_repair
import jsonschema
import orjson
from django.conf import settings

from core.redaction import redact
from routing.adapters.registry import adapter_for
from routing.relay import errors
from routing.relay.formats import checks

log = logging.getLogger(__name__)

HEALING = "response-healing"
SUPPORTED_PLUGINS = frozenset({HEALING})
# "middle-out" compresses a prompt only when it exceeds the model's context: a prompt that fits is unchanged, one
# that does not gets the usual context_length_exceeded 400 (the gateway does not cut prompts).
KNOWN_TRANSFORMS = frozenset({"middle-out"})
# Read by the gateway (provider preferences by the router), never sent to an upstream.
GATEWAY_FIELDS = ("plugins", "debug", "transforms", "usage", "provider")
CHAT_FORMATS = frozenset({"openai", "openrouter"})
KEEPALIVE = b": TOLLGATE PROCESSING\n\n"


@dataclass(frozen=True, slots=True)
class Extras:
    healing: bool = False             # the response-healing plugin is on
    echo_upstream_body: bool = False  # debug: the first chunk echoes the upstream request body
    include_usage: bool = False       # usage: {include: true}: the stream's usage chunk (stream_options's twin)


NONE = Extras()


def _plugins(payload: dict) -> bool:
    """Whether response-healing is on; any plugin this gateway does not run is a 400 naming it."""
    healing = False
    for i, plugin in enumerate(checks.objects("plugins", payload["plugins"])):
        name = checks.of_type(f"plugins[{i}].id", plugin.get("id"), (str,), "a string (the plugin's id)")
        if checks.optional(plugin, "enabled", (bool,), "a boolean", f"plugins[{i}].enabled") is False:
            continue   # switched off explicitly: nothing to run
        if name not in SUPPORTED_PLUGINS:
            raise errors.unsupported_plugin(name, f"plugins[{i}].id")
        healing = True
    return healing


def parse(payload: dict) -> Extras:
    """The extras of a request, checked (a wrong type is a 400 naming the field). Most requests have none."""
    if not any(name in payload for name in GATEWAY_FIELDS):
        return NONE
    healing = payload.get("plugins") is not None and _plugins(payload)
    debug = checks.optional(payload, "debug", (dict,), "an object") or {}
    echo = checks.optional(debug, "echo_upstream_body", (bool,), "a boolean", "debug.echo_upstream_body")
    checks.strings(payload, "transforms", single=False)
    for i, name in enumerate(payload.get("transforms") or ()):
        if name not in KNOWN_TRANSFORMS:
            raise errors.invalid_value(f"transforms[{i}]", f"unknown transform `{name}` (known: middle-out).")
    usage = checks.optional(payload, "usage", (dict,), "an object") or {}
    include = checks.optional(usage, "include", (bool,), "a boolean", "usage.include")
    return Extras(healing=healing, echo_upstream_body=bool(echo), include_usage=bool(include))


def authorize(extras: Extras, call, stream: bool) -> None:
    """The debug echo shows what the gateway sent upstream: streams of the chat format, debug keys only."""
    if not extras.echo_upstream_body:
        return
    if call.fmt not in CHAT_FORMATS:
        raise errors.invalid_value("debug", "echo_upstream_body works on /v1/chat/completions only.")
    if not stream:
        raise errors.invalid_value("debug.echo_upstream_body", "works on streaming requests only (stream: true).")
    if not call.ctx.is_debug:
        raise errors.RelayError(403, "permission_error", "debug_not_allowed",
                                "This API key may not use debug.echo_upstream_body: ask a team admin to mark it "
                                "as a debug key (console: Keys, the key, Debug key).", param="debug")


def forwarded(payload: dict, extras: Extras) -> dict:
    """The request without the gateway's own fields (an upstream would refuse them); `usage.include` becomes
    `stream_options.include_usage`. The same dict when there is nothing to take out."""
    if not any(name in payload for name in GATEWAY_FIELDS):
        return payload
    out = {key: value for key, value in payload.items() if key not in GATEWAY_FIELDS}
    if extras.include_usage and out.get("stream") is True:
        out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
    return out


# --- response healing ----------------------------------------------------------------------------------------
def _schema(response_format) -> tuple[bool, dict | None]:
    """(whether the request asked for JSON, the JSON schema it gave if any)."""
    if not isinstance(response_format, dict):
        return False, None
    kind = response_format.get("type")
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return True, schema if isinstance(schema, dict) else None
    return False, None


def _schema_problem(value, schema: dict) -> str | None:
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (jsonschema.exceptions.SchemaError, RecursionError, ValueError, TypeError) as exc:
        return f"the schema cannot be used ({type(exc).__name__})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"does not match the schema at {where}: {error.message}"[:200]


def heal_text(text: str, schema: dict | None) -> tuple[str | None, str]:
    """(the repaired JSON text or None, what happened). Text that already parses is left alone."""
    try:
        orjson.loads(text)
        return None, "valid"
    except orjson.JSONDecodeError:
        pass
    try:
        value = json_repair.loads(text)
    except Exception as exc:   # the library's own failure: the answer stays as the model wrote it
        log.warning("json_repair failed on a reply: %s", type(exc).__name__)
        return None, "could not be repaired"
    if not isinstance(value, (dict, list)):
        return None, "no JSON object found in the reply"
    if schema is not None:
        problem = _schema_problem(value, schema)
        if problem:
            return None, f"repaired but {problem}"
    try:   # the standard encoder: integers of any size, as the model wrote them
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False), "healed"
    except (ValueError, RecursionError):
        return None, "could not be repaired"


def heal(data: dict, canonical: dict) -> str | None:
    """Repair the choices of a whole chat.completion (in place); the X-Tollgate-Healing header's value, or None
    when the request did not ask for JSON or every choice was valid already."""
    wants_json, schema = _schema(canonical.get("response_format"))
    if not wants_json:
        return None
    notes = []
    for i, choice in enumerate(data.get("choices") or ()):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            continue
        repaired, outcome = heal_text(message["content"], schema)
        if repaired is not None:
            message["content"], message["healed"] = repaired, True
        if outcome != "valid":
            notes.append(f"choices[{i}]: {outcome}")
    if not notes:
        return None
    # A header value: ASCII without control characters (the schema's and the reply's own words are in it).
    text = "; ".join(notes).translate(_HEADER_UNSAFE).encode("ascii", "replace").decode()
    return text[:500]


_HEADER_UNSAFE = {code: " " for code in (*range(32), 127)}


# --- the debug echo ------------------------------------------------------------------------------------------
def upstream_body(call, request: dict) -> dict | str:
    """The body the gateway sent the channel that served (rebuilt the same way), secrets redacted."""
    from routing.relay.pipeline import _within_output_limit  # the same output cap the attempt applied

    channel, model = call.channel, call.model
    req = adapter_for(channel.kind).to_upstream(
        _within_output_limit(request, model), upstream_model=channel.model_mapping.get(model.public_id,
                                                                                        model.upstream_name),
        base_url=channel.base_url, api_key=channel.api_key, stream=True)
    text = redact(req.body.decode("utf-8", "replace"), extra_secrets=(channel.api_key,))
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:   # a redaction inside an escape: the text as it is
        return text


def debug_chunk(call, request: dict) -> bytes:
    body = {"id": call.response_id, "object": "chat.completion.chunk", "created": int(call.created),
            "model": call.model.public_id, "choices": [],
            "debug": {"echo_upstream_body": upstream_body(call, request)}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def prepend(first: bytes, chunks):
    yield first
    async for chunk in chunks:
        yield chunk


# --- keep-alive ----------------------------------------------------------------------------------------------
# SSE clients of these formats skip comment lines (the OpenAI and Anthropic SDKs); google-genai would try to
# parse one as JSON, and Gemini's default stream is a JSON array: Gemini streams get no keep-alives.
KEEPALIVE_FORMATS = frozenset({"openai", "openrouter", "anthropic", "responses"})


def keepalive_seconds(fmt: str) -> float:
    return settings.TOLLGATE_STREAM_KEEPALIVE_SECONDS if fmt in KEEPALIVE_FORMATS else 0


def beside(awaitable) -> tuple[asyncio.Task, contextvars.Context]:
    """Run `awaitable` in a task of its own (so the caller can send keep-alives meanwhile), in a copy of the
    caller's context: `adopt(context)` once it is done hands the caller what it set (the attempts' context
    variables: routing/adapters/openai.py's native-Responses refusal, health's upstream time)."""
    context = contextvars.copy_context()
    task = asyncio.get_running_loop().create_task(awaitable, context=context)
    task.add_done_callback(_retrieved)
    return task, context


def _retrieved(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()   # read, so an outcome no one awaited (the client left) logs no "never retrieved"


def adopt(context: contextvars.Context) -> None:
    for var, value in context.items():
        if var.get(adopt) is not value:   # `adopt` as a sentinel: no variable holds it
            var.set(value)


async def until_first_chunk(chunks, interval: float):
    """The stream's chunks, with a keep-alive comment every `interval` seconds until its first chunk (long
    thinking before the first token); then chunk for chunk, untouched."""
    it = aiter(chunks)
    pending, context = beside(anext(it))
    try:
        while not (await asyncio.wait({pending}, timeout=interval))[0]:
            yield KEEPALIVE
        adopt(context)
        try:
            first = pending.result()
        except StopAsyncIteration:
            return
        yield first
    finally:
        if not pending.done():   # the client went away while we waited: the stream's own end runs
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
    async for chunk in it:
        yield chunk
