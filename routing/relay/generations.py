"""GET /v1/generation's answer from the moment a response is complete.

A usage record reaches PostgreSQL a moment after the response (journal → flush), so each finished call's
generation summary is also kept for GENERATION_TTL seconds in the shared cache (the summaries of a few
milliseconds share one round trip), and in this process until that write is done (the process that served the
call answers a look-up made in the same millisecond; held no longer, so a burst of calls leaves nothing behind
in the worker's heap). After that the usage record answers. A
look-up that another worker of this machine gets before the shared cache has the summary (a client on a new
connection, `make serve`'s workers) reads the record in that worker's journal (`journaled`)."""
import asyncio
import datetime as dt
import functools
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

import orjson

from billing import limits
from billing.money import amount
from gateway_site import shared_cache
from routing.adapters.anthropic import FINISH as ANTHROPIC_FINISH
from routing.adapters.gemini import FINISH as GEMINI_FINISH
from routing.relay import provider_prefs

log = logging.getLogger(__name__)
GENERATION_TTL = 300
JOURNAL_TAIL = 1 << 20   # bytes read from the end of each journal file: far more than a few milliseconds write
_LOCAL_MAX = 10_000   # summaries waiting for their shared-cache write (Redis slow or away: the oldest go)
_local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()   # hex id → (expires, summary JSON)


def _first_words(table: dict) -> dict:
    """A provider's finish table inverted: an OpenAI finish reason → the provider's first word for it."""
    words: dict = {}
    for native, ours in table.items():
        words.setdefault(ours, native)
    return words


# What each channel kind calls the finish reasons the adapters translated (Gemini ends a tool call with STOP).
NATIVE_FINISH = {"anthropic": _first_words(ANTHROPIC_FINISH),
                 "gemini": {**_first_words(GEMINI_FINISH), "tool_calls": "STOP"}}


def provider_name(channel, model) -> str | None:
    """Who served, in OpenRouter's words: the channel's provider ("Azure", "DeepInfra"; its kind's — "OpenAI",
    "Anthropic", "Google" — when it names none), the catalog model's provider when no channel served."""
    if channel is not None:
        return provider_prefs.provider_of(channel)
    return model.provider if model is not None and model.provider else None


def finish_reason(status: int, finish: str) -> str | None:
    """What ended the generation in OpenAI's words; "error" when the call failed, None when the client went
    away mid-stream (`cancelled` says so)."""
    if status == 499:
        return None
    if status >= 400:
        return "error"
    return finish or "stop"


def native_finish_reason(kind: str | None, status: int, finish: str) -> str | None:
    ours = finish_reason(status, finish)
    if ours in (None, "error") or kind is None:
        return ours
    return NATIVE_FINISH.get(kind, {}).get(ours, ours)


def summary(record: dict, *, provider_name: str | None, channel_kind: str | None) -> dict:
    """The generation object of one usage record (a journal record's keys; `created_at` unix time or datetime)."""
    status = record["status_code"]
    created = record["created_at"]
    if not isinstance(created, dt.datetime):
        created = dt.datetime.fromtimestamp(created, dt.UTC)
    finish = record.get("finish_reason") or ""
    return {
        "id": record["request_id"], "model": record.get("served_model") or record.get("requested_model") or "",
        "provider_name": provider_name,
        "tokens_prompt": record["prompt_tokens"], "tokens_completion": record["completion_tokens"],
        "tokens_cached": record["cached_tokens"], "tokens_cache_write_5m": record["cache_write_5m_tokens"],
        "tokens_cache_write_1h": record["cache_write_1h_tokens"], "tokens_reasoning": record["reasoning_tokens"],
        "native_tokens_prompt": record["prompt_tokens"], "native_tokens_completion": record["completion_tokens"],
        "usage_clamped": record["usage_clamped"], "total_cost": amount(record["cost"]),
        "total_cost_micro": record["cost"], "streamed": record["stream"], "cancelled": status == 499,
        "latency": record.get("ttfb_ms"), "generation_time": record["latency_ms"],
        "finish_reason": finish_reason(status, finish),
        "native_finish_reason": native_finish_reason(channel_kind, status, finish),
        "http_referer": record.get("http_referer") or None, "app_title": record.get("app_title") or None,
        "status": status, "created_at": created.isoformat(), "_team": record["team_id"],
    }


