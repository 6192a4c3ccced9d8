"""Moving in from One API / New API (issue 13): databases built from the published schemas in SQLite,
PostgreSQL and MariaDB (tests/billing/oneapi_source.py), imported; every token's secret authenticates, balances
match to the micro-unit, unmappable rows are reported, a re-run changes nothing, a rollback restores the prior
state with ledger_audit clean. The live proof (a secret through a gateway to the simulator, the mapped model
upstream) is in test_oneapi_import_live.py."""
import datetime as dt
import io
import threading

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from accounts.models import Membership, Team
from billing import services as billing_services
from billing.models import ImportBatch, LedgerEntry, Price, RedemptionCode, TeamBalance
from billing.oneapi_import import mapping
from billing.oneapi_import.reader import Source, detect, read_source, redacted
from billing.oneapi_import.services import (
    IMPORT_LOCK,
    SourceError,
    import_preview,
    import_rollback,
    import_run,
    tollgate_totals,
)
from gateway_site import shared_cache
from keys import auth
from keys.auth import AuthError
from keys.models import ApiKey, KeyGroup
from keys.secrets import hash_secret
from routing.models import Channel, Model
from tests.billing.oneapi_source import DAY, NOW, fill, scratch
from tests.conftest import wait_for
from tests.factories import CatalogModelFactory, PriceFactory, TeamFactory, UserFactory, credit
from tests.servers import database_url

pytestmark = pytest.mark.django_db
BACKENDS = ["sqlite", "postgres", "mariadb"]
PRODUCTS = ["one-api", "new-api"]


@pytest.fixture
def source(request, tmp_path):
    product, backend = request.param
    with scratch(backend, tmp_path) as db:
        made = fill(db, product)
        yield product, db.url, made


@pytest.fixture(autouse=True)
def _keys_looked_up_in_the_test_transaction(monkeypatch):
    """auth.authenticate's real path, its database look-up run in this test's transaction (db_call would first
    drop a connection that is inside one)."""
    monkeypatch.setattr(auth, "db_call", sync_to_async)


def authenticate(secret):
    auth._local.clear()
    auth._unknown.clear()
    shared_cache.delete(auth.cache_key(hash_secret(secret)))   # commit hooks (publish) never run in a test
    return async_to_sync(auth.authenticate)(secret)


def skipped(report, kind):
    return {s.source: s.reason for s in report.skipped if s.kind == kind}


