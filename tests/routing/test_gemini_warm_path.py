"""The native Gemini routes run no SQL on the warm path either (tests/routing/test_warm_path_queries.py's
method): natively to a Gemini channel and translated to an OpenAI one, whole and streamed, the model list."""
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from billing import usage_journal
from routing.catalog import bump_version
from routing.models import Channel
from routing.relay import snapshot
from tests import factories
from tests.conftest import in_process_cleanup, in_process_setup
from tests.routing.test_warm_path_queries import (  # noqa: F401 (fixtures used by name)
    _fast_password_hasher,
    consume,
    sql_log,
)

HELLO = b'{"contents": [{"parts": [{"text": "hi [[sim:tokens=5]]"}]}]}'


@pytest.fixture
def relay_setup(transactional_db, simulator, settings, monkeypatch, tmp_path):
    live = in_process_setup(simulator, settings, monkeypatch, tmp_path)
    factories.provider_models(kind=Channel.GEMINI, base_url=simulator.url, names=["gemini-2.5-flash"],
                              provider="google", api_key="sim-gemini-key")
    bump_version()
    snapshot.invalidate_local()
    return live


def test_warm_gemini_path_runs_no_sql(relay_setup, sql_log):  # noqa: F811 (the fixture)
    headers = {"x-goog-api-key": relay_setup.secret}
    results = {}

    async def run():
        client = AsyncClient()

        async def post(path):
            resp = await client.post(path, data=HELLO, content_type="application/json", headers=headers)
            return resp.status_code, await consume(resp)

        try:
            for model in ("gemini-2.5-flash", "gpt-4o-mini"):   # loads the snapshot and the key: SQL expected
                results[f"warm-up {model}"] = await post(f"/v1beta/models/{model}:generateContent")
            results["mark"] = len(sql_log)
            for model in ("gemini-2.5-flash", "gpt-4o-mini"):
                base = f"/v1beta/models/{model}"
                results[f"plain {model}"] = await post(f"{base}:generateContent")
                results[f"sse {model}"] = await post(f"{base}:streamGenerateContent?alt=sse")
                results[f"array {model}"] = await post(f"{base}:streamGenerateContent")
                results[f"count {model}"] = await post(f"{base}:countTokens")
            models = await client.get("/v1beta/models", headers=headers)
            results["models"] = (models.status_code, models.content)
            results["end"] = len(sql_log)
            results["journal"] = len(usage_journal.journal.pending)
        finally:
            await in_process_cleanup()

    async_to_sync(run)()
    mark, end = results["mark"], results["end"]
    assert mark > 0, "the counter saw no SQL at all while the caches were cold: it is not counting"
    assert sql_log[mark:end] == [], f"the warm Gemini path ran SQL: {sql_log[mark:end]}"
    statuses = {name: value[0] for name, value in results.items() if isinstance(value, tuple)}
    assert set(statuses.values()) == {200}, statuses
    assert results["journal"] == 8   # 2 warm-ups and 6 generations (countTokens and the list record none)
