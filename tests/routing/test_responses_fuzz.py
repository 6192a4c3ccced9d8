"""Bad input on /v1/responses is a 4xx in OpenAI's shape, never a 500, and leaves no hold: a seeded generator
of malformed Responses bodies (a wrong type for every field the translation reads), sent to a Claude model
(translated: the gateway's own validation) and to an OpenAI one (native: the simulator's schema answers)."""
import random

import httpx
import orjson
import pytest

from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import make_live_setup, wait_for
from tests.routing.test_relay_fuzz import NOTHING_LEFT, RAW, assert_error_shape, leftovers, malformed_bodies

RESPONSES = "/v1/responses"
SEED = 10
FUNCTION = {"type": "function", "name": "f", "description": "a tool", "strict": False,
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}
BASE = {
    "model": "claude-sonnet-4-5", "instructions": "be brief", "max_output_tokens": 50, "temperature": 0.5,
    "top_p": 1, "store": False, "parallel_tool_calls": True, "tool_choice": "auto", "prompt_cache_key": "k",
    "reasoning": {"effort": "low", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
    "text": {"format": {"type": "text"}}, "client_metadata": {"a": "b"}, "user": "u1",
    "tools": [FUNCTION, {"type": "namespace", "name": "ns", "description": "d", "tools": [FUNCTION]},
              {"type": "web_search"}],
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "message", "role": "user", "content": "go on"}],
}
PATHS = [("model",), ("instructions",), ("max_output_tokens",), ("temperature",), ("top_p",), ("store",),
         ("stream",), ("parallel_tool_calls",), ("tool_choice",), ("prompt_cache_key",), ("reasoning",),
         ("reasoning", "effort"), ("include",), ("text",), ("text", "format"), ("text", "format", "type"),
         ("client_metadata",), ("user",), ("previous_response_id",), ("tools",), ("tools", 0), ("tools", 0, "name"),
         ("tools", 0, "parameters"), ("tools", 0, "description"), ("tools", 1, "tools"), ("tools", 1, "tools", 0),
         ("tools", 2, "type"), ("input",), ("input", 0), ("input", 0, "role"), ("input", 0, "content"),
         ("input", 1, "content", 0), ("input", 1, "content", 0, "text"), ("input", 1, "content", 1, "image_url"),
         ("input", 2, "summary"), ("input", 2, "summary", 0), ("input", 2, "encrypted_content"),
         ("input", 3, "name"), ("input", 3, "arguments"), ("input", 3, "call_id"), ("input", 4, "output"),
         ("input", 4, "call_id"), ("input", 5, "content"), ("input", 6, "content"), ("input", 6, "type"), ("models",)]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.live
def test_malformed_responses_bodies_are_4xx_and_leave_no_hold(transactional_db, gateway, simulator):
    live = make_live_setup(gateway, simulator, max_concurrency=50)
    model = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", upstream_name="claude-sonnet-4-5",
                                          aliases=["claude-sonnet-4-5"], supports_vision=True)
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=simulator.url, kind=Channel.ANTHROPIC, name="claude",
                      api_key="sim-anthropic")
    bump_version()
    rng = random.Random(SEED)
    cases = malformed_bodies(rng, BASE, PATHS, 200)
    cases += malformed_bodies(rng, {**BASE, "model": "gpt-4o-mini"}, PATHS, 60)
    cases += RAW
    statuses, refused, server_errors = {}, 0, []
    with httpx.Client(base_url=live.server.url, timeout=30,
                      headers={"Authorization": f"Bearer {live.secret}", "Content-Type": "application/json"}) as http:
        assert wait_for(lambda: http.post(RESPONSES, content=orjson.dumps(BASE)).status_code == 200)
        native = http.post(RESPONSES, content=orjson.dumps({**BASE, "model": "gpt-4o-mini"}))
        assert native.status_code == 200, native.text   # the base bodies are valid
        stored = http.post(RESPONSES, content=orjson.dumps({"model": "gpt-4o-mini", "input": "keep"})).json()["id"]
        cases += malformed_bodies(rng, {**BASE, "previous_response_id": stored}, PATHS, 60)   # after a history
        for content in cases:
            resp = http.post(RESPONSES, content=content)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if resp.status_code >= 500:
                server_errors.append((content[:400], resp.text[:300]))
                continue
            if resp.status_code >= 400:
                refused += 1
                assert_error_shape(resp, RESPONSES)
    assert server_errors == [], f"{len(server_errors)} bodies answered 5xx: {server_errors}"
    assert refused > len(cases) // 2, statuses
    assert wait_for(lambda: leftovers(live.team.id, live.key.id) == NOTHING_LEFT, timeout=5), \
        leftovers(live.team.id, live.key.id)
