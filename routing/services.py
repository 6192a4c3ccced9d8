import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from routing.catalog import bump_version
from routing.models import AutoRouting, Channel, Model, RoutingRule

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,60}")


def _is_slug(value) -> bool:
    return isinstance(value, str) and _SLUG.fullmatch(value) is not None


@transaction.atomic
def model_upsert(*, public_id: str, **fields) -> Model:
    model, _ = Model.objects.update_or_create(public_id=public_id, defaults=fields)
    transaction.on_commit(bump_version)
    return model


# --- Channels (upstream accounts): the operator's platform channels and the teams' own (bring your own key) ---
PROVIDER_FIELDS = ("provider_name", "data_collection", "zdr", "quantization")   # `provider` preferences match these
CHANNEL_FIELDS = ("name", "kind", "base_url", "api_key", "models", "model_mapping", "priority", "weight", "status",
                  "max_concurrency", "test_model", *PROVIDER_FIELDS)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def clean_base_url(value) -> str | None:
    """An upstream base URL: http or https, a host (a single-label one too: `http://ollama:11434/v1`), an optional
    port and path; no credentials, query or fragment (the URL is shown to admins). None when not acceptable."""
    url = str(value or "").strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    host = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if (parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.query or parts.fragment
            or "#" in url or "?" in url or not _HOST.fullmatch(host) or len(url) > 300
            or any(c.isspace() or ord(c) < 32 for c in url)):
        return None
    return url


def _channel_models(*, team, items, errors) -> list[Model]:
    """Catalog models from Model objects or public ids; a team channel may serve only the enabled catalog
    models the team may use."""
    from routing.selectors import model_choices

    items = list(items or ())
    ids = [m.public_id if isinstance(m, Model) else str(m) for m in items]
    found = {m.public_id: m for m in Model.objects.filter(public_id__in=ids)}
    allowed = None if team is None else {public_id for public_id, _label in model_choices(team=team)}
    unknown = [i for i in dict.fromkeys(ids) if i not in found or (allowed is not None and i not in allowed)]
    if unknown:
        errors["models"] = [_("Not in the catalog (or not available to this team): %(models)s.")
                            % {"models": ", ".join(unknown)}]
    return [found[i] for i in dict.fromkeys(ids) if i in found]


def _clean_channel(*, team, channel: Channel | None, values: dict) -> dict:
    """Validate a channel's fields (the console form's and the API's one check). Raises ValidationError with
    field errors; returns the fields to store (models and test model as Model objects)."""
    errors: dict[str, list[str]] = {}
    name = str(values.get("name") or "").strip()
    if not name or len(name) > 80:
        errors["name"] = [_("Give the channel a name (at most 80 characters).")]
    kind = values.get("kind")
    if kind not in {code for code, _label in Channel.KINDS}:
        errors["kind"] = [_("Choose one of: %(kinds)s.") % {"kinds": ", ".join(c for c, _label in Channel.KINDS)}]
    base_url = clean_base_url(values.get("base_url"))
    if base_url is None:
        errors["base_url"] = [_("Enter an http:// or https:// URL, up to and including /v1.")]
    api_key = values.get("api_key")
    if api_key is not None:
        api_key = str(api_key).strip()
        if (channel is None and not api_key) or len(api_key) > 500 or any(c.isspace() for c in api_key):
            errors["api_key"] = [_("Enter the upstream API key (no spaces, at most 500 characters).")]
    elif channel is None:
        errors["api_key"] = [_("Enter the upstream API key (no spaces, at most 500 characters).")]
    models = _channel_models(team=team, items=values.get("models"), errors=errors)
    served = {m.public_id for m in models}
    mapping = values.get("model_mapping") or {}
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() and len(v) <= 120
            and not any(c.isspace() for c in v)
            for k, v in mapping.items()):
        errors["model_mapping"] = [_("Map each public model id to an upstream name (no spaces).")]
        mapping = {}
    elif unmapped := sorted(set(mapping) - served):
        errors["model_mapping"] = [_("Not among this channel's models: %(models)s.") % {"models": ", ".join(unmapped)}]
    for field, low, high in (("priority", -1000, 1000), ("weight", 1, 1000), ("max_concurrency", 1, 100_000)):
        value = values.get(field)
        if field == "max_concurrency" and value is None:
            continue
        if type(value) is not int or not low <= value <= high:
            errors[field] = [_("Enter a whole number from %(low)s to %(high)s.") % {"low": low, "high": high}]
    status = values.get("status")
    if status not in (Channel.ENABLED, Channel.DISABLED):
        errors["status"] = [_("Choose enabled or disabled.")]
    test_model = values.get("test_model")
    if isinstance(test_model, Model):
        test_model = test_model.public_id
    if test_model and test_model not in served:
        errors["test_model"] = [_("The test model must be one of the channel's models.")]
    provider = _clean_provider_metadata(values, errors)
    if errors:
        raise ValidationError(errors)
    return {**provider, "name": name, "kind": kind, "base_url": base_url, "api_key": api_key or None, "models": models,
            "model_mapping": {k.strip(): v.strip() for k, v in mapping.items()}, "priority": values["priority"],
            "weight": values["weight"], "status": status, "max_concurrency": values.get("max_concurrency"),
            "test_model": next((m for m in models if m.public_id == test_model), None)}


