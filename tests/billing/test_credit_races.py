"""A team's balance counter (issue 11) and the ledger entries that move it other than usage: credits, codes,
adjustments, bundles and their expiry, an import's opening balances and its rollback. An entry is counted
once, whichever reaches Redis first: the rebuild of the counter (it reads the ledger in its snapshot) or the
entry's move after its commit. Real PostgreSQL and Redis, each interleaving driven explicitly (no sleeps):
the entry is posted from another thread, with its own connection, at the point named.
"""
import datetime as dt
import io
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from billing import limits, services
from billing.management.commands import ledger_audit
from billing.models import LedgerEntry
from gateway_site import shared_cache
from tests import factories
from tests.billing.oneapi_source import fill, scratch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["redis", "in-process"])
def balance(request, settings, tmp_path):
    """A team with credit, its balance check, and its counter missing (Redis came back empty, or it expired);
    in Redis, or in the in-process twin of its scripts (the embedded default, or Redis down)."""
    settings.TOLLGATE_JOURNAL_DIR = tmp_path / "journal"
    if request.param == "in-process":
        settings.REDIS_URL = ""
        assert shared_cache.sync_client() is None
    team = factories.TeamFactory()
    factories.credit(team, amount=5_000_000)
    check = limits.Check("balance", limits.balance_key(team.pk), 0, 1, aux=f"tg:held:team:{team.pk}",
                         scope=limits.Scope.BALANCE, source=limits.Source(team.pk))
    shared_cache.delete(check.key)
    return team, check


def _counter(check) -> int | None:
    raw = shared_cache.get(check.key)
    return None if raw is None else int(raw)


def _database(check) -> int:
    return limits.database_value(check.source, balance=True)


def _elsewhere(action):
    """Run `action` to its end (commit and after-commit hooks) in another thread: another process's request."""
    failure = []

    def run():
        try:
            action()
        except BaseException as exc:   # re-raised in the test's thread
            failure.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the action did not finish"
    if failure:
        raise failure[0]


def _rebuild_while(check, action, monkeypatch) -> None:
    """Rebuild the counter, running `action` elsewhere after the rebuild read the database (in its snapshot)
    and before it sets the counter."""
    read = limits.unflushed_records

    def read_then_act(*args):
        found = read(*args)
        _elsewhere(action)
        return found

    monkeypatch.setattr(limits, "unflushed_records", read_then_act)
    limits.rebuild(check)
    monkeypatch.setattr(limits, "unflushed_records", read)


def _topup(team, amount=700_000):
    def post():
        services.balance_credit(team=team, amount=amount, reason="top-up", created_by=None,
                                idempotency_key=uuid.uuid4().hex)
    return post


def test_a_credit_committing_between_the_rebuilds_read_and_its_set_is_in_the_counter(balance, monkeypatch):
    """The credit commits after the rebuild's snapshot and moves the counter before the rebuild sets it (it
    finds none). Before: the rebuild set what its snapshot said, and the credit was in neither."""
    team, check = balance
    before = _database(check)
    _rebuild_while(check, _topup(team), monkeypatch)
    assert _database(check) == before + 700_000
    assert _counter(check) == _database(check)


def test_a_credits_move_arriving_after_a_rebuild_that_counted_it_does_not_count_twice(balance, monkeypatch):
    """The other order: another process's rebuild reads the credit (committed) and sets the counter before the
    credit's own move reaches Redis. Before: the move added the credit a second time."""
    team, check = balance
    moves = []
    move = limits.balance_changed
    monkeypatch.setattr(limits, "balance_changed", lambda *args: moves.append(args))
    _topup(team)()
    monkeypatch.setattr(limits, "balance_changed", move)
    assert len(moves) == 1
    limits.rebuild(check)
    assert _counter(check) == _database(check)
    move(*moves[0])                              # late, after the rebuild
    assert _counter(check) == _database(check)


def test_a_credit_after_the_rebuild_moves_the_counter_once(balance, monkeypatch):
    team, check = balance
    limits.rebuild(check)
    moves = []
    move = limits.balance_changed

    def keep(*args):
        moves.append(args)
        move(*args)

    monkeypatch.setattr(limits, "balance_changed", keep)
    _topup(team, 300_000)()
    monkeypatch.setattr(limits, "balance_changed", move)
    assert _counter(check) == _database(check)
    move(*moves[0])                              # the same entry's move again: not counted twice
    assert _counter(check) == _database(check)


# --- every path that moves a balance other than usage: the same rule -------------------------------------
def _adjustment(team):
    def post():
        services.balance_adjust(team=team, amount=-250_000, reason="correction", created_by=None,
                                idempotency_key=uuid.uuid4().hex)
    return post


def _redemption(team):
    user = factories.MembershipFactory(team=team).user
    code = services.redemption_batch_create(created_by=None, count=1, amount=1_200_000)[0]
    return lambda: services.redemption_redeem(team=team, user=user, code=code)


def _bundle(team):
    def post():
        services.credit_bundle_grant(team=team, amount=900_000, expires_at=timezone.now() + dt.timedelta(days=3),
                                     reason="trial", created_by=None, idempotency_key=uuid.uuid4().hex)
    return post


