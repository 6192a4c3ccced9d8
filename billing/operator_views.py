"""Operator pages about money and teams: redemption-code batches, team creation, cross-team request logs,
prices per customer (multipliers and overrides); and the team's own "Models & prices" page."""
import base64
from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts import roles
from accounts.edge import team_view
from accounts.models import Team
from accounts.views import never_cache_if, platform_view, render_operator, render_team, reveal_once_pop, reveal_once_put
from billing import selectors, services
from billing.models import PriceOverride
from billing.money import MICRO
from billing.operator_forms import (
    BatchForm,
    GroupMultiplierForm,
    OperatorLogFilterForm,
    PriceOverrideForm,
    RedemptionBatchForm,
    TeamCreateForm,
    TeamMultiplierForm,
    balance_confirm_token,
)
from billing.views import _csv_response, _decimal, _page
from keys.models import KeyGroup
from routing.selectors import catalog_models


def _multiplier_text(ppm: int | None) -> str:
    """1_000_000 → "1", 850_000 → "0.85"."""
    if ppm is None:
        return ""
    text = f"{Decimal(ppm) / MICRO:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _groups_with_multipliers(team) -> list:
    groups = list(_groups(team))
    for group in groups:
        group.multiplier_text = _multiplier_text(group.price_multiplier_ppm)
    return groups


# --- redemption-code batches --------------------------------------------------------------------------------
# The plain codes exist in one response only: the page right after the batch is made (carried there in the
# encrypted one-time session reveal, as a new key's secret is), with a CSV download built into that page as a
# data: link. Afterwards the batch shows and exports masks and status only.

def _codes_csv_data_url(codes: list[str], batch: str) -> str:
    body = "\ufeffcode,batch\r\n" + "".join(f"{code},{batch}\r\n" for code in codes)
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(body.encode()).decode()


def _codes_page(request, platform, form, status=200):
    reveal = reveal_once_pop(request, "codes")
    if reveal:
        reveal["download"] = _codes_csv_data_url(reveal["codes"], reveal["batch"])
    response = render_operator(request, platform, "operator/codes.html", {
        "form": form, "batches": selectors.redemption_batches()[:200], "reveal": reveal,
        "void_form": BatchForm(),
    }, status=status)
    return never_cache_if(response, reveal)


@platform_view()
def operator_codes(request, platform):
    form = RedemptionBatchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        codes = services.redemption_batch_create(
            created_by=request.user, count=d["count"], amount=d["amount"], expires_at=d["expires_at"],
            name=d["name"], credit_valid_days=d["credit_valid_days"])
        batch = services.redemption_batch_of(code=codes[0])
        reveal_once_put(request, "codes", codes=codes, batch=batch, name=d["name"], amount=d["amount"])
        messages.success(request, ngettext("%(n)d code made.", "%(n)d codes made.", len(codes)) % {"n": len(codes)})
        return redirect("operator-codes")
    return _codes_page(request, platform, form, status=400 if form.errors else 200)


@platform_view()
def operator_codes_export(request, platform):
    """A batch's codes as CSV: masks, status and redemptions (never the plain codes)."""
    form = BatchForm(request.GET)
    batch = selectors.redemption_batch(batch=form.cleaned_data["batch"]) if form.is_valid() else None
    if batch is None:
        messages.error(request, _("Choose a batch to export."))
        return redirect("operator-codes")
    rows = ([c.mask, c.status, _decimal(c.amount), c.expires_at.isoformat() if c.expires_at else "",
             c.credit_valid_days, c.redeemed_at.isoformat() if c.redeemed_at else "",
             c.redeemed_by_team.slug if c.redeemed_by_team else "",
             c.redeemed_by_user.username if c.redeemed_by_user else ""]
            for c in selectors.redemption_batch_codes(batch=batch["batch"]).iterator(chunk_size=2000))
    return _csv_response(f"tollgate-codes-{batch['batch']}.csv",
                         ["mask", "status", "amount", "expires_utc", "credit_valid_days", "redeemed_utc",
                          "redeemed_by_team", "redeemed_by_user"], rows)


@platform_view()
def operator_codes_void(request, platform):
    if request.method != "POST":
        return redirect("operator-codes")
    form = BatchForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a batch to void."))
        return redirect("operator-codes")
    voided = services.redemption_batch_void(batch=form.cleaned_data["batch"])
    messages.success(request, ngettext("%(n)d unused code voided.", "%(n)d unused codes voided.", voided)
                     % {"n": voided})
    return redirect("operator-codes")


# --- teams --------------------------------------------------------------------------------------------------