def rows_holding(text: str) -> list[str]:
    """The tables of Tollgate's database with a row whose text holds `text` (PostgreSQL: the row cast to text)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [t for (t,) in cursor.fetchall()]
        found = []
        for table in tables:
            cursor.execute(f'SELECT 1 FROM "{table}" t WHERE t::text LIKE %s LIMIT 1', [f"%{text}%"])
            if cursor.fetchone():
                found.append(table)
    return found


def team_balance(slug):
    return TeamBalance.objects.get(team__slug=slug).balance


both = pytest.mark.parametrize("source", [(p, b) for p in PRODUCTS for b in BACKENDS], indirect=True,
                               ids=[f"{p}-{b}" for p in PRODUCTS for b in BACKENDS])


@both
def test_import_maps_every_row_or_says_why_not(source):
    product, url, made = source
    assert detect(read_source(url))[0] == product
    before = tollgate_totals()
    batch, report = import_run(source=url)
    assert batch.product == product and report.batch == batch.code and not report.dry_run

    # Tokens: the stored secrets (sk- + key) authenticate, with their limits.
    for name, secret in made["secrets"].items():
        ctx = authenticate(secret)
        assert ctx.status == "active", name
    alice = {k.name: k for k in ApiKey.objects.filter(team__slug="alice")}
    assert alice["alice-laptop"].budget_limit is None and alice["alice-laptop"].allowed_models == [
        "openai/gpt-4o-mini"]
    assert alice["alice-ci"].budget_limit == 2_000_000 and alice["alice-ci"].budget_period == "none"
    assert alice["alice-ci"].allowed_ips == ["10.0.0.0/8", "127.0.0.1"]
    assert alice["alice-ci"].expires_at == dt.datetime.fromtimestamp(NOW + 30 * DAY, tz=dt.UTC)
    bob = ApiKey.objects.get(team__slug="bob", name="bob")
    assert bob.group.name == "vip" and bob.group.price_multiplier_ppm == 800_000 and bob.budget_limit == 1_000_000
    # A group may use its channels' models: vip has only openai-main's (no claude); default has every channel.
    assert bob.group.allowed_models == ["openai/gpt-4o-mini", "openai/gpt-4-turbo-preview"]
    assert alice["alice-ci"].group.name == "default" and alice["alice-ci"].group.allowed_models == []
    assert authenticate(made["secrets"]["bob_vip"]).group_models == tuple(bob.group.allowed_models)
    assert any("models openai/gpt-4o-mini,openai/gpt-4-turbo-preview (its channels')" in m.note
               for m in report.mapped if m.kind == "group" and m.source.startswith("group vip"))
    assert not ApiKey.objects.exclude(secret_hash__in=[]).filter(name__in=["old", "off", "carol", "spent"]).exists()
    for name, secret in made["refused"].items():
        with pytest.raises(AuthError):
            authenticate(secret)
    tokens = skipped(report, "token")
    assert any("expired" in r for r in tokens.values()) and any("disabled" in r for r in tokens.values())
    assert any("exhausted" in r for r in tokens.values()) and any("user was not imported" in r for r in tokens.values())
    if product == "new-api":
        assert any("deleted" in r for r in tokens.values()) and any("'office'" in r for r in tokens.values())
        assert ApiKey.objects.get(name="bob-auto").group.name == "vip"   # group auto → the user's group

    # Users → teams they own; balances exact (2 micro-units per quota at 500,000 quota per dollar).
    assert Membership.objects.get(team__slug="alice").role == "owner"
    assert team_balance("alice") == 5_000_002 and team_balance("root") == 2_000_000
    assert team_balance("bob") == 500_000
    users = skipped(report, "user")
    assert any("disabled" in r for r in users.values()) and any("deleted" in r for r in users.values())
    assert not Team.objects.filter(slug="carol").exists()
    assert report.totals_after["balance_micro"] - before["balance_micro"] == 7_500_002

    # Channels: kinds, mapping, priority, weight, status, multi-key; Azure reported.
    main = Channel.objects.get(name="openai-main")
    assert (main.kind, main.base_url, main.priority, main.weight) == ("openai", "https://api.openai.com/v1", 10, 5)
    assert main.model_mapping == {"openai/gpt-4-turbo-preview": "gpt-4o-mini"}
    assert main.api_key() == "sk-upstream-openai-0001" and "upstream" not in main.api_key_encrypted
    assert Channel.objects.get(name="claude").kind == "anthropic"
    assert Channel.objects.get(name="deepseek").status == Channel.DISABLED     # auto-disabled in the source
    assert any("Azure" in r for r in skipped(report, "channel").values())
    notes = {m.source: m.note for m in report.mapped if m.kind == "channel"}
    lost = "status_code_mapping, header_override" if product == "new-api" else "system_prompt"
    assert f"not carried (no Tollgate equivalent): {lost}" in notes["#1 openai-main key 1"]
    assert notes["#2 claude key 1"] == ""       # default only, and no other group may use Claude: nothing lost
    if product == "new-api":   # the pool serves default only; vip has gpt-4o-mini through openai-main
        assert notes["#5 pool key 1"] == ("groups default only in the source; in Tollgate it serves group vip too "
                                          "(a key group's models are limited, not its channels)")
    assert skipped(report, "group") == {"group svip (ratio 0.6)": "no user or token of the source is in it"}
    if product == "new-api":
        pool = Channel.objects.filter(name__startswith="pool #").order_by("name")
        assert [(c.api_key(), c.status) for c in pool] == [
            ("sk-pool-key-a", "enabled"), ("sk-pool-key-b", "disabled"), ("sk-pool-key-c", "enabled")]
        assert main.test_model.public_id == "openai/gpt-4o-mini"

    # Prices: ratio 1 = $2 per million input tokens; output × completion ratio; cache ratio (New API).
    mini = Price.objects.get(model__public_id="openai/gpt-4o-mini")
    assert (mini.input_per_m, mini.output_per_m) == (150_000, 600_000)
    claude = Price.objects.get(model__public_id="anthropic/claude-3-5-sonnet-20240620")
    assert (claude.input_per_m, claude.output_per_m) == (3_000_000, 15_000_000)
    if product == "new-api":
        assert (claude.cached_input_per_m, claude.cache_write_5m_per_m) == (300_000, 3_750_000)
        deepseek = Price.objects.get(model__public_id="deepseek/deepseek-chat")
        assert (deepseek.request_fee, deepseek.input_per_m, deepseek.output_per_m) == (10_000, 0, 0)
        assert any("invite reward 40000" in s.source for s in report.skipped)
    assert "no-such-model" in skipped(report, "price")

    # Codes: the unused one redeems in Tollgate for its value; used and disabled ones are reported.
    assert RedemptionCode.objects.filter(batch=batch.code).count() == 1
    codes = skipped(report, "code")
    assert any("already redeemed" in r for r in codes.values()) and any("disabled" in r for r in codes.values())
    root = Team.objects.get(slug="root")
    owner = root.memberships.get().user
    entry = billing_services.redemption_redeem(team=root, user=owner, code=made["codes"]["unused"])
    assert entry.amount == 2_000_000

    # Never dropped silently: every source row is in the report, imported or with the reason it was not.
    rows = read_source(url).rows
    for table, kind in (("users", "user"), ("tokens", "token"), ("channels", "channel"), ("redemptions", "code")):
        reported = {line.source.split()[0] for line in [*report.mapped, *report.skipped] if line.kind == kind}
        assert reported == {f"#{row['id']}" for row in rows[table]}, table
    # Only hashes and ciphertexts: no token secret, upstream key or code is stored in clear anywhere (what is
    # stored in clear is found: the e-mail address).
    assert rows_holding("alice@example.com")
    for secret in [*made["secrets"].values(), *made["refused"].values()]:
        assert rows_holding(secret.removeprefix("sk-")) == [], secret[:8]
    for clear in ("sk-upstream-openai-0001", "sk-ant-upstream-0002", *made["codes"].values()):
        assert rows_holding(clear) == [], clear[:8]
    call_command("ledger_audit")


@both
def test_a_second_import_changes_nothing_and_rollback_restores(source):
    product, url, made = source
    bystander = TeamFactory(slug="bystander")
    credit(bystander, 7_000_000)
    before = tollgate_totals()
    batch, _ = import_run(source=url)
    after = tollgate_totals()
    entries = LedgerEntry.objects.count()

    again, report = import_run(source=url)
    assert tollgate_totals() == after and LedgerEntry.objects.count() == entries
    assert again.rows.count() == 0 and report.mapped == []
    assert any("already imported by " + batch.code in s.reason for s in report.skipped)

    kept = {model: model.objects.count() for model in (ApiKey, Channel, Model, Team, Membership, RedemptionCode,
                                                       Price, get_user_model())}
    rollback = import_rollback(batch=batch.code)
    now = tollgate_totals()
    # Nothing deleted: the rollback adds reversal entries and prices, and changes statuses.
    assert {model: model.objects.count() for model in kept if model is not Price} == {
        model: count for model, count in kept.items() if model is not Price}
    assert Price.objects.count() >= kept[Price] and LedgerEntry.objects.count() == entries + 3
    for key in ("active_keys", "enabled_channels", "unused_codes", "balance_micro", "users", "models"):
        assert now[key] == before[key], key
    assert team_balance("bystander") == 7_000_000 and team_balance("alice") == 0
    for secret in made["secrets"].values():
        with pytest.raises(AuthError, match="revoked"):
            authenticate(secret)
    assert rollback.totals_after["balance_micro"] == before["balance_micro"]
    assert LedgerEntry.objects.filter(reason__contains=f"Import {batch.code} rolled back").count() == 3
    call_command("ledger_audit")
    with pytest.raises(SourceError, match="already rolled back"):
        import_rollback(batch=batch.code)

    # After a rollback the source can be imported again (a fresh batch).
    third, report = import_run(source=url)
    assert third.code != batch.code and team_balance("alice") == 5_000_002
    assert authenticate(made["secrets"]["root"]).status == "active"
    call_command("ledger_audit")


@pytest.mark.parametrize("source", [("new-api", "sqlite")], indirect=True)
def test_dry_run_reports_everything_and_writes_nothing(source):
    _, url, _ = source
    before, batches = tollgate_totals(), ImportBatch.objects.count()
    out = io.StringIO()
    call_command("import_oneapi", "--source", url, "--dry-run", stdout=out)
    text = out.getvalue()
    assert tollgate_totals() == before and ImportBatch.objects.count() == batches
    assert not Channel.objects.exists() and not Model.objects.exists() and not LedgerEntry.objects.exists()
    assert "DRY RUN" in text and "New API" in text
    assert "channel type 3 (Azure) has no Tollgate provider" in text and "sk-upstream" not in text
    assert "5000002 micro-units to team alice" in text and "balance_micro" in text
    assert "gpt-4-turbo-preview → new catalog model openai/gpt-4-turbo-preview" in text
    report = import_preview(source=url)
    real_batch, real = import_run(source=url)
    assert [m.target for m in report.mapped] == [m.target for m in real.mapped]
    assert report.totals_after == real.totals_after


@pytest.mark.parametrize("source", [("one-api", "postgres")], indirect=True)
def test_into_team_and_usd_rate(source):
    _, url, _ = source
    home = TeamFactory(slug="home")
    vip = KeyGroup.objects.create(team=home, name="vip", allowed_models=["openai/gpt-4o"])   # the team's own
    out = io.StringIO()
    call_command("import_oneapi", "--source", url, "--into-team", "home", "--usd-rate", "7.2", stdout=out)
    assert "existing key group home/vip  (kept as it is: the source's ratio and models are not applied" in (
        out.getvalue())
    vip.refresh_from_db()
    assert vip.allowed_models == ["openai/gpt-4o"] and vip.price_multiplier_ppm is None
    assert ApiKey.objects.get(name="bob").group == vip
    assert not Team.objects.filter(slug__in=["alice", "root"]).exists()
    # (1,000,000, 2,500,001, 250,000) quota × 2 micro-USD × 7.2, each user's entry rounded half up on its own.
    assert team_balance("home") == 14_400_000 + 36_000_014 + 3_600_000
    assert ApiKey.objects.filter(team=home, status="active").count() == 4
    assert set(home.memberships.values_list("user__username", flat=True)) == {"root", "alice", "bob"}
    assert Price.objects.get(model__public_id="openai/gpt-4o-mini").input_per_m == 1_080_000
    batch = ImportBatch.objects.get()
    out = io.StringIO()
    call_command("import_rollback", batch.code, stdout=out)
    assert team_balance("home") == 0 and "rolled back" in out.getvalue()
    call_command("ledger_audit")


@pytest.mark.parametrize("source", [("new-api", "mariadb")], indirect=True)
def test_a_run_that_fails_midway_leaves_nothing(source):
    """One transaction: a failure after the channels, users and tokens are in (here, at the codes) takes
    everything back, and the source can be imported afterwards."""
    _, url, _ = source
    before, entries = tollgate_totals(), LedgerEntry.objects.count()

    def fail_at_the_codes(step, done, total):
        if step == "redemptions":
            raise RuntimeError("the connection dropped")

    with pytest.raises(RuntimeError, match="connection dropped"):
        import_run(source=url, progress=fail_at_the_codes)
    assert tollgate_totals() == before and LedgerEntry.objects.count() == entries
    assert not ImportBatch.objects.exists() and not Channel.objects.exists() and not ApiKey.objects.exists()
    assert not Team.objects.exists() and not Model.objects.exists()
    batch, _ = import_run(source=url)
    assert team_balance("alice") == 5_000_002 and batch.rows.filter(kind="token").count() == 5


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(CommandError, match="sqlite:///"):
        call_command("import_oneapi", "--source", "ftp://x/y")
    with pytest.raises(SourceError, match="cannot open the SQLite file"):
        import_preview(source=f"sqlite:///{tmp_path}/missing.db")
    with pytest.raises(SourceError) as err:
        import_preview(source="mysql://root:hunter2@127.0.0.1:3306/no_such_database_h11")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(SourceError, match="usd-rate"):
        import_preview(source="sqlite:///x", usd_rate="-1")
    with pytest.raises(CommandError, match="no import batch"):
        call_command("import_rollback", "imp_nope")
    assert redacted("postgres://u:pw@h:5/db") == "postgres://u:***@h:5/db"


def test_units_are_exact():
    assert mapping.to_micro(500_000, quota_per_unit=mapping.DEFAULT_QUOTA_PER_UNIT, usd_rate=1) == (1_000_000, False)
    assert mapping.to_micro(1, quota_per_unit=mapping.DEFAULT_QUOTA_PER_UNIT, usd_rate=1) == (2, False)
    assert mapping.to_micro(1, quota_per_unit=mapping.DEFAULT_QUOTA_PER_UNIT, usd_rate=mapping.decimal(
        "0.3", "r")) == (1, True)
    assert mapping.per_m(mapping.decimal(1, "r"), 1) == 2_000_000
    assert mapping.ratio_model_name("gpt-4(openai)") == "gpt-4"
    assert mapping.base_url("openai", "https://api.x.ai/", "") == "https://api.x.ai/v1"
    with pytest.raises(mapping.MappingError):
        mapping.networks("10.0.0.0/8,office", lines=False)
    # New API multi-key channels: a JSON array as well as one key a line (the fill); statuses by index.
    multi = '{"is_multi_key": true, "multi_key_status_list": {"0": 2}}'
    assert mapping.channel_keys({"key": '["sk-a", " sk-b "]', "channel_info": multi}) == [
        ("sk-a", False), ("sk-b", True)]


def test_the_stored_quota_per_unit_is_used(tmp_path):
    """A deployment that changed QuotaPerUnit (stored as a float string): its value converts balances, budgets
    and codes; an unusable one is reported and the default used."""
    with scratch("sqlite", tmp_path) as db:
        fill(db, "one-api")
        db.insert("options", key="QuotaPerUnit", value="250000.000000")   # 1 quota = US$0.000004
        db.conn.commit()
        batch, report = import_run(source=db.url)
        assert team_balance("alice") == 10_000_004 and team_balance("bob") == 1_000_000
        assert ApiKey.objects.get(name="alice-ci").budget_limit == 4_000_000
        assert RedemptionCode.objects.get(batch=batch.code).amount == 4_000_000
        import_rollback(batch=batch)
        db.conn.execute("UPDATE options SET value = 'lots' WHERE key = 'QuotaPerUnit'")
        db.conn.commit()
        _, report = import_run(source=db.url)
    assert skipped(report, "option") == {"QuotaPerUnit": "'lots' unusable; 500000 used"}
    assert team_balance("alice") == 5_000_002
    call_command("ledger_audit")


def test_an_existing_username_is_not_taken_over(tmp_path):
    UserFactory(username="alice")
    with scratch("sqlite", tmp_path) as db:
        fill(db, "one-api")
        _, report = import_run(source=db.url)
    owner = Membership.objects.get(team__slug="alice").user
    assert owner.username == "alice-oneapi" and not owner.has_usable_password()
    assert any("username taken" in m.note for m in report.mapped)


def test_rows_of_unexpected_shape_are_reported_and_leave_nothing_half_made(tmp_path):
    """A user whose balance cannot be read (its team and user would be made before the balance fails): the
    row's savepoint takes them back, its tokens are reported, everything else imports."""
    with scratch("sqlite", tmp_path) as db:
        fill(db, "new-api")
        db.insert("users", id=6, username="erin", password="x", role=1, status=1, quota="lots", group="default")
        db.insert("tokens", id=20, user_id=6, key="e" * 48, status=1, name="erin", expired_time=-1,
                  remain_quota=0, unlimited_quota=True)
        db.insert("channels", id=9, type="abc", status=1, name="odd", key="k", models="gpt-4o-mini")
        db.conn.commit()
        _, report = import_run(source=db.url)
    reasons = {(s.kind, s.source): s.reason for s in report.skipped}
    assert "unreadable row (ValueError" in reasons[("user", "#6")]
    assert "unreadable row" in reasons[("channel", "#9")]
    assert reasons[("token", "#20 erin (user 6)")] == "its user was not imported"
    assert not Team.objects.filter(slug="erin").exists() and team_balance("alice") == 5_000_002
    call_command("ledger_audit")


