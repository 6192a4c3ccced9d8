"""A channel keeps a team's prompt cache warm: requests with the same cache key (prompt_cache_key, the prompt
up to its first cache_control breakpoint, or the end user) go to the same channel, in every process, while
it is healthy; without a key channels are drawn by weight as before."""
import collections

import httpx
import pytest

from billing.models import UsageRecord
from routing.relay.router import cache_key, order_channels
from routing.relay.snapshot import ChannelEntry
from tests import factories
from tests.conftest import wait_for


def _channel(id_, team_id=None, priority=0, weight=1):
    return ChannelEntry(id_, team_id, f"c{id_}", "anthropic", "http://x", "k", priority, weight, {})


def claude_code_turn(history: list[dict]) -> dict:
    """A session's turn: a cached system prompt, then the conversation with its last message marked (the mark
    moves every turn)."""
    system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    last = dict(history[-1], content=[{"type": "text", "text": history[-1]["content"],
                                       "cache_control": {"type": "ephemeral"}}])
    return {"model": "m", "messages": [{"role": "system", "content": system}, *history[:-1], last]}


def test_cache_keys():
    assert cache_key({"prompt_cache_key": "thread-1", "user": "u"}, 7) == b"7:k:thread-1"
    assert cache_key({"prompt_cache_key": "thread-1"}, 8) != cache_key({"prompt_cache_key": "thread-1"}, 7)
    assert cache_key({"messages": [{"role": "user", "content": "hi"}], "user": "alice"}, 7) == b"7:u:alice"
    assert cache_key({"messages": [{"role": "user", "content": "hi"}]}, 7) is None
    # The cached prefix: the same across a session's turns (the moving breakpoint does not change it) ...
    one = claude_code_turn([{"role": "user", "content": "fix the bug"}])
    two = claude_code_turn([{"role": "user", "content": "fix the bug"}, {"role": "assistant", "content": "done"},
                            {"role": "user", "content": "now the tests"}])
    assert cache_key(one, 7) == cache_key(two, 7) is not None
    # ... and different for another system prompt, or a different ttl mark on the same one (same text: same key).
    other = claude_code_turn([{"role": "user", "content": "fix the bug"}])
    other["messages"][0]["content"][0]["text"] = "You are someone else."
    assert cache_key(other, 7) != cache_key(one, 7)
    retimed = claude_code_turn([{"role": "user", "content": "x"}])
    retimed["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    assert cache_key(retimed, 7) == cache_key(one, 7)


def test_same_key_same_channel_every_time_different_keys_spread_by_weight():
    a, b, c = _channel(1), _channel(2), _channel(3, weight=2)
    sticky = b"7:k:thread-1"
    first = order_channels([a, b, c], 7, sticky)
    assert all(order_channels(shuffled, 7, sticky) == first for shuffled in ([c, b, a], [b, a, c]) * 20)
    # The next choice when the first is skipped (circuit open) is stable too: it is the rest of the same order.
    assert order_channels([ch for ch in (a, b, c) if ch != first[0]], 7, sticky) == first[1:]
    firsts = collections.Counter(order_channels([a, b, c], 7, b"7:k:%d" % i)[0].id for i in range(4000))
    assert 0.45 < firsts[3] / 4000 < 0.55 and firsts[1] > 800 and firsts[2] > 800   # weight 2 of 4


def test_a_key_never_overrides_own_channels_first_and_priority_tiers():
    own, high, low = _channel(1, team_id=7), _channel(2, priority=10), _channel(3)
    for i in range(50):
        assert order_channels([low, high, own], 7, b"7:k:%d" % i) == [own, high, low]


@pytest.mark.live
def test_requests_with_one_prompt_cache_key_stick_to_one_channel(live):
    model = live.model
    factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", name="second")
    factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", name="third")
    from routing.catalog import bump_version

    bump_version()

    def send(key):
        body = {"model": model.public_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        if key:
            body["prompt_cache_key"] = key
        response = httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {live.secret}"})
        assert response.status_code == 200
        return response.headers["x-request-id"]

    def channels_of(ids):
        wait_for(lambda: UsageRecord.objects.filter(request_id__in=ids).count() == len(ids), timeout=5)
        return dict(UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", "channel_id"))

    # Different keys spread over all three channels (once the gateway's snapshot has the new ones) ...
    spread: list[str] = []
    assert wait_for(lambda: spread.extend(send(f"thread-{len(spread) + i}") for i in range(6)) or len(
        set(channels_of(spread).values())) == 3, timeout=10)
    # ... one key stays on one of them.
    sticky = [send("thread-42") for _ in range(12)]
    assert len(set(channels_of(sticky).values())) == 1
