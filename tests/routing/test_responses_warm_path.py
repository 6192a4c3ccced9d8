"""The warm /v1/responses path runs no SQL (as the chat path, tests/routing/test_warm_path_queries.py): the call
goes through the same in-memory key, catalog and channels, stored responses live in the shared cache, and the
usage record goes to the journal. In-process (Django's AsyncClient), the live simulator as upstream."""
import threading

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.db.backends import utils as db_utils
from django.test import AsyncClient

from tests.conftest import in_process_cleanup, in_process_setup

RESPONSES = "/v1/responses"


@pytest.fixture
def sql_log(monkeypatch):
    log, lock = [], threading.Lock()

    def counting(original):
        def wrapper(self, sql, *args, **kwargs):
            with lock:
                log.append(str(sql))
            return original(self, sql, *args, **kwargs)
        return wrapper

    for cls in (db_utils.CursorWrapper, db_utils.CursorDebugWrapper):
        for name in ("execute", "executemany", "callproc"):
            if name in cls.__dict__:
                monkeypatch.setattr(cls, name, counting(cls.__dict__[name]))
    return log


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_warm_responses_path_runs_no_sql(transactional_db, simulator, settings, monkeypatch, tmp_path, sql_log):
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