def _clean_provider_metadata(values: dict, errors: dict) -> dict:
    """The channel's provider metadata (what requests' `provider` preferences match), defaults when absent."""
    name = str(values.get("provider_name") or "").strip()
    if len(name) > 60 or any(ord(c) < 32 for c in name):
        errors["provider_name"] = [_("At most 60 characters, e.g. OpenAI, Azure, DeepInfra.")]
    collection = values.get("data_collection") or "allow"
    if collection not in {code for code, _label in Channel.DATA_COLLECTION}:
        errors["data_collection"] = [_("Choose allow or deny.")]
    zdr = values.get("zdr") or False
    if not isinstance(zdr, bool):
        errors["zdr"] = [_("Enter true or false.")]
    quantization = values.get("quantization") or ""
    if quantization and quantization not in {code for code, _label in Channel.QUANTIZATIONS}:
        errors["quantization"] = [_("Choose one of: %(values)s.") % {
            "values": ", ".join(code for code, _label in Channel.QUANTIZATIONS)}]
    return {"provider_name": name, "data_collection": collection, "zdr": zdr, "quantization": quantization}


def _save_channel(channel: Channel, fields: dict) -> Channel:
    models, api_key = fields.pop("models"), fields.pop("api_key")
    readdressed = channel.pk is None or api_key is not None or any(
        getattr(channel, f) != fields[f] for f in ("kind", "base_url"))
    for field, value in fields.items():
        setattr(channel, field, value)
    if api_key is not None:
        channel.set_api_key(api_key)
    if readdressed:  # a new key or address is the admin's answer to "needs attention"
        channel.needs_attention, channel.attention_reason = False, ""
    channel.save()
    channel.models.set(models)
    transaction.on_commit(bump_version)
    return channel


@transaction.atomic
def channel_create(*, team=None, name: str, base_url: str, api_key: str, models, kind=Channel.OPENAI,
                   priority=0, weight=1, model_mapping=None, status=Channel.ENABLED, max_concurrency=None,
                   test_model=None, provider_name="", data_collection="allow", zdr=False,
                   quantization="") -> Channel:
    """A platform channel (team=None) or a team's own. `models` and `test_model`: Model objects or catalog ids.
    Raises ValidationError with field errors. Running gateways pick it up within a second."""
    fields = _clean_channel(team=team, channel=None, values={
        "name": name, "kind": kind, "base_url": base_url, "api_key": api_key, "models": models,
        "model_mapping": model_mapping, "priority": priority, "weight": weight, "status": status,
        "max_concurrency": max_concurrency, "test_model": test_model, "provider_name": provider_name,
        "data_collection": data_collection, "zdr": zdr, "quantization": quantization})
    return _save_channel(Channel(team=team), fields)


