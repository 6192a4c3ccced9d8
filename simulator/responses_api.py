"""OpenAI Responses wire format: POST /v1/responses (what Codex CLI and `client.responses` send).

The request is validated against the Responses request schema (the fields of the official SDK's
`ResponseCreateParams`; an unknown top-level field is a 400, as upstream), and the answer streams the real
event sequence: response.created, response.in_progress, per output item output_item.added,
content_part.added / reasoning_summary_part.added, the deltas and their .done events, output_item.done, then
response.completed (response.incomplete when cut by max_output_tokens) with usage, `sequence_number` on each.

What the simulated model does: it calls a function tool when `tool_choice` forces one, the one
[[sim:tool=NAME]] names (none for [[sim:tool=none]]), or when the latest user text names one of the tools
(Codex sends a dozen tools with every turn; a model that always called the first would never answer
plainly); never right after a function_call_output. It runs a `web_search` tool when `tool_choice` forces it
(by type, or "required" with no function tool) or [[sim:tool=web_search]] names it: a `web_search_call` output
item (its `action.sources` when `include` asks for them; streamed as output_item.added,
web_search_call.in_progress / .searching / .completed, output_item.done), then a message citing the result
(a `url_citation` annotation, streamed as output_text.annotation.added). A `backticked` text in the
prompt becomes the value of the called tool's first required string argument (`exec_command` runs it), the
rest is sampled from the schema. [[sim:reasoning=N]] adds a reasoning item (summary when asked, encrypted
content when included) and N reasoning tokens; [[sim:cached=N]] reports N cached input tokens. The simulator
stores nothing: `previous_response_id` is a 400, so a gateway that forwards one instead of the conversation
fails its test."""

import re
import time

import orjson

from . import content, openai_api
from .core import (
    BOOLEAN,
    DICT,
    STRING,
    ApiError,
    Either,
    Invalid,
    ListOf,
    Obj,
    Provider,
    Reply,
    Scalar,
    Tagged,
    enum,
    integer,
    new_id,
    nullable,
    number,
    say,
)
from .tokens import IMAGE_TOKENS, MEDIA_TOKENS, MESSAGE_OVERHEAD, count_tokens, pieces

# --- request schema -----------------------------------------------------------------------------------------
_STATUS = nullable(enum("in_progress", "completed", "incomplete"))
_INPUT_PART = Tagged({
    "input_text": Obj({"text": STRING}, ("text",)),
    "input_image": Obj({"image_url": nullable(STRING), "file_id": nullable(STRING),
                        "detail": enum("low", "high", "auto", "original")}),
    "input_file": Obj({"file_id": nullable(STRING), "file_url": STRING, "file_data": STRING, "filename": STRING,
                       "detail": STRING}),
    "input_audio": Obj({"input_audio": DICT}, ("input_audio",)),
})
_OUTPUT_PART = Tagged({
    "output_text": Obj({"text": STRING, "annotations": ListOf(DICT), "logprobs": nullable(ListOf(DICT))},
                       ("text",)),
    "refusal": Obj({"refusal": STRING}, ("refusal",)),
})
_MESSAGE = Obj({"role": enum("user", "assistant", "system", "developer"), "id": STRING, "status": _STATUS,
                "phase": nullable(enum("commentary", "final_answer")),
                "content": Either(STRING, ListOf(Tagged({**_INPUT_PART.variants, **_OUTPUT_PART.variants})))},
               ("role", "content"))
_ITEM = Tagged({
    "message": _MESSAGE,
    "function_call": Obj({"call_id": STRING, "name": STRING, "arguments": STRING, "id": STRING, "status": _STATUS,
                          "namespace": nullable(STRING), "caller": nullable(DICT)}, ("call_id", "name", "arguments")),
    "function_call_output": Obj({"call_id": STRING, "output": Either(STRING, ListOf(DICT)), "id": nullable(STRING),
                                 "status": _STATUS, "name": nullable(STRING), "namespace": nullable(STRING),
                                 "caller": nullable(DICT)}, ("call_id", "output")),
    "reasoning": Obj({"id": STRING, "summary": ListOf(Obj({"type": enum("summary_text"), "text": STRING},
                                                          ("type", "text"))),
                      "content": nullable(ListOf(DICT)), "encrypted_content": nullable(STRING), "status": _STATUS},
                     ("summary",)),
    "item_reference": Obj({"id": STRING}, ("id",)),
}, default="message", loose=lambda tag: tag.endswith(("_call", "_call_output")))   # hosted tools' items
_FUNCTION = Obj({"name": Scalar((str,), "string", pattern=r"[a-zA-Z0-9_-]{1,128}"), "parameters": nullable(DICT),
                 "strict": nullable(BOOLEAN), "description": nullable(STRING), "defer_loading": BOOLEAN,
                 "output_schema": nullable(DICT), "allowed_callers": nullable(ListOf(STRING))}, ("name",))
