"""Moving in from One API / New API: import a source database into Tollgate, and undo an import.

`import_preview` (dry run) and `import_run` run the same code; the dry run does it in a transaction it rolls
back, so its report is exactly what the real run would do and nothing is written. A real run is one
transaction recorded as an ImportBatch with an ImportedRow per object it made; a row an active batch already
imported is skipped ("already imported"), so a re-run imports nothing twice. `import_rollback` undoes a batch
without deleting anything: reversal ledger entries, keys revoked, channels and codes disabled, prices put back.
"""
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.text import slugify

from accounts import roles
from accounts.models import Membership, Team
from billing import services as billing_services
from billing.models import ImportBatch, ImportedRow, LedgerEntry, Price, RedemptionCode, TeamBalance
from billing.oneapi_import import mapping
from billing.oneapi_import.mapping import MappingError
from billing.oneapi_import.reader import Source, SourceError, detect, read_source
from keys import auth as key_auth
from keys import services as key_services
from keys.models import ApiKey, KeyGroup
from keys.secrets import hash_secret
from routing import services as routing_services
from routing.catalog import bump_version
from routing.models import Channel, Model

__all__ = ["ImportReport", "SourceError", "import_preview", "import_rollback", "import_run"]

PRODUCT_NAMES = {"one-api": "One API", "new-api": "New API"}
# Channel settings Tollgate has no equivalent of: a channel that sets one is imported with a note naming it.
NOT_CARRIED = ("system_prompt", "open_ai_organization", "status_code_mapping", "param_override",
               "header_override", "setting", "settings", "config", "other")
IMPORT_LOCK = 0x7467_696D   # "tgim": the advisory lock key imports and rollbacks take turns on


@dataclass
class Mapped:
    kind: str
    source: str
    target: str
    note: str = ""


@dataclass
class Skipped:
    kind: str
    source: str
    reason: str


