"""One API and New API source databases for the importer tests, built from their published schemas
(../shared/reference/oneapi-schema.md: One API 8df4a26, New API 4ca47ee2) in SQLite, PostgreSQL or MariaDB,
and filled with one realistic scenario (`fill`), whose expected outcome is `EXPECTED`."""
import datetime as dt
import json
import secrets
import sqlite3
import time
from contextlib import contextmanager

import psycopg
import pymysql

# Column types, GORM-style: pk (auto id), int (bigint), str (varchar(191)), text, bool, float, ts (deleted_at).
_OA = {
    "channels": "id pk, type int, key text, status int, name str, weight int, created_time int, test_time int, "
                "response_time int, base_url str, other text, balance float, balance_updated_time int, "
                "models text, group str, used_quota int, model_mapping str, priority int, config text, "
                "system_prompt text",
    "tokens": "id pk, user_id int, key str, status int, name str, created_time int, accessed_time int, "
              "expired_time int, remain_quota int, unlimited_quota bool, used_quota int, models text, subnet str",
    "users": "id pk, username str, password str, display_name str, role int, status int, email str, "
             "github_id str, wechat_id str, lark_id str, oidc_id str, access_token str, quota int, used_quota int, "
             "request_count int, group str, aff_code str, inviter_id int",
    "redemptions": "id pk, user_id int, key str, status int, name str, quota int, created_time int, "
                   "redeemed_time int",
    "options": "key keypk, value text",
    "abilities": "group str, model str, channel_id int, enabled bool, priority int",
    "logs": "id pk, user_id int, created_at int, type int, content text, username str, token_name str, "
            "model_name str, quota int, prompt_tokens int, completion_tokens int, channel_id int, "
            "elapsed_time int, is_stream bool, system_prompt_reset bool",
}
_NA = {
    "channels": "id pk, type int, key text, open_ai_organization str, test_model str, status int, name str, "
                "weight int, created_time int, test_time int, response_time int, base_url str, other text, "
                "balance float, balance_updated_time int, models text, group str, used_quota int, "
                "model_mapping text, status_code_mapping str, priority int, auto_ban int, other_info text, "
                "tag str, setting text, param_override text, header_override text, remark str, "
                "channel_info text, settings text",
    "tokens": "id pk, user_id int, key str, status int, name str, created_time int, accessed_time int, "
              "expired_time int, remain_quota int, unlimited_quota bool, model_limits_enabled bool, "
              "model_limits text, allow_ips str, used_quota int, group str, cross_group_retry bool, deleted_at ts",
    "users": "id pk, username str, password str, display_name str, role int, status int, email str, "
             "github_id str, oidc_id str, wechat_id str, telegram_id str, access_token str, quota int, "
             "used_quota int, request_count int, group str, aff_code str, aff_count int, aff_quota int, "
             "aff_history int, inviter_id int, deleted_at ts, linux_do_id str, setting text, remark str, "
             "stripe_customer str, discord_id str, created_at int, last_login_at int",
    "redemptions": "id pk, user_id int, key str, status int, name str, quota int, created_time int, "
                   "redeemed_time int, used_user_id int, deleted_at ts, expired_time int",
    "options": "key keypk, value text",
    "abilities": "group str, model str, channel_id int, enabled bool, priority int, weight int, tag str",
    "logs": "id pk, user_id int, created_at int, type int, content text, username str, token_name str, "
            "token_id int, group str, ip str, model_name str, quota int, prompt_tokens int, "
            "completion_tokens int, use_time int, is_stream bool, channel_id int, channel_name str, "
            "other text, request_id str, upstream_request_id str",
    "top_ups": "id pk, user_id int, amount int, money float, trade_no str, create_time int, complete_time int, "
               "status str",
    "midjourneys": "id pk, code int, user_id int, action str, mj_id str, prompt text, status str, channel_id int",
}
SCHEMAS = {"one-api": _OA, "new-api": _NA}
_TYPES = {
    "sqlite": {"pk": "integer PRIMARY KEY AUTOINCREMENT", "int": "integer", "str": "text", "text": "text",
               "bool": "numeric", "float": "real", "ts": "datetime", "keypk": "text PRIMARY KEY"},
    "postgres": {"pk": "bigserial PRIMARY KEY", "int": "bigint", "str": "varchar(191)", "text": "text",
                 "bool": "boolean", "float": "decimal", "ts": "timestamptz", "keypk": "varchar(191) PRIMARY KEY"},
    "mariadb": {"pk": "bigint AUTO_INCREMENT PRIMARY KEY", "int": "bigint", "str": "varchar(191)",
                "text": "longtext", "bool": "tinyint(1)", "float": "double", "ts": "datetime(3) NULL",
                "keypk": "varchar(191) PRIMARY KEY"},
}

DAY = 86_400
NOW = int(time.time())
DELETED = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def token_key() -> str:
    return secrets.token_hex(24)   # 48 characters [0-9a-f], stored without sk-


