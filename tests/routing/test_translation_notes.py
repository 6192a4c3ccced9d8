"""What a translation leaves out is said in X-Tollgate-Route (`translated=…`), and the header stays a valid
header whatever the client's words were."""
import httpx
import pytest

pytestmark = pytest.mark.live


def test_a_claude_code_request_translated_to_openai_says_what_it_dropped(live):
    body = {"model": "gpt-4o-mini", "max_tokens": 200, "thinking": {"type": "adaptive"},
            "output_config": {"effort": "low"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "hello"}]}
    resp = httpx.post(f"{live.server.url}/v1/messages?beta=true", json=body, timeout=15,
                      headers={"x-api-key": live.secret, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text
    route = resp.headers["x-tollgate-route"]
    assert "translated=" in route
    notes = route.split("translated=", 1)[1]
    assert "dropped server tools web_search" in notes and "dropped context_management" in notes
    assert "reasoning_effort=low" in notes


def test_a_plain_openai_call_has_no_translation_note(live):
    resp = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=15)
    assert resp.status_code == 200 and "translated=" not in resp.headers["x-tollgate-route"]
