"""Team model aliases: old model names a team's clients still send, each meaning one catalog model.

Services and selectors shared by the console page (routing/aliases_views.py) and the management API
(routing/aliases_api.py). (The One API importer makes no aliases: each name a source channel serves becomes a
catalog model, its `model_mapping` the channel's name mapping.) The relay reads them from its snapshot
(routing/relay/snapshot.py), never from here."""
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from routing.catalog import bump_version
from routing.models import Model, TeamModelAlias

AliasError = ValidationError
MAX_ALIAS = 120
# What a client may send as a model name: no spaces or control characters (slashes and dots are common).
_ALIAS = re.compile(r"[^\s\x00-\x1f\x7f]{1,%d}" % MAX_ALIAS)


def model_aliases(*, team) -> QuerySet[TeamModelAlias]:
    return TeamModelAlias.objects.filter(team=team).select_related("model").order_by("alias")


def model_alias(*, team, pk: int) -> TeamModelAlias | None:
    return model_aliases(team=team).filter(pk=pk).first()


def clean_alias(alias) -> str:
    """The alias as stored, or a ValidationError on `alias` saying why it cannot be one."""
    value = alias.strip() if isinstance(alias, str) else ""
    if not _ALIAS.fullmatch(value):
        raise ValidationError({"alias": [_("A model name of 1 to 120 characters without spaces.")]})
    if value == "auto" or value.startswith("route:"):
        raise ValidationError({"alias": [_("“auto” and “route:…” name routes, not models.")]})
    if Model.objects.filter(public_id=value).exists():
        raise ValidationError({"alias": [_("“%(alias)s” is a catalog model id; catalog ids always mean "
                                           "themselves.") % {"alias": value}]})
    return value


def _catalog_model(model, team) -> Model:
    """A Model or a catalog public id, which the team may use (its allowed models, when it has any)."""
    found = model if isinstance(model, Model) else Model.objects.filter(public_id=str(model or "")).first()
    if found is None or (team.allowed_models and found.public_id not in team.allowed_models):
        raise ValidationError({"model": [_("Not in the catalog (or not available to this team): %(models)s.")
                                         % {"models": model}]})
    return found


@transaction.atomic
def model_alias_upsert(*, team, alias: str, model: Model | str, note: str = "") -> tuple[TeamModelAlias, bool]:
    """Create the team's alias or point it at another model; (alias, created). The same alias, model and
    note again changes nothing (so an importer may re-run)."""
    name, target = clean_alias(alias), _catalog_model(model, team)
    found = TeamModelAlias.objects.select_for_update().filter(team=team, alias=name).first()
    if found is not None and found.model_id == target.pk and (found.note == note or not note):
        return found, False
    if found is None:
        found = TeamModelAlias.objects.create(team=team, alias=name, model=target, note=note[:200])
        created = True
    else:
        found.model, found.note, created = target, (note or found.note)[:200], False
        found.save(update_fields=["model", "note", "updated_at"])
    transaction.on_commit(bump_version)
    return found, created


_UNCHANGED = object()


@transaction.atomic
def model_alias_update(*, entry: TeamModelAlias, alias=_UNCHANGED, model=_UNCHANGED,
                       note=_UNCHANGED) -> TeamModelAlias:
    """Rename an alias, point it at another model and/or change its note (what is not given stays)."""
    if alias is not _UNCHANGED:
        name = clean_alias(alias)
        if name != entry.alias and TeamModelAlias.objects.filter(team_id=entry.team_id, alias=name).exists():
            raise ValidationError({"alias": [_("This team already has the alias “%(alias)s”.") % {"alias": name}]})
        entry.alias = name
    if model is not _UNCHANGED:
        entry.model = _catalog_model(model, entry.team)
    if note is not _UNCHANGED:
        entry.note = str(note or "")[:200]
    entry.save()
    transaction.on_commit(bump_version)
    return entry


@transaction.atomic
def model_alias_create(*, team, alias: str, model: Model | str, note: str = "") -> TeamModelAlias:
    """A new alias (the console's and the API's create: an existing name is an error, not a repoint)."""
    name = clean_alias(alias)
    if TeamModelAlias.objects.filter(team=team, alias=name).exists():
        raise ValidationError({"alias": [_("This team already has the alias “%(alias)s”.") % {"alias": name}]})
    return model_alias_upsert(team=team, alias=name, model=model, note=note)[0]


@transaction.atomic
def model_alias_delete(*, alias: TeamModelAlias) -> None:
    alias.delete()
    transaction.on_commit(bump_version)