class Db:
    """A scratch source database of one backend: `url` for the importer, `insert` to fill it."""

    def __init__(self, backend: str, conn, url: str):
        self.backend, self.conn, self.url = backend, conn, url
        self.q = "`" if backend == "mariadb" else '"'
        self.p = "?" if backend == "sqlite" else "%s"

    def create(self, product: str) -> None:
        cur = self.conn.cursor()
        for table, spec in SCHEMAS[product].items():
            cols = ", ".join(f"{self.q}{name}{self.q} {_TYPES[self.backend][kind]}"
                             for name, kind in (c.split() for c in spec.split(", ")))
            cur.execute(f"CREATE TABLE {self.q}{table}{self.q} ({cols})")
        self.conn.commit()

    def insert(self, table: str, **row) -> None:
        if self.backend == "sqlite":
            row = {k: v.isoformat(" ") if isinstance(v, dt.datetime) else v for k, v in row.items()}
        names = ", ".join(f"{self.q}{k}{self.q}" for k in row)
        self.conn.cursor().execute(f"INSERT INTO {self.q}{table}{self.q} ({names}) VALUES "
                                   f"({', '.join([self.p] * len(row))})", list(row.values()))


@contextmanager
def scratch(backend: str, tmp_path):
    """A fresh, empty database: a SQLite file, or a PostgreSQL / MariaDB database created and dropped here."""
    name = f"oneapi_src_{secrets.token_hex(4)}"
    if backend == "sqlite":
        path = tmp_path / "one-api.db"
        conn = sqlite3.connect(path)
        try:
            yield Db(backend, conn, f"sqlite:///{path}")
        finally:
            conn.close()
    elif backend == "postgres":
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = f"postgresql://postgres@127.0.0.1:5432/{name}"
                with psycopg.connect(url) as conn:
                    yield Db(backend, conn, url)
            finally:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    else:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=name)
            try:
                yield Db(backend, conn, f"mysql://root:@127.0.0.1:3306/{name}")
            finally:
                conn.close()
        finally:
            admin.cursor().execute(f"DROP DATABASE `{name}`")
            admin.close()


def _user(db, product, id_, username, *, quota, group="default", status=1, role=1, deleted=False, aff_quota=0):
    row = dict(id=id_, username=username, password="$2a$10$" + "x" * 53, display_name=username.title(),
               role=role, status=status, email=f"{username}@example.com", access_token=secrets.token_hex(16),
               quota=quota, used_quota=123_456, request_count=42, group=group, aff_code=username[:4], inviter_id=0)
    if product == "new-api":
        row.update(aff_count=0, aff_quota=aff_quota, aff_history=aff_quota, setting="{}", created_at=NOW - 90 * DAY,
                   deleted_at=DELETED if deleted else None)
    elif deleted:
        row.update(status=3, username=f"deleted_{secrets.token_hex(8)}")
    db.insert("users", **row)


def _token(db, product, id_, user_id, name, *, remain=0, unlimited=False, expires=-1, status=1, models="",
           ips="", group="", deleted=False):
    key = token_key()
    row = dict(id=id_, user_id=user_id, key=key, status=status, name=name, created_time=NOW - 30 * DAY,
               accessed_time=NOW - DAY, expired_time=expires, remain_quota=remain, unlimited_quota=unlimited,
               used_quota=1000)
    if product == "new-api":
        row.update(model_limits_enabled=bool(models), model_limits=models, allow_ips=ips.replace(",", "\n"),
                   group=group, cross_group_retry=False, deleted_at=DELETED if deleted else None)
    else:
        row.update(models=models or None, subnet=ips)
    db.insert("tokens", **row)
    return "sk-" + key


