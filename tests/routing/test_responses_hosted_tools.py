"""A Responses request that forces a hosted tool (`tool_choice: {"type": "web_search"}`, or "required" over
hosted tools only) goes only to a channel that speaks Responses natively, which runs it as the client sent it;
channels that would translate it are skipped with "cannot run web_search" in X-Tollgate-Route, and when no
candidate can run it the call is a 400 naming the tool. Live gateway + simulator (whose /v1/responses runs a
web_search tool: a web_search_call item, then a message citing it), and the official SDK's own types."""

import httpx
import openai
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from routing.models import Channel
from routing.relay.formats.responses import forced_hosted_tool
from tests import factories
from tests.conftest import wait_for
from tests.routing.test_responses_relay import WEATHER, events, post, record_of, sim_requests
from tests.routing.test_responses_store import _NoResponses, channel_without_responses

SEARCH = {"type": "web_search"}
FORCED = {"input": "Latest news about Rust?", "tools": [SEARCH], "tool_choice": {"type": "web_search"}}


@pytest.mark.parametrize("body, forced", [
    ({"tools": [SEARCH], "tool_choice": {"type": "web_search"}}, "web_search"),
    ({"tools": [WEATHER, {"type": "web_search_preview"}], "tool_choice": {"type": "web_search_preview"}},
     "web_search_preview"),
    ({"tools": [SEARCH], "tool_choice": "required"}, "web_search"),
    ({"tools": [WEATHER, SEARCH], "tool_choice": {"type": "allowed_tools", "mode": "required",
                                                  "tools": [SEARCH]}}, "web_search"),
    ({"tools": [WEATHER, SEARCH], "tool_choice": "required"}, None),        # a function can be called
    ({"tools": [WEATHER, SEARCH], "tool_choice": "auto"}, None),            # unforced: dropped when translated
    ({"tools": [SEARCH]}, None),
    ({"tools": [WEATHER, SEARCH], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [SEARCH]}},
     None),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}}, None),
])
def test_which_requests_force_a_hosted_tool(body, forced):
    assert forced_hosted_tool({"model": "m", "input": "x", **body}) == forced


def _claude(live):
    model = factories.CatalogModelFactory(public_id="anthropic/claude-sonnet-4-5", upstream_name="claude-sonnet-4-5",
                                          aliases=["claude-sonnet-4-5"])
    factories.PriceFactory(model=model)
    channel = factories.channel(models=[model], base_url=live.simulator.url, kind=Channel.ANTHROPIC, name="claude",
                                api_key="sim-anthropic")
    bump_version()
    wait_for(lambda: post(live, {"model": "claude-sonnet-4-5", "input": "hi"}).status_code == 200)
    return model, channel


@pytest.fixture
def claude(live):
    """Beside the live (native) OpenAI channel: a Claude model on an Anthropic channel (translated)."""
    return _claude(live)