@platform_view(get=roles.PLATFORM_MANAGE)
def operator_team_create(request, platform):
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team, password = services.team_create(**form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            reveal_once_put(request, "team", team=team.pk, name=team.name, owner=form.cleaned_data["owner"].strip(),
                            password=password)
            return redirect("operator-team-create")
    reveal = reveal_once_pop(request, "team")
    response = render_operator(request, platform, "operator/team_create.html", {"form": form, "reveal": reveal},
                               status=400 if form.errors else 200)
    return never_cache_if(response, reveal)


# --- cross-team request logs --------------------------------------------------------------------------------

def _operator_channel_label(record) -> str:
    """Staff see every channel's name: the team's own by name, the platform's marked as such."""
    channel = record.channel
    if channel is None:
        return "—"
    return channel.name if channel.team_id == record.team_id else f"{_('platform')} · {channel.name}"


@platform_view()
def operator_logs(request, platform):
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    form = OperatorLogFilterForm(request.GET, teams=Team.objects.all())
    page = totals = None
    if form.is_valid():
        records = selectors.platform_usage_search(**form.search_filters())
        page = _page(records, request.GET.get("page"))
        totals = selectors.usage_totals(records)
        for record in page["rows"]:
            record.channel_label = _operator_channel_label(record)
    return render_operator(request, platform, "operator/logs.html", {"form": form, "page": page, "totals": totals},
                           status=200 if form.is_valid() else 400)


# --- prices per customer ------------------------------------------------------------------------------------

def _team(pk) -> Team:
    return get_object_or_404(Team, pk=pk)


def _groups(team):
    return KeyGroup.objects.filter(team=team).order_by("name")


def _prices_page(request, platform, team, *, override_form=None, multiplier_form=None, group_form=None):
    errors = any(f is not None and f.errors for f in (override_form, multiplier_form, group_form))
    groups = _groups_with_multipliers(team)
    multiplier = selectors.team_multiplier_ppm(team=team)
    return render_operator(request, platform, "operator/team_prices.html", {
        "subject": team, "prices": selectors.team_model_prices(team=team),
        "overrides": selectors.price_overrides(team=team), "groups": groups, "now": timezone.now(),
        "multiplier_text": _multiplier_text(multiplier),
        "override_form": override_form or PriceOverrideForm(models=_catalog()),
        "multiplier_form": multiplier_form or TeamMultiplierForm(
            initial={"multiplier": multiplier}),
        "group_form": group_form or GroupMultiplierForm(groups=groups),
    }, status=400 if errors else 200)


def _catalog():
    return catalog_models().filter(enabled=True).order_by("public_id")


@platform_view(model=Team)
def operator_team_prices(request, platform, pk):
    """The team's price page; a POST adds a per-model override from a date on."""
    team = _team(pk)
    if request.method != "POST":
        return _prices_page(request, platform, team)
    models = _catalog()
    form = PriceOverrideForm(request.POST, models=models)
    if not form.is_valid():
        return _prices_page(request, platform, team, override_form=form)
    data = dict(form.cleaned_data)
    model = get_object_or_404(models, pk=data.pop("model"))
    try:
        override = services.price_override_set(team=team, model=model, created_by=request.user, **data)
    except ValueError as error:
        form.add_error(None, str(error))
        return _prices_page(request, platform, team, override_form=form)
    messages.success(request, _("%(team)s pays its own price for %(model)s from %(when)s.") % {
        "team": team.name, "model": model.public_id, "when": override.effective_from.strftime("%Y-%m-%d %H:%M UTC")})
    return redirect("operator-team-prices", pk=team.pk)


@platform_view(model=Team)
def operator_team_multiplier(request, platform, pk):
    team = _team(pk)
    if request.method != "POST":
        return redirect("operator-team-prices", pk=team.pk)
    form = TeamMultiplierForm(request.POST)
    if not form.is_valid():
        return _prices_page(request, platform, team, multiplier_form=form)
    services.team_multiplier_set(team=team, multiplier_ppm=form.cleaned_data["multiplier"])
    messages.success(request, _("Team multiplier saved."))
    return redirect("operator-team-prices", pk=team.pk)


@platform_view(model=Team)
def operator_group_multiplier(request, platform, pk):
    team = _team(pk)
    if request.method != "POST":
        return redirect("operator-team-prices", pk=team.pk)
    groups = _groups(team)
    form = GroupMultiplierForm(request.POST, groups=groups)
    if not form.is_valid():
        return _prices_page(request, platform, team, group_form=form)
    group = groups.get(pk=form.cleaned_data["group"])
    services.group_multiplier_set(group=group, multiplier_ppm=form.cleaned_data["multiplier"])
    messages.success(request, _("Multiplier of key group %(group)s saved.") % {"group": group.name})
    return redirect("operator-team-prices", pk=team.pk)


@platform_view(model=Team)
def operator_override_delete(request, platform, pk):
    team = _team(pk)
    if request.method == "POST":
        override_id = request.POST.get("override", "")
        override = PriceOverride.objects.filter(team=team, pk=int(override_id)).first() \
            if override_id.isdigit() else None
        if override is None:
            messages.error(request, _("No such override."))
        else:
            services.price_override_delete(override=override)
            messages.success(request, _("Override removed: new calls pay the list price again."))
    return redirect("operator-team-prices", pk=team.pk)


# --- the team's own prices ----------------------------------------------------------------------------------

@team_view(get=roles.USAGE_OWN)
def team_prices(request, access):
    groups = [g for g in _groups_with_multipliers(access.team) if g.price_multiplier_ppm is not None]
    return render_team(request, access, "console/prices.html", {
        "prices": selectors.team_model_prices(team=access.team), "groups": groups,
        "operator_url": reverse("operator-team-prices", kwargs={"pk": access.team.pk})
        if access.platform_role else None,
    })


# --- the confirmation of a credit or adjustment (billing.views.operator_team) -------------------------------

def operator_balance_confirm(request, platform, team, form):
    """What a credit or adjustment would do — team, amount, balance after, reason — with a form that posts
    the same fields back with a token signed for exactly them."""
    data = form.cleaned_data
    balance = selectors.team_balance(team=team)
    return render_operator(request, platform, "operator/balance_confirm.html", {
        "subject": team, "data": data, "balance": balance, "balance_after": balance + data["amount"],
        "kind_label": dict(form.fields["kind"].choices)[data["kind"]],
        "amount_text": form["amount"].value(),
        "token": balance_confirm_token(team=team, data=data),
    })