def fill(db: Db, product: str, *, upstream: str = "https://api.openai.com") -> dict:
    """The scenario: five users (root, two active, one disabled, one deleted), channels of several kinds (a
    mapping, a multi-key one on New API, one Tollgate cannot serve), groups and ratios, tokens of every kind,
    used and unused codes. Returns the secrets and codes the tests need."""
    na = product == "new-api"
    db.create(product)
    _user(db, product, 1, "root", quota=1_000_000, role=100)
    _user(db, product, 2, "alice", quota=2_500_001, aff_quota=40_000)
    _user(db, product, 3, "bob", quota=250_000, group="vip")
    _user(db, product, 4, "carol", quota=750_000, status=2)
    _user(db, product, 5, "dave", quota=9_999, deleted=True)

    openai = dict(type=1, status=1, name="openai-main", weight=5, created_time=NOW - 60 * DAY, base_url=upstream,
                  models="gpt-4o-mini,gpt-4-turbo-preview", group="default,vip", priority=10, used_quota=0,
                  model_mapping=json.dumps({"gpt-4-turbo-preview": "gpt-4o-mini"}), key="sk-upstream-openai-0001")
    anthropic = dict(type=14, status=1, name="claude", weight=0, base_url="", models="claude-3-5-sonnet-20240620",
                     group="default", priority=0, model_mapping="", key="sk-ant-upstream-0002")
    azure = dict(type=3, status=1, name="azure-east", base_url="https://x.openai.azure.com", models="gpt-4",
                 group="default", key="azure-key-0003", model_mapping="")
    deepseek = dict(type=43 if na else 36, status=3, name="deepseek", base_url="", models="deepseek-chat",
                    group="default", key="sk-ds-upstream-0004", model_mapping="{}")
    if na:   # settings Tollgate has no equivalent of (reported), and one that says nothing (not reported)
        openai.update(header_override=json.dumps({"X-Org": "acme"}), status_code_mapping='{"429": "500"}')
        anthropic.update(setting=json.dumps({"force_format": False, "proxy": ""}))
    else:
        openai.update(system_prompt="You are terse.", config="{}")
    for id_, row in enumerate((openai, anthropic, azure, deepseek), 1):
        if na:
            row.setdefault("test_model", "gpt-4o-mini" if id_ == 1 else None)
            row.update(auto_ban=1, channel_info="{}")
        db.insert("channels", id=id_, **row)
    if na:
        db.insert("channels", id=5, type=1, status=1, name="pool", base_url=upstream, models="gpt-4o-mini",
                  group="default", priority=5, weight=1, model_mapping="", auto_ban=1,
                  key="sk-pool-key-a\nsk-pool-key-b\nsk-pool-key-c",
                  channel_info=json.dumps({"is_multi_key": True, "multi_key_size": 3, "multi_key_mode": "polling",
                                           "multi_key_status_list": {"1": 3}}))

    options = {"ModelRatio": {"gpt-4o-mini": 0.075, "gpt-4-turbo-preview": 5, "claude-3-5-sonnet-20240620": 1.5,
                              "deepseek-chat": 0.135, "no-such-model": 3},
               "CompletionRatio": {"gpt-4o-mini": 4, "gpt-4-turbo-preview": 3, "claude-3-5-sonnet-20240620": 5},
               "GroupRatio": {"default": 1, "vip": 0.8, "svip": 0.6}}
    if na:
        options["CacheRatio"] = {"claude-3-5-sonnet-20240620": 0.1}
        options["CreateCacheRatio"] = {"claude-3-5-sonnet-20240620": 1.25}
        options["ModelPrice"] = {"deepseek-chat": 0.01}     # US$ per request, instead of its ratio
        options["general_setting.quota_display_type"] = "USD"
    for key, value in options.items():
        db.insert("options", key=key, value=value if isinstance(value, str) else json.dumps(value))

    secrets_ = {
        "alice_unlimited": _token(db, product, 1, 2, "alice-laptop", unlimited=True, models="gpt-4o-mini"),
        "alice_budget": _token(db, product, 2, 2, "alice-ci", remain=1_000_000, expires=NOW + 30 * DAY,
                               ips="10.0.0.0/8,127.0.0.1"),
        "bob_vip": _token(db, product, 3, 3, "bob", remain=500_000),
        "root": _token(db, product, 4, 1, "root-admin", unlimited=True),
    }
    refused = {
        "expired": _token(db, product, 5, 2, "old", remain=10, expires=NOW - DAY),
        "disabled": _token(db, product, 6, 2, "off", remain=10, status=2),
        "carol": _token(db, product, 7, 4, "carol", unlimited=True),
        "exhausted": _token(db, product, 8, 3, "spent", remain=0, status=4),
    }
    if na:
        secrets_["bob_auto"] = _token(db, product, 9, 3, "bob-auto", unlimited=True, group="auto")
        refused["deleted"] = _token(db, product, 10, 2, "gone", unlimited=True, deleted=True)
        refused["bad_ip"] = _token(db, product, 11, 2, "bad-ip", unlimited=True, ips="office")

    codes = {"unused": secrets.token_hex(16), "used": secrets.token_hex(16), "disabled": secrets.token_hex(16)}
    na_extra = {"used_user_id": 0, "expired_time": 0} if na else {}
    db.insert("redemptions", id=1, user_id=1, key=codes["unused"], status=1, name="promo", quota=1_000_000,
              created_time=NOW - DAY, redeemed_time=0, **na_extra)
    db.insert("redemptions", id=2, user_id=1, key=codes["used"], status=3, name="promo", quota=1_000_000,
              created_time=NOW - DAY, redeemed_time=NOW, **({**na_extra, "used_user_id": 2} if na else {}))
    db.insert("redemptions", id=3, user_id=1, key=codes["disabled"], status=2, name="promo", quota=500_000,
              created_time=NOW - DAY, redeemed_time=0, **na_extra)
    if na:
        codes["expired"] = secrets.token_hex(16)
        db.insert("redemptions", id=4, user_id=1, key=codes["expired"], status=1, name="old", quota=500_000,
                  created_time=NOW - 9 * DAY, redeemed_time=0, used_user_id=0, expired_time=NOW - DAY)
    db.insert("abilities", group="default", model="gpt-4o-mini", channel_id=1, enabled=True, priority=10)
    db.insert("logs", id=1, user_id=2, created_at=NOW - DAY, type=2, content="charged", username="alice",
              token_name="alice-laptop", model_name="gpt-4o-mini", quota=300, prompt_tokens=10,
              completion_tokens=20, channel_id=1, is_stream=False)
    db.conn.commit()
    return {"secrets": secrets_, "refused": refused, "codes": codes}