def test_the_simulator_runs_a_forced_web_search_in_the_sdks_own_shapes(simulator):
    sdk = openai.OpenAI(base_url=f"{simulator.url}/v1", api_key="sk-sim-x", max_retries=0, timeout=10,
                        default_headers={"x-sim-chunk-delay-ms": "0"})
    preview = {"type": "web_search_preview"}   # the hosted tool type the SDK's ToolChoiceTypes names
    response = sdk.responses.create(model="gpt-4o-mini", input="Rust news [[sim:tokens=5]]", tools=[preview],
                                    tool_choice=preview, include=["web_search_call.action.sources"])
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed" and search.id.startswith("ws_")
    assert search.action.type == "search" and search.action.query == "Rust news"
    assert search.action.sources[0].url.startswith("https://")
    [part] = message.content
    [citation] = part.annotations
    assert citation.type == "url_citation" and part.text[citation.start_index:citation.end_index] == "example.com"
    without = sdk.responses.create(model="gpt-4o-mini", input="news", tools=[SEARCH], tool_choice="required")
    assert without.output[0].type == "web_search_call" and without.output[0].action.sources is None
    assert sdk.responses.create(model="gpt-4o-mini", input="news", tools=[SEARCH]).output[0].type == "message"
    with sdk.responses.stream(model="gpt-4o-mini", input="news", tools=[SEARCH], tool_choice="required") as stream:
        kinds = [e.type for e in stream]   # each event parsed as the SDK's own type
        final = stream.get_final_response()
    assert kinds[2:7] == ["response.output_item.added", "response.web_search_call.in_progress",
                          "response.web_search_call.searching", "response.web_search_call.completed",
                          "response.output_item.done"]
    assert "response.output_text.annotation.added" in kinds and kinds[-1] == "response.completed"
    assert [item.type for item in final.output] == ["web_search_call", "message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_web_search_is_served_natively_as_sent(live, stream):
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    r = post(live, {**FORCED, "model": "gpt-4o-mini", "stream": stream})
    assert r.status_code == 200, r.text
    assert "skipped=" not in r.headers["x-tollgate-route"] and "translated=" not in r.headers["x-tollgate-route"]
    if stream:
        frames = events(r)
        assert "response.web_search_call.searching" in [f["type"] for f in frames]
        body = frames[-1]["response"]
    else:
        body = r.json()
    assert [item["type"] for item in body["output"]] == ["web_search_call", "message"]
    sent = sim_requests(live, "/v1/responses")[-1]["body"]
    assert (sent["tools"], sent["tool_choice"]) == ([SEARCH], {"type": "web_search"})   # untouched
    record = record_of(body["id"])
    assert record.status_code == 200 and record.channel_id == live.channel.id and record.cost > 0


@pytest.mark.parametrize("choice", [{"type": "web_search"}, "required"])
def test_with_only_translated_channels_it_is_a_400_naming_the_tool(live, claude, choice):
    model, channel = claude
    factories.routing_rule(team=live.team, name="claude-only", default_model=model)
    bump_version()
    wait_for(lambda: post(live, {"model": "route:claude-only", "input": "hi"}).status_code == 200)
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    for asked in ("claude-sonnet-4-5", "route:claude-only"):
        r = post(live, {**FORCED, "model": asked, "tool_choice": choice})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("unsupported_tool", "tool_choice")
        assert "`web_search`" in error["message"] and "no channel of this route can run" in error["message"]
        assert f"anthropic/claude-sonnet-4-5 via platform channel #{channel.id}: cannot run web_search" in \
            r.headers["x-tollgate-route"]
    assert sim_requests(live, "/v1/messages") == []   # no upstream was asked
    record = wait_for(lambda: UsageRecord.objects.filter(status_code=400, error_code="unsupported_tool").first())
    assert record.path == "/v1/responses" and any("cannot run web_search" in a for a in record.attempts)


def test_translated_first_falls_to_the_native_channel_and_says_why(live, claude):
    model, channel = claude
    factories.routing_rule(team=live.team, name="search", default_model=model, backup_models=[live.model.public_id])
    bump_version()
    wait_for(lambda: post(live, {"model": "route:search", "input": "hi"}).status_code == 200)
    httpx.delete(f"{live.simulator.url}/_sim/requests")
    for body in ({"model": "route:search"}, {"model": "claude-sonnet-4-5", "models": ["gpt-4o-mini"]}):
        r = post(live, {**FORCED, **body})
        assert r.status_code == 200, r.text
        header = r.headers["x-tollgate-route"]
        assert "model=openai/gpt-4o-mini" in header and "attempts=2" in header
        assert f"skipped=anthropic/claude-sonnet-4-5 via platform channel #{channel.id}: cannot run web_search" in \
            header
        assert r.json()["output"][0]["type"] == "web_search_call"
    assert sim_requests(live, "/v1/messages") == [] and len(sim_requests(live, "/v1/responses")) == 2
    # Unforced, the same route serves the Claude default, the hosted tool dropped with a note, as before.
    r = post(live, {**FORCED, "model": "route:search", "tool_choice": "auto"})
    assert r.status_code == 200 and r.json()["model"] == "anthropic/claude-sonnet-4-5"
    assert "translated=dropped hosted tools web_search" in r.headers["x-tollgate-route"]


def test_an_openai_compatible_channel_without_responses_cannot_run_it(live):
    """Its 404 on /responses makes it a translated channel (remembered): the forced tool is then a 400, and
    no chat-completions request is sent without the tool."""
    with channel_without_responses(live):
        r = post(live, {**FORCED, "model": "deepseek-chat"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "unsupported_tool" and "`web_search`" in r.json()["error"]["message"]
        assert "cannot run web_search" in r.headers["x-tollgate-route"]
        assert _NoResponses.seen == ["/v1/responses"]
