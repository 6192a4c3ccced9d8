import datetime as dt
import fcntl
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q, Sum, Window
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Team
from billing import limits, usage_journal
from billing.models import LedgerEntry, TeamBalance, UsageRecord
from gateway_site import periodic, shared_cache
from keys.models import ApiKey, KeyGroup


def default_settle_window() -> float:
    """How long a finished request's spend may be in Redis and not yet in the database, or the other way
    round: the journal flush (TOLLGATE_JOURNAL_FLUSH_SECONDS) with room for a slow batch."""
    return shared_cache.setting("TOLLGATE_SETTLE_WINDOW_SECONDS", max(5.0, 4 * settings.TOLLGATE_JOURNAL_FLUSH_SECONDS))


class Command(BaseCommand):
    help = ("Check the ledger: balances equal ledger sums, running balances, usage billed exactly once, no "
            "usage left unbilled too long, no usage record quarantined by the journal, no journal file or line "
            "waiting longer than the flush window, Redis budget and balance counters equal to the database "
            "within the settle window. Exits non-zero with a report on any mismatch.")

    def add_arguments(self, parser):
        parser.add_argument("--max-unbilled-age", type=float, default=None, metavar="SECONDS",
                            help="usage older than this and still unbilled is a problem (default: the reconcile "
                                 "window, two reconcile intervals plus a journal replay interval; "
                                 "TOLLGATE_UNBILLED_WINDOW_SECONDS overrides)")
        parser.add_argument("--settle-window", type=float, default=None, metavar="SECONDS",
                            help="how long a counter or a journal line may differ from the database before it "
                                 "is a problem (default: TOLLGATE_SETTLE_WINDOW_SECONDS, else four journal "
                                 "flush intervals, at least 5 s); the audit waits that long only when "
                                 "something differs")
        parser.add_argument("--journal-dir", type=Path, default=None,
                            help="the usage journal directory to check (default: TOLLGATE_JOURNAL_DIR)")

    def handle(self, *args, max_unbilled_age: float | None, settle_window: float | None = None,
               journal_dir: Path | None = None, **options):
        if max_unbilled_age is None:
            max_unbilled_age = periodic.unbilled_window()
        window = settle_window if settle_window is not None else default_settle_window()
        directory = journal_dir or settings.TOLLGATE_JOURNAL_DIR
        # What only settles with time is read first, and waited for (up to the window) only if it differs.
        background = [*self.journal(directory, window), *self.counters(window)]
        outermost = not connection.in_atomic_block   # inside a caller's transaction (tests) it is too late
        with transaction.atomic():
            if outermost and connection.vendor == "postgresql":
                # One snapshot for every query: entries and balances move together in their transactions,
                # so a post landing between two of these queries must not look like a mismatch.
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            problems = [*self.balances(), *self.running_balances(), *self.usage_billing(),
                        *self.unbilled(timedelta(seconds=max_unbilled_age))]
        stale = limits.stale_hold_count()
        if stale:
            self.stdout.write(f"MISMATCH holds: {stale} hold(s) older than the sweep window "
                              f"({settings.TOLLGATE_HOLD_SWEEP_SECONDS} s); run billing.tasks.sweep_stale_holds")
        rejected, rejected_files = usage_journal.quarantined()
        if rejected:
            self.stdout.write(f"MISMATCH journal: {rejected} quarantined usage record(s) in {rejected_files} "
                              f"rejected-*.jsonl file(s) under {settings.TOLLGATE_JOURNAL_DIR}: the database "
                              f"refused them (see the log for their request ids); fix and replay them")
        for text in background:
            self.stdout.write(f"MISMATCH {text}")
        if problems or stale or rejected or background:
            slugs = dict(Team.objects.filter(pk__in={t for t, _ in problems}).values_list("pk", "slug"))
            for team_id, text in problems:
                self.stdout.write(f"MISMATCH team {slugs.get(team_id, '?')} (id {team_id}): {text}")
            count = len(problems) + bool(stale) + bool(rejected) + len(background)
            raise CommandError(f"ledger audit found {count} problem(s)")
        self.stdout.write("ledger OK")

    def balances(self):
        sums = dict(LedgerEntry.objects.values("team_id").annotate(total=Sum("amount"))
                    .values_list("team_id", "total"))
        cached = dict(TeamBalance.objects.values_list("team_id", "balance"))
        for team_id in sorted(sums.keys() | cached.keys()):
            if team_id not in cached:
                yield team_id, f"has ledger entries (sum {sums[team_id]}) but no balance row"
            elif cached[team_id] != sums.get(team_id, 0):
                yield team_id, f"balance {cached[team_id]} != ledger sum {sums.get(team_id, 0)}"

    def running_balances(self):
        running = Window(Sum("amount"), partition_by=[F("team_id")], order_by=F("id").asc())
        bad = (LedgerEntry.objects.annotate(running=running).exclude(balance_after=F("running"))
               .values_list("team_id", "id", "balance_after", "running").order_by("team_id", "id"))
        for team_id, entry_id, after, expected in bad:
            yield team_id, f"entry {entry_id} balance_after {after} != running sum {expected}"

    def usage_billing(self):
        unlinked = (UsageRecord.objects.filter(billed_at__isnull=False, ledger_entry__isnull=True).exclude(cost=0)
                    .values("team_id").annotate(n=Count("id"), first=Min("id")).order_by("team_id"))
        for row in unlinked:
            yield row["team_id"], (f"{row['n']} usage record(s) marked billed without a ledger entry "
                                   f"(first {row['first']})")
        crossed = (UsageRecord.objects.filter(ledger_entry__isnull=False)
                   .filter(Q(billed_at__isnull=True) | ~Q(ledger_entry__team_id=F("team_id")) |
                           ~Q(ledger_entry__kind=LedgerEntry.USAGE))
                   .values("team_id").annotate(n=Count("id"), first=Min("id")).order_by("team_id"))
        for row in crossed:
            yield row["team_id"], (f"{row['n']} usage record(s) linked to an entry that is not their team's usage "
                                   f"or not marked billed (first {row['first']})")
        entries = (LedgerEntry.objects.filter(kind=LedgerEntry.USAGE)
                   .annotate(billed=Coalesce(Sum("usage_records__cost"), 0))
                   .exclude(amount=-F("billed")).values_list("team_id", "id", "amount", "billed").order_by("id"))
        for team_id, entry_id, amount, billed in entries:
            yield team_id, f"usage entry {entry_id} amount {amount} != -(sum of its records' costs {billed})"

    def unbilled(self, max_age: timedelta):
        stale = (UsageRecord.objects.filter(billed_at__isnull=True, created_at__lt=timezone.now() - max_age)
                 .values("team_id").annotate(n=Count("id"), oldest=Min("created_at")).order_by("team_id"))
        for row in stale:
            yield row["team_id"], (f"{row['n']} usage record(s) unbilled for over {max_age.total_seconds():.0f}s "
                                   f"(oldest {row['oldest']:%Y-%m-%d %H:%M:%S})")

    # --- the journal: nothing waits in it longer than the flush window ------------------------------------
    def journal(self, directory: Path, window: float):
        """Journal files of stopped processes not replayed within the replay interval, and lines of running
        processes still not in the database a settle window after this audit first saw them missing."""
        if not directory.exists():
            return
        orphan_window = periodic.interval_of("flush-usage-journal") + window
        rejected = _rejected_ids(directory)
        waiting: dict[str, tuple[str, object]] = {}    # request id → (its journal file, its team)
        for path in sorted(directory.glob("usage-*.jsonl")):
            state = _file_state(path)
            if state is None:
                continue
            live, age, records = state
            if not live:
                if age > orphan_window:
                    yield (f"journal: {path.name} of a stopped process ({len(records)} record(s)) not replayed "
                           f"for {age:.0f} s (over {orphan_window:.0f} s); run billing.tasks.replay_usage_journal "
                           f"or restart a gateway on {directory}")
                continue
            waiting.update({r["request_id"]: (path.name, r.get("team_id")) for r in records
                            if isinstance(r.get("request_id"), str) and r["request_id"] not in rejected})
        missing = _not_stored(waiting)
        deadline = time.monotonic() + window
        while missing and time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            missing = _not_stored(missing)
        by_file: dict[str, int] = {}
        for name, _ in missing.values():
            by_file[name] = by_file.get(name, 0) + 1
        for name, count in sorted(by_file.items()):
            yield (f"journal: {count} usage record(s) in {name} still not in the database after the {window:g} s "
                   f"flush window (is its process's flush stuck? see its log)")

    # --- Redis counters: budget spend and available balance equal the database ---------------------------
    def counters(self, window: float):
        if not shared_cache.redis_configured():
            return   # the embedded default: the counters live in the one gateway process
        client = shared_cache.sync_client()
        try:
            if client is None:
                raise ConnectionError("marked down")
            keys = [k.decode() for pattern in ("tg:spent:*", limits.balance_key("*"))
                    for k in client.scan_iter(pattern, count=1000)]
        except (*shared_cache.UNREACHABLE, ConnectionError) as exc:
            yield f"cache: Redis unreachable ({type(exc).__name__}): budget counters and holds not checked"
            return
        now = dt.datetime.now(dt.UTC)
        sources = {key: source for key in keys if (source := counter_source(key, now)) is not None}
        marks: dict[str, int] = {}   # balance counters rebuilt without a ledger mark: the first read's last entry
        first = _read_counters(client, sources, marks)
        differ = {n: r for n, r in first.items() if r.differs}
        last = dict(differ)
        deadline = time.monotonic() + window
        while differ and time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            last = _read_counters(client, {n: sources[n] for n in differ}, marks)
            differ = {n: r for n, r in last.items() if r.differs}
        for name in sorted(differ):
            a, b = first[name], last[name]
            # Spend only grows: what one side had at the start the other must have by the end of the window,
            # or the counter drifted. A balance's spend is its credits less the balance, on each side.
            if not (a.spent <= b.database_spent and a.database_spent <= b.spent):
                yield (f"counter {name}: Redis {b.value} != database {b.database} after the {window:g} s settle "
                       f"window (first read: Redis {a.value}, database {a.database}); delete the key to have it "
                       f"rebuilt")
            elif missed := sorted(a.missing.keys() & b.missing.keys()):
                yield (f"counter {name}: ledger entr{'y' if len(missed) == 1 else 'ies'} "
                       f"{', '.join(f'{i} ({a.missing[i]:+d})' for i in missed)} not in it after the {window:g} s "
                       f"settle window; delete the key to have it rebuilt")


