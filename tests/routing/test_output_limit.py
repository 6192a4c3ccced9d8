"""A request may ask for more output than the model that serves it can write (Claude Code asks 128000 of
whatever model its id is routed to): the upstream is asked for at most the model's limit, and the hold is
sized for that, not for what was asked."""
import uuid

import httpx
import orjson
import pytest

from routing.relay import quota
from routing.relay.snapshot import ModelEntry
from tests.conftest import wait_for_config

pytestmark = pytest.mark.live


def test_max_tokens_above_the_models_limit_is_capped_upstream(live, simulator):
    live.model.max_output_tokens = 300
    live.model.save()
    wait_for_config(live.server)
    marker = uuid.uuid4().hex
    resp = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                      timeout=15, json={"model": "gpt-4o-mini", "max_tokens": 128_000,
                                        "messages": [{"role": "user", "content": marker}]})
    assert resp.status_code == 200, resp.text
    seen = httpx.get(f"{simulator.url}/_sim/requests", params={"limit": 200}).json()["requests"]
    sent = [r["body"] for r in seen if marker in orjson.dumps(r["body"]).decode()]
    assert sent and sent[-1].get("max_tokens", sent[-1].get("max_completion_tokens")) == 300


def test_the_hold_is_sized_for_what_the_model_can_write():
    model = ModelEntry(id=1, public_id="test/m", upstream_name="m", provider="openai", context_length=100_000,
                       supports_tools=True, supports_vision=False, supports_json_schema=True, created=0, price=None,
                       max_output_tokens=300)
    assert quota._output_of(model, 128_000) == 300
    assert quota._output_of(model, 200) == 200
