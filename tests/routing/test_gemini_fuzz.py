"""Bad input on the native Gemini routes is a 4xx in Gemini's shape, never a 500, and leaves no hold: the
seeded generator of tests/routing/test_relay_fuzz.py over every field of a generateContent body, sent to a
model served by translation (an OpenAI channel) and to one relayed natively (a Gemini channel)."""
import random

import httpx
import orjson
import pytest

from routing.catalog import bump_version
from routing.models import Channel
from tests import factories
from tests.conftest import make_live_setup, wait_for
from tests.routing.test_relay_fuzz import (  # noqa: F401 (the fixture is used by name)
    NOTHING_LEFT,
    RAW,
    _fast_password_hasher,
    leftovers,
    malformed_bodies,
)

SEED = 10
BASE = {"systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"text": "hm", "thought": True},
                                        {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": "f", "response": {"r": 42}}},
                                       {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png"}}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "description": "a tool", "parameters": {
            "type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"maxOutputTokens": 5, "temperature": 0.5, "topP": 1, "topK": 5, "stopSequences": ["Z"],
                             "candidateCount": 1, "responseMimeType": "text/plain",
                             "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}
PATHS = [("systemInstruction",), ("systemInstruction", "parts"), ("systemInstruction", "parts", 0),
         ("systemInstruction", "parts", 0, "text"), ("contents",), ("contents", 0), ("contents", 0, "role"),
         ("contents", 0, "parts"), ("contents", 0, "parts", 0), ("contents", 0, "parts", 0, "text"),
         ("contents", 0, "parts", 1, "inlineData"), ("contents", 0, "parts", 1, "inlineData", "data"),
         ("contents", 1, "parts", 0, "thought"), ("contents", 1, "parts", 1, "functionCall"),
         ("contents", 1, "parts", 1, "functionCall", "name"), ("contents", 1, "parts", 1, "functionCall", "args"),
         ("contents", 1, "parts", 1, "functionCall", "id"), ("contents", 2, "parts", 0, "functionResponse"),
         ("contents", 2, "parts", 0, "functionResponse", "response"),
         ("contents", 2, "parts", 0, "functionResponse", "name"), ("contents", 2, "parts", 1, "fileData"),
         ("contents", 2, "parts", 1, "fileData", "fileUri"), ("tools",), ("tools", 0),
         ("tools", 0, "functionDeclarations"), ("tools", 0, "functionDeclarations", 0),
         ("tools", 0, "functionDeclarations", 0, "name"), ("tools", 0, "functionDeclarations", 0, "parameters"),
         ("tools", 0, "functionDeclarations", 0, "parameters", "properties"), ("toolConfig",),
         ("toolConfig", "functionCallingConfig"), ("toolConfig", "functionCallingConfig", "mode"),
         ("generationConfig",), ("generationConfig", "maxOutputTokens"), ("generationConfig", "temperature"),
         ("generationConfig", "topP"), ("generationConfig", "topK"), ("generationConfig", "stopSequences"),
         ("generationConfig", "candidateCount"), ("generationConfig", "responseMimeType"),
         ("generationConfig", "thinkingConfig"), ("generationConfig", "thinkingConfig", "thinkingBudget"),
         ("generationConfig", "thinkingConfig", "includeThoughts"), ("safetySettings",), ("safetySettings", 0)]


def assert_gemini_error(resp) -> None:
    request_id = resp.headers.get("x-request-id", "")
    assert request_id.startswith("req_") and resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["code"] == resp.status_code and error["message"] and error["status"], error


@pytest.mark.live
def test_malformed_gemini_bodies_are_4xx_in_geminis_shape(transactional_db, gateway, simulator):
    live = make_live_setup(gateway, simulator, max_concurrency=50)
    factories.provider_models(kind=Channel.GEMINI, base_url=simulator.url, names=["gemini-2.5-flash"],
                              provider="google", api_key="sim-gemini-key")
    bump_version()
    rng = random.Random(SEED)
    bodies = malformed_bodies(rng, BASE, PATHS, 160) + RAW
    statuses, server_errors = {}, []
    with httpx.Client(base_url=live.server.url, timeout=30, headers={"x-goog-api-key": live.secret}) as http:
        for model_name in ("gpt-4o-mini", "gemini-2.5-flash"):
            url = f"/v1beta/models/{model_name}:generateContent"
            assert wait_for(lambda: http.post(url, content=orjson.dumps(BASE)).status_code == 200), \
                http.post(url, content=orjson.dumps(BASE)).text   # the base body is valid
            for content in bodies:
                resp = http.post(url, content=content)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code >= 500:
                    server_errors.append((model_name, content[:300], resp.text[:300]))
                elif resp.status_code >= 400:
                    assert_gemini_error(resp)
    assert server_errors == [], f"{len(server_errors)} bodies answered 5xx: {server_errors}"
    assert sum(n for status, n in statuses.items() if status >= 400) > len(bodies), statuses
    assert wait_for(lambda: leftovers(live.team.id, live.key.id) == NOTHING_LEFT, timeout=5), \
        leftovers(live.team.id, live.key.id)
