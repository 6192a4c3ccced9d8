"""Durable usage records without a database round trip per request.

Each gateway process appends one JSON line per request to its own journal file with a single `write()`
before the response's last bytes go out; the kernel keeps that through a `kill -9` of the process. A
background task flushes the lines to PostgreSQL in batches (`INSERT … ON CONFLICT DO NOTHING` on the request
id, so a replay is harmless). A process holds an exclusive `flock` on its file; a file nobody holds belongs
to a dead process and is replayed at start-up and by a periodic task.
"""
import asyncio
import datetime as dt
import fcntl
import logging
import os
import uuid
from pathlib import Path

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb

from gateway_site.db import db_call

log = logging.getLogger(__name__)
ROTATE_BYTES = 16 * 1024 * 1024
BATCH = 2000


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        self.fd: int | None = None
        self.path: Path | None = None
        self.pending: list[dict] = []
        self.retired: list[tuple[int, Path]] = []
        self.task: asyncio.Task | None = None
        self.loop = None

    # --- writing (hot path) -----------------------------------------------------------------------
    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"usage-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.fd, self.path = fd, path

    def append(self, record: dict) -> None:
        if self.fd is None:
            self._open()
        os.write(self.fd, orjson.dumps(record) + b"\n")
        self.pending.append(record)
        self._ensure_flusher()

    # --- flushing ---------------------------------------------------------------------------------
    def _ensure_flusher(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.task is None or self.task.done() or self.loop is not loop:
            self.loop = loop
            self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.TOLLGATE_JOURNAL_FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # the database may be away for a while; lines stay in the file and in memory
                log.exception("usage journal flush failed; will retry")

    async def flush(self) -> int:
        if not self.pending and not self.retired:
            return 0
        batch, self.pending = self.pending, []
        if self.fd is not None and os.fstat(self.fd).st_size > ROTATE_BYTES:
            self.retired.append((self.fd, self.path))
            self.fd = None
        try:
            await db_call(insert_records)(batch)
        except Exception:
            self.pending[:0] = batch
            raise
        for fd, path in self.retired:
            path.unlink(missing_ok=True)
            os.close(fd)
        self.retired.clear()
        return len(batch)

    def flush_sync(self) -> int:
        """For management commands and shutdown outside an event loop."""
        batch, self.pending = self.pending, []
        insert_records(batch)
        return len(batch)

    def close(self) -> None:
        if self.fd is not None and not self.pending:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)
            self.fd = None


def insert_records(records: list[dict]) -> None:
    """Insert usage records, ignoring request ids already stored (replays are idempotent)."""
    from billing.models import UsageRecord
    from keys.models import ApiKey

    if not records:
        return
    for record in records:  # journal lines written before a column existed get its default
        record.setdefault("finish_reason", "")
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    _copy_insert(chunk)
                else:
                    UsageRecord.objects.bulk_create(_rows(chunk), ignore_conflicts=True)
        except IntegrityError:
            _insert_one_by_one(_rows(chunk))
        # last_used_at rides on the batch instead of a write per request.
        last_used: dict[int, float] = {}
        for r in chunk:
            if r.get("api_key_id"):
                last_used[r["api_key_id"]] = max(last_used.get(r["api_key_id"], 0), r["created_at"])
        for key_id, ts in last_used.items():
            ApiKey.objects.filter(pk=key_id).update(last_used_at=dt.datetime.fromtimestamp(ts, dt.UTC))


def _rows(chunk: list[dict]) -> list:
    from billing.models import UsageRecord

    return [UsageRecord(**{**r, "created_at": dt.datetime.fromtimestamp(r["created_at"], dt.UTC)}) for r in chunk]


def _copy_insert(chunk: list[dict]) -> None:
    """COPY into a temporary table, then one INSERT … ON CONFLICT DO NOTHING: about a tenth of the ORM's
    CPU per record, which matters because the flush runs inside the gateway process (`make bench`)."""
    columns = list(chunk[0])
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        # Every column (no constraints come with CREATE … AS): journal lines of any version fit.
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS usage_in ON COMMIT DELETE ROWS AS "
                       "SELECT * FROM billing_usagerecord WITH NO DATA")
        with cursor.cursor.copy(f"COPY usage_in ({names}) FROM STDIN") as copy:
            for r in chunk:
                copy.write_row([dt.datetime.fromtimestamp(r[c], dt.UTC) if c == "created_at"
                                else Jsonb(r[c]) if c == "attempts" else r[c] for c in columns])
        cursor.execute(f"INSERT INTO billing_usagerecord ({names}) SELECT {names} FROM usage_in "
                       "ON CONFLICT (request_id) DO NOTHING")


def _insert_one_by_one(rows) -> None:
    """A batch failed because some row points at a key or channel deleted since: keep the record without
    the dangling link (only that one) rather than let one row block every later record. A record whose team
    is gone is dropped."""
    from billing.models import UsageRecord
    from keys.models import ApiKey
    from routing.models import Channel

    keys = set(ApiKey.objects.filter(pk__in={r.api_key_id for r in rows}).values_list("pk", flat=True))
    channels = set(Channel.objects.filter(pk__in={r.channel_id for r in rows}).values_list("pk", flat=True))
    for row in rows:
        if row.api_key_id not in keys:
            row.api_key_id = None
        if row.channel_id not in channels:
            row.channel_id = None
        try:
            with transaction.atomic():
                UsageRecord.objects.bulk_create([row], ignore_conflicts=True)
        except IntegrityError:
            log.warning("usage record %s dropped: its team no longer exists", row.request_id)


def replay_orphans(directory: Path | None = None) -> int:
    """Flush journal files whose process is gone (nobody holds their lock). Returns records replayed."""
    directory = directory or settings.TOLLGATE_JOURNAL_DIR
    if not directory.exists():
        return 0
    total = 0
    for path in sorted(directory.glob("usage-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process owns it
            records = []
            with os.fdopen(os.dup(fd), "rb") as fh:
                for line in fh:
                    try:
                        records.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        continue  # a line cut by a crash mid-write: its response never completed
            insert_records(records)
            path.unlink(missing_ok=True)
            total += len(records)
        finally:
            os.close(fd)
    return total


journal = Journal(settings.TOLLGATE_JOURNAL_DIR)


def append(record: dict) -> None:
    journal.append(record)


async def start() -> None:
    await db_call(replay_orphans)()


async def stop() -> None:
    try:
        await journal.flush()
    except Exception:  # the lines stay in the file; the next start-up or the periodic task replays them
        log.exception("usage journal: final flush failed")
    finally:
        journal.close()
