"""OpenRouter's request extras on /v1/chat/completions (routing/relay/plugins.py), driven in-process against the
simulator: plugins (response-healing; any other a 400 naming it), transforms, usage.include, and the debug echo
of the upstream body (debug keys only, redacted). The simulator refuses any field it does not know, so a 200
also proves the gateway's own fields never reach the upstream."""
import httpx
import jsonschema
import orjson
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from routing.relay import errors, plugins
from tests.conftest import in_process_cleanup, in_process_setup
from tests.routing.test_warm_path_queries import consume

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}
CHANNEL_KEY = "sk-sim-test-channel"


@pytest.fixture
def relay(transactional_db, simulator, settings, monkeypatch, tmp_path):
    settings.TOLLGATE_STREAM_KEEPALIVE_SECONDS = 0   # tests/routing/test_keepalive.py covers those
    return in_process_setup(simulator, settings, monkeypatch, tmp_path)


def post(secret: str, *bodies: dict, path: str = "/v1/chat/completions") -> list[tuple[int, dict, bytes]]:
    """POST each body to `path` in one event loop: (status, headers, body) each."""
    out = []

    async def run():
        client = AsyncClient()
        try:
            for body in bodies:
                resp = await client.post(path, data=orjson.dumps(body),
                                         content_type="application/json",
                                         headers={"Authorization": f"Bearer {secret}"})
                out.append((resp.status_code, resp.headers, await consume(resp)))
        finally:
            await in_process_cleanup()

    async_to_sync(run)()
    return out


def chat(text="hi [[sim:tokens=4]]", **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def error_of(body: bytes) -> dict:
    return orjson.loads(body)["error"]


def data_chunks(body: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]


# --- plugins -------------------------------------------------------------------------------------------------
def test_an_unsupported_plugin_is_a_400_naming_it(relay):
    (web, _, web_body), (other, _, other_body), (late, _, late_body) = post(
        relay.secret, chat(plugins=[{"id": "web"}]), chat(plugins=[{"id": "file-parser", "pdf": {}}]),
        chat(plugins=[{"id": "response-healing"}, {"id": "moderation"}]))
    assert (web, other, late) == (400, 400, 400)
    assert error_of(web_body)["code"] == "unsupported_plugin" and "`web`" in error_of(web_body)["message"]
    assert error_of(web_body)["param"] == "plugins[0].id"
    assert "`file-parser`" in error_of(other_body)["message"]
    assert error_of(late_body)["param"] == "plugins[1].id" and "`moderation`" in error_of(late_body)["message"]


def test_an_unsupported_plugin_on_messages_is_an_anthropic_400(relay):
    (status, _, body), = post(relay.secret, {"model": "gpt-4o-mini", "max_tokens": 5, "plugins": [{"id": "web"}],
                                             "messages": [{"role": "user", "content": "hi"}]}, path="/v1/messages")
    assert status == 400
    data = orjson.loads(body)
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert "`web`" in data["error"]["message"]


def test_malformed_plugins_are_400s_naming_the_field(relay):
    results = post(relay.secret, chat(plugins={"id": "web"}), chat(plugins=[{"name": "web"}]),
                   chat(plugins=["web"]), chat(plugins=[{"id": "web", "enabled": "no"}]))
    params = [error_of(body)["param"] for _, _, body in results]
    assert [status for status, _, _ in results] == [400] * 4
    assert params == ["plugins", "plugins[0].id", "plugins[0]", "plugins[0].enabled"]


def test_a_plugin_switched_off_and_the_known_extras_are_accepted_and_not_forwarded(relay):
    httpx.delete(f"{relay.simulator.url}/_sim/requests")
    results = post(relay.secret, chat(plugins=[{"id": "web", "enabled": False}]),
                   chat(transforms=["middle-out"], usage={"include": True}),
                   chat(plugins=[{"id": "response-healing"}], user="end-user-42"))
    assert [status for status, _, _ in results] == [200, 200, 200], [body for _, _, body in results]
    seen = httpx.get(f"{relay.simulator.url}/_sim/requests?limit=3").json()["requests"]
    sent = [r["body"] for r in seen]
    for body in sent:
        assert not {"plugins", "transforms", "usage", "debug"} & set(body), body
    assert any(body.get("user") == "end-user-42" for body in sent)   # end-user attribution goes through


def test_bad_transforms_usage_and_debug_are_400s(relay):
    results = post(relay.secret, chat(transforms=["squash"]), chat(transforms="middle-out"),
                   chat(usage={"include": "yes"}), chat(usage=True), chat(debug=[]),
                   chat(debug={"echo_upstream_body": 1}))
    assert [status for status, _, _ in results] == [400] * 6
    assert [error_of(body)["param"] for _, _, body in results] == [
        "transforms[0]", "transforms", "usage.include", "usage", "debug", "debug.echo_upstream_body"]


def test_usage_include_gives_a_stream_its_usage_chunk(relay):
    (status, _, body), = post(relay.secret, chat(stream=True, usage={"include": True}))
    assert status == 200
    usage = [c for c in data_chunks(body) if c.get("usage")]
    assert len(usage) == 1 and usage[0]["choices"] == [] and usage[0]["usage"]["completion_tokens"] == 4


# --- response healing ----------------------------------------------------------------------------------------
def content_of(body: bytes) -> dict:
    return orjson.loads(body)["choices"][0]["message"]


def test_a_broken_json_object_reply_is_healed(relay):
    broken = chat("give json [[sim:fault=broken_json]]", response_format={"type": "json_object"})
    (plain, _, plain_body), (healed, headers, healed_body) = post(
        relay.secret, broken, {**broken, "plugins": [{"id": "response-healing"}]})
    assert plain == healed == 200
    raw = content_of(plain_body)["content"]
    with pytest.raises(orjson.JSONDecodeError):   # the simulator's reply is really broken
        orjson.loads(raw)
    message = content_of(healed_body)
    assert isinstance(orjson.loads(message["content"]), dict) and message["healed"] is True
    assert orjson.loads(message["content"]) == orjson.loads(raw.removeprefix("```json\n")
                                                            .removesuffix(",\n```") + "}")
    assert headers["X-Tollgate-Healing"] == "choices[0]: healed"


def test_a_broken_json_schema_reply_is_healed_and_matches_the_schema(relay):
    body = chat("weather json [[sim:fault=broken_json]]", plugins=[{"id": "response-healing"}],
                response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}})
    (status, headers, answer), = post(relay.secret, body)
    assert status == 200, answer
    value = orjson.loads(content_of(answer)["content"])
    jsonschema.validate(value, SCHEMA)
    assert headers["X-Tollgate-Healing"] == "choices[0]: healed"