_TOOL = Tagged({
    "function": _FUNCTION,
    "namespace": Obj({"name": STRING, "description": STRING, "tools": ListOf(Tagged({"function": _FUNCTION}))},
                     ("name", "tools")),
    "custom": Obj({"name": STRING, "description": STRING, "format": DICT}, ("name",)),
    "web_search": Obj({}, extra=True), "web_search_preview": Obj({}, extra=True), "file_search": Obj({}, extra=True),
    "code_interpreter": Obj({}, extra=True), "image_generation": Obj({}, extra=True), "mcp": Obj({}, extra=True),
    "computer_use_preview": Obj({}, extra=True), "local_shell": Obj({}, extra=True), "shell": Obj({}, extra=True),
    "apply_patch": Obj({}, extra=True), "tool_search": Obj({}, extra=True),
}, loose=lambda tag: tag.startswith("web_search"))
_TOOL_CHOICE = Either(enum("none", "auto", "required"), Tagged({
    "function": Obj({"name": STRING, "namespace": nullable(STRING)}, ("name",)),
    "allowed_tools": Obj({"mode": enum("auto", "required"), "tools": ListOf(DICT)}, ("mode", "tools")),
    "custom": Obj({"name": STRING}, ("name",)),
}, loose=lambda tag: True))
_FORMAT = Tagged({
    "text": Obj({}), "json_object": Obj({}),
    "json_schema": Obj({"name": Scalar((str,), "string", pattern=r"[a-zA-Z0-9_-]{1,64}"), "schema": DICT,
                        "strict": nullable(BOOLEAN), "description": STRING}, ("name", "schema")),
})
CREATE = Obj({
    "model": STRING, "input": Either(STRING, ListOf(_ITEM)), "instructions": nullable(STRING),
    "tools": ListOf(_TOOL), "tool_choice": _TOOL_CHOICE, "parallel_tool_calls": nullable(BOOLEAN),
    "reasoning": nullable(Obj({"effort": nullable(enum("none", "minimal", "low", "medium", "high", "xhigh")),
                               "summary": nullable(enum("auto", "concise", "detailed")),
                               "generate_summary": nullable(enum("auto", "concise", "detailed"))})),
    "text": Obj({"format": _FORMAT, "verbosity": nullable(enum("low", "medium", "high"))}),
    "max_output_tokens": nullable(integer(lo=16)), "max_tool_calls": nullable(integer(lo=1)),
    "store": nullable(BOOLEAN), "stream": nullable(BOOLEAN), "stream_options": nullable(DICT),
    "previous_response_id": nullable(STRING), "conversation": nullable(Either(STRING, DICT)),
    "include": nullable(ListOf(enum("reasoning.encrypted_content", "message.output_text.logprobs",
                                    "file_search_call.results", "web_search_call.results",
                                    "web_search_call.action.sources", "message.input_image.image_url",
                                    "computer_call_output.output.image_url", "code_interpreter_call.outputs"))),
    "prompt_cache_key": nullable(STRING), "prompt_cache_retention": nullable(enum("in_memory", "24h")),
    "prompt_cache_options": DICT, "client_metadata": nullable(DICT), "metadata": nullable(DICT),
    "temperature": nullable(number(0, 2)), "top_p": nullable(number(0, 1)), "top_logprobs": nullable(integer(0, 20)),
    "truncation": nullable(enum("auto", "disabled")), "user": STRING, "safety_identifier": nullable(STRING),
    "service_tier": nullable(enum("auto", "default", "flex", "scale", "priority")), "background": nullable(BOOLEAN),
    "prompt": nullable(DICT), "context_management": nullable(ListOf(DICT)), "moderation": nullable(DICT),
}, ("model", "input"))

_KIND_WORDS = {"string": "a string", "integer": "an integer", "number": "a decimal", "boolean": "a boolean",
               "dictionary": "an object", "null": "null", "any": "any value"}


def _param(path) -> str:
    """OpenAI's param path ("input[0].content[1].text"): the union tags the schema adds are left out."""
    out, prev = "", None
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif not (isinstance(prev, int) or prev in ("tool_choice", "format")):
            out += ("." if out else "") + str(step)
        prev = step
    return out


