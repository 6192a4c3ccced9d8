"""The warm relay path runs no SQL: key, catalog, prices and channels come from memory or the shared cache,
and the usage record goes to the journal, not the database.

In-process (Django's AsyncClient on the relay view, the live simulator as upstream), counting every statement
executed through Django's cursor wrappers in any thread.
"""
import asyncio
import threading

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.backends import utils as db_utils
from django.test import AsyncClient

from billing import usage_journal
from tests.conftest import in_process_cleanup, in_process_setup

CHAT = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def sql_log(monkeypatch):
    """Every SQL statement run through Django, from any thread: (thread name, sql)."""
    log, lock = [], threading.Lock()

    def counting(original):
        def wrapper(self, sql, *args, **kwargs):
            with lock:
                log.append((threading.current_thread().name, str(sql)))
            return original(self, sql, *args, **kwargs)
        return wrapper

    for cls in (db_utils.CursorWrapper, db_utils.CursorDebugWrapper):
        for name in ("execute", "executemany", "callproc"):
            if name in cls.__dict__:
                monkeypatch.setattr(cls, name, counting(cls.__dict__[name]))
    return log


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Each key's owner is a user with a password: PBKDF2 would cost ~0.3 s per key on this suite's clock."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def relay_setup(transactional_db, simulator, settings, monkeypatch, tmp_path):
    return in_process_setup(simulator, settings, monkeypatch, tmp_path)


def body(text="hi", **extra) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}], **extra})


async def consume(response) -> bytes:
    if response.streaming:
        return b"".join([chunk async for chunk in response.streaming_content])
    return response.content


def test_warm_relay_path_runs_no_sql(relay_setup, sql_log):
    headers = {"Authorization": f"Bearer {relay_setup.secret}"}
    results = {}

    async def run():
        client = AsyncClient()

        async def post(content, **kw):
            resp = await client.post(CHAT, data=content, content_type="application/json", headers=kw.get("h", headers))
            return resp.status_code, await consume(resp), resp

        try:
            results["warm-up"] = await post(body())                    # loads the snapshot: SQL expected here
            results["mark"] = len(sql_log)
            results["plain"] = await post(body("plain [[sim:tokens=7]]"))
            results["stream"] = await post(body("stream [[sim:tokens=7]]", stream=True))
            results["stream-usage"] = await post(body("usage", stream=True, stream_options={"include_usage": True}))
            results["alias"] = await post(body("alias").replace(b'"openai/gpt-4o-mini"', b'"gpt-4o-mini"'))
            results["models"] = (lambda r: (r.status_code, r.content, r))(
                await client.get("/v1/models", headers=headers))
            results["not-found"] = await post(body(model="no/such-model"))
            results["bad-json"] = await post(b"{not json")
            results["upstream-503"] = await post(body("[[sim:fault=status:503]]"))
            results["stream-break"] = await post(body("[[sim:fault=break:2]]", stream=True))
            # Past the local TTL (0.5 s): the key and catalog version come from the shared cache, still no SQL.
            # (Time has to pass here by design: nothing to wait for but the local copies growing stale.)
            await asyncio.sleep(settings.TOLLGATE_LOCAL_TTL_SECONDS + 0.2)
            results["after-ttl"] = await post(body("later"))
            results["after-ttl-stream"] = await post(body("later", stream=True))
            results["end"] = len(sql_log)
            results["journal"] = len(usage_journal.journal.pending)
        finally:
            await in_process_cleanup()

    async_to_sync(run)()

    mark, end = results["mark"], results["end"]
    assert mark > 0, "the counter saw no SQL at all while the caches were cold: it is not counting"
    assert any("routing_model" in sql for _, sql in sql_log[:mark])
    assert sql_log[mark:end] == [], f"the warm relay path ran SQL: {sql_log[mark:end]}"

    statuses = {name: value[0] for name, value in results.items() if isinstance(value, tuple)}
    assert statuses == {"warm-up": 200, "plain": 200, "stream": 200, "stream-usage": 200, "alias": 200,
                        "models": 200, "not-found": 404, "bad-json": 400, "upstream-503": 502,
                        "stream-break": 200, "after-ttl": 200, "after-ttl-stream": 200}
    assert orjson.loads(results["plain"][1])["usage"]["completion_tokens"] == 7
    assert results["stream"][1].rstrip().endswith(b"data: [DONE]")
    assert b'"finish_reason":"error"' in results["stream-break"][1]
    # Every relayed call was recorded, to the journal: 10 chat calls plus the warm-up (/v1/models records none).
    assert results["journal"] == 11