def test_valid_json_and_plain_text_answers_are_left_alone(relay):
    healing = [{"id": "response-healing"}]
    (valid, valid_headers, valid_body), (text, text_headers, text_body) = post(
        relay.secret, chat("json", response_format={"type": "json_object"}, plugins=healing),
        chat("prose [[sim:fault=broken_json]]", plugins=healing))
    assert valid == text == 200
    assert "healed" not in content_of(valid_body) and "X-Tollgate-Healing" not in valid_headers
    assert "healed" not in content_of(text_body) and "X-Tollgate-Healing" not in text_headers


def test_heal_notes_are_a_safe_header_value():
    data = {"choices": [{"message": {"content": '{"ci\ntyé": 1'}}]}
    note = plugins.heal(data, {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}})
    assert note.startswith("choices[0]: repaired but does not match the schema") and note.isascii()
    assert "\n" not in note and data["choices"][0]["message"]["content"] == '{"ci\ntyé": 1'


def test_heal_text_repairs_validates_and_says_why_not():
    assert plugins.heal_text('{"a": 1}', None) == (None, "valid")
    assert plugins.heal_text("Here you go: {'city': 'Oslo', 'days': 3,}", SCHEMA) == (
        '{"city":"Oslo","days":3}', "healed")
    repaired, why = plugins.heal_text('{"city": "Oslo"', SCHEMA)   # repairable JSON, but not the schema's
    assert repaired is None and why.startswith("repaired but does not match the schema") and "days" in why
    assert plugins.heal_text("I cannot answer that.", None) == (None, "no JSON object found in the reply")
    assert plugins.heal_text("{", {"type": 12})[1].startswith("repaired but the schema cannot be used")
    assert plugins.heal_text('{"n": 123456789012345678901234567890', None) == (
        '{"n":123456789012345678901234567890}', "healed")   # beyond 64 bits, as written


