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


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "tool", "name": "web_search"}])
def test_a_tool_choice_over_server_tools_is_no_400_when_translated(live, choice):
    """Anthropic's web search with a tool choice, to an OpenAI channel: the server tool and the choice over it
    are left out (an OpenAI upstream refuses a tool_choice without tools) and said in the header."""
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    body = {"model": "gpt-4o-mini", "max_tokens": 100, "tool_choice": choice,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "news?"}]}
    resp = httpx.post(f"{live.server.url}/v1/messages", json=body, timeout=15,
                      headers={"x-api-key": live.secret, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["type"] == "text"
    notes = resp.headers["x-tollgate-route"].split("translated=", 1)[1]
    assert "dropped server tools web_search" in notes
    assert ("dropped tool_choice web_search" in notes) is (choice["type"] == "tool")
    [sent] = httpx.get(f"{live.simulator.url}/_sim/requests?limit=1").json()["requests"]
    assert "tools" not in sent["body"] and "tool_choice" not in sent["body"]


def test_a_plain_openai_call_has_no_translation_note(live):
    resp = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=15)
    assert resp.status_code == 200 and "translated=" not in resp.headers["x-tollgate-route"]
