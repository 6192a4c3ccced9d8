"""Console pages about usage and money: the dashboard, request logs, billing (redeem a code, credit bundles,
the spend report, the billing policy); and the operator's catalog, prices, teams and credit."""
import csv
import math
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts import roles
from accounts.edge import team_view
from accounts.models import Team
from accounts.views import platform_view, render_operator, render_team
from billing import selectors, services
from billing.emails import default_alert_recipients
from billing.forms import BalanceChangeForm, BillingPolicyForm, LogFilterForm, PriceForm, RedeemForm, SpendReportForm
from billing.models import UsageRecord
from billing.money import MICRO, money_display
from billing.operator_forms import balance_confirmed
from keys.selectors import api_keys
from routing.forms import CatalogModelForm
from routing.models import Model
from routing.selectors import catalog_models
from routing.services import model_upsert

PAGE_SIZE = 50


# --- helpers ------------------------------------------------------------------------------------------------

def _own_only(access, user):
    """Whose usage a page shows: the whole team for log readers (and, on the dashboard, billing), else the
    caller's own keys."""
    return None if access.can(roles.LOGS_READ) else user


def _page(qs, number: str | None, size: int = PAGE_SIZE) -> dict:
    """Offset pagination without COUNT(*): one extra row tells whether there is a next page."""
    number = int(number) if (number or "").isdigit() and int(number) > 0 else 1
    rows = list(qs[(number - 1) * size: number * size + 1])
    return {"rows": rows[:size], "number": number, "has_previous": number > 1, "has_next": len(rows) > size,
            "previous": number - 1, "next": number + 1}


def _nice_ceiling(value: float) -> float:
    """A round top for a chart's axis at or above value, whose half is round too."""
    if value <= 0:
        return 2
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (2, 4, 6, 10) if step * magnitude >= value)


def _chart(days: list[dict], stacks: list[tuple[str, str]], *, bar_label, axis_label, width=640,
           height=170) -> dict:
    """Coordinates for a per-day bar chart drawn as SVG by console/_chart.html; `stacks` are (field, css
    class) pairs drawn bottom-up."""
    top = _nice_ceiling(max((sum(day[f] for f, _ in stacks) for day in days), default=0))
    slot = width / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        y, segments = height, []
        for field, css in stacks:
            h = day[field] / top * height
            y -= h
            segments.append({"y": round(y, 1), "h": round(h, 1), "css": css})
        bars.append({"x": round(i * slot + slot * 0.18, 1), "w": round(slot * 0.64, 1), "segments": segments,
                     "day": day["day"], "value": sum(day[f] for f, _ in stacks), "label": bar_label(day),
                     "tick": i % 2 == (len(days) - 1) % 2, "tick_x": round(i * slot + slot / 2, 1)})
    grid = [{"y": round(height - f * height, 1), "label": axis_label(top * f)} for f in (0, 0.5, 1)]
    return {"bars": bars, "grid": grid, "width": width, "height": height}


def _requests_label(day) -> str:
    return ngettext("%(n)d request", "%(n)d requests", day["requests"]) % {"n": day["requests"]} + (
        " · " + ngettext("%(n)d error", "%(n)d errors", day["errors"]) % {"n": day["errors"]} if day["errors"] else "")


_money = money_display  # the one money format: the `money` template filter is the same function


def _channel_label(record: UsageRecord, access) -> str:
    """Teams see their own channels by name and the platform's as "platform" (its upstreams are not theirs
    to know); platform staff see both names."""
    channel = record.channel
    if channel is None:
        return "—"
    if channel.team_id == access.team.id:
        return channel.name
    return f"{_('platform')} · {channel.name}" if access.platform_role else _("platform")


def _csv_cell(value) -> str:
    """A cell a spreadsheet will not run as a formula (user agents and error text come from clients)."""
    if not isinstance(value, str):  # numbers (amounts may be negative), booleans, None
        return "" if value is None else str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class _Echo:
    def write(self, value):
        return value


