"""Durable usage records without a database round trip per request.

Each gateway process appends one JSON line per request to its own journal file with a single `write()`
before the response's last bytes go out; the kernel keeps that through a `kill -9` of the process. A
background task flushes the lines to PostgreSQL in batches (`INSERT … ON CONFLICT DO NOTHING` on the request
id, so a replay is harmless). A process holds an exclusive `flock` on its file; a file nobody holds belongs
to a dead process and is replayed at start-up and by a periodic task.

Nothing a client or an upstream sends can stop recording: `sanitize` makes every record fit its columns
before it is journaled (NUL stripped, strings clipped to their column, integers clamped to their column's
range); a batch the database still refuses is retried row by row, and a row that fails alone is quarantined
in a `rejected-*.jsonl` file next to the journal (kept, logged with its request id, reported by
`ledger_audit`) instead of blocking the rows behind it. Only an outage (the database unreachable) makes a
flush or a replay stop and retry later.
"""
import asyncio
import datetime as dt
import fcntl
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, connections, transaction
from psycopg.types.json import Jsonb

from core.redaction import redact
from gateway_site.db import db_call

log = logging.getLogger(__name__)
ROTATE_BYTES = 16 * 1024 * 1024
BATCH = 2000
OUTAGES = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
_TEXT, _INT, _BOOL, _JSON = range(4)
_spec: dict[str, tuple] | None = None


def _columns() -> dict[str, tuple]:
    """attname -> (kind, bound...) from UsageRecord's fields: the model is the one source of the limits.
    Foreign keys are left alone (clamping an id would point at another row); the database checks them."""
    global _spec
    if _spec is None:
        from django.db import models

        from billing.models import UsageRecord

        ops, spec = connections["default"].ops, {}
        for field in UsageRecord._meta.concrete_fields:
            if field.is_relation or field.primary_key:
                continue
            if isinstance(field, (models.CharField, models.TextField)):
                spec[field.attname] = (_TEXT, field.max_length, field.null)
            elif isinstance(field, models.BooleanField):
                spec[field.attname] = (_BOOL,)
            elif isinstance(field, models.IntegerField):
                low, high = ops.integer_field_range(field.get_internal_type())
                spec[field.attname] = (_INT, low, high, field.null)
            elif isinstance(field, models.JSONField):
                spec[field.attname] = (_JSON,)
        _spec = spec
    return _spec


def _clean_text(value, max_length):
    if type(value) is not str:
        value = "" if value is None else str(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:max_length] if max_length is not None and len(value) > max_length else value


def _clean_json(value, depth=0):
    """NUL is also refused inside jsonb strings (and keys); the attempts list is short and shallow."""
    if type(value) is str:
        return value.replace("\x00", "") if "\x00" in value else value
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {_clean_text(k, None): _clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v, depth + 1) for v in value]
    if value is None or type(value) in (bool, float) or (type(value) is int and abs(value) < 2 ** 63):
        return value
    return str(value)


# Columns whose text a client chooses (model, User-Agent, path) or an upstream may echo (errors, attempts):
# a secret pasted there is stored, and so shown, masked by core.redaction.
CLIENT_TEXT = frozenset({"requested_model", "served_model", "user_agent", "sdk", "path", "route", "error_text",
                         "attempts", "http_referer", "app_title"})
# Every shape core.redaction masks contains one of these (lower-cased): most values skip its regexes.
_SECRET_HINTS = ("sk-", "tgp_", "aiza", "xai-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "bearer", "key", "secret",
                 "password", "token", "authorization")


def _redacted(value: str) -> str:
    if len(value) < 6:
        return value
    lowered = value.lower()
    return redact(value) if any(hint in lowered for hint in _SECRET_HINTS) else value


def _redacted_json(value, depth=0):
    if type(value) is str:
        return _redacted(value)
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {k: _redacted_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted_json(v, depth + 1) for v in value]
    return value


# The client texts most calls repeat (their model, User-Agent, path, route) cleaned once: (column, text) → stored.
_client_text_memo: dict[tuple[str, str], str] = {}
_MEMO_CHARS, _MEMO_SIZE = 512, 4096


