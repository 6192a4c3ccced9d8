"""Bring your own key: a call served by the team's own channel costs the team only the gateway's BYOK fee
(TOLLGATE_BYOK_FEE_PPM of the catalog price, default none), not the catalog price it pays its provider for."""
import uuid

import httpx
import pytest

from billing.models import UsageRecord
from routing.catalog import bump_version
from tests import factories
from tests.conftest import make_live_setup, wait_for

pytestmark = pytest.mark.live


def served_by_own_channel(server, simulator, **limits) -> tuple[UsageRecord, UsageRecord]:
    """One call on a platform channel, then the same on the team's own channel (it wins: own channels
    first); their usage records."""
    live = make_live_setup(server, simulator)
    records = []
    for own in (False, True):
        if own:
            factories.channel(team=live.team, name="ours", models=[live.model], base_url=f"{simulator.url}/v1",
                              api_key="sk-team-own-key-0001")
            bump_version()
        marker = uuid.uuid4().hex
        resp = wait_for(lambda: (lambda r: r if r.status_code == 200 and (
            not own or "channel=ours" in r.headers["x-tollgate-route"]) else None)(httpx.post(
                f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"}, timeout=15,
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}]})), timeout=5)
        assert resp, "the call was not served" + (" by the team's channel" if own else "")
        request_id = resp.headers["x-request-id"]
        records.append(wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first()))
    return records[0], records[1]


def test_byok_calls_cost_nothing_by_default(transactional_db, gateway, simulator):
    platform, own = served_by_own_channel(gateway, simulator)
    assert platform.cost > 0 and platform.prompt_tokens > 0
    assert own.prompt_tokens > 0 and own.cost == 0


def test_a_byok_fee_is_that_share_of_the_catalog_price(transactional_db, gateway_factory, simulator):
    server = gateway_factory(TOLLGATE_BYOK_FEE_PPM="500000", TOLLGATE_JOURNAL_FLUSH_SECONDS="0.1")   # 50%
    platform, own = served_by_own_channel(server, simulator)
    assert own.cost > 0
    per_token_platform = platform.cost / (platform.prompt_tokens + platform.completion_tokens)
    per_token_own = own.cost / (own.prompt_tokens + own.completion_tokens)
    assert per_token_own == pytest.approx(per_token_platform / 2, rel=0.2)
