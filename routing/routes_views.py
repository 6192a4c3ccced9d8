"""Routes (task tiers): the console page (list, create, edit, delete, `auto` rules) and the management API.

Writes go through routing.services (routing_rule_create / _update / _delete, auto_routing_update), shared with
routing/routes_api.py. The try-it panel posts to routing/relay/dry_run.py (the relay), which renders this
page again with its result."""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from accounts import roles
from accounts.edge import team_view
from accounts.views import render_team
from keys import selectors as key_selectors
from keys.models import ApiKey
from routing import selectors, services
from routing.models import RoutingRule
from routing.routes_forms import AutoRoutingForm, RouteForm, RouteTryForm

READ = (roles.ROUTES_MANAGE, roles.KEYS_READ)


def _model_choices(team):
    return selectors.model_choices(team=team)


def try_choices(team):
    """Active keys and key groups the try-it panel may run a request as."""
    return (key_selectors.api_keys(team=team).filter(status=ApiKey.ACTIVE),
            key_selectors.key_groups(team=team))


def rule_for(access, pk) -> RoutingRule:
    rule = selectors.routing_rules(team=access.team).filter(pk=pk).first()
    if rule is None:
        raise Http404("No such route.")
    return rule


def save_with(form, service, **kwargs):
    """Run a route service with a valid form's fields; its ValidationErrors land on the form. Returns the
    service's (object, warnings), or None when it refused."""
    try:
        return service(**kwargs, **form.service_fields())
    except ValidationError as error:
        form.add_error(None, error)
        return None


def _flash_warnings(request, warnings):
    for warning in warnings:
        messages.warning(request, warning)


def routes_page(request, access, *, form=None, auto_form=None, try_form=None, try_result=None, status=200):
    team = access.team
    can_manage = access.can(roles.ROUTES_MANAGE)
    keys, groups = try_choices(team)
    if can_manage:
        form = form or RouteForm(team=team, model_choices=_model_choices(team))
        auto_form = auto_form or AutoRoutingForm(auto=services.auto_routing_of(team=team))
        try_form = try_form or RouteTryForm(keys=keys, groups=groups)
    errors = any(f is not None and f.is_bound and f.errors for f in (form, auto_form, try_form))
    return render_team(request, access, "console/routes.html", {
        "rules": selectors.routing_rules(team=team), "form": form, "auto_form": auto_form,
        "auto": services.auto_routing_of(team=team), "try_form": try_form, "try_result": try_result,
        "models": _model_choices(team), "can_manage": can_manage,
    }, status=400 if errors and status == 200 else status)


@team_view(get=READ, post=roles.ROUTES_MANAGE)
def route_list(request, access):
    if request.method == "POST":
        form = RouteForm(request.POST, team=access.team, model_choices=_model_choices(access.team))
        saved = save_with(form, services.routing_rule_create, team=access.team) if form.is_valid() else None
        if saved is None:
            return routes_page(request, access, form=form, status=400)
        rule, warnings = saved
        messages.success(request, _("Route “%(name)s” created.") % {"name": f"route:{rule.name}"})
        _flash_warnings(request, warnings)
        return redirect("console-routes", team=access.team.slug)
    return routes_page(request, access)


@team_view(get=READ, post=roles.ROUTES_MANAGE, model=RoutingRule)
def route_detail(request, access, pk):
    rule = rule_for(access, pk)
    form = RouteForm(request.POST or None, team=access.team, model_choices=_model_choices(access.team), rule=rule)
    if request.method == "POST":
        saved = save_with(form, services.routing_rule_update, rule=rule) if form.is_valid() else None
        if saved is not None:
            messages.success(request, _("Route “%(name)s” saved.") % {"name": f"route:{rule.name}"})
            _flash_warnings(request, saved[1])
            return redirect("console-route-detail", team=access.team.slug, pk=rule.pk)
    return render_team(request, access, "console/route_detail.html", {
        "rule": rule, "form": form, "models": _model_choices(access.team),
        "warnings": services.routing_rule_warnings(rule=rule),
        "can_manage": access.can(roles.ROUTES_MANAGE),
    }, status=400 if form.errors else 200)


@team_view(get=roles.ROUTES_MANAGE, model=RoutingRule)
def route_delete(request, access, pk):
    rule = rule_for(access, pk)
    if request.method == "POST":
        services.routing_rule_delete(rule=rule)
        messages.success(request, _("Route “%(name)s” deleted.") % {"name": f"route:{rule.name}"})
        return redirect("console-routes", team=access.team.slug)
    return redirect("console-route-detail", team=access.team.slug, pk=rule.pk)


@team_view(get=roles.ROUTES_MANAGE)
def route_auto(request, access):
    if request.method != "POST":
        return redirect("console-routes", team=access.team.slug)
    form = AutoRoutingForm(request.POST, auto=services.auto_routing_of(team=access.team))
    if form.is_valid():
        try:
            _auto, warnings = services.auto_routing_update(team=access.team, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("The rules of “auto” were saved."))
            _flash_warnings(request, warnings)
            return redirect("console-routes", team=access.team.slug)
    return routes_page(request, access, auto_form=form, status=400)