def sanitize(record: dict) -> dict:
    """A copy of a usage record that fits UsageRecord's columns. O(fields); regexes only for the client's
    strings that look like they may hold a secret.

    Strings lose NUL bytes and are clipped to their column; client-supplied strings are redacted (CLIENT_TEXT);
    integers are clamped to their column's range (negative token counts become 0); a value of the wrong type
    is coerced or replaced by the column's empty value. Keys that are not columns are dropped; relation ids
    and `created_at` pass through."""
    spec = _columns()
    out = {}
    for name, value in record.items():
        column = spec.get(name)
        if column is None:
            if name.endswith("_id") or name == "created_at":
                out[name] = value
            continue
        kind = column[0]
        if kind == _TEXT:
            if value is None and column[2]:
                out[name] = None
            elif name in CLIENT_TEXT:
                memo = (name, value) if type(value) is str and len(value) <= _MEMO_CHARS else None
                text = _client_text_memo.get(memo) if memo is not None else None
                if text is None:
                    # Clip before the regexes (a 1 MB User-Agent) and after the masks (they change lengths).
                    limit = column[1]
                    text = _redacted(_clean_text(value, None if limit is None else 4 * limit))
                    text = text[:limit] if limit is not None else text
                    if memo is not None and len(_client_text_memo) < _MEMO_SIZE:
                        _client_text_memo[memo] = text
                out[name] = text
            else:
                out[name] = _clean_text(value, column[1])
        elif kind == _INT:
            if type(value) is not int:
                if value is None and column[3]:
                    out[name] = None
                    continue
                try:
                    value = int(value)
                except (TypeError, ValueError, OverflowError):
                    value = 0
            out[name] = column[1] if value < column[1] else column[2] if value > column[2] else value
        elif kind == _BOOL:
            out[name] = bool(value)
        else:
            out[name] = _redacted_json(_clean_json(value)) if name in CLIENT_TEXT else _clean_json(value)
    return out


def quarantine(record, reason: str, directory: Path | None = None) -> None:
    """Keep a record the database refused (or a journal line that is not a record) in
    `rejected-<pid>.jsonl` next to the journal: never lost, never blocking; `ledger_audit` reports them."""
    directory = directory or settings.TOLLGATE_JOURNAL_DIR
    request_id = record.get("request_id", "?") if isinstance(record, dict) else "?"
    log.error("usage record %s quarantined: %s", request_id, reason)
    entry = {"rejected_at": dt.datetime.now(dt.UTC).isoformat(), "reason": reason[:500], "record": record}
    try:
        line = orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        line = orjson.dumps({**entry, "record": repr(record)})
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"rejected-{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def quarantined(directory: Path | None = None) -> tuple[int, int]:
    """(records, files) quarantined in the journal directory."""
    directory = directory or settings.TOLLGATE_JOURNAL_DIR
    if not directory.exists():
        return 0, 0
    records = files = 0
    for path in directory.glob("rejected-*.jsonl"):
        files += 1
        try:
            data = path.read_bytes()
        except OSError:  # a journal "file" that could not be read at all: count it as one
            records += 1
            continue
        records += sum(1 for line in data.splitlines() if line.strip()) or 1
    return records, files


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        self.fd: int | None = None
        self.path: Path | None = None
        self.size = 0                   # bytes written to the current file (only this process writes it)
        self.position: tuple[str, int] | None = None   # (file, end offset) of the last record appended
        self.pending: list[dict] = []
        self.retired: list[tuple[int, Path]] = []
        self.streams: dict[str, Callable[[], dict]] = {}   # open streams: request id → its record if lost now
        self.task: asyncio.Task | None = None
        self.loop = None

    # --- writing (hot path) -----------------------------------------------------------------------
    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"usage-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.fd, self.path, self.size = fd, path, 0

    def _write(self, data: bytes) -> tuple[str, int]:
        if self.fd is None:
            self._open()
        assert self.fd is not None and self.path is not None
        self.size += os.write(self.fd, data)
        return self.path.stem, self.size

    def append(self, record: dict) -> dict:
        """Journal a usage record; returns it as journaled (sanitized). `position` says where its line ends."""
        record = sanitize(record)
        try:
            line = orjson.dumps(record)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: keep the record, lose the bad characters
            record = {k: v.encode("utf-8", "replace").decode() if type(v) is str else v for k, v in record.items()}
            line = orjson.dumps(record, default=str)
        self.position = self._write(line + b"\n")
        self.streams.pop(record.get("request_id"), None)
        self.pending.append(record)
        self._ensure_flusher()
        return record

    # --- open streams: billed if this process dies before their end (kill -9) ----------------------------
    # A stream journals an "open" line when it starts and again at each progress mark (the lease renewal):
    # its record as it stands, flagged `_open`. The live process never flushes those lines (its final record
    # supersedes them); the replay of a dead process's journal records the last one of a stream that has no
    # final record (`_read_journal`).
    def open_stream(self, request_id: str, lost_record: Callable[[], dict]) -> None:
        """`lost_record()`: the stream's record if this process died now (as billed at its last mark)."""
        self.streams[request_id] = lost_record
        self._write(self._open_line(lost_record()))

    def stream_ended(self, request_id: str) -> None:
        self.streams.pop(request_id, None)

    def mark_progress(self) -> None:
        """One write for every open stream's current record."""
        if self.streams:
            self._write(b"".join(self._open_line(lost()) for lost in list(self.streams.values())))

    @staticmethod
    def _open_line(record: dict) -> bytes:
        return orjson.dumps({**sanitize(record), "_open": 1}, default=str) + b"\n"

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
            self.mark_progress()   # the open streams' lines go on in the new file (the old one is removed)
        try:
            await db_call(insert_records)(batch, self.directory)
        except Exception:
            self.pending[:0] = batch
            raise
        self._remove_retired()
        return len(batch)

    def _remove_retired(self) -> None:
        """Retired files go once flushed and once no settle of their lines waits: a counter rebuilt meanwhile
        must see their read marks (billing.limits, SETTLE_LUA), or such a settle would move it again."""
        from billing import limits

        if not self.retired or limits.settles_waiting():
            return
        for fd, path in self.retired:
            path.unlink(missing_ok=True)
            os.close(fd)
        self.retired.clear()

    def flush_sync(self) -> int:
        """For management commands and shutdown outside an event loop."""
        batch, self.pending = self.pending, []
        insert_records(batch, self.directory)
        return len(batch)

    def close(self) -> None:
        """At shutdown: the file goes if everything in it is flushed (an open stream's line is not)."""
        if self.fd is not None and not self.pending and not self.streams:
            os.close(self.fd)
            assert self.path is not None
            self.path.unlink(missing_ok=True)
            self.fd = None