def counter_source(key: str, now: dt.datetime) -> tuple[limits.Source, bool] | None:
    """(where a counter is rebuilt from, whether it is a balance) for a key billing.limits and the relay's
    quota checks write, or None: a key of an ended period (it only waits for its expiry), or of a key, group
    or team that no longer exists."""
    from billing.limits import route_names

    parts = key.split(":")
    if key.startswith(limits.balance_key("")):
        return (limits.Source(int(parts[2])), True) if parts[2].isdigit() else None
    if len(parts) < 5 or parts[1] != "spent":
        return None
    scope, tag = parts[2], parts[-1]
    start = None
    if tag != "all":
        period = {"d": "day", "w": "week", "m": "month"}.get(tag[:1])
        try:
            start = dt.datetime.strptime(tag[1:], "%Y%m%d").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
        if period is None or limits.period_end(period, start) <= now:
            return None
    ident = parts[3]
    if scope == "key":
        team = ApiKey.objects.filter(pk=ident).values_list("team_id", flat=True).first() if ident.isdigit() else None
        field, value = "api_key_id", int(ident) if ident.isdigit() else None
    elif scope == "group":
        team = KeyGroup.objects.filter(pk=ident).values_list("team_id", flat=True).first() if ident.isdigit() else None
        field, value = "api_key__group_id", int(ident) if ident.isdigit() else None
    elif scope == "route":
        team = int(ident) if ident.isdigit() else None
        field, value = "route__in", route_names(":".join(parts[4:-1]))
    elif scope == "team":
        team, field, value = (int(ident) if ident.isdigit() else None), None, None
    else:
        return None
    if team is None:
        return None
    return limits.Source(team, field, value, start.timestamp() if start else None), False