def _key(hex_id: str) -> str:
    return f"tg:gen:{hex_id}"


def remember(record: dict, *, provider_name: str | None, channel_kind: str | None) -> None:
    """Keep a finished call's summary (called by RelayCall.record, sync, on the event loop): here at once, in
    the shared cache by a task that starts on the loop's next turn."""
    global _writer
    hex_id = record["request_id"].removeprefix("req_")
    try:
        data = orjson.dumps(summary(record, provider_name=provider_name, channel_kind=channel_kind))
    except orjson.JSONEncodeError:   # a lone surrogate the journal replaces: the usage record answers later
        return
    # orjson (3.12+) leaves its whole output buffer allocated, 4-8 KB for a ~900-byte summary; the in-process
    # store keeps it for GENERATION_TTL (10,000 of them held ~80 MB). A compact copy holds what is used.
    data = bytes(memoryview(data))
    try:
        asyncio.get_running_loop()
    except RuntimeError:   # a sync caller (management commands, tests): the shared cache's sync path
        shared_cache.set(_key(hex_id), data, GENERATION_TTL)
        return
    now = time.monotonic()
    _local[hex_id] = (now + GENERATION_TTL, data)
    while len(_local) > _LOCAL_MAX or (_local and next(iter(_local.values()))[0] < now):
        _local.popitem(last=False)
    # Held here until it is in Redis (or, without Redis or while it is away, in the in-process store).
    _writer = limits.cache_soon(_key(hex_id), data, GENERATION_TTL, functools.partial(_local.pop, hex_id, None))


# The summaries of the last few milliseconds go to the shared cache in the limits' settle pipeline: one round
# trip and one task for both instead of one each (`make bench`).
_writer: asyncio.Task | None = None   # the task sending the latest summary (tests wait on it)


def _public(data: bytes, team_id: int) -> dict | None:
    found = orjson.loads(data)
    if found.pop("_team", None) != team_id:   # another team's generation is not found
        return None
    return found


async def recall(team_id: int, hex_id: str) -> dict | None:
    """A recent call's summary for the caller's team, or None (then the usage record answers)."""
    local = _local.get(hex_id)
    if local is not None and local[0] > time.monotonic():
        return _public(local[1], team_id)
    data = await shared_cache.aget(_key(hex_id))
    return _public(data, team_id) if data else None


def journaled(directory: Path, hex_id: str) -> dict | None:
    """A finished call's usage record still in a journal file of this machine's gateway processes (any
    worker's), or None: found in the last JOURNAL_TAIL bytes of each file, where a call finished in the last
    milliseconds is. A stream still open (only its `_open` progress lines) is not finished. Reads files: call
    it off the event loop."""
    if len(hex_id) != 24 or hex_id.strip("0123456789abcdef"):
        return None
    needle = b'{"request_id":"req_' + hex_id.encode() + b'"'   # a journal line starts so (orjson, compact)
    for path in directory.glob("usage-*.jsonl"):
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - JOURNAL_TAIL))
                data = fh.read(JOURNAL_TAIL)
        except OSError:   # flushed and removed meanwhile: the usage record is in PostgreSQL
            continue
        at = data.rfind(needle)   # the last line of the request: its final record, if it has one
        end = data.find(b"\n", at)
        if at < 0 or end < 0:
            continue
        try:
            record = orjson.loads(data[at:end])
        except orjson.JSONDecodeError:
            continue
        return None if record.get("_open") else record
    return None
