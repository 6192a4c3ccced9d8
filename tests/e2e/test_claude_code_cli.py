"""The real Claude Code (`claude -p`, pinned in tests/e2e/clients/package.json) against a live gateway and the
simulator, unmodified: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY only (reference/clients.md), a throwaway
HOME and working directory, `--max-turns` to bound it.

Claude Code sends its own default model id (one the catalog does not know), so the team's route for unknown
Claude ids serves it: to an Anthropic channel the request goes natively (every field untouched), to an
OpenAI channel by translation. `[[sim:tool=Read]]` in the prompt makes the simulated model call Claude
Code's Read tool (harmless: it reads a file in the temp dir), then answer from the tool's result."""
import httpx
import orjson
import pytest

from billing.models import UsageRecord
from routing import services
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for, wait_for_config
from tests.e2e.real_clients import run_client

pytestmark = pytest.mark.live

ROUTE = "claude-code"
NOTE = "The parrot is named Pickles"


@pytest.fixture
def claude_channel(live):
    """An Anthropic channel to the simulator serving a priced Claude model."""
    model = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", upstream_name="claude-sonnet-4-5",
                                          provider="anthropic", aliases=["claude-sonnet-4-5"], supports_tools=True,
                                          supports_vision=True, context_length=200_000)
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.ANTHROPIC, name="anthropic")
    return model


@pytest.fixture
def gemini_channel(live):
    """A Gemini channel to the simulator serving a priced Gemini model."""
    model = factories.CatalogModelFactory(public_id="google/gemini-2.5-flash", upstream_name="gemini-2.5-flash",
                                          provider="google", supports_tools=True, context_length=1_048_576)
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.GEMINI, name="gemini")
    return model


def model_for(kind, request, live):
    return {"anthropic": lambda: request.getfixturevalue("claude_channel"), "openai": lambda: live.model,
            "gemini": lambda: request.getfixturevalue("gemini_channel")}[kind]()


def route_unknown_claude_ids_to(live, model) -> None:
    services.routing_rule_create(team=live.team, name=ROUTE, default_model=model.public_id)
    services.auto_routing_update(team=live.team, claude_route=ROUTE)
    wait_for_config(live.server)   # served before the first call