def counter_value(source: tuple[limits.Source, bool]) -> int:
    return limits.database_value(source[0], balance=source[1])


@dataclass(frozen=True, slots=True)
class CounterRead:
    """One read of a counter and of the database. `spent`, `database_spent`: the spend each side counts (a
    budget's value; a balance's credits less its value, so that a credit moves neither). `missing`: the ledger
    entries (id → amount) a balance counter does not have yet (their move may still be on its way)."""
    value: int
    database: int
    spent: int
    database_spent: int
    missing: dict[int, int]

    @property
    def differs(self) -> bool:
        return self.spent != self.database_spent or bool(self.missing)


def _read_counters(client, sources: dict, marks: dict[str, int]) -> dict[str, CounterRead]:
    """Each counter with its ledger record (limits.CREDITS), read together in Redis, then the database."""
    names = list(sources)
    pipe = client.pipeline(transaction=True)
    for name in names:
        pipe.get(name)
        pipe.hgetall(limits.CREDITS + name)
    replies = pipe.execute() if names else []
    reads = {}
    for i, name in enumerate(names):
        raw, credits = replies[2 * i], replies[2 * i + 1]
        if raw is None:
            continue   # gone (expired): rebuilt on next use
        source, balance = sources[name]
        if not balance:
            value = int(raw)
            spent = limits.database_value(source)
            reads[name] = CounterRead(value, spent, value, spent, {})
        else:
            reads[name] = _read_balance(name, int(raw), {k.decode(): int(v) for k, v in credits.items()},
                                        source.team_id, marks)
    return reads