@transaction.atomic
def channel_update(*, channel: Channel, **changes) -> Channel:
    """Change some of a channel's fields (those channel_create takes); an empty or missing `api_key` keeps the
    stored one. Raises ValidationError with field errors."""
    unknown = set(changes) - set(CHANNEL_FIELDS)
    if unknown:
        raise TypeError(f"unknown channel fields: {sorted(unknown)}")
    values = {"name": channel.name, "kind": channel.kind, "base_url": channel.base_url, "api_key": None,
              "models": list(channel.models.all()) if channel.pk else [], "model_mapping": dict(channel.model_mapping),
              "priority": channel.priority, "weight": channel.weight, "status": channel.status,
              "max_concurrency": channel.max_concurrency, "test_model": channel.test_model,
              **{f: getattr(channel, f) for f in PROVIDER_FIELDS}}
    values.update(changes)
    values["api_key"] = values["api_key"] or None
    if "models" in changes and "model_mapping" not in changes:  # names of models no longer served go with them
        served = {m.public_id if isinstance(m, Model) else str(m) for m in changes["models"] or ()}
        values["model_mapping"] = {k: v for k, v in values["model_mapping"].items() if k in served}
    return _save_channel(channel, _clean_channel(team=channel.team, channel=channel, values=values))


@transaction.atomic
def channel_disable(*, channel: Channel) -> Channel:
    """Stop routing to a channel (kept, with its probes and the usage records naming it). Always possible, even
    when its other fields would no longer pass validation (say, a model the team may no longer use)."""
    channel.status = Channel.DISABLED
    channel.save(update_fields=["status"])
    transaction.on_commit(bump_version)
    return channel


def channel_test(*, channel: Channel):
    """"Test now": one probe through the channel's adapter (recorded, fed to the breaker, error redacted). A
    passing test clears the channel's "needs attention" flag."""
    from routing.probes import channel_probe_now

    probe = channel_probe_now(channel, manual=True)
    if probe.ok and channel.needs_attention:
        Channel.objects.filter(pk=channel.pk).update(needs_attention=False, attention_reason="")
        channel.needs_attention, channel.attention_reason = False, ""
    return probe


@transaction.atomic
def routing_rule_upsert(*, team, name: str, default_model, backup_models=(), downgrade_model=None,
                        forbidden_models=(), key_group=None):
    """Create or replace a team's named route (`model: "route:NAME"`)."""
    rule, _ = RoutingRule.objects.update_or_create(
        team=team, key_group=key_group, name=name,
        defaults={"default_model": default_model, "backup_models": list(backup_models),
                  "downgrade_model": downgrade_model, "forbidden_models": list(forbidden_models)})
    transaction.on_commit(bump_version)
    return rule


# --- Routes (task tiers) and `auto` rules: the console's Routes page and /api/teams/<team>/routes/ ------------
BUDGET_PERIODS = ("none", "day", "week", "month")
_RULE_FIELDS = ("name", "key_group", "default_model", "backup_models", "downgrade_model", "forbidden_models",
                "budget_limit", "budget_period", "soft_limit")


def _outputs(model) -> set[str]:
    return set(model.output_modalities or ("text",))


def route_warnings(*, default_model, backups=(), downgrade_model=None, soft_limit=None) -> list[str]:
    """What a backup (or the downgrade) cannot serve that the default serves: warnings, not errors."""
    warnings = []
    others = [(_("Backup"), m) for m in backups] + ([(_("Downgrade"), downgrade_model)] if downgrade_model else [])
    for role, m in others:
        if m.pk == default_model.pk:
            continue
        facts = {"role": role, "model": m.public_id, "default": default_model.public_id}
        if not _outputs(default_model) <= _outputs(m):
            warnings.append(_("%(role)s %(model)s outputs %(its)s, but the default %(default)s outputs %(theirs)s.")
                            % {**facts, "its": ", ".join(sorted(_outputs(m))),
                               "theirs": ", ".join(sorted(_outputs(default_model)))})
        if m.context_length < default_model.context_length:
            warnings.append(_("%(role)s %(model)s has a shorter context (%(its)s tokens) than the default "
                              "%(default)s (%(theirs)s).") % {**facts, "its": m.context_length,
                                                              "theirs": default_model.context_length})
        if default_model.supports_tools and not m.supports_tools:
            warnings.append(_("%(role)s %(model)s has no tool calling, but the default %(default)s has.") % facts)
        if default_model.supports_vision and not m.supports_vision:
            warnings.append(_("%(role)s %(model)s takes no image input, but the default %(default)s does.") % facts)
        if default_model.supports_json_schema and not m.supports_json_schema:
            warnings.append(_("%(role)s %(model)s has no JSON-schema output, but the default %(default)s has.")
                            % facts)
        if "video" in (default_model.input_modalities or ()) and "video" not in (m.input_modalities or ()):
            warnings.append(_("%(role)s %(model)s takes no video input, but the default %(default)s does.") % facts)
    if soft_limit is not None and downgrade_model is None:
        warnings.append(_("A soft limit has no effect without a downgrade model."))
    return warnings