@dataclass
class ImportReport:
    product: str = ""
    version: str = ""
    source: str = ""
    dry_run: bool = True
    batch: str = ""
    mapped: list[Mapped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    source_totals: dict[str, int] = field(default_factory=dict)
    totals_before: dict[str, int] = field(default_factory=dict)
    totals_after: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        head = "DRY RUN (nothing written)" if self.dry_run else f"imported as batch {self.batch}"
        out = [f"{PRODUCT_NAMES.get(self.product, self.product)} database {self.source} — {self.version}; {head}",
               "Source: " + ", ".join(f"{k} {v}" for k, v in self.source_totals.items()), ""]
        out.append(f"Mapped ({len(self.mapped)}):")
        out += [f"  {m.kind:8} {m.source} → {m.target}" + (f"  ({m.note})" if m.note else "") for m in self.mapped]
        out.append(f"Not imported ({len(self.skipped)}):")
        out += [f"  {s.kind:8} {s.source}: {s.reason}" for s in self.skipped]
        out += ["", "Tollgate totals   before → after"]
        out += [f"  {k:16} {self.totals_before.get(k, 0)} → {self.totals_after.get(k, 0)}" for k in self.totals_after]
        return out


def tollgate_totals() -> dict[str, int]:
    return {
        "teams": Team.objects.count(),
        "users": get_user_model().objects.filter(is_active=True).count(),
        "active_keys": ApiKey.objects.filter(status=ApiKey.ACTIVE).count(),
        "key_groups": KeyGroup.objects.count(),
        "enabled_channels": Channel.objects.filter(status=Channel.ENABLED).count(),
        "models": Model.objects.filter(enabled=True).count(),
        "unused_codes": RedemptionCode.objects.filter(status=RedemptionCode.UNUSED).count(),
        "balance_micro": TeamBalance.objects.aggregate(s=Sum("balance"))["s"] or 0,
    }


def _rate(usd_rate) -> Decimal:
    try:
        rate = Decimal(str(usd_rate))
    except (InvalidOperation, ValueError):
        raise SourceError(f"--usd-rate {usd_rate!r} is not a number") from None
    if not rate.is_finite() or rate <= 0:
        raise SourceError("--usd-rate must be a positive number (deployment currency units per US dollar)")
    return rate


def _when(ts) -> dt.datetime | None:
    ts = int(ts or 0)
    return None if ts <= 0 else dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _whole(value) -> int:
    """A count for the report's totals: what is not a whole number counts 0 (its row is reported apart)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _set(value) -> bool:
    """Whether a channel setting says anything: a non-empty string, or JSON with a value that is not empty."""
    text = str(value or "").strip()
    if text in ("", "{}", "[]", "null"):
        return False
    try:
        parsed = json.loads(text)
    except ValueError:
        return True
    return any(parsed.values()) if isinstance(parsed, dict) else bool(parsed)


def _deleted(row: dict) -> bool:
    return row.get("deleted_at") not in (None, "")


class _Importer:
    """One pass over a source snapshot: each `_step` maps one table, recording every row as mapped or skipped."""

    def __init__(self, source: Source, *, into_team: Team | None, usd_rate: Decimal, batch: ImportBatch,
                 created_by, progress):
        self.src, self.into_team, self.rate, self.batch, self.by = source, into_team, usd_rate, batch, created_by
        self.progress = progress or (lambda step, done, total: None)
        self.product, self.version = detect(source)
        self.report = ImportReport(product=self.product, version=self.version, source=source.label)
        self.options = {str(r["key"]): r["value"] for r in source.rows["options"]}
        self.quota_per_unit = self._quota_per_unit()
        self.active = {(r.kind, r.source_key): r for r in ImportedRow.objects.filter(batch__rolled_back_at=None)}
        # Users and teams a rolled-back batch made: a new import takes them up again rather than make twins.
        self.previous = {(r.kind, r.source_key): r.target_id for r in ImportedRow.objects.filter(
            kind__in=("user", "team", "token"), batch__rolled_back_at__isnull=False).order_by("pk")}
        self.users: dict[int, tuple] = {}                   # source user id → (Django user, team, group name)
        self.groups: dict[tuple[int, str], KeyGroup] = {}
        self.catalog = list(Model.objects.all())
        self.served: dict[int, Model] = {}                  # catalog models the imported channels serve
        self.models_by_name: dict[str, Model] = {}
        for model in self.catalog:
            for name in (*model.aliases, model.upstream_name, model.public_id):
                self.models_by_name[name] = model
        self.group_ratios = self._ratio_map("GroupRatio")
        # Which model names each source group may use: its channels' models (One API's abilities are
        # channels.models × channels.group), whatever the channel's type or status.
        self.group_names: dict[str, dict[str, None]] = {}
        for row in source.rows["channels"]:
            for name in mapping.csv(row.get("group")) or ["default"]:
                self.group_names.setdefault(name, {}).update(dict.fromkeys(mapping.csv(row.get("models"))))
        self.channel_names = {n for names in self.group_names.values() for n in names}

    # --- helpers ---
    def _quota_per_unit(self) -> Decimal:
        value = self.options.get("QuotaPerUnit")
        if value in (None, ""):
            return mapping.DEFAULT_QUOTA_PER_UNIT
        try:
            qpu = mapping.decimal(value, "QuotaPerUnit")
        except MappingError:
            qpu = Decimal(0)
        if qpu <= 0:
            self.report.skipped.append(Skipped("option", "QuotaPerUnit", f"{value!r} unusable; 500000 used"))
            return mapping.DEFAULT_QUOTA_PER_UNIT
        return qpu

    def _ratio_map(self, key: str) -> dict:
        try:
            return mapping.json_object(self.options.get(key), f"option {key}")
        except MappingError as exc:
            self.report.skipped.append(Skipped("option", key, str(exc)))
            return {}

    def micro(self, quota) -> tuple[int, bool]:
        return mapping.to_micro(quota, quota_per_unit=self.quota_per_unit, usd_rate=self.rate)

    def done_before(self, kind: str, key: str) -> ImportedRow | None:
        return self.active.get((kind, key))

    def record(self, kind: str, key: str, target_id: int, **extra) -> None:
        row = ImportedRow.objects.create(batch=self.batch, kind=kind, source_key=key, target_id=target_id,
                                         extra=extra)
        self.active[(kind, key)] = row

    def mapped(self, *args) -> None:
        self.report.mapped.append(Mapped(*args))

    def skipped(self, *args) -> None:
        self.report.skipped.append(Skipped(*args))

    # --- the steps, in dependency order ---
    def run(self) -> ImportReport:
        rows = self.src.rows
        self.report.source_totals = {
            "users": len(rows["users"]), "tokens": len(rows["tokens"]), "channels": len(rows["channels"]),
            "redemptions": len(rows["redemptions"]),
            "user_quota": sum(_whole(u.get("quota")) for u in rows["users"])}
        steps = [("channels", self.channel), ("prices", None), ("users", self.user), ("tokens", self.token),
                 ("redemptions", self.code)]
        for table, step in steps:
            if step is None:
                self.progress("prices", 0, 1)
                self.prices()
                continue
            total = len(rows[table])
            for done, row in enumerate(rows[table], 1):
                self.guarded(table, step, row)
                self.progress(table, done, total)
        in_use = {str(r.get("group") or "default") for r in rows["users"]} | {
            str(r.get("group")) for r in rows["tokens"] if r.get("group")}
        for name, ratio in self.group_ratios.items():
            if name not in in_use:
                self.skipped("group", f"group {name} (ratio {ratio})", "no user or token of the source is in it")
        return self.report

    def guarded(self, table: str, step, row: dict) -> None:
        """One source row in a savepoint: a row of unexpected shape is reported and leaves nothing half-made."""
        try:
            with transaction.atomic():
                step(row)
        except (ValueError, TypeError, KeyError, AttributeError, DatabaseError) as exc:
            self.skipped(table.rstrip("s"), f"#{row.get('id', '?')}", f"unreadable row ({type(exc).__name__}: "
                         f"{str(exc)[:120]})")
            self.forget_rolled_back()

    def forget_rolled_back(self) -> None:
        """After a row's savepoint was rolled back, drop what the caches learnt from it (rare: O(n) here)."""
        self.active = {(r.kind, r.source_key): r for r in ImportedRow.objects.filter(batch__rolled_back_at=None)}
        live_models = set(Model.objects.values_list("pk", flat=True))
        self.models_by_name = {n: m for n, m in self.models_by_name.items() if m.pk in live_models}
        self.served = {pk: m for pk, m in self.served.items() if pk in live_models}
        self.catalog = [m for m in self.catalog if m.pk in live_models]
        live_users = set(get_user_model().objects.filter(pk__in=[u.pk for u, _, _ in self.users.values()])
                         .values_list("pk", flat=True))
        self.users = {k: v for k, v in self.users.items() if v[0].pk in live_users}
        live_groups = set(KeyGroup.objects.filter(pk__in=[g.pk for g in self.groups.values()])
                          .values_list("pk", flat=True))
        self.groups = {k: g for k, g in self.groups.items() if g.pk in live_groups}

    def model_for(self, name: str, provider: str) -> tuple[Model, bool]:
        """The catalog model a One API model name is (public id, alias or upstream name), else a new one."""
        if name in self.models_by_name:
            return self.models_by_name[name], False
        public_id = f"{provider}/{name}"[:120]
        model = routing_services.model_upsert(public_id=public_id, display_name=name[:120], provider=provider,
                                              upstream_name=name[:120], aliases=[name[:120]],
                                              input_modalities=["text"], output_modalities=["text"])
        self.record("model", f"model:{public_id}", model.pk)
        self.mapped("model", name, f"new catalog model {public_id}", "set its context length and features")
        self.models_by_name[name] = self.models_by_name[public_id] = model
        self.catalog.append(model)
        return model, True

    def channel(self, row: dict) -> None:
        label = f"#{row['id']} {row.get('name') or ''}".strip()
        try:
            kind, provider, default_url = mapping.channel_type(self.product, int(row.get("type") or 0))
            url = mapping.base_url(kind, row.get("base_url"), default_url)
            keys = mapping.channel_keys(row)
            asked_map = mapping.json_object(row.get("model_mapping"), "model_mapping")
        except MappingError as exc:
            return self.skipped("channel", label, str(exc))
        names = mapping.csv(row.get("models"))
        if not keys:
            return self.skipped("channel", label, "no upstream key")
        if not names:
            return self.skipped("channel", label, "serves no model")
        notes = []
        groups = mapping.csv(row.get("group")) or ["default"]
        # Tollgate limits a key group's models, not its channels: another group that may use one of these
        # models (through its own channels) is served by this channel too.
        if also := [g for g in self.group_names if g not in groups and set(names) & set(self.group_names[g])]:
            notes.append(f"groups {','.join(groups)} only in the source; in Tollgate it serves group "
                         f"{','.join(also)} too (a key group's models are limited, not its channels)")
        models = [self.model_for(name, provider)[0] for name in dict.fromkeys(names)]
        self.served.update((m.pk, m) for m in models)
        model_mapping = {}
        for asked, upstream in asked_map.items():
            model = self.models_by_name.get(asked)
            if model is None or model not in models or not isinstance(upstream, str) or not upstream.strip():
                notes.append(f"mapping {asked}→{upstream} ignored: not one of its models")
            elif upstream != model.upstream_name:
                model_mapping[model.public_id] = upstream.strip()
        if lost := [column for column in NOT_CARRIED if _set(row.get(column))]:
            notes.append(f"not carried (no Tollgate equivalent): {', '.join(lost)}")
        test_name = (row.get("test_model") or "").strip()
        test_model = self.models_by_name.get(test_name) if test_name else None
        if test_model not in models:
            test_model = None
        status = int(row.get("status") or 0)
        for index, (key, key_enabled) in enumerate(keys, 1):
            name = (row.get("name") or f"channel {row['id']}")[:70] + (f" #{index}" if len(keys) > 1 else "")
            source_key = f"channel:{row['id']}:{hashlib.sha256(key.encode()).hexdigest()[:24]}"
            if (earlier := self.done_before("channel", source_key)) is not None:
                self.skipped("channel", f"{label} key {index}", f"already imported by {earlier.batch.code}")
                continue
            enabled = status == 1 and key_enabled
            try:
                channel = routing_services.channel_create(
                    name=name, kind=kind, base_url=url, api_key=key, models=models, model_mapping=model_mapping,
                    priority=max(-1000, min(1000, int(row.get("priority") or 0))),
                    weight=max(1, min(1000, int(row.get("weight") or 0) or 1)),
                    status=Channel.ENABLED if enabled else Channel.DISABLED, test_model=test_model)
            except ValidationError as exc:
                self.skipped("channel", f"{label} key {index}",
                             "; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items()))
                continue
            self.record("channel", source_key, channel.pk)
            extra = [] if enabled else [f"disabled (status {status}{'' if key_enabled else ', key disabled'})"]
            self.mapped("channel", f"{label} key {index}",
                        f"{kind} channel '{channel.name}' {url}, models {','.join(m.public_id for m in models)}, "
                        f"key {channel.api_key_mask}",
                        "; ".join(notes + extra))

    def prices(self) -> None:
        model_ratio, completion = self._ratio_map("ModelRatio"), self._ratio_map("CompletionRatio")
        cache, create_cache = self._ratio_map("CacheRatio"), self._ratio_map("CreateCacheRatio")
        per_request = self._ratio_map("ModelPrice")
        names = {mapping.ratio_model_name(k): k for k in model_ratio} | {
            mapping.ratio_model_name(k): k for k in per_request}
        for name, key in names.items():
            model = self.models_by_name.get(name)
            if model is None:
                self.skipped("price", name, "no imported channel serves this model and the catalog has none")
                continue
            try:
                fields = self.price_fields(key, name, model_ratio, completion, cache, create_cache, per_request)
            except MappingError as exc:
                self.skipped("price", name, str(exc))
                continue
            source_key = f"price:{model.public_id}:" + ",".join(f"{v}" for v in fields.values())
            if (earlier := self.done_before("price", source_key)) is not None:
                self.skipped("price", name, f"already imported by {earlier.batch.code}")
                continue
            prior = Price.objects.filter(model=model, effective_from__lte=timezone.now()).first()
            price = billing_services.price_set(model=model, **fields)
            self.record("price", source_key, price.pk, prior=prior.pk if prior else None)
            self.mapped("price", name, f"{model.public_id} in {fields['input_per_m']} / out {fields['output_per_m']}"
                        f" micro per 1M, fee {fields['request_fee']}")
        for model in self.served.values():
            if not Price.objects.filter(model=model).exists():
                self.skipped("price", model.public_id, "no ratio stored in the source (its built-in default "
                             "applied there): set a price in Models & prices")

    def price_fields(self, key, name, model_ratio, completion, cache, create_cache, per_request) -> dict:
        if key in per_request or name in per_request:
            fee = mapping.decimal(per_request.get(key, per_request.get(name)), "ModelPrice")
            return {"input_per_m": 0, "output_per_m": 0, "cached_input_per_m": 0, "cache_write_5m_per_m": 0,
                    "cache_write_1h_per_m": 0,
                    "request_fee": int((fee * mapping.MICRO * self.rate).to_integral_value())}
        ratio = mapping.decimal(model_ratio[key], "ModelRatio")
        comp = mapping.decimal(completion.get(key, completion.get(name, 1)), "CompletionRatio")
        fields = {"input_per_m": mapping.per_m(ratio, self.rate),
                  "output_per_m": mapping.per_m(ratio * comp, self.rate),
                  "cached_input_per_m": None, "cache_write_5m_per_m": None, "request_fee": 0}
        if name in cache:
            fields["cached_input_per_m"] = mapping.per_m(ratio * mapping.decimal(cache[name], "CacheRatio"), self.rate)
        if name in create_cache:
            fields["cache_write_5m_per_m"] = mapping.per_m(
                ratio * mapping.decimal(create_cache[name], "CreateCacheRatio"), self.rate)
        return fields

    def team_for_user(self, row: dict, user) -> Team:
        if self.into_team is not None:
            key = f"member:{self.into_team.slug}:{row['username']}"
            if self.done_before("member", key) is None and not Membership.objects.filter(
                    user=user, team=self.into_team).exists():
                role = roles.ADMIN if int(row.get("role") or 0) >= 10 else roles.MEMBER
                membership = Membership.objects.create(user=user, team=self.into_team, role=role)
                self.record("member", key, membership.pk)
            return self.into_team
        key = f"team:{row['username']}"
        if (earlier := self.done_before("team", key)) is not None:
            return Team.objects.get(pk=earlier.target_id)
        team = Team.objects.filter(pk=self.previous.get(("team", key))).first()
        if team is None:
            base = slugify(row["username"])[:50] or f"user-{row['id']}"
            slug, n = base, 1
            while Team.objects.filter(slug=slug).exists():
                n += 1
                slug = f"{base}-{n}"
            team = Team.objects.create(name=(row.get("display_name") or row["username"])[:120], slug=slug)
        Membership.objects.get_or_create(user=user, team=team, defaults={"role": roles.OWNER})
        self.record("team", key, team.pk)
        return team

    def user(self, row: dict) -> None:
        label = f"#{row['id']} {row['username']}"
        status = int(row.get("status") or 0)
        if _deleted(row) or status == 3:
            return self.skipped("user", label, "deleted in the source")
        if status != 1:
            return self.skipped("user", label, f"disabled in the source (status {status}); its tokens are not "
                                "imported")
        key = f"user:{row['username']}"
        User = get_user_model()
        if (earlier := self.done_before("user", key)) is not None:
            user = User.objects.get(pk=earlier.target_id)
            team = self.team_for_user(row, user)
            self.users[row["id"]] = (user, team, row.get("group") or "default")
            self.skipped("user", label, f"already imported by {earlier.batch.code}")
        else:
            user = User.objects.filter(pk=self.previous.get(("user", key))).first()
            if user is not None:   # made by a batch since rolled back: active again
                User.objects.filter(pk=user.pk).update(is_active=True)
                username = user.username
            else:
                username, n = row["username"][:140], 1
                while User.objects.filter(username=username).exists():
                    n += 1
                    username = f"{row['username'][:130]}-oneapi{'' if n == 2 else n}"
                user = User(username=username, email=(row.get("email") or "")[:254])
                user.set_unusable_password()
                user.save()
            self.record("user", key, user.pk)
            team = self.team_for_user(row, user)
            self.users[row["id"]] = (user, team, row.get("group") or "default")
            note = "" if username == row["username"] else "username taken in Tollgate"
            self.mapped("user", label, f"user {username}, team {team.slug}",
                        "; ".join(filter(None, [note, "password not carried: the user sets one (reset)"])))
        self.balance(row, user, team)

    def balance(self, row: dict, user, team: Team) -> None:
        quota = int(row.get("quota") or 0)
        label = f"#{row['id']} {row['username']} quota {quota}"
        key = f"balance:{row['username']}"
        if (reward := _whole(row.get("aff_quota"))) > 0:
            self.skipped("balance", f"#{row['id']} {row['username']} invite reward {reward}",
                         "not yet transferred to the balance in the source: not imported (credit it if owed)")
        if quota == 0:
            return
        if (earlier := self.done_before("balance", key)) is not None:
            return self.skipped("balance", label, f"already imported by {earlier.batch.code}")
        amount, rounded = self.micro(quota)
        if amount == 0:
            return self.skipped("balance", label, "rounds to 0 micro-units")
        entry = billing_services.ledger_post(
            team=team, kind=LedgerEntry.ADJUSTMENT, amount=amount, idempotency_key=f"{self.batch.code}:{key}",
            created_by=self.by,
            reason=f"Opening balance: {PRODUCT_NAMES[self.product]} user {row['username']}, {quota} quota")
        self.record("balance", key, entry.pk)
        self.mapped("balance", label, f"{amount} micro-units to team {team.slug}", "rounded" if rounded else "")

    def group(self, team: Team, name: str) -> KeyGroup:
        if (team.pk, name) in self.groups:
            return self.groups[(team.pk, name)]
        group = KeyGroup.objects.filter(team=team, name=name[:80]).first()
        ratio = self.group_ratios.get(name, 1)
        try:
            ppm = int(mapping.decimal(ratio, "GroupRatio") * 1_000_000)
        except MappingError:
            ppm = 1_000_000
        if group is None:
            allowed, limit = self.group_models(name)
            group = key_services.key_group_create(team=team, name=name[:80], allowed_models=allowed)
            if ppm != 1_000_000:
                billing_services.group_multiplier_set(group=group, multiplier_ppm=ppm)
            self.record("group", f"group:{team.slug}:{name}", group.pk)
            self.mapped("group", f"group {name} (ratio {ratio})", f"key group {team.slug}/{group.name}",
                        "; ".join(filter(None, [f"price × {ppm / 1_000_000:g}" if ppm != 1_000_000 else "", limit])))
        elif not ImportedRow.objects.filter(kind="group", target_id=group.pk).exists():
            self.mapped("group", f"group {name} (ratio {ratio})", f"existing key group {team.slug}/{group.name}",
                        "kept as it is: the source's ratio and models are not applied to it")
        self.groups[(team.pk, name)] = group
        return group

    def group_models(self, name: str) -> tuple[list[str], str]:
        """A source group's models as its key group's allowed models (none when it may use every model the
        source's channels serve), and the report's note. A name the catalog does not know stays as written."""
        names = self.group_names.get(name)
        if not names:
            return [], f"no channel of the source serves group {name}: its keys are not limited to models"
        if set(names) >= self.channel_names:
            return [], ""
        allowed = list(dict.fromkeys(self.models_by_name[n].public_id if n in self.models_by_name else n
                                     for n in names))
        return allowed, f"models {','.join(allowed)} (its channels')"

    def token(self, row: dict) -> None:
        label = f"#{row['id']} {row.get('name') or ''} (user {row.get('user_id')})"
        secret = "sk-" + str(row.get("key") or "").strip()
        status, expires = int(row.get("status") or 0), _when(row.get("expired_time"))
        unlimited = bool(row.get("unlimited_quota"))
        if _deleted(row):
            return self.skipped("token", label, "deleted in the source")
        if row.get("user_id") not in self.users:
            return self.skipped("token", label, "its user was not imported")
        if status == 2:
            return self.skipped("token", label, "disabled in the source")
        if status == 3 or (expires is not None and expires <= timezone.now()):
            return self.skipped("token", label, f"expired{f' {expires:%Y-%m-%d}' if expires else ''}")
        if status == 4 or (not unlimited and int(row.get("remain_quota") or 0) <= 0):
            return self.skipped("token", label, "quota used up (exhausted)")
        if len(secret) < 8:
            return self.skipped("token", label, "no key")
        source_key = f"token:{hash_secret(secret)}"
        if (earlier := self.done_before("token", source_key)) is not None:
            return self.skipped("token", label, f"already imported by {earlier.batch.code}")
        existing = ApiKey.objects.filter(secret_hash=hash_secret(secret)).first()
        if existing is not None and existing.pk != self.previous.get(("token", source_key)):
            return self.skipped("token", label, "a Tollgate key already has this secret")
        user, team, user_group = self.users[row["user_id"]]
        try:
            ips = (mapping.networks(row.get("allow_ips"), lines=True) if self.src.has("tokens", "allow_ips")
                   and row.get("allow_ips") else mapping.networks(row.get("subnet"), lines=False))
        except MappingError as exc:
            return self.skipped("token", label, str(exc))
        if self.src.has("tokens", "model_limits"):
            names = mapping.csv(row.get("model_limits")) if row.get("model_limits_enabled") else []
        else:
            names = mapping.csv(row.get("models"))
        # A name the catalog does not know stays as written: it matches nothing, never widens the key.
        allowed = [self.models_by_name[n].public_id if n in self.models_by_name else n for n in names]
        group_name = str(row.get("group") or "").strip()
        notes = []
        if group_name == "auto":
            notes.append("group auto → the user's group")
        if not group_name or group_name == "auto":
            group_name = user_group
        budget = None
        if not unlimited:
            budget, rounded = self.micro(row.get("remain_quota") or 0)
            if rounded:
                notes.append("budget rounded")
        fields = dict(team=team, owner=user, group=self.group(team, group_name),
                      name=(row.get("name") or "imported")[:80], allowed_models=allowed, allowed_ips=ips,
                      expires_at=expires, budget_limit=budget, budget_period=KeyGroup.NONE)
        if existing is None:
            api_key, _ = key_services.api_key_create(secret=secret, **fields)
        else:   # revoked by the rollback of an earlier batch: the same secret works again
            api_key = existing
            for name, value in fields.items():
                setattr(api_key, name, value)
            api_key.status, api_key.revoked_at = ApiKey.ACTIVE, None
            api_key.save()
            transaction.on_commit(lambda: key_auth.publish(api_key))
        self.record("token", source_key, api_key.pk)
        limit = "unlimited" if budget is None else f"budget {budget} micro-units"
        self.mapped("token", label, f"key {api_key.mask} in {team.slug}/{group_name}, {limit}"
                    + (f", expires {expires:%Y-%m-%d}" if expires else "")
                    + (f", models {','.join(allowed)}" if allowed else "") + (f", IPs {','.join(ips)}" if ips else ""),
                    "; ".join(notes))

    def code(self, row: dict) -> None:
        label = f"#{row['id']} {row.get('name') or ''}".strip()
        status, expires = int(row.get("status") or 0), _when(row.get("expired_time"))
        body = billing_services._code_body(str(row.get("key") or ""))
        if _deleted(row):
            return self.skipped("code", label, "deleted in the source")
        if status == 3:
            return self.skipped("code", label, "already redeemed (its quota is in the redeemer's balance)")
        if status != 1:
            return self.skipped("code", label, "disabled in the source")
        if expires is not None and expires <= timezone.now():
            return self.skipped("code", label, f"expired {expires:%Y-%m-%d}")
        amount, rounded = self.micro(row.get("quota") or 0)
        if amount <= 0 or len(body) != billing_services.LEGACY_CODE_LENGTH:
            return self.skipped("code", label, "worth nothing" if amount <= 0 else "not a 32-character code")
        code_hash = billing_services._code_hash(body)
        source_key = f"code:{code_hash}"
        if (earlier := self.done_before("code", source_key)) is not None:
            return self.skipped("code", label, f"already imported by {earlier.batch.code}")
        if RedemptionCode.objects.filter(code_hash=code_hash).exists():
            return self.skipped("code", label, "Tollgate already has this code")
        code = RedemptionCode.objects.create(batch=self.batch.code, name=(row.get("name") or "")[:120],
                                             code_hash=code_hash, mask=f"…{body[-4:]}", amount=amount,
                                             expires_at=expires, created_by=self.by)
        self.record("code", source_key, code.pk)
        self.mapped("code", label, f"code {code.mask} worth {amount} micro-units", "rounded" if rounded else "")


def _team(slug: str | None) -> Team | None:
    if not slug:
        return None
    team = Team.objects.filter(slug=slug).first()
    if team is None:
        raise SourceError(f"--into-team: no team with the slug {slug!r}")
    return team


def _one_import_at_a_time() -> None:
    """Two imports (or an import and a rollback) at once would both miss what the other is importing and
    import it twice: they take turns, on a transaction-scoped advisory lock (SQLite has one writer anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK])


def _import(*, source: str, into_team, usd_rate, created_by, progress, dry_run: bool):
    rate = _rate(usd_rate)
    snapshot = read_source(source)      # before the transaction: the source may be slow, Tollgate waits not
    product, version = detect(snapshot)
    with transaction.atomic():
        _one_import_at_a_time()
        team = _team(into_team)
        before = tollgate_totals()
        batch = ImportBatch.objects.create(code=f"imp_{secrets.token_hex(6)}", product=product, version=version,
                                           source_label=snapshot.label, created_by=created_by)
        importer = _Importer(snapshot, into_team=team, usd_rate=rate, batch=batch, created_by=created_by,
                             progress=progress)
        report = importer.run()
        report.dry_run, report.batch = dry_run, "" if dry_run else batch.code
        report.totals_before, report.totals_after = before, tollgate_totals()
        if dry_run:
            transaction.set_rollback(True)
            return None, report
        batch.report = report.as_dict()
        batch.save(update_fields=["report"])
    return batch, report


def import_preview(*, source: str, into_team: str | None = None, usd_rate="1", progress=None) -> ImportReport:
    """The dry run: everything the import would do, done in a transaction that is rolled back."""
    return _import(source=source, into_team=into_team, usd_rate=usd_rate, created_by=None, progress=progress,
                   dry_run=True)[1]


def import_run(*, source: str, into_team: str | None = None, usd_rate="1", created_by=None,
               progress=None) -> tuple[ImportBatch, ImportReport]:
    """The import, in one transaction, recorded as an ImportBatch."""
    return _import(source=source, into_team=into_team, usd_rate=usd_rate, created_by=created_by,
                   progress=progress, dry_run=False)


def import_rollback(*, batch: ImportBatch | str, by=None) -> ImportReport:
    """Undo a batch, deleting nothing: a reversal entry for each opening balance, imported keys revoked,
    channels and imported models disabled, unused imported codes disabled, each imported price superseded
    by the one it replaced, imported users deactivated."""
    code = batch.code if isinstance(batch, ImportBatch) else batch
    report = ImportReport(dry_run=False, batch=code)
    with transaction.atomic():
        _one_import_at_a_time()
        batch = ImportBatch.objects.select_for_update().filter(code=code).first()
        if batch is None:
            raise SourceError(f"no import batch {code!r}")
        if batch.rolled_back_at is not None:
            raise SourceError(f"batch {code} was already rolled back on {batch.rolled_back_at:%Y-%m-%d %H:%M} UTC")
        report.product, report.version, report.source = batch.product, batch.version, batch.source_label
        report.totals_before = tollgate_totals()
        for row in batch.rows.order_by("-pk"):
            _undo(row, report, by)
        batch.rolled_back_at = timezone.now()
        report.totals_after = tollgate_totals()
        batch.rollback_report = report.as_dict()
        batch.save(update_fields=["rolled_back_at", "rollback_report"])
    return report


def _undo(row: ImportedRow, report: ImportReport, by) -> None:
    def done(target: str) -> None:
        report.mapped.append(Mapped(row.kind, row.source_key.split(":", 1)[-1][:60], target))

    if row.kind == "balance":
        entry = LedgerEntry.objects.get(pk=row.target_id)
        billing_services.ledger_post(team=entry.team, kind=LedgerEntry.ADJUSTMENT, amount=-entry.amount,
                                     idempotency_key=f"rollback:{entry.idempotency_key}", created_by=by,
                                     reason=f"Import {row.batch.code} rolled back: reverses entry {entry.pk}")
        done(f"reversed {entry.amount} micro-units of team {entry.team.slug}")
    elif row.kind == "token":
        api_key = ApiKey.objects.get(pk=row.target_id)
        if api_key.status == ApiKey.ACTIVE:
            key_services.api_key_revoke(api_key=api_key)
        done(f"key {api_key.mask} revoked")
    elif row.kind == "channel":
        channel = Channel.objects.get(pk=row.target_id)
        if channel.status == Channel.ENABLED:
            routing_services.channel_disable(channel=channel)
        done(f"channel '{channel.name}' disabled")
    elif row.kind == "code":
        changed = RedemptionCode.objects.filter(pk=row.target_id, status=RedemptionCode.UNUSED).update(
            status=RedemptionCode.DISABLED)
        done("code disabled" if changed else "code already redeemed: kept (its credit is the team's)")
    elif row.kind == "price":
        price = Price.objects.get(pk=row.target_id)
        prior = Price.objects.filter(pk=row.extra.get("prior")).first()
        if prior is not None:
            billing_services.price_set(model=price.model, input_per_m=prior.input_per_m,
                                       output_per_m=prior.output_per_m, cached_input_per_m=prior.cached_input_per_m,
                                       cache_write_5m_per_m=prior.cache_write_5m_per_m,
                                       cache_write_1h_per_m=prior.cache_write_1h_per_m, request_fee=prior.request_fee)
        done(f"price of {price.model.public_id} " + ("put back" if prior else "left (the model is disabled)"))
    elif row.kind == "model":
        Model.objects.filter(pk=row.target_id).update(enabled=False)
        transaction.on_commit(bump_version)
        done("imported model disabled")
    elif row.kind == "user":
        get_user_model().objects.filter(pk=row.target_id).update(is_active=False)
        done("user deactivated")
    # Teams, memberships and key groups stay (a team's ledger is kept forever); with no active key, a zero
    # balance and deactivated users they are inert.