def _expiry(team):
    _bundle(team)()
    later = timezone.now() + dt.timedelta(days=4)
    return lambda: services.credit_bundles_expire(team=team, now=later)


@pytest.fixture
def one_api(tmp_path):
    with scratch("sqlite", tmp_path) as db:
        fill(db, "one-api")
        yield db.url


def _import(team, url):
    from billing.oneapi_import.services import import_run
    return lambda: import_run(source=url, into_team=team.slug)


def _rollback(team, url):
    from billing.oneapi_import.services import import_rollback, import_run
    batch, _ = import_run(source=url, into_team=team.slug)
    return lambda: import_rollback(batch=batch.code)


PATHS = {"adjustment": _adjustment, "redemption": _redemption, "bundle": _bundle, "bundle expiry": _expiry}
IMPORTS = {"import opening balance": _import, "import rollback": _rollback}


@pytest.mark.parametrize("path", [*PATHS, *IMPORTS])
def test_every_balance_entry_committing_during_a_rebuild_is_in_the_counter(balance, path, monkeypatch, request):
    team, check = balance
    if path in IMPORTS:
        action = IMPORTS[path](team, request.getfixturevalue("one_api"))
    else:
        action = PATHS[path](team)
    shared_cache.delete(check.key)
    before = _database(check)
    _rebuild_while(check, action, monkeypatch)
    assert _database(check) != before            # the entry did move the balance
    assert _counter(check) == _database(check)


# --- ledger_audit: a ledger entry missing from a counter is found, credits during its window or not ---------
@pytest.fixture
def audited(balance, monkeypatch):
    """The balance counter rebuilt (Redis only: the audit checks Redis), and a list of actions the audit runs
    at its first wait in the settle window (it waits only when something differs); `waits` says it did."""
    team, check = balance
    if shared_cache.sync_client() is None:
        pytest.skip("ledger_audit checks the Redis counters")
    limits.rebuild(check)
    actions, waits = [], []

    class Clock:
        monotonic, time = staticmethod(time.monotonic), staticmethod(time.time)

        @staticmethod
        def sleep(seconds):
            if not waits:
                waits.append(seconds)
                for action in actions:
                    action()
            time.sleep(seconds)

    monkeypatch.setattr(ledger_audit, "time", Clock)
    return team, check, actions, waits


def _audit(tmp_path) -> tuple[bool, str]:
    out = io.StringIO()
    try:
        call_command("ledger_audit", "--journal-dir", str(tmp_path), "--settle-window", "0.5", stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def _held_move(action, monkeypatch):
    """Run `action` with its balance moves kept back; returns them (to send later, or never: its process died
    after the commit, or Redis was down)."""
    moves, move = [], limits.balance_changed
    monkeypatch.setattr(limits, "balance_changed", lambda *args: moves.append(args))
    action()
    monkeypatch.setattr(limits, "balance_changed", move)
    assert moves
    return [lambda args=args: move(*args) for args in moves]


def test_the_audit_finds_a_credit_missing_from_the_counter_though_the_team_is_credited_meanwhile(
        audited, tmp_path, monkeypatch):
    """Before: a team credited while the audit waited was skipped, so a credit the counter missed was not seen."""
    team, check, actions, waits = audited
    _held_move(_topup(team, 700_000), monkeypatch)       # never moved
    lost = LedgerEntry.objects.filter(team=team).latest("pk")
    actions.append(_topup(team, 40_000))                 # a credit while the audit waits: moves the counter
    ok, report = _audit(tmp_path)
    assert waits and not ok
    assert f"counter {check.key}: ledger entry {lost.pk} (+700000) not in it" in report
    assert _counter(check) == _database(check) - 700_000


def test_the_audit_passes_credits_whose_move_is_on_its_way_or_lands_in_its_window(audited, tmp_path, monkeypatch):
    team, check, actions, waits = audited
    late = _held_move(_topup(team, 500_000), monkeypatch)     # committed; its move not in Redis yet
    actions += [*late, _topup(team, 60_000), _adjustment(team)]
    ok, report = _audit(tmp_path)
    assert waits and ok, report
    assert _counter(check) == _database(check)


def test_a_counter_without_a_ledger_mark_is_checked_as_of_the_audits_first_read(audited, tmp_path, monkeypatch):
    """A counter rebuilt before balance counters kept a ledger mark: it is taken to hold the entries up to the
    audit's first read, and those after it as their moves say."""
    team, check, actions, waits = audited
    client = shared_cache.sync_client()
    client.delete(limits.CREDITS + check.key)
    late = _held_move(_topup(team, 500_000), monkeypatch)
    actions += [*late, _topup(team, 80_000)]
    ok, report = _audit(tmp_path)
    assert waits and ok, report
    client.incrby(check.key, 1)                          # one micro-unit off, and it stays so
    ok, report = _audit(tmp_path)
    assert not ok and f"counter {check.key}: Redis {_counter(check)} != database {_database(check)}" in report