def _clean_rule(*, team, rule=None, values: dict) -> tuple[dict, list[str]]:
    """Validate a route's fields (catalog ids → models; unique name per team and key group; budgets) and
    compute its warnings. Raises ValidationError with field errors."""
    errors: dict[str, list[str]] = {}
    name = values["name"]
    if not _is_slug(name):
        errors.setdefault("name", []).append(_("Use letters, digits, hyphens and underscores only."))
    group = values.get("key_group")
    if group is not None and group.team_id != team.pk:
        errors.setdefault("key_group", []).append(_("No such key group in this team."))
    ids = [values["default_model"], *values["backup_models"], *( [values["downgrade_model"]]
                                                               if values["downgrade_model"] else []),
           *values["forbidden_models"]]
    known = {m.public_id: m for m in Model.objects.filter(public_id__in=ids)}

    def model_of(field, public_id):
        if public_id not in known:
            errors.setdefault(field, []).append(_("“%(model)s” is not in the catalog.") % {"model": public_id})
        return known.get(public_id)

    default = model_of("default_model", values["default_model"])
    backups = [m for public_id in dict.fromkeys(values["backup_models"])
               if public_id != values["default_model"] and (m := model_of("backup_models", public_id))]
    downgrade = model_of("downgrade_model", values["downgrade_model"]) if values["downgrade_model"] else None
    forbidden = list(dict.fromkeys(values["forbidden_models"]))
    for public_id in forbidden:
        model_of("forbidden_models", public_id)
    served = [m.public_id for m in ([default] if default else []) + backups + ([downgrade] if downgrade else [])]
    clash = [m for m in served if m in forbidden]
    if clash:
        errors.setdefault("forbidden_models", []).append(
            _("The route cannot serve a model it forbids: %(models)s.") % {"models": ", ".join(clash)})
    period = values["budget_period"]
    if period not in BUDGET_PERIODS:
        errors.setdefault("budget_period", []).append(_("Choose day, week, month or none."))
    for field in ("budget_limit", "soft_limit"):
        amount = values.get(field)
        if amount is not None and (type(amount) is not int or amount < 0):
            errors.setdefault(field, []).append(_("Enter a positive amount."))
    limit, soft = values.get("budget_limit"), values.get("soft_limit")
    if isinstance(limit, int) and isinstance(soft, int) and soft > limit:
        errors.setdefault("soft_limit", []).append(_("The soft limit must not exceed the budget."))
    if "name" not in errors:
        taken = RoutingRule.objects.filter(team=team, key_group=group, name=name)
        if rule is not None:
            taken = taken.exclude(pk=rule.pk)
        if taken.exists():
            errors.setdefault("name", []).append(
                _("This team already has a route “%(name)s” for that scope.") % {"name": name})
    if errors:
        raise ValidationError(errors)
    fields = {"name": name, "key_group": group, "default_model": default,
              "backup_models": [m.public_id for m in backups], "downgrade_model": downgrade,
              "forbidden_models": forbidden, "budget_limit": limit, "budget_period": period, "soft_limit": soft}
    return fields, route_warnings(default_model=default, backups=backups, downgrade_model=downgrade,
                                  soft_limit=soft)


def _save_rule(rule: RoutingRule) -> RoutingRule:
    """Save; a concurrent save of the same name in the same scope is a field error, not a 500."""
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise ValidationError({"name": [_("This team already has a route “%(name)s” for that scope.")
                                        % {"name": rule.name}]}) from None
    return rule


@transaction.atomic
def routing_rule_create(*, team, name: str, default_model: str, backup_models=(), downgrade_model=None,
                        forbidden_models=(), key_group=None, budget_limit=None, budget_period="month",
                        soft_limit=None) -> tuple[RoutingRule, list[str]]:
    """A new route from catalog ids; returns (rule, warnings naming what a backup cannot serve)."""
    fields, warnings = _clean_rule(team=team, values={
        "name": name, "key_group": key_group, "default_model": default_model,
        "backup_models": list(backup_models), "downgrade_model": downgrade_model or None,
        "forbidden_models": list(forbidden_models), "budget_limit": budget_limit,
        "budget_period": budget_period, "soft_limit": soft_limit})
    rule = _save_rule(RoutingRule(team=team, **fields))
    transaction.on_commit(bump_version)
    return rule, warnings


