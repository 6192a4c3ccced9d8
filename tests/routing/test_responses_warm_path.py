"""The warm /v1/responses path runs no SQL (as the chat path, tests/routing/test_warm_path_queries.py): the call
goes through the same in-memory key, catalog and channels, stored responses live in the shared cache, and the
usage record goes to the journal. In-process (Django's AsyncClient), the live simulator as upstream."""

import orjson
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from tests.conftest import in_process_cleanup, in_process_setup
from tests.routing.test_warm_path_queries import _fast_password_hasher, sql_log  # noqa: F401 (fixtures)

RESPONSES = "/v1/responses"


def test_warm_responses_path_runs_no_sql(transactional_db, simulator, settings, monkeypatch, tmp_path,
                                         sql_log):  # noqa: F811 (the fixture)
    setup = in_process_setup(simulator, settings, monkeypatch, tmp_path)
    headers = {"Authorization": f"Bearer {setup.secret}"}
    results = {}

    async def run():
        client = AsyncClient()

        async def call(method, path, body=None):
            if method == "POST":
                resp = await client.post(path, data=orjson.dumps(body), content_type="application/json",
                                         headers=headers)
            else:
                resp = await client.generic(method, path, headers=headers)
            content = b"".join([c async for c in resp.streaming_content]) if resp.streaming else resp.content
            return resp.status_code, content

        try:
            await call("POST", RESPONSES, {"model": "gpt-4o-mini", "input": "warm up", "store": False})
            results["mark"] = len(sql_log)
            status, first = await call("POST", RESPONSES, {"model": "gpt-4o-mini", "input": "plain"})
            results["plain"] = status
            first_id = orjson.loads(first)["id"]
            results["stream"] = (await call("POST", RESPONSES, {"model": "gpt-4o-mini", "input": "s", "stream": True,
                                                               "previous_response_id": first_id}))[0]
            results["get"] = (await call("GET", f"{RESPONSES}/{first_id}"))[0]
            results["delete"] = (await call("DELETE", f"{RESPONSES}/{first_id}"))[0]
            results["sql"] = list(sql_log[results["mark"]:])
        finally:
            await in_process_cleanup()

    async_to_sync(run)()
    assert (results["plain"], results["stream"], results["get"], results["delete"]) == (200, 200, 200, 200)
    assert results["mark"] > 0   # the warm-up loaded the snapshot (SQL is counted)
    assert results["sql"] == []
