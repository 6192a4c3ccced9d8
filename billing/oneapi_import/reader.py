"""Reading a One API / New API database (SQLite, PostgreSQL, MySQL/MariaDB), read-only, and telling which
product it is from its schema (../shared/reference/oneapi-schema.md §5)."""
import sqlite3
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

# The seven tables both products have; a New API database has more (§5).
CORE_TABLES = {"channels", "tokens", "users", "redemptions", "options", "abilities", "logs"}
NA_TABLES = {"midjourneys", "top_ups", "quota_data", "tasks", "setups", "models", "vendors", "prefill_groups",
             "two_fas", "passkey_credentials", "checkins", "perf_metrics"}
NA_COLUMNS = {("logs", "token_id"), ("channels", "auto_ban"), ("users", "aff_count"),
              ("redemptions", "used_user_id"), ("abilities", "weight"), ("users", "deleted_at"),
              ("tokens", "deleted_at"), ("redemptions", "deleted_at")}
OA_COLUMNS = {("channels", "config"), ("channels", "system_prompt"), ("tokens", "subnet"), ("users", "lark_id"),
              ("logs", "elapsed_time")}
READ_TABLES = ("users", "tokens", "channels", "redemptions", "options")


class SourceError(Exception):
    """The source cannot be read or is not a One API / New API database (the message names why, no secret)."""


def redacted(url: str) -> str:
    """The URL without its password (what reports and ImportBatch.source_label show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Source:
    """A snapshot of what the importer needs: every row of the tables it reads, and the schema."""

    label: str
    columns: dict[str, set[str]]                      # table → its columns
    rows: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def tables(self) -> set[str]:
        return set(self.columns)

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, set())


def _sqlite(url: str):
    path = unquote(url.split("://", 1)[1])
    path = path[1:] if path.startswith("/") and path[1:2] == "/" else path   # sqlite:////abs and sqlite:///abs
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open the SQLite file {path}: {exc}") from None
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}
    return conn, columns, '"'


def _postgres(url: str):
    import psycopg

    try:
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=10)
    except psycopg.Error as exc:
        raise SourceError(f"cannot connect to {redacted(url)}: {str(exc).strip().splitlines()[0]}") from None
    conn.read_only = True
    cur = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                       "WHERE table_schema = current_schema()")
    columns: dict[str, set[str]] = {}
    for table, column in cur.fetchall():
        columns.setdefault(table, set()).add(column)
    return conn, columns, '"'


def _mysql(url: str):
    import pymysql

    parts = urlsplit(url)
    try:
        conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                               user=unquote(parts.username or "root"), password=unquote(parts.password or ""),
                               database=parts.path.lstrip("/"), charset="utf8mb4", connect_timeout=10)
    except pymysql.MySQLError as exc:
        raise SourceError(f"cannot connect to {redacted(url)}: {exc.args[-1] if exc.args else exc}") from None
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = DATABASE()")
        columns: dict[str, set[str]] = {}
        for table, column in cur.fetchall():
            columns.setdefault(table, set()).add(column)
    return conn, columns, "`"


def _connect(url: str):
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return _postgres(url)
    if scheme in ("mysql", "mariadb", "mysql+pymysql"):
        return _mysql(url)
    raise SourceError("give the source as sqlite:///path/one-api.db, postgres://… or mysql://…")


def _fetch(conn, quote: str, table: str) -> list[dict]:
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM {quote}{table}{quote} ORDER BY {quote}id{quote}" if table != "options"
                else f"SELECT * FROM {quote}{table}{quote}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def read_source(url: str) -> Source:
    """Every row of the tables the importer maps, read in one go (the source is never written)."""
    conn, columns, quote = _connect(url)
    try:
        missing = sorted({"users", "tokens", "channels", "options"} - set(columns))
        if missing:
            raise SourceError(f"{redacted(url)} is not a One API / New API database: no table {', '.join(missing)}")
        source = Source(label=redacted(url), columns=columns)
        for table in READ_TABLES:
            source.rows[table] = _fetch(conn, quote, table) if table in columns else []
        return source
    finally:
        conn.close()


def detect(source: Source) -> tuple[str, str]:
    """(product, version hint): any New-API-only table, column or dotted option key → new-api, else one-api."""
    na_tables = sorted(source.tables & NA_TABLES)
    na_columns = sorted(f"{t}.{c}" for t, c in NA_COLUMNS if source.has(t, c))
    dotted = any("." in str(row.get("key", "")) for row in source.rows.get("options", []))
    if na_tables or na_columns or dotted:
        hints = []
        if source.has("channels", "channel_info"):
            hints.append("≥ 2025-06 (multi-key channels)")
        if source.has("channels", "settings"):
            hints.append("≥ 2025-08")
        if source.has("users", "created_at"):
            hints.append("≥ 2026-04")
        return "new-api", "new-api " + (hints[-1] if hints else "(before 2025-06)")
    if source.has("logs", "elapsed_time") or source.has("channels", "system_prompt"):
        return "one-api", "one-api ≥ v0.6.9"
    if source.has("tokens", "subnet"):
        return "one-api", "one-api ≥ v0.6.5"
    if source.has("channels", "config"):
        return "one-api", "one-api ≥ v0.6.0"
    return "one-api", "one-api (before v0.6.0)"