@transaction.atomic
def routing_rule_update(*, rule: RoutingRule, **changes) -> tuple[RoutingRule, list[str]]:
    """Change some of a route's fields (the same ones `routing_rule_create` takes); returns (rule, warnings)."""
    unknown = set(changes) - set(_RULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown route fields: {sorted(unknown)}")
    values = {"name": rule.name, "key_group": rule.key_group, "default_model": rule.default_model.public_id,
              "backup_models": list(rule.backup_models),
              "downgrade_model": rule.downgrade_model.public_id if rule.downgrade_model_id else None,
              "forbidden_models": list(rule.forbidden_models), "budget_limit": rule.budget_limit,
              "budget_period": rule.budget_period, "soft_limit": rule.soft_limit}
    values.update(changes)
    values["downgrade_model"] = values["downgrade_model"] or None
    fields, warnings = _clean_rule(team=rule.team, rule=rule, values=values)
    for field, value in fields.items():
        setattr(rule, field, value)
    _save_rule(rule)
    transaction.on_commit(bump_version)
    return rule, warnings


def routing_rule_warnings(*, rule: RoutingRule) -> list[str]:
    """A saved route's warnings (what its backups or downgrade cannot serve), as a save would report them."""
    known = {m.public_id: m for m in Model.objects.filter(public_id__in=rule.backup_models)}
    backups = [known[i] for i in rule.backup_models if i in known]
    return route_warnings(default_model=rule.default_model, backups=backups, downgrade_model=rule.downgrade_model,
                          soft_limit=rule.soft_limit)


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule) -> None:
    rule.delete()
    transaction.on_commit(bump_version)


AUTO_FIELDS = ("vision_route", "tools_route", "long_prompt_route", "long_prompt_tokens", "default_route",
               "claude_route")
AUTO_ROUTE_FIELDS = ("vision_route", "tools_route", "long_prompt_route", "default_route")   # never empty


def auto_routing_of(*, team) -> AutoRouting:
    """The team's `auto` rules (unsaved defaults, today's behaviour, when it never edited them)."""
    return AutoRouting.objects.filter(team=team).first() or AutoRouting(team=team)


@transaction.atomic
def auto_routing_update(*, team, **fields) -> tuple[AutoRouting, list[str]]:
    """Set which route `model: "auto"` picks per request feature; warns about routes the team lacks."""
    unknown = set(fields) - set(AUTO_FIELDS)
    if unknown:
        raise TypeError(f"unknown auto-routing fields: {sorted(unknown)}")
    auto = AutoRouting.objects.select_for_update().filter(team=team).first() or AutoRouting(team=team)
    for field, value in fields.items():
        setattr(auto, field, value)
    auto.claude_route = auto.claude_route or ""   # empty: unknown Claude ids are refused
    named = [*AUTO_ROUTE_FIELDS, *(["claude_route"] if auto.claude_route else [])]
    errors = {f: [_("Use letters, digits, hyphens and underscores only.")]
              for f in named if not _is_slug(getattr(auto, f))}
    if auto.long_prompt_tokens is not None and (type(auto.long_prompt_tokens) is not int
                                                or auto.long_prompt_tokens < 1):
        errors["long_prompt_tokens"] = [_("Enter a whole number of tokens (at least 1).")]
    if errors:
        raise ValidationError(errors)
    auto.save()
    transaction.on_commit(bump_version)
    names = set(RoutingRule.objects.filter(team=team).values_list("name", flat=True))
    warnings = [_("No route “%(name)s” exists yet: `auto` uses route “%(default)s” instead until it does.")
                % {"name": name, "default": auto.default_route}
                for name in dict.fromkeys(getattr(auto, f) for f in AUTO_ROUTE_FIELDS)
                if name not in names]
    if auto.claude_route and auto.claude_route not in names:
        warnings.append(_("No route “%(name)s” exists yet: unknown Claude model ids are refused until it does.")
                        % {"name": auto.claude_route})
    return auto, warnings