def insert_records(records: list[dict], directory: Path | None = None) -> None:
    """Insert usage records, ignoring request ids already stored (replays are idempotent).

    A chunk the database refuses for its data is retried row by row; a row that fails alone is quarantined
    (see `quarantine`). An outage (OperationalError/InterfaceError) propagates: the caller keeps the records
    and retries later."""
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
                    _bulk_create(_rows(chunk))
        except OUTAGES:
            raise
        except Exception as exc:  # a data error of some row: find it, keep the others
            if not isinstance(exc, IntegrityError):
                log.warning("usage batch of %d refused (%s); inserting row by row", len(chunk), exc)
            chunk = _insert_one_by_one(chunk, directory)
        # last_used_at rides on the batch instead of a write per request.
        last_used: dict[int, float] = {}
        for r in chunk:
            if r.get("api_key_id") and isinstance(r.get("created_at"), (int, float)):
                last_used[r["api_key_id"]] = max(last_used.get(r["api_key_id"], 0), r["created_at"])
        for key_id, ts in last_used.items():
            ApiKey.objects.filter(pk=key_id).update(last_used_at=dt.datetime.fromtimestamp(ts, dt.UTC))


def _bulk_create(rows) -> None:
    from billing.models import UsageRecord

    UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)


def _rows(chunk: list[dict]) -> list:
    return [_row(r) for r in chunk]


def _row(r: dict):
    from billing.models import UsageRecord

    return UsageRecord(**{**r, "created_at": dt.datetime.fromtimestamp(r["created_at"], dt.UTC)})


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