def _error(e: Invalid) -> ApiError:
    """OpenAI's wording: "Invalid type for 'input[0].content': expected …", "Unknown parameter: 'x'."."""
    param = _param(e.path)
    if e.kind == "extra":
        where = f"{param}.{e.value}" if param else e.value
        return ApiError(400, f"Unknown parameter: '{where}'.", param=where, code="unknown_parameter")
    if e.kind == "missing":
        where = f"{param}.{e.value}" if param else e.value
        return ApiError(400, f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")
    if e.kind == "type":
        kind = getattr(e.node, "kind", "")
        expected = "an array" if isinstance(e.node, ListOf) else _KIND_WORDS.get(kind, "an object")
        return ApiError(400, f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")
    if e.kind in ("enum", "tag", "notag"):
        choices = getattr(e.node, "choices", None) or tuple(getattr(e.node, "variants", ()))
        listed = ", ".join(f"'{c}'" for c in choices)
        return ApiError(400, f"Invalid value: '{e.value}'. Supported values are: {listed}.", param=param,
                        code="invalid_value")
    return ApiError(400, f"Invalid '{param}': {e.kind} constraint not met ({e.value!r}).", param=param,
                    code="invalid_value")


def _check(req) -> dict:
    if not isinstance(req.json, dict):
        raise ApiError(400, "Invalid type for request body: expected an object.", code="invalid_type")
    try:
        body = CREATE(req.json, ())
    except Invalid as e:
        raise _error(e) from None
    if body.get("previous_response_id"):
        raise ApiError(400, f"Previous response with id '{body['previous_response_id']}' not found.",
                       param="previous_response_id", code="previous_response_not_found")
    if isinstance(body["input"], list) and not body["input"]:
        raise ApiError(400, "Invalid 'input': empty array. Expected an array with minimum length 1.", param="input",
                       code="empty_array")
    calls = set()
    for i, item in enumerate(_items(body)):
        if item.get("type", "message") == "function_call":
            calls.add(item["call_id"])
        elif item.get("type") == "function_call_output" and item["call_id"] not in calls:
            raise ApiError(400, f"No tool call found for function call output with call_id {item['call_id']}.",
                           param=f"input[{i}]", code="invalid_value")
    return body


# --- what the simulated model says --------------------------------------------------------------------------
def _items(body) -> list:
    value = body["input"]
    return [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else value


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return " ".join(p.get("text") or p.get("refusal") or "" for p in value or () if isinstance(p, dict))


def input_tokens(body) -> int:
    total = MESSAGE_OVERHEAD + count_tokens(body.get("instructions") or "") if body.get("instructions") else 0
    for item in _items(body):
        kind = item.get("type", "message")
        if kind == "message":
            total += MESSAGE_OVERHEAD + count_tokens(_text(item["content"]))
            if isinstance(item["content"], list):
                total += sum(IMAGE_TOKENS if p["type"] == "input_image" else MEDIA_TOKENS
                             for p in item["content"] if p["type"] in ("input_image", "input_file", "input_audio"))
        elif kind == "function_call":
            total += count_tokens(item["name"]) + count_tokens(item["arguments"])
        elif kind == "function_call_output":
            total += count_tokens(_text(item["output"]))
        elif kind == "reasoning":
            total += count_tokens(" ".join(s["text"] for s in item["summary"]))
    if body.get("tools"):
        total += count_tokens(orjson.dumps(body["tools"]).decode())
    return total


def _functions(body) -> list[dict]:
    return [t for t in body.get("tools") or () if t.get("type") == "function"]


def _tool_to_call(body, prompt: str, prefer: str | None = None) -> dict | None:
    """The function tool the model calls, or None (see the module docstring); `prefer` ([[sim:tool=NAME|none]])
    narrows an unforced choice to that one tool, or to none."""
    items = _items(body)
    choice = body.get("tool_choice") or "auto"
    functions = _functions(body)
    if not functions or choice == "none" or items[-1].get("type") == "function_call_output":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return next((t for t in functions if t["name"] == choice["name"]), {"name": choice["name"]})
    if choice == "required" or (isinstance(choice, dict) and choice.get("mode") == "required"):
        return functions[0]
    if prefer is not None:
        return next((t for t in functions if t["name"] == prefer), None)
    words = set(re.findall(r"[\w-]+", prompt))
    return next((t for t in functions if t["name"] in words), None)


def _is_search(tool) -> bool:
    return isinstance(tool, dict) and str(tool.get("type") or "").startswith("web_search")


def _web_search(body, prefer: str | None) -> dict | None:
    """The web_search tool the model runs (see the module docstring), or None."""
    offered = [t for t in body.get("tools") or () if _is_search(t)]
    choice = body.get("tool_choice") or "auto"
    if not offered or choice == "none" or _items(body)[-1].get("type") == "function_call_output":
        return None
    if isinstance(choice, dict):
        if _is_search(choice):
            return offered[0]
        allowed = choice.get("tools") or () if choice.get("type") == "allowed_tools" else ()
        if choice.get("mode") == "required" and allowed and all(_is_search(t) for t in allowed):
            return offered[0]
    elif choice == "required" and not _functions(body):
        return offered[0]
    return offered[0] if prefer == "web_search" and not isinstance(choice, dict) else None


SEARCH_URL = "https://example.com/simulated-result"
_DIRECTIVES = re.compile(r"\[\[sim:[^\]]*\]\]")


def _search_items(body, user_text: str, options) -> tuple[list, list]:
    """A web_search_call item and the message that cites it, with the message's one-token pieces."""
    query = " ".join(_DIRECTIVES.sub(" ", user_text).split())[:200] or "search"
    action = {"type": "search", "query": query, "queries": [query]}
    if "web_search_call.action.sources" in (body.get("include") or ()):
        action["sources"] = [{"type": "url", "url": SEARCH_URL}]
    call = {"id": new_id("ws_"), "type": "web_search_call", "status": "completed", "action": action}
    out = say(content.reply_text(user_text, options.tokens, lead="Simulated search answer to:") + " (example.com)",
              options, body.get("max_output_tokens"))
    text = "".join(out.pieces)
    cited = text.rfind("example.com")
    annotations = [{"type": "url_citation", "start_index": cited, "end_index": cited + len("example.com"),
                    "url": SEARCH_URL, "title": "Simulated result"}] if cited >= 0 else []
    message = {"id": new_id("msg_"), "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}]}
    return [call, message], [[], out.pieces]


_QUOTED = re.compile(r"`([^`]+)`")


def _arguments(tool: dict, prompt: str) -> dict:
    schema = tool.get("parameters") or {}
    args = content.sample(schema) if schema else {}
    quoted = _QUOTED.search(prompt)
    if quoted:
        props = schema.get("properties") or {}
        first = next((k for k in schema.get("required", list(props)) if (props.get(k) or {}).get("type") == "string"),
                     None)
        if first is not None:
            args[first] = quoted[1]
    return args


def _source(body) -> str:
    items = _items(body)
    if items[-1].get("type") == "function_call_output":
        return _text(items[-1]["output"])
    user = next((i for i in reversed(items) if i.get("type", "message") == "message" and i["role"] == "user"), None)
    return _text(user["content"]) if user else ""


def create(req) -> Reply:
    body = _check(req)
    options = req.options
    prompt = input_tokens(body)
    user_text = _source(body)
    output, parts_of = [], []   # the output items and, per item, its one-token pieces (streamed as deltas)
    reasoning = options.reasoning
    if reasoning:
        summary_wanted = (body.get("reasoning") or {}).get("summary") is not None
        text = content.reply_text(user_text, min(reasoning, 12), lead="Simulated reasoning about:")
        item = {"id": new_id("rs_"), "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]
                if summary_wanted else []}
        if "reasoning.encrypted_content" in (body.get("include") or ()):
            item["encrypted_content"] = "sim-encrypted-" + new_id("", 16)
        output.append(item)
        parts_of.append(pieces(text) if summary_wanted else [])
    tool = _tool_to_call(body, user_text, options.tool)
    search = _web_search(body, options.tool)   # forced (or named): it comes before any function call
    status, incomplete = "completed", None
    if search is not None:
        items, parts = _search_items(body, user_text, options)
        output += items
        parts_of += parts
        produced = len(parts[1])
    elif tool is not None:
        args = orjson.dumps(_arguments(tool, user_text)).decode()
        parts = pieces(args)
        output.append({"id": new_id("fc_"), "type": "function_call", "status": "completed",
                       "call_id": new_id("call_"), "name": tool["name"], "arguments": args})
        parts_of.append(parts)
        produced = count_tokens(tool["name"]) + len(parts)
    else:
        fmt = (body.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            text = orjson.dumps(content.sample(fmt["schema"])).decode()
        else:
            text = content.reply_text(user_text, options.tokens)
            if fmt.get("type") == "json_object":
                text = orjson.dumps({"reply": text}).decode()
        out = say(text, options, body.get("max_output_tokens"))
        if out.finish in ("length", "filter"):
            status = "incomplete"
            incomplete = {"reason": "max_output_tokens" if out.finish == "length" else "content_filter"}
        output.append({"id": new_id("msg_"), "type": "message", "status": status, "role": "assistant",
                       "content": [{"type": "output_text", "text": "".join(out.pieces), "annotations": [],
                                    "logprobs": []}]})
        parts_of.append(out.pieces)
        produced = len(out.pieces)
    cached = min(options.cached, prompt)
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
             "output_tokens": produced + reasoning, "output_tokens_details": {"reasoning_tokens": reasoning},
             "total_tokens": prompt + produced + reasoning}
    response = _response(body, status, output, usage, incomplete)
    if body.get("stream"):
        return Reply(events=_events(response, parts_of), content_type=b"text/event-stream; charset=utf-8")
    return Reply(orjson.dumps(response))


def _response(body, status, output, usage, incomplete) -> dict:
    now = int(time.time())
    return {
        "id": new_id("resp_"), "object": "response", "created_at": now, "status": status, "background": False,
        "completed_at": now if status == "completed" else None, "error": None, "incomplete_details": incomplete,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": output, "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None, "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"),
                      "summary": (body.get("reasoning") or {}).get("summary")},
        "service_tier": "default", "store": body.get("store") is not False,
        "temperature": body.get("temperature", 1.0), "text": {"format": (body.get("text") or {}).get("format")
                                                              or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


# --- the stream ---------------------------------------------------------------------------------------------
def _events(response: dict, parts_of: list) -> list[bytes]:
    frames, seq = [], iter(range(1 << 30))

    def event(kind, **fields):
        data = {"type": kind, "sequence_number": next(seq), **fields}
        frames.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    opening = {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    event("response.created", response=opening)
    event("response.in_progress", response=opening)
    for index, (item, parts) in enumerate(zip(response["output"], parts_of, strict=True)):
        where = {"item_id": item["id"], "output_index": index}
        kind = item["type"]
        if kind == "message":
            event("response.output_item.added", output_index=index,
                  item={**item, "status": "in_progress", "content": []})
            part = item["content"][0]
            event("response.content_part.added", **where, content_index=0, part={**part, "text": "", "annotations": []})
            for piece in parts:
                event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
            for annotation_index, annotation in enumerate(part["annotations"]):
                event("response.output_text.annotation.added", **where, content_index=0,
                      annotation_index=annotation_index, annotation=annotation)
            event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[])
            event("response.content_part.done", **where, content_index=0, part=part)
        elif kind == "reasoning":
            event("response.output_item.added", output_index=index, item={**item, "summary": []})
            for summary_index, summary in enumerate(item["summary"]):
                event("response.reasoning_summary_part.added", **where, summary_index=summary_index,
                      part={"type": "summary_text", "text": ""})
                for piece in parts:
                    event("response.reasoning_summary_text.delta", **where, summary_index=summary_index, delta=piece)
                event("response.reasoning_summary_text.done", **where, summary_index=summary_index,
                      text=summary["text"])
                event("response.reasoning_summary_part.done", **where, summary_index=summary_index, part=summary)
        elif kind == "web_search_call":
            event("response.output_item.added", output_index=index,
                  item={**item, "status": "in_progress", "action": {"type": "search"}})
            for step in ("in_progress", "searching", "completed"):
                event(f"response.web_search_call.{step}", **where)
        else:
            event("response.output_item.added", output_index=index,
                  item={**item, "status": "in_progress", "arguments": ""})
            for piece in parts:
                event("response.function_call_arguments.delta", **where, delta=piece)
            event("response.function_call_arguments.done", **where, arguments=item["arguments"], name=item["name"])
        event("response.output_item.done", output_index=index, item=item)
    event("response.completed" if response["status"] == "completed" else "response.incomplete", response=response)
    return frames


def stream_error() -> bytes:
    """A mid-stream failure, as upstream ends a stream it cannot finish."""
    data = {"type": "response.failed", "sequence_number": 999, "response": {
        "id": new_id("resp_"), "object": "response", "status": "failed", "output": [],
        "error": {"code": "server_error", "message": "The server had an error while processing your request."}}}
    return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"


PROVIDER = Provider(
    name="openai-responses",
    routes={("POST", "/v1/responses"): create},
    prefix_routes=(),
    api_key=openai_api.api_key,
    error=openai_api.error,
    fault_error=openai_api.fault_error,
    stream_error=stream_error,
    json_error=openai_api.PROVIDER.json_error,
)