def test_an_existing_catalog_model_is_served_and_its_price_put_back_by_the_rollback(tmp_path):
    """gpt-4o-mini is already in the catalog (by its alias): the imported channels serve that model, the
    imported ratio supersedes its price from now on, and the rollback puts the old price back and keeps the
    model enabled (only the models the import made are disabled)."""
    mini = CatalogModelFactory(public_id="openai/gpt-4o-mini-2024-07-18", aliases=["gpt-4o-mini"])
    PriceFactory(model=mini, input_per_m=123_000, output_per_m=456_000)
    with scratch("sqlite", tmp_path) as db:
        fill(db, "one-api")
        batch, report = import_run(source=db.url)
    assert not Model.objects.filter(public_id="openai/gpt-4o-mini").exists()
    assert mini in Channel.objects.get(name="openai-main").models.all()
    current = Price.objects.filter(model=mini).first()
    assert (current.input_per_m, current.output_per_m) == (150_000, 600_000)
    import_rollback(batch=batch)
    current = Price.objects.filter(model=mini).first()
    assert (current.input_per_m, current.output_per_m) == (123_000, 456_000)
    mini.refresh_from_db()
    assert mini.enabled and not Model.objects.get(public_id="openai/gpt-4-turbo-preview").enabled


def test_the_product_and_version_come_from_the_schema():
    def source(tables: dict, options=()):
        return Source(label="x", columns={t: set(c.split()) for t, c in tables.items()},
                      rows={"options": [{"key": k, "value": "1"} for k in options]})

    base = {"channels": "id type key", "tokens": "id key", "users": "id quota", "options": "key value",
            "redemptions": "id key", "abilities": "group model", "logs": "id"}
    assert detect(source(base)) == ("one-api", "one-api (before v0.6.0)")
    assert detect(source({**base, "tokens": "id key subnet"})) == ("one-api", "one-api ≥ v0.6.5")
    assert detect(source({**base, "logs": "id elapsed_time"})) == ("one-api", "one-api ≥ v0.6.9")
    # New API running on an old One API database keeps the One API columns: any New API sign wins.
    assert detect(source({**base, "tokens": "id key subnet", "top_ups": "id"}))[0] == "new-api"
    assert detect(source(base, options=["general_setting.ping_interval_enabled"]))[0] == "new-api"
    assert detect(source({**base, "logs": "id token_id"})) == ("new-api", "new-api (before 2025-06)")
    assert detect(source({**base, "midjourneys": "id", "channels": "id channel_info settings"})) == (
        "new-api", "new-api ≥ 2025-08")


def test_imports_take_turns(transactional_db, tmp_path):
    """While another session holds the import lock, an import waits for it (so two at once cannot both miss
    what the other imports), then runs."""
    assert connection.vendor == "postgresql"
    with scratch("sqlite", tmp_path) as db:
        fill(db, "one-api")
    results = []

    def run():
        try:
            results.append(import_run(source=db.url)[0].code)
        finally:
            connections.close_all()

    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [IMPORT_LOCK])
        worker = threading.Thread(target=run)
        worker.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        assert wait_for(lambda: other.execute(waiting).fetchone()[0] == 1, timeout=10)
        assert results == [] and not ImportBatch.objects.exists()
        other.execute("SELECT pg_advisory_unlock(%s)", [IMPORT_LOCK])
        worker.join(30)
    assert len(results) == 1 and ImportBatch.objects.get().code == results[0]
    assert team_balance("alice") == 5_000_002