def _insert_one_by_one(chunk: list[dict], directory: Path | None) -> list[dict]:
    """A batch failed: insert its rows one at a time. A row pointing at a key or channel deleted since keeps
    the record without the dangling link (only that one); a record whose team is gone is dropped (its usage
    went with the team); any other row that fails is quarantined. Returns the records stored."""
    from accounts.models import Team
    from keys.models import ApiKey
    from routing.models import Channel

    def ids(name):
        return {r.get(name) for r in chunk if type(r.get(name)) is int}

    teams = set(Team.objects.filter(pk__in=ids("team_id")).values_list("pk", flat=True))
    keys = set(ApiKey.objects.filter(pk__in=ids("api_key_id")).values_list("pk", flat=True))
    channels = set(Channel.objects.filter(pk__in=ids("channel_id")).values_list("pk", flat=True))
    stored = []
    for record in chunk:
        if record.get("team_id") not in teams:
            log.warning("usage record %s dropped: its team no longer exists", record.get("request_id"))
            continue
        try:
            row = _row(record)
            if row.api_key_id not in keys:
                row.api_key_id = None
            if row.channel_id not in channels:
                row.channel_id = None
            with transaction.atomic():
                _bulk_create([row])
        except OUTAGES:
            raise
        except Exception as exc:  # this row only: keep it aside, go on with the others
            quarantine(record, f"{type(exc).__name__}: {exc}", directory)
            continue
        stored.append(record)
    return stored


def _quarantine_file(path: Path, reason: str) -> None:
    target = path.with_name("rejected-" + path.name)
    log.error("usage journal %s quarantined as %s: %s", path.name, target.name, reason)
    path.rename(target)


def replay_orphans(directory: Path | None = None) -> int:
    """Flush journal files whose process is gone (nobody holds their lock), and settle in Redis those of
    their records whose settle never reached it (billing.limits.settle_replayed). Returns records replayed.

    A line that is not a record is quarantined, and so is a file that cannot be read or inserted: the files
    after it are still replayed. Only an outage stops the replay (the periodic task retries): of the
    database, or of Redis (the file stays until its records are settled there too; inserting is idempotent)."""
    directory = directory or settings.TOLLGATE_JOURNAL_DIR
    if not directory.exists():
        return 0
    total = 0
    for path in sorted(directory.glob("usage-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            _quarantine_file(path, f"cannot open: {exc}")
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process owns it
            try:
                records, marks = _read_journal(fd, directory, path.stem)
                insert_records(records, directory)
            except OUTAGES:
                raise
            except Exception as exc:  # keep the file aside, replay the next ones
                _quarantine_file(path, f"{type(exc).__name__}: {exc}")
                continue
            if not _settled(path, records, marks):
                continue
            path.unlink(missing_ok=True)
            total += len(records)
        finally:
            os.close(fd)
    return total


def _settled(path: Path, records: list[dict], marks: list) -> bool:
    from billing import limits
    from gateway_site import shared_cache

    try:
        limits.settle_replayed([(r["request_id"], r.get("cost") or 0, mark) for r, mark in zip(records, marks)])
    except (*shared_cache.UNREACHABLE, ConnectionError) as exc:
        log.warning("journal %s replayed; its settles wait for Redis (%s)", path.name, exc)
        return False
    return True


def _read_journal(fd: int, directory: Path, name: str = "") -> tuple[list[dict], list]:
    """The records of a journal file and, per record, (file, end offset) of its line: None for a stream the
    process died in, recorded from its last open line (never counted by a counter's rebuild)."""
    with os.fdopen(os.dup(fd), "rb") as fh:
        lines = fh.read().split(b"\n")
    records, marks, opened = [], [], {}
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    offset = 0
    for i, line in enumerate(lines):
        offset += len(line) + 1
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if i != last:  # only the last line can be cut by a crash mid-write (its response never completed)
                quarantine(line.decode("utf-8", "replace"), "not a JSON line", directory)
            continue
        if not isinstance(record, dict):
            quarantine(record, "not a usage record", directory)
            continue
        if record.pop("_open", None):
            opened[record.get("request_id")] = record
            continue
        try:  # lines of an older version or written before `sanitize` existed
            records.append(sanitize(record))
            marks.append((name, offset))
        except Exception as exc:
            quarantine(record, f"{type(exc).__name__}: {exc}", directory)
    done = {r.get("request_id") for r in records}
    for request_id, record in opened.items():
        if request_id not in done:
            records.append(sanitize(record))
            marks.append(None)
    return records, marks


journal = Journal(settings.TOLLGATE_JOURNAL_DIR)


def append(record: dict) -> dict:
    return journal.append(record)


async def start() -> None:
    await db_call(replay_orphans)()


async def stop() -> None:
    try:
        await journal.flush()
    except Exception:  # the lines stay in the file; the next start-up or the periodic task replays them
        log.exception("usage journal: final flush failed")
    finally:
        journal.close()