def _read_balance(name: str, value: int, credits: dict[str, int], team_id: int, marks: dict) -> CounterRead:
    """A balance counter holds the ledger entries up to its rebuild's mark and those past it in `credits`:
    the database's other entries are missing from it."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:   # the balance, its mark and the entries in one snapshot
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        available, last = limits.balance_read(team_id)
        mark = credits["mark"] if "mark" in credits else marks.setdefault(name, last)   # none: the first read's
        entries = LedgerEntry.objects.filter(team_id=team_id).exclude(kind=LedgerEntry.USAGE)
        total = entries.aggregate(s=Sum("amount"))["s"] or 0
        missing = {pk: amount for pk, amount in entries.filter(pk__gt=mark).values_list("pk", "amount")
                   if str(pk) not in credits}
    spent = total - sum(missing.values()) - value
    return CounterRead(value, available, spent, total - available, missing)


def _file_state(path: Path) -> tuple[bool, float, list[dict]] | None:
    """(owned by a live process, seconds since last written, its records) of one journal file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            live = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            live = True
        age = time.time() - os.fstat(fd).st_mtime
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read()
    finally:
        os.close(fd)
    records = []
    for line in data.split(b"\n"):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and not record.get("_open"):   # a stream's open line is not a record yet
            records.append(record)
    return live, age, records


def _rejected_ids(directory: Path) -> set[str]:
    """Request ids already set aside in rejected-*.jsonl (reported as quarantined, not as waiting)."""
    ids = set()
    for path in directory.glob("rejected-*.jsonl"):
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            record = entry.get("record") if isinstance(entry, dict) else None
            if isinstance(record, dict) and isinstance(record.get("request_id"), str):
                ids.add(record["request_id"])
    return ids


def _not_stored(waiting: dict[str, tuple]) -> dict[str, tuple]:
    """The journal lines of `waiting` whose record is not in the database (a record of a team deleted since
    is dropped by the flush, so it is not waited for)."""
    ids = list(waiting)
    stored = set()
    for start in range(0, len(ids), 1000):
        stored.update(UsageRecord.objects.filter(request_id__in=ids[start:start + 1000])
                      .values_list("request_id", flat=True))
    left = {rid: value for rid, value in waiting.items() if rid not in stored}
    teams = set(Team.objects.filter(pk__in={t for _, t in left.values() if type(t) is int})
                .values_list("pk", flat=True))
    return {rid: value for rid, value in left.items() if value[1] in teams}