def claude(live, tmp_path, prompt: str, max_turns: int):
    run = run_client("claude", ["-p", prompt, "--output-format", "json", "--max-turns", str(max_turns)],
                     home=tmp_path, env={
                         "ANTHROPIC_BASE_URL": live.server.url, "ANTHROPIC_API_KEY": live.secret,
                         "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                         "DISABLE_AUTOUPDATER": "1"})
    assert run.returncode == 0 or run.stdout, run.stderr[-2000:]
    result = run.json()
    assert result["is_error"] is False, result.get("result")
    return result


def records(count: int) -> list:
    found = wait_for(lambda: list(UsageRecord.objects.order_by("created_at")) if
                     UsageRecord.objects.count() >= count else None, timeout=10)
    assert found, f"{UsageRecord.objects.count()} usage records, expected {count}"
    return found


def check_records(found, turns: int, *, model: str) -> None:
    assert len(found) == turns, [(r.path, r.status_code, r.requested_model, r.error_text[:100]) for r in found]
    for record in found:
        assert record.path == "/v1/messages" and record.status_code == 200 and record.stream
        assert record.prompt_tokens > 0 and record.completion_tokens > 0 and record.cost > 0
        assert record.served_model == model
        assert record.route.startswith(f"route:{ROUTE}; unknown_model=claude-")   # Claude Code's own default id


def sim_messages(live) -> list[dict]:
    seen = httpx.get(f"{live.simulator.url}/_sim/requests?limit=50").json()["requests"]
    return [r for r in seen if r["method"] == "POST"]


def clear_sim(live) -> None:
    httpx.delete(f"{live.simulator.url}/_sim/requests")


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
def test_plain_answer(live, request, tmp_path, kind):
    model = model_for(kind, request, live)
    route_unknown_claude_ids_to(live, model)
    clear_sim(live)
    # (without the directive the simulated model would call the first of Claude Code's tools, its Agent tool)
    result = claude(live, tmp_path, "Say hello to the gateway [[sim:tool=none]]", max_turns=1)
    assert "Simulated reply to:" in result["result"] and result["num_turns"] == 1
    check_records(records(1), 1, model=model.public_id)
    sent = sim_messages(live)
    assert len(sent) == 1
    if kind == "anthropic":   # native: Claude Code's body as it sent it, but the model's upstream name
        body, headers = sent[0]["body"], sent[0]["headers"]
        assert sent[0]["path"] == "/v1/messages" and body["model"] == "claude-sonnet-4-5"
        assert body["thinking"]["type"] == "adaptive" and "context_management" in body and "output_config" in body
        assert any(m["role"] == "system" for m in body["messages"])   # the mid-conversation system turn
        assert "claude-code-20250219" in headers["anthropic-beta"]   # the client's betas went along
        assert headers["x-api-key"].startswith("***") and headers["anthropic-version"] == "2023-06-01"
    elif kind == "openai":   # translated: an OpenAI chat request, the system turn in place
        body = sent[0]["body"]
        assert sent[0]["path"] == "/v1/chat/completions" and body["model"] == "gpt-4o-mini"
        assert [m["role"] for m in body["messages"]][:1] == ["system"]
        # gpt-4o-mini does not reason: the effort is not sent (OpenAI refuses reasoning_effort there), and the
        # route header says what the translation left out
        assert "thinking" not in body and "context_management" not in body and "reasoning_effort" not in body
        assert body["max_tokens"] <= 16_384   # not Claude Code's 128000: no more than the model can write
    else:   # translated: the system prompt and the mid-conversation system turn in systemInstruction
        body = sent[0]["body"]
        assert sent[0]["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        instruction = " ".join(p["text"] for p in body["systemInstruction"]["parts"])
        assert "# Environment" in instruction and [c["role"] for c in body["contents"]] == ["user"]


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
def test_multi_turn_tool_session(live, request, tmp_path, kind):
    model = model_for(kind, request, live)
    route_unknown_claude_ids_to(live, model)
    (tmp_path / "sample_file_path").write_text(NOTE + "\n")   # what the simulated Read call reads
    clear_sim(live)
    result = claude(live, tmp_path, "What is in my notes file? [[sim:tool=Read]]", max_turns=3)
    assert result["num_turns"] == 2, result
    assert "Simulated reply to:" in result["result"]
    sent = sim_messages(live)
    assert len(sent) == 2
    # the second request carries the tool call and its real result, read by Claude Code from the temp dir
    second = orjson.dumps(sent[1]["body"]).decode()
    assert "Pickles" in second and "Read" in second
    if kind == "anthropic":   # the signed thinking block of the first answer came back untouched
        assistant = [m for m in sent[1]["body"]["messages"] if m["role"] == "assistant"][-1]
        kinds = [b["type"] for b in assistant["content"]]
        assert kinds[0] == "thinking" and assistant["content"][0]["signature"] and "tool_use" in kinds
    found = records(2)
    check_records(found, 2, model=model.public_id)
    if kind == "anthropic":   # the second turn reads the cache_control'd prefix the first one wrote
        assert found[0].cached_tokens == 0 and found[1].cached_tokens > 0
        assert result["usage"]["cache_read_input_tokens"] > 0 and result["usage"]["cache_creation_input_tokens"] > 0


def test_native_answer_and_route_header_over_http(live, claude_channel):
    """Claude Code's request as raw HTTP (not streamed): the answer is the simulator's message with our id and
    model, usage with its cache parts, and the header says which route took the unknown id."""
    route_unknown_claude_ids_to(live, claude_channel)
    body = {"model": "claude-opus-9", "max_tokens": 1000, "speed": "standard", "inference_geo": "us",
            "system": [{"type": "text", "text": f"cached {live.secret}", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi [[sim:tool=none]]"},
                         {"role": "system", "content": "# Environment", "output_config": {"effort": "low"}}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}
    headers = {"x-api-key": live.secret, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,per-turn-control-2026-07-01"}
    clear_sim(live)
    answers = [httpx.post(f"{live.server.url}/v1/messages?beta=true", json=body, headers=headers, timeout=30)
               for _ in range(2)]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["x-tollgate-route"].startswith(f"route=route:{ROUTE}; unknown_model=claude-opus-9; "
                                                        "model=anthropic/claude-sonnet-4-5")
        message = r.json()
        assert message["id"] == "msg_" + r.headers["request-id"].removeprefix("req_")
        assert message["model"] == "anthropic/claude-sonnet-4-5"
        assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    first, second = (r.json()["usage"] for r in answers)
    assert first["cache_creation_input_tokens"] > 0 and second["cache_read_input_tokens"] > 0
    # fields the gateway does not read reach the provider untouched; the provider judges them, not the gateway
    assert all(r["body"]["speed"] == "standard" and r["body"]["inference_geo"] == "us" for r in sim_messages(live))
    refused = httpx.post(f"{live.server.url}/v1/messages", json={**body, "not_a_field": 1}, headers=headers)
    assert refused.status_code == 400 and refused.json()["type"] == "error"
    assert refused.json()["error"]["message"].startswith("not_a_field: Extra inputs are not permitted")