# --- the debug echo ------------------------------------------------------------------------------------------
SECRET_IN_PROMPT = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2


def test_the_debug_echo_is_refused_for_a_normal_key(relay):
    (status, _, body), = post(relay.secret, chat(stream=True, debug={"echo_upstream_body": True}))
    assert status == 403
    assert error_of(body)["code"] == "debug_not_allowed" and "debug key" in error_of(body)["message"]


def test_the_debug_echo_shows_the_upstream_body_redacted_for_a_debug_key(relay):
    from tests import factories

    key, secret = factories.api_key(team=relay.team, group=relay.key.group, is_debug=True, name="debugging")
    (status, _, body), (whole, _, whole_body) = post(
        secret, chat(f"hi {SECRET_IN_PROMPT} [[sim:tokens=3]]", stream=True, debug={"echo_upstream_body": True},
                     plugins=[{"id": "response-healing"}]),
        chat(debug={"echo_upstream_body": True}))
    assert status == 200
    chunks = data_chunks(body)
    first = chunks[0]
    assert first["choices"] == [] and first["id"] == chunks[1]["id"]
    echoed = first["debug"]["echo_upstream_body"]
    assert echoed["model"] == "gpt-4o-mini" and echoed["stream"] is True
    assert echoed["stream_options"] == {"include_usage": True}       # what the gateway adds for billing
    assert "debug" not in echoed and "plugins" not in echoed          # its own fields never go upstream
    text = orjson.dumps(echoed).decode()
    assert SECRET_IN_PROMPT not in text and "[REDACTED" in text and CHANNEL_KEY not in body.decode()
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[1:] if c["choices"])
    assert body.rstrip().endswith(b"data: [DONE]")
    assert whole == 400 and error_of(whole_body)["param"] == "debug.echo_upstream_body"   # streams only


def test_under_api_v1_the_extras_work_in_openrouters_shapes(relay):
    from tests import factories

    _, secret = factories.api_key(team=relay.team, group=relay.key.group, is_debug=True, name="debugging")
    (web, _, web_body), (echo, _, echo_body) = post(
        secret, chat(plugins=[{"id": "web"}]), chat(stream=True, debug={"echo_upstream_body": True}),
        path="/api/v1/chat/completions")
    assert web == 400
    error = orjson.loads(web_body)["error"]
    assert error["code"] == 400 and "`web`" in error["message"]          # OpenRouter's error shape
    assert echo == 200
    first, second = data_chunks(echo_body)[:2]
    assert first["id"].startswith("gen-") and first["id"] == second["id"]
    assert first["debug"]["echo_upstream_body"]["model"] == "gpt-4o-mini"


# --- any input -----------------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["id", "enabled", "echo_upstream_body", "include", "x"])
                                        | st.text(max_size=6), inner, max_size=4), max_leaves=12)
json_texts = st.recursive(scalars.filter(lambda v: not isinstance(v, int) or abs(v) < 2**63),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=4),
                          max_leaves=12).map(lambda v: orjson.dumps(v).decode())
plugin_lists = st.lists(st.fixed_dictionaries({"id": st.sampled_from(["response-healing", "web"]) | scalars},
                                              optional={"enabled": values}), max_size=3)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: values for name in plugins.GATEWAY_FIELDS}
                             | {"plugins": plugin_lists | values, "stream": st.booleans()}))
def test_any_extras_are_read_or_a_400(payload):
    try:
        extras = plugins.parse(payload)
    except errors.RelayError as err:
        assert err.status == 400 and err.param
        return
    out = plugins.forwarded(payload, extras)
    assert not set(plugins.GATEWAY_FIELDS) & set(out)
    assert extras.healing == any(isinstance(p, dict) and p.get("id") == plugins.HEALING and p.get("enabled") is not
                                 False for p in payload.get("plugins") or ())


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | json_texts.map(lambda text: text[:-1]), st.none() | values)
def test_heal_text_never_raises(text, schema):
    repaired, why = plugins.heal_text(text, schema if isinstance(schema, dict) else None)
    assert repaired is None or isinstance(orjson.loads(repaired), (dict, list))
    assert why