def _csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    """A streamed CSV download. It starts with a UTF-8 byte order mark: without one, Excel reads the file
    as the machine's legacy code page and names in Chinese (or any non-ASCII text) come out garbled."""
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff" + writer.writerow(header)
        for row in rows:
            yield writer.writerow([_csv_cell(v) for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _decimal(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


# --- dashboard ----------------------------------------------------------------------------------------------

@team_view(get=(roles.USAGE_OWN, roles.LOGS_READ, roles.BILLING_READ))
def dashboard(request, access):
    team_wide = access.can((roles.LOGS_READ, roles.BILLING_READ))
    summary = selectors.usage_summary(team=access.team, owner=None if team_wide else request.user)
    for day in summary.days:
        day["ok"] = day["requests"] - day["errors"]
    top_spend = max((row["spend"] for row in summary.by_model), default=0) or 1
    for row in summary.by_model:
        row["share"] = round(100 * row["spend"] / top_spend)
    return render_team(request, access, "console/dashboard.html", {
        "summary": summary, "team_wide": team_wide,
        "requests_chart": _chart(summary.days, [("ok", "ok"), ("errors", "err")], bar_label=_requests_label,
                                 axis_label=lambda v: f"{v:g}"),
        "spend_chart": _chart(summary.days, [("spend", "spend")], bar_label=lambda d: _money(d["spend"]),
                              axis_label=_money),
        "balance": selectors.team_balance(team=access.team) if access.can(roles.BILLING_READ) else None,
        "base_url": _base_url(),
    })


def _base_url() -> str:
    return settings.TOLLGATE_PUBLIC_BASE_URL.rstrip("/")


# --- request logs -------------------------------------------------------------------------------------------

def _log_filter(request, access) -> LogFilterForm:
    owner = _own_only(access, request.user)
    return LogFilterForm(request.GET, keys=api_keys(team=access.team, owner=owner).select_related(None)
                         .only("pk", "name", "mask"))


@team_view(get=(roles.LOGS_READ, roles.USAGE_OWN))
def logs(request, access):
    form = _log_filter(request, access)
    page = totals = None
    if form.is_valid():
        records = selectors.usage_search(team=access.team, owner=_own_only(access, request.user),
                                         **form.search_filters())
        page = _page(records, request.GET.get("page"))
        for record in page["rows"]:
            record.channel_label = _channel_label(record, access)
        totals = selectors.usage_totals(records)
    return render_team(request, access, "console/logs.html", {
        "form": form, "page": page, "totals": totals, "own_only": _own_only(access, request.user) is not None},
                       status=200 if form.is_valid() else 400)


@team_view(get=(roles.LOGS_READ, roles.USAGE_OWN))
def logs_export(request, access):
    form = _log_filter(request, access)
    if not form.is_valid():
        return redirect(f"{request.path.rsplit('export.csv', 1)[0]}?{request.GET.urlencode()}")
    records = selectors.usage_search(team=access.team, owner=_own_only(access, request.user),
                                     **form.search_filters())
    header = ["time_utc", "request_id", "key", "key_name", "requested_model", "served_model", "channel", "status",
              "error_code", "error_text", "prompt_tokens", "completion_tokens", "cached_tokens", "cost",
              "latency_ms", "ttfb_ms", "stream", "sdk", "user_agent", "path", "cache_write_5m_tokens",
              "cache_write_1h_tokens", "reasoning_tokens", "usage_clamped"]
    rows = ([r.created_at.isoformat(), r.request_id, r.key_mask, r.api_key.name if r.api_key else "",
             r.requested_model, r.served_model, _channel_label(r, access), r.status_code, r.error_code,
             r.error_text, r.prompt_tokens, r.completion_tokens, r.cached_tokens, _decimal(r.cost), r.latency_ms,
             r.ttfb_ms, r.stream, r.sdk, r.user_agent, r.path, r.cache_write_5m_tokens, r.cache_write_1h_tokens,
             r.reasoning_tokens, r.usage_clamped]
            for r in records.iterator(chunk_size=2000))
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return _csv_response(f"tollgate-{access.team.slug}-requests-{stamp}.csv", header, rows)


@team_view(get=(roles.LOGS_READ, roles.USAGE_OWN), model=UsageRecord)
def log_detail(request, access, pk):
    record = selectors.usage_record(team=access.team, pk=pk, owner=_own_only(access, request.user))
    if record is None:
        raise Http404("No such request.")
    return render_team(request, access, "console/log_detail.html", {
        "record": record, "channel_label": _channel_label(record, access),
    })


# --- billing ------------------------------------------------------------------------------------------------

@team_view(get=roles.BILLING_READ, post=roles.BILLING_REDEEM)
def billing(request, access):
    form = RedeemForm(request.POST or None) if access.can(roles.BILLING_REDEEM) else None
    if request.method == "POST" and form.is_valid():
        try:
            entry = services.redemption_redeem(team=access.team, user=request.user, code=form.cleaned_data["code"])
        except services.CreditError as error:
            form.add_error("code", _redeem_refusal(error))
        else:
            messages.success(request, _("Code redeemed: %(amount)s added; the balance is now %(balance)s.") % {
                "amount": _money(entry.amount), "balance": _money(entry.balance_after)})
            return redirect("console-billing", team=access.team.slug)
    return render_team(request, access, "console/billing.html", {
        "balance": selectors.team_balance(team=access.team), "redeem_form": form,
        "bundles": services.credit_bundles_open(team=access.team),
        "policy": selectors.billing_policy(team=access.team),
        "month_spend": selectors.team_month_spend(team=access.team),
        "page": _page(selectors.ledger_entries(team=access.team), request.GET.get("page")),
    }, status=400 if form is not None and form.errors else 200)


def _redeem_refusal(error) -> str:
    """A redemption refusal in the reader's language (the service's message is English, for the API)."""
    return {
        "code_unknown": _("This code does not exist; check it for typos."),
        "code_used": _("This code has already been redeemed."),
        "code_disabled": _("This code has been disabled."),
        "code_expired": _("This code has expired."),
    }.get(error.code, error.message)


@team_view(get=roles.BILLING_READ)
def ledger_export(request, access):
    entries = selectors.ledger_entries(team=access.team)
    rows = ([e.id, e.created_at.isoformat(), e.kind, _decimal(e.amount), _decimal(e.balance_after), e.reason,
             e.created_by.username if e.created_by else "", e.idempotency_key]
            for e in entries.iterator(chunk_size=2000))
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return _csv_response(f"tollgate-{access.team.slug}-ledger-{stamp}.csv",
                         ["id", "time_utc", "kind", "amount", "balance_after", "reason", "by", "reference"], rows)


# --- spend report ---------------------------------------------------------------------------------------------

def _spend_form(request) -> SpendReportForm:
    return SpendReportForm(request.GET)


@team_view(get=(roles.BILLING_READ, roles.LOGS_READ))
def spend_report(request, access):
    form = _spend_form(request)
    report = None
    if form.is_valid():
        since, until = form.report_range()
        report = selectors.spend_report(team=access.team, since=since, until=until,
                                        group_by=form.cleaned_data["group_by"])
        top = max((row["cost"] for row in report.rows), default=0) or 1
        for row in report.rows:
            row["share"] = round(100 * row["cost"] / top)
    return render_team(request, access, "console/usage_report.html", {"form": form, "report": report},
                       status=200 if form.is_valid() else 400)


SPEND_COLUMNS = {"key": ["key_id", "key_name", "key_mask"], "model": ["model"], "day": ["day"],
                 "app": ["app_title", "http_referer"]}


@team_view(get=(roles.BILLING_READ, roles.LOGS_READ))
def spend_report_export(request, access):
    form = _spend_form(request)
    if not form.is_valid():
        return redirect(f"{request.path.rsplit('spend.csv', 1)[0]}spend/?{request.GET.urlencode()}")
    since, until = form.report_range()
    group_by = form.cleaned_data["group_by"]
    report = selectors.spend_report(team=access.team, since=since, until=until, group_by=group_by)
    columns = SPEND_COLUMNS[group_by]
    metrics = ["requests", "errors", "prompt_tokens", "completion_tokens"]
    rows = [[row[c].isoformat() if c == "day" else row[c] for c in columns] + [row[m] for m in metrics]
            + [_decimal(row["cost"])] for row in report.rows]
    name = f"tollgate-{access.team.slug}-spend-by-{group_by}-{form.cleaned_data['from']}-{form.cleaned_data['to']}.csv"
    return _csv_response(name, columns + metrics + [f"cost_{settings.TOLLGATE_CURRENCY.lower()}"], rows)


# --- billing policy -------------------------------------------------------------------------------------------

@team_view(get=roles.BILLING_READ, post=roles.BILLING_MANAGE)
def billing_policy(request, access):
    policy = selectors.billing_policy(team=access.team)
    can_manage = access.can(roles.BILLING_MANAGE)
    form = BillingPolicyForm(request.POST or None, initial={
        "monthly_cap": policy.monthly_cap, "alert_thresholds": ", ".join(map(str, policy.alert_thresholds)),
        "alert_recipients": "\n".join(policy.alert_recipients)})
    if request.method == "POST" and form.is_valid():
        services.billing_policy_set(team=access.team, **form.cleaned_data)
        messages.success(request, _("Billing policy saved: running gateways apply it within a second."))
        return redirect("console-billing-policy", team=access.team.slug)
    return render_team(request, access, "console/policy.html", {
        "form": form, "policy": policy, "can_manage": can_manage,
        "month_spend": selectors.team_month_spend(team=access.team),
        "default_recipients": default_alert_recipients(team_id=access.team.pk),
    }, status=400 if form.errors else 200)


# --- operator: catalog and prices ---------------------------------------------------------------------------

@platform_view()
def operator_home(request, platform):
    return redirect("operator-catalog")


@platform_view()
def operator_catalog(request, platform):
    form = CatalogModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        model = model_upsert(**form.upsert_fields())
        messages.success(request, _("Model %(model)s added: set its price below.") % {"model": model.public_id})
        return redirect("operator-model", pk=model.pk)
    return render_operator(request, platform, "operator/catalog.html", {
        "models": selectors.catalog_with_prices(), "form": form,
    }, status=400 if form.errors else 200)


def _catalog_model(pk) -> Model:
    return get_object_or_404(catalog_models(), pk=pk)


def _model_page(request, platform, model, *, form=None, price_form=None):
    price = selectors.current_price(model=model)
    initial = {f: getattr(price, f) for f in ("input_per_m", "output_per_m", "cached_input_per_m",
                                              "cache_write_5m_per_m", "cache_write_1h_per_m", "request_fee")
               } if price else None
    errors = (form and form.errors) or (price_form and price_form.errors)
    return render_operator(request, platform, "operator/model_detail.html", {
        "model": model, "form": form or CatalogModelForm(instance=model),
        "price_form": price_form or PriceForm(initial=initial),
        "current_price": price, "prices": selectors.model_prices(model=model)[:20], "now": timezone.now(),
    }, status=400 if errors else 200)


@platform_view(model=Model)
def operator_model(request, platform, pk):
    model = _catalog_model(pk)
    if request.method == "POST":
        form = CatalogModelForm(request.POST, instance=_catalog_model(pk))  # a copy: the page shows the saved one
        if form.is_valid():
            model_upsert(**form.upsert_fields())
            messages.success(request, _("Model %(model)s saved.") % {"model": model.public_id})
            return redirect("operator-model", pk=model.pk)
        return _model_page(request, platform, model, form=form)
    return _model_page(request, platform, model)


@platform_view(model=Model)
def operator_model_price(request, platform, pk):
    model = _catalog_model(pk)
    if request.method != "POST":
        return redirect("operator-model", pk=model.pk)
    form = PriceForm(request.POST)
    if not form.is_valid():
        return _model_page(request, platform, model, price_form=form)
    price = services.price_set(model=model, **form.cleaned_data)
    messages.success(request, _("New price for %(model)s from %(when)s.") % {
        "model": model.public_id, "when": price.effective_from.strftime("%Y-%m-%d %H:%M UTC")})
    return redirect("operator-model", pk=model.pk)


# --- operator: teams, credit and adjustments ----------------------------------------------------------------

@platform_view()
def operator_teams(request, platform):
    return render_operator(request, platform, "operator/teams.html", {"teams": selectors.teams_with_balances()})


@platform_view(model=Team)
def operator_team(request, platform, pk):
    team = get_object_or_404(selectors.teams_with_balances(), pk=pk)
    form = BalanceChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not balance_confirmed(team=team, data=form.cleaned_data, token=request.POST.get("confirm")):
            # Nothing is posted before the operator has seen the team, amount, new balance and reason.
            from billing.operator_views import operator_balance_confirm
            return operator_balance_confirm(request, platform, team, form)
        change = services.balance_credit if form.cleaned_data["kind"] == form.CREDIT else services.balance_adjust
        try:
            entry = change(team=team, amount=form.cleaned_data["amount"], reason=form.cleaned_data["reason"],
                           created_by=request.user, idempotency_key=form.cleaned_data["idempotency_key"])
        except ValueError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, _("%(amount)s posted to %(team)s; balance now %(balance)s.") % {
                "amount": _money(entry.amount), "team": team.name, "balance": _money(entry.balance_after)})
            return redirect("operator-team", pk=team.pk)
    return render_operator(request, platform, "operator/team_detail.html", {
        "subject": team, "form": form, "balance": selectors.team_balance(team=team),
        "entries": selectors.ledger_entries(team=team)[:25],
    }, status=400 if form.errors else 200)
