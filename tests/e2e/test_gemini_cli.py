"""The real Gemini CLI (`@google/gemini-cli` from the npm registry, tests/e2e/real_clients.py), unmodified, run
non-interactively (`gemini -p "…" -m MODEL`) against a live gateway + simulator: `GOOGLE_GEMINI_BASE_URL` is
the gateway (no /v1beta), the Tollgate key is `GEMINI_API_KEY`, settings.json picks API-key auth with telemetry
and auto-update off (../shared/reference/clients.md). It streams `:streamGenerateContent?alt=sse` with its
system prompt, a dozen function declarations and a thinking budget; the simulated model first calls one of
its tools (a harmless one: `update_topic`, or what `[[sim:tool=NAME]]` names), which the CLI runs before the
answer turn. The gateway's usage records are checked afterwards."""
import json

import httpx
import pytest

from billing.models import UsageRecord
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for, wait_for_config
from tests.e2e.real_clients import run_client

SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "telemetry": {"enabled": False},
            "general": {"disableAutoUpdate": True}}


@pytest.fixture
def gemini(live):
    flash, _ = factories.provider_models(kind=Channel.GEMINI, base_url=live.simulator.url, provider="google",
                                         names=["gemini-2.5-flash", "gemini-3.1-pro-preview"], api_key="sim-gemini-key")
    (claude,) = factories.provider_models(kind=Channel.ANTHROPIC, base_url=live.simulator.url, provider="anthropic",
                                          names=["claude-sonnet-4-5"], api_key="sim-anthropic-key")
    factories.routing_rule(team=live.team, name="default", default_model=flash, backup_models=[claude.public_id])
    wait_for_config(live.server)   # served before the first call
    return live


def gemini_cli(live, home, prompt: str, model: str):
    """`gemini -p PROMPT -m MODEL` with `home` as its HOME and working directory."""
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    return run_client("gemini", ["-p", prompt, "-m", model], home=home, env={
        "GEMINI_API_KEY": live.secret, "GOOGLE_GEMINI_BASE_URL": live.server.url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true"})


def records_of(live, n: int) -> list[UsageRecord]:
    found = wait_for(lambda: len(list(UsageRecord.objects.filter(team=live.team))) >= n and
                     list(UsageRecord.objects.filter(team=live.team).order_by("created_at")), timeout=10)
    assert found, "no usage records"
    return found


def assert_billed_and_clean(records, live, model: str) -> None:
    for record in records:
        assert record.status_code == 200, (record.error_code, record.error_text)
        assert record.path == f"/v1beta/models/{model}:streamGenerateContent" and record.stream
        assert record.prompt_tokens > 1000 and record.completion_tokens > 0 and record.cost > 0
        assert record.user_agent.startswith("GeminiCLI")
        assert live.secret not in f"{record.path} {record.user_agent} {record.sdk}"


# Natively (Gemini 3 signs its function calls: the signature must come back), translated to OpenAI and Claude,
# and through a route (`-m route:default`).
@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3.1-pro-preview", "gpt-4o-mini", "claude-sonnet-4-5",
                                   "route:default"])
def test_plain_answer(gemini, tmp_path, model):
    run = gemini_cli(gemini, tmp_path / "home", "Say hello", model)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Simulated reply to:" in run.stdout
    records = records_of(gemini, 2)   # the tool turn (update_topic) and the answer
    assert_billed_and_clean(records, gemini, model)
    assert {r.finish_reason for r in records} == {"tool_calls", "stop"}
    if model.startswith("gemini-3"):   # the simulator's signature went to the CLI and came back untouched
        answer_turn = httpx.get(f"{gemini.simulator.url}/_sim/requests?limit=1").json()["requests"][0]["body"]
        call = next(p for c in answer_turn["contents"] for p in c["parts"] if "functionCall" in p)
        assert call["thoughtSignature"] not in ("", "skip_thought_signature_validator")


def test_a_tool_that_lists_a_directory(gemini, tmp_path):
    """The simulated model asks for list_directory on `sample_dir_path` (its sampled argument): the CLI lists
    the real directory and the answer turn quotes what it found."""
    home = tmp_path / "home"
    (home / "sample_dir_path").mkdir(parents=True)
    (home / "sample_dir_path" / "tollgate-marker.txt").write_text("x")
    prompt = "What files are there? [[sim:tool=list_directory]] [[sim:tokens=60]]"
    run = gemini_cli(gemini, home, prompt, "gemini-2.5-flash")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tollgate-marker.txt" in run.stdout
    answer_turn = httpx.get(f"{gemini.simulator.url}/_sim/requests?limit=1").json()["requests"][0]["body"]
    result = answer_turn["contents"][-1]["parts"][0]["functionResponse"]
    assert result["name"] == "list_directory" and "tollgate-marker.txt" in json.dumps(result["response"])
    records = records_of(gemini, 2)
    assert_billed_and_clean(records, gemini, "gemini-2.5-flash")
    assert [r.finish_reason for r in records] == ["tool_calls", "stop"]
