"""The real Codex CLI (`codex exec`, pinned in tests/e2e/clients/package.json) against a live gateway and the
simulator, as clients.md says to run it: its own CODEX_HOME with a `tollgate` model provider speaking the
Responses wire API, in a throwaway directory. Codex only speaks POST /v1/responses (streaming, `store:
false`, a namespace and a web_search tool beside its function tools): natively to an OpenAI channel, and
translated to an Anthropic and a Gemini one. Afterwards the gateway's usage records are checked."""
import orjson
import pytest

from billing.models import UsageRecord
from routing.models import Channel
from tests import factories
from tests.conftest import wait_for, wait_for_config
from tests.e2e.real_clients import run_client

CONFIG = """model = "{model}"
model_provider = "tollgate"
[model_providers.tollgate]
name = "Tollgate"
base_url = "{base_url}"
env_key = "TOLLGATE_API_KEY"
wire_api = "responses"
"""


def codex(live, tmp_path, prompt: str, model: str = "gpt-4o-mini", extra: str = ""):
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(extra + CONFIG.format(model=model, base_url=live.base_url))
    return run_client("codex", ["exec", "--skip-git-repo-check", prompt], home=home,
                      env={"CODEX_HOME": str(codex_home), "TOLLGATE_API_KEY": live.secret})


def records(live, count: int) -> list:
    found = wait_for(lambda: list(UsageRecord.objects.filter(team=live.team).order_by("created_at"))
                     if UsageRecord.objects.filter(team=live.team).count() >= count else None, timeout=10)
    assert found, f"expected {count} usage records"
    return found


def upstream_requests(live, path: str = "/v1/responses") -> list[dict]:
    import httpx

    sent = httpx.get(f"{live.simulator.url}/_sim/requests?limit=50").json()["requests"]
    return [r["body"] for r in sent if r["path"].startswith(path)]


@pytest.fixture
def clean_simulator(live):
    import httpx

    httpx.delete(f"{live.simulator.url}/_sim/requests")
    return live


def test_codex_exec_plain_answer(clean_simulator, tmp_path):
    live = clean_simulator
    run = codex(live, tmp_path, "Say hello to Tollgate")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Simulated reply to:" in run.stdout
    sent = upstream_requests(live)[-1]   # natively: Codex's own request reached the OpenAI channel
    assert sent["store"] is False and sent["stream"] is True and sent["model"] == "gpt-4o-mini"
    assert {t["type"] for t in sent["tools"]} >= {"function", "namespace", "web_search"}
    [record] = records(live, 1)
    assert (record.path, record.status_code, record.stream) == ("/v1/responses", 200, True)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0 and record.cost > 0
    assert record.served_model == "openai/gpt-4o-mini" and record.user_agent.startswith("codex_exec")


def test_codex_exec_tool_session(clean_simulator, tmp_path):
    """The simulated model calls exec_command with the backticked command; Codex runs it in the throwaway
    directory and sends its output back in a function_call_output; the model then answers."""
    live = clean_simulator
    run = codex(live, tmp_path, "Use exec_command to run `echo tollgate-tool-ok` and tell me what it printed")
    assert run.returncode == 0, run.stderr[-2000:]
    bodies = upstream_requests(live)
    follow = next(b for b in bodies if any(i.get("type") == "function_call_output" for i in b["input"]))
    call = next(i for i in follow["input"] if i.get("type") == "function_call")
    assert call["name"] == "exec_command" and orjson.loads(call["arguments"])["cmd"] == "echo tollgate-tool-ok"
    output = next(i for i in follow["input"] if i.get("type") == "function_call_output")
    assert output["call_id"] == call["call_id"] and "tollgate-tool-ok" in orjson.dumps(output["output"]).decode()
    assert "Simulated reply to:" in run.stdout
    turns = records(live, 2)
    assert all(r.path == "/v1/responses" and r.status_code == 200 and r.cost > 0 for r in turns)
    assert sum(r.prompt_tokens for r in turns) > 0 and sum(r.completion_tokens for r in turns) > 0


@pytest.mark.parametrize("public_id, upstream, kind, path", [
    ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", Channel.ANTHROPIC, "/v1/messages"),
    ("google/gemini-2.5-flash", "gemini-2.5-flash", Channel.GEMINI, "/v1beta/models/")])
def test_codex_exec_by_translation(clean_simulator, tmp_path, public_id, upstream, kind, path):
    """Codex pointed at a Claude or a Gemini model: its Responses calls are translated (the hosted web_search
    tool dropped, the namespace flattened); the simulated model calls the first tool (a harmless command that
    is not found in the throwaway directory) and answers after its result."""
    live = clean_simulator
    model = factories.CatalogModelFactory(public_id=public_id, upstream_name=upstream, aliases=[upstream])
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=kind, name=kind, api_key=f"sim-{kind}")
    wait_for_config(live.server)   # served before the first call
    run = codex(live, tmp_path, "Say hello", model=upstream)
    assert run.returncode == 0, run.stderr[-2000:]
    sent = upstream_requests(live, path)
    assert len(sent) >= 2   # the tool call, then the answer after its result
    if kind == Channel.ANTHROPIC:
        names = [t["name"] for t in sent[0]["tools"]]
        results = [b for m in sent[-1]["messages"] if isinstance(m["content"], list) for b in m["content"]
                   if b["type"] == "tool_result"]
    else:
        names = [f["name"] for t in sent[0]["tools"] for f in t.get("functionDeclarations") or ()]
        results = [p for c in sent[-1]["contents"] for p in c["parts"] if "functionResponse" in p]
    assert "exec_command" in names and "close_agent" in names and "web_search" not in names
    assert results
    turns = records(live, 2)
    assert all(r.path == "/v1/responses" and r.served_model == public_id and r.cost > 0 for r in turns)


def test_codex_with_reasoning_keeps_claudes_signed_thinking_across_the_tool_turn(clean_simulator, tmp_path):
    """`model_reasoning_effort` on: Claude thinks (signed), calls a tool, and gets its signed thinking back
    before the tool result on the next turn — Codex keeps it as the reasoning item's encrypted_content (store
    false, include reasoning.encrypted_content). The simulated Claude refuses the turn without it."""
    live = clean_simulator
    model = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", upstream_name="claude-sonnet-4-5",
                                          aliases=["claude-sonnet-4-5"])
    factories.PriceFactory(model=model)
    factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.ANTHROPIC, name="claude",
                      api_key="sim-anthropic")
    wait_for_config(live.server)   # served before the first call
    run = codex(live, tmp_path, "Say hello", model="claude-sonnet-4-5", extra='model_reasoning_effort = "low"\n')
    assert run.returncode == 0, run.stderr[-2000:]
    sent = upstream_requests(live, "/v1/messages")
    assert len(sent) >= 2 and sent[0]["thinking"]["type"] == "enabled"
    assistant = next(m for m in sent[-1]["messages"] if m["role"] == "assistant")
    assert assistant["content"][0]["type"] == "thinking" and assistant["content"][0]["signature"]
