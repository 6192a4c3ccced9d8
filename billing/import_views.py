"""The operator's "Import from One API / New API" pages: a source (an uploaded SQLite file or a database URL),
the dry run's report, a confirmation, the run's progress (a page that polls the job), the import batches, and a
rollback per batch behind a confirmation page. The work is billing.import_jobs' and billing.oneapi_import's."""
from django import forms
from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import roles
from accounts.models import Team
from accounts.views import platform_view, render_operator
from billing import import_jobs
from billing.models import ImportBatch
from billing.oneapi_import.reader import redacted
from billing.oneapi_import.services import PRODUCT_NAMES, SourceError, import_rollback


class ImportSourceForm(forms.Form):
    upload = forms.FileField(label=gettext_lazy("SQLite file (one-api.db)"), required=False)
    url = forms.CharField(label=gettext_lazy("…or a database URL"), required=False, max_length=500,
                          widget=forms.TextInput(attrs={"placeholder": "mysql://oneapi:password@db-host:3306/oneapi",
                                                        "autocomplete": "off"}),
                          help_text=gettext_lazy("PostgreSQL or MySQL/MariaDB. Read only; the password is never "
                                                 "shown or stored in the report."))
    into_team = forms.ChoiceField(label=gettext_lazy("Into team"), required=False,
                                  help_text=gettext_lazy("Empty: one team per One API user, that user its owner. "
                                                         "A team: every user's keys and balance go into it "
                                                         "(self-use setups)."))
    usd_rate = forms.DecimalField(label=gettext_lazy("Deployment currency per US dollar"), initial="1",
                                  min_value=0, max_digits=12, decimal_places=6,
                                  help_text=gettext_lazy("500,000 One API quota units are 1 USD; with a CNY "
                                                         "deployment give the exchange rate, e.g. 7.2."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        teams = Team.objects.order_by("slug").values_list("slug", "name")
        self.fields["into_team"].choices = [("", _("One team per user")),
                                            *((slug, f"{name} ({slug})") for slug, name in teams)]

    def clean(self):
        data = super().clean()
        if bool(data.get("upload")) == bool((data.get("url") or "").strip()):
            raise forms.ValidationError(_("Upload a SQLite file or give a database URL (one of the two)."))
        if data.get("usd_rate") is not None and data["usd_rate"] <= 0:
            self.add_error("usd_rate", _("A positive rate."))
        return data


def report_view(report: dict | None) -> dict | None:
    """An ImportReport.as_dict() with what its page shows: totals before → after side by side, counts by kind."""
    if not report:
        return None
    before, after = report.get("totals_before") or {}, report.get("totals_after") or {}
    counts: dict[str, list[int]] = {}
    for item in report.get("mapped") or ():
        counts.setdefault(item["kind"], [0, 0])[0] += 1
    for item in report.get("skipped") or ():
        counts.setdefault(item["kind"], [0, 0])[1] += 1
    return {**report, "product_name": PRODUCT_NAMES.get(report.get("product"), report.get("product", "")),
            "totals": [{"name": k, "before": before.get(k, 0), "after": v, "money": k == "balance_micro"}
                                 for k, v in after.items()],
            "kinds": [{"kind": k, "mapped": m, "skipped": n} for k, (m, n) in counts.items()]}


def _batches():
    return ImportBatch.objects.select_related("created_by").order_by("-created_at")


def _page(request, platform, *, form=None, status=200):
    can_manage = platform.can(roles.PLATFORM_MANAGE)
    batches = list(_batches()[:50])
    for batch in batches:
        batch.product_name = PRODUCT_NAMES.get(batch.product, batch.product)
    if form is not None and form.is_bound and form.data.get("url"):   # shown again: never with its password
        form.data = form.data.copy()
        form.data["url"] = redacted(form.data["url"])
    return render_operator(request, platform, "operator/imports.html", {
        "form": form or (ImportSourceForm() if can_manage else None), "batches": batches,
        "can_manage": can_manage,
    }, status=status)


@platform_view()
def operator_imports(request, platform):
    """GET: the source form and the batches; POST: the dry run, then its report with a confirm button."""
    if request.method != "POST":
        return _page(request, platform)
    form = ImportSourceForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, platform, form=form, status=400)
    data = form.cleaned_data
    try:
        if data["upload"]:
            job, path = import_jobs.save_upload(data["upload"])
            source = f"sqlite:///{path}"
        else:
            job, source = None, import_jobs.check_url(data["url"])
        state = import_jobs.job_preview(source=source, into_team=data["into_team"], usd_rate=str(data["usd_rate"]),
                                        by=request.user, job=job)
    except SourceError as exc:
        form.add_error(None, str(exc))
        return _page(request, platform, form=form, status=400)
    return render_operator(request, platform, "operator/import_preview.html", {
        "job": state, "report": report_view(state["preview"])})


@platform_view()
def operator_import_confirm(request, platform):
    """POST job=…: run the previewed import (a Celery task), then its progress page."""
    job = request.POST.get("job", "") if request.method == "POST" else ""
    state = import_jobs.job_confirm(job=job, by=request.user) if job else None
    if state is None:
        if request.method == "POST":
            messages.error(request, _("This dry run has expired or does not exist; run it again."))
        return redirect("operator-imports")
    return redirect(reverse("operator-import-progress") + f"?job={state['id']}")


def _progress_json(state: dict) -> dict:
    out = {k: state.get(k) for k in ("id", "state", "step", "done", "total", "error", "batch_code")}
    if state.get("batch_id"):
        out["batch_url"] = reverse("operator-import-batch", kwargs={"pk": state["batch_id"]})
    return out


@platform_view(post=roles.PLATFORM_READ)
def operator_import_progress(request, platform):
    """The run's state: a page that polls this same URL with ?format=json until it is done or failed."""
    state = import_jobs.job_get(request.GET.get("job", ""))
    if state is None:
        if request.GET.get("format") == "json":
            raise Http404("No such import job.")
        return redirect("operator-imports")
    if request.GET.get("format") == "json":
        return JsonResponse(_progress_json(state))
    return render_operator(request, platform, "operator/import_progress.html", {
        "job": state, "progress": _progress_json(state)})


def _batch(pk) -> ImportBatch:
    batch = _batches().filter(pk=pk).first()
    if batch is None:
        raise Http404("No such import batch.")
    return batch


@platform_view(post=roles.PLATFORM_READ, model=ImportBatch)
def operator_import_batch(request, platform, pk):
    batch = _batch(pk)
    return render_operator(request, platform, "operator/import_batch.html", {
        "batch": batch, "report": report_view(batch.report), "rollback": report_view(batch.rollback_report),
        "rows": batch.rows.count(), "can_manage": platform.can(roles.PLATFORM_MANAGE)})


@platform_view(get=roles.PLATFORM_MANAGE, model=ImportBatch)
def operator_import_rollback(request, platform, pk):
    """GET: what a rollback undoes and a confirmation; POST with the batch's code typed: the rollback."""
    batch = _batch(pk)
    error = None
    if request.method == "POST":
        if batch.rolled_back_at is not None:
            error = _("This batch was already rolled back.")
        elif request.POST.get("confirm", "").strip() != batch.code:
            error = _("Type the batch code to confirm.")
        else:
            try:
                import_rollback(batch=batch, by=request.user)
            except SourceError as exc:
                error = str(exc)
            else:
                messages.success(request, _("Batch %(code)s rolled back.") % {"code": batch.code})
                return redirect("operator-import-batch", pk=batch.pk)
    return render_operator(request, platform, "operator/import_rollback.html", {
        "batch": batch, "report": report_view(batch.report), "rows": batch.rows.count(), "error": error,
    }, status=400 if error else 200)
