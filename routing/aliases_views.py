"""Model aliases: the console page (list, create, edit, delete) of a team's old model names.

Writes go through routing.aliases (model_alias_create / _update / _delete), shared with routing/aliases_api.py
and the One API importer."""
from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import roles
from accounts.edge import team_view
from accounts.views import render_team
from routing import aliases, selectors
from routing.models import TeamModelAlias

READ = (roles.ROUTES_MANAGE, roles.KEYS_READ)


class AliasForm(forms.Form):
    alias = forms.CharField(label=gettext_lazy("Old name clients send"), max_length=aliases.MAX_ALIAS,
                            widget=forms.TextInput(attrs={"placeholder": "gpt-4-turbo-preview"}))
    model = forms.ChoiceField(label=gettext_lazy("Catalog model it means"))
    note = forms.CharField(label=gettext_lazy("Note"), max_length=200, required=False)

    def __init__(self, *args, team, alias: TeamModelAlias | None = None, **kwargs):
        if alias is not None:
            kwargs.setdefault("initial", {"alias": alias.alias, "model": alias.model.public_id, "note": alias.note})
        super().__init__(*args, **kwargs)
        choices = selectors.model_choices(team=team)
        if alias is not None and alias.model.public_id not in dict(choices):  # a disabled model stays visible
            choices = [(alias.model.public_id, alias.model.public_id), *choices]
        self.fields["model"].choices = choices


def alias_for(access, pk) -> TeamModelAlias:
    found = aliases.model_alias(team=access.team, pk=pk)
    if found is None:
        raise Http404("No such model alias.")
    return found


def _save(form, service, **kwargs):
    """Run an alias service with a valid form's fields; its ValidationErrors land on the form (None)."""
    try:
        return service(**kwargs, **form.cleaned_data)
    except ValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
        for field, problems in detail.items():
            form.add_error(field if field in form.fields else None, problems)
        return None


@team_view(get=READ, post=roles.ROUTES_MANAGE)
def alias_list(request, access):
    team = access.team
    can_manage = access.can(roles.ROUTES_MANAGE)
    form = AliasForm(request.POST or None, team=team) if can_manage else None
    if request.method == "POST":
        saved = _save(form, aliases.model_alias_create, team=team) if form.is_valid() else None
        if saved is not None:
            messages.success(request, _("“%(alias)s” now means %(model)s for this team.")
                             % {"alias": saved.alias, "model": saved.model.public_id})
            return redirect("console-model-aliases", team=team.slug)
    return render_team(request, access, "console/model_aliases.html", {
        "aliases": aliases.model_aliases(team=team), "form": form, "can_manage": can_manage,
    }, status=400 if form is not None and form.errors else 200)


@team_view(get=READ, post=roles.ROUTES_MANAGE, model=TeamModelAlias)
def alias_detail(request, access, pk):
    alias = alias_for(access, pk)
    can_manage = access.can(roles.ROUTES_MANAGE)
    form = AliasForm(request.POST or None, team=access.team, alias=alias) if can_manage else None
    if request.method == "POST":
        saved = _save(form, aliases.model_alias_update, entry=alias) if form.is_valid() else None
        if saved is not None:
            messages.success(request, _("“%(alias)s” now means %(model)s for this team.")
                             % {"alias": saved.alias, "model": saved.model.public_id})
            return redirect("console-model-aliases", team=access.team.slug)
    return render_team(request, access, "console/model_alias_detail.html", {
        "alias": alias, "form": form, "can_manage": can_manage,
    }, status=400 if form is not None and form.errors else 200)


@team_view(get=roles.ROUTES_MANAGE, model=TeamModelAlias)
def alias_delete(request, access, pk):
    alias = alias_for(access, pk)
    if request.method == "POST":
        aliases.model_alias_delete(alias=alias)
        messages.success(request, _("Alias “%(alias)s” deleted.") % {"alias": alias.alias})
        return redirect("console-model-aliases", team=access.team.slug)
    return redirect("console-model-alias-detail", team=access.team.slug, pk=alias.pk)
