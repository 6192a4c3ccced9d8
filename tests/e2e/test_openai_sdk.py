"""The official OpenAI SDK against a live gateway process, as a user would run it."""
import time

import openai
import pytest

from billing.models import UsageRecord
from tests.conftest import wait_for, wait_for_config


def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.secret, max_retries=0)


def test_sdk_lists_only_models_the_key_may_use(live):
    ids = [m.id for m in client(live).models.list()]
    assert ids == ["openai/gpt-4o-mini"]


def test_sdk_completes_and_the_call_is_recorded(live):
    completion = client(live).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Say hello to Tollgate"}])
    assert completion.choices[0].message.content
    assert completion.model == "openai/gpt-4o-mini"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    request_id = "req_" + completion.id.removeprefix("chatcmpl-")
    record = wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert record is not None
    assert (record.status_code, record.served_model, record.stream) == (200, "openai/gpt-4o-mini", False)
    assert record.prompt_tokens == completion.usage.prompt_tokens
    assert record.completion_tokens == completion.usage.completion_tokens
    assert record.cost > 0 and record.key_mask == live.key.mask
    assert record.sdk.startswith("OpenAI") and record.path == "/v1/chat/completions"


def test_sdk_alias_resolves_to_catalog_model(live):
    completion = client(live).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "openai/gpt-4o-mini"


def test_sdk_streams_first_chunk_before_upstream_finishes(live):
    # 40 tokens at 50 ms each: the upstream needs about 2 s to finish the stream.
    started = time.monotonic()
    stream = client(live).chat.completions.create(
        model="openai/gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "[[sim:tokens=40]] [[sim:chunk_delay_ms=50]] count"}])
    arrivals, text = [], []
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    assert len(arrivals) > 10
    assert arrivals[-1] > 1.5                      # the upstream really took its time
    assert arrivals[0] < arrivals[-1] - 1.0        # and the first chunk arrived long before the end
    assert "".join(text)


def test_sdk_stream_usage_only_when_asked(live):
    c = client(live)
    plain = list(c.chat.completions.create(model="openai/gpt-4o-mini", stream=True,
                                           messages=[{"role": "user", "content": "hi"}]))
    assert all(chunk.usage is None for chunk in plain)
    assert all(chunk.choices for chunk in plain)
    with_usage = list(c.chat.completions.create(model="openai/gpt-4o-mini", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "hi"}]))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens > 0
    ids = {chunk.id for chunk in with_usage}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    record = wait_for(lambda: UsageRecord.objects.filter(
        request_id="req_" + with_usage[0].id.removeprefix("chatcmpl-")).first())
    assert record.stream and record.completion_tokens == with_usage[-1].usage.completion_tokens


@pytest.mark.parametrize("status", [401, 404])
def test_sdk_raises_typed_errors(live, status):
    if status == 401:
        bad = openai.OpenAI(base_url=live.base_url, api_key="sk-tg-not-a-real-key-000000000000", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as exc:
            bad.models.list()
        assert exc.value.code == "invalid_api_key"
    else:
        with pytest.raises(openai.NotFoundError) as exc:
            client(live).chat.completions.create(model="no/such-model", messages=[{"role": "user", "content": "x"}])
        assert exc.value.code == "model_not_found"
    assert exc.value.response.headers["x-request-id"].startswith("req_")


def test_ip_allowlist(live):
    from tests.factories import api_key

    _, outside = api_key(team=live.team, allowed_ips=["10.0.0.0/8"])
    _, inside = api_key(team=live.team, allowed_ips=["127.0.0.0/24", "::1"])
    denied = openai.OpenAI(base_url=live.base_url, api_key=outside, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        denied.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert exc.value.code == "ip_not_allowed" and "127.0.0.1" in exc.value.message
    allowed = openai.OpenAI(base_url=live.base_url, api_key=inside, max_retries=0)
    assert allowed.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).choices


def test_sdk_embeddings(live):
    from tests import factories

    model = factories.CatalogModelFactory(public_id="openai/text-embedding-3-small",
                                          upstream_name="text-embedding-3-small",
                                          supports_tools=False, output_modalities=["embeddings"])
    factories.PriceFactory(model=model, input_per_m=20_000, output_per_m=0)
    factories.channel(models=[model], base_url=f"{live.simulator.url}/v1", name="emb")
    wait_for_config(live.server)   # served before the first call
    c = client(live)
    result = wait_for(lambda: _try_embed(c))
    assert result is not None
    assert result.model == "openai/text-embedding-3-small"
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    assert result.usage.prompt_tokens > 0


def _try_embed(c):
    try:
        return c.embeddings.create(model="text-embedding-3-small", input=["hello world", "second"])
    except openai.NotFoundError:
        return None  # the gateway has not reloaded its catalog yet
