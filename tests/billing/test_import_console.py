"""The operator console's One API / New API import (issue 13): a SQLite upload or a database URL, the dry run's
report (nothing written), the confirmed run as a job whose state a page polls, the batches, and a rollback
behind a typed confirmation; the same through the operator API. Operator-only: support reads, teams get 403.
(The importer itself is tested in test_oneapi_import.py; the browser flow in tests/browser/test_import_browser.)"""
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from accounts.models import Team
from billing import import_jobs
from billing.models import ImportBatch, TeamBalance
from gateway_site.celery import app as celery_app
from keys.models import ApiKey
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, staff, text  # noqa: F401
from tests.billing.oneapi_source import fill, scratch

pytestmark = pytest.mark.django_db
IMPORTS = "/console/operator/imports/"


@pytest.fixture(autouse=True)
def eager(monkeypatch, settings, tmp_path):
    """The embedded default: Celery runs the import in the confirming request; uploads in a private dir."""
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)
    settings.TOLLGATE_IMPORT_DIR = tmp_path / "imports"


@pytest.fixture
def one_api_file(tmp_path):
    """A small One API database (SQLite), as an operator would upload it."""
    with scratch("sqlite", tmp_path) as db:
        made = fill(db, "one-api")
        path = db.url.removeprefix("sqlite:///")
    return path, made


def upload(path, name="one-api.db"):
    with open(path, "rb") as f:
        return SimpleUploadedFile(name, f.read(), content_type="application/octet-stream")


def balances() -> int:
    return sum(TeamBalance.objects.values_list("balance", flat=True))


def test_dry_run_confirm_progress_and_rollback_in_the_console(one_api_file, tmp_path):
    path, made = one_api_file
    operator = client_for(staff())
    teams_before, balance_before = Team.objects.count(), balances()

    preview = operator.post(IMPORTS, {"upload": upload(path), "url": "", "into_team": "", "usd_rate": "1"})
    assert preview.status_code == 200, text(preview)[:2000]
    page = text(preview)
    assert 'data-testid="import-report"' in page and "One API" in page
    assert 'data-testid="import-skipped"' in page          # unmappable rows are listed with their reasons
    assert (Team.objects.count(), balances(), ImportBatch.objects.count()) == (teams_before, balance_before, 0)
    for secret in made["secrets"].values():                 # no token secret is shown
        assert secret not in page
    job = page.split('name="job" value="')[1].split('"')[0]
    assert import_jobs.job_get(job)["state"] == import_jobs.PREVIEWED
    assert list((tmp_path / "imports").glob("*.db"))       # the upload waits for the confirmation

    confirmed = operator.post(reverse("operator-import-confirm"), {"job": job})
    assert confirmed.status_code == 302 and confirmed["Location"].endswith(f"?job={job}")
    progress = operator.get(confirmed["Location"])
    assert progress.status_code == 200 and 'data-state="done"' in text(progress)
    state = operator.get(confirmed["Location"] + "&format=json").json()
    batch = ImportBatch.objects.get()
    assert (state["state"], state["batch_code"]) == ("done", batch.code)
    assert state["batch_url"] == reverse("operator-import-batch", kwargs={"pk": batch.pk})
    assert not list((tmp_path / "imports").glob("*.db"))   # the uploaded secrets are gone
    assert Team.objects.count() > teams_before and balances() > balance_before
    assert ApiKey.objects.filter(status=ApiKey.ACTIVE).count() >= len(made["secrets"])
    # Confirming the same dry run again imports nothing twice.
    assert operator.post(reverse("operator-import-confirm"), {"job": job}).status_code == 302
    assert ImportBatch.objects.count() == 1

    listing = text(operator.get(IMPORTS))
    assert f'data-batch="{batch.code}"' in listing
    detail = operator.get(state["batch_url"])
    assert detail.status_code == 200 and 'data-status="active"' in text(detail)
    rollback = reverse("operator-import-rollback", kwargs={"pk": batch.pk})
    confirm_page = operator.get(rollback)
    assert confirm_page.status_code == 200 and f"Type {batch.code} to confirm" in text(confirm_page)
    refused = operator.post(rollback, {"confirm": "imp_wrong"})
    assert refused.status_code == 400 and ImportBatch.objects.get().rolled_back_at is None
    done = operator.post(rollback, {"confirm": batch.code})
    assert done.status_code == 302
    batch.refresh_from_db()
    assert batch.status == "rolled_back"
    assert balances() == balance_before
    assert not ApiKey.objects.filter(status=ApiKey.ACTIVE, pk__in=batch.rows.filter(kind="token")
                                     .values_list("target_id", flat=True)).exists()
    assert 'data-testid="import-rollback-report"' in text(operator.get(state["batch_url"]))
    assert operator.post(rollback, {"confirm": batch.code}).status_code == 400   # only once
    out = io.StringIO()
    call_command("ledger_audit", stdout=out)


def test_the_progress_page_shows_the_step_while_the_run_is_under_way(one_api_file, monkeypatch):
    """While the worker imports, the progress page (and the JSON it polls) shows the running state, the
    table being imported and how far it is; afterwards, done."""
    path, _ = one_api_file
    operator = client_for(staff())
    preview = operator.post(IMPORTS, {"upload": upload(path), "url": "", "into_team": "", "usd_rate": "1"})
    job = text(preview).split('name="job" value="')[1].split('"')[0]
    progress_url = reverse("operator-import-progress") + f"?job={job}"
    seen = {}
    real_run = import_jobs.import_run

    def watched(**kwargs):
        report = kwargs["progress"]

        def progress(step, done, total):
            report(step, done, total)
            if (step, done) == ("tokens", 2):     # looked at from the operator's side, mid-run
                seen["json"] = operator.get(progress_url + "&format=json").json()
                seen["page"] = text(operator.get(progress_url))
        return real_run(**{**kwargs, "progress": progress})

    monkeypatch.setattr(import_jobs, "import_run", watched)
    operator.post(reverse("operator-import-confirm"), {"job": job})
    assert (seen["json"]["state"], seen["json"]["step"], seen["json"]["done"], seen["json"]["total"]) == (
        "running", "tokens", 2, 8), seen["json"]
    page = seen["page"]
    assert 'data-state="running"' in page and 'max="8" value="2"' in page and "Importing…" in page
    assert 'data-testid="import-step">tokens<' in page
    assert operator.get(progress_url + "&format=json").json()["state"] == "done"


def test_the_source_form_says_what_is_wrong(tmp_path):
    operator = client_for(staff())
    for data, wanted in (
        ({"url": "", "usd_rate": "1"}, "one of the two"),
        ({"url": "sqlite:////etc/passwd", "usd_rate": "1"}, "upload a SQLite file"),
        ({"url": "ftp://example.com/x", "usd_rate": "1"}, "PostgreSQL or MySQL"),
        ({"url": "postgres://u@127.0.0.1:1/none", "usd_rate": "0"}, "positive"),
    ):
        response = operator.post(IMPORTS, data)
        assert response.status_code == 400 and wanted in text(response), (data, text(response)[-3000:])
    not_sqlite = SimpleUploadedFile("one-api.db", b"not a database at all", content_type="application/octet-stream")
    response = operator.post(IMPORTS, {"upload": not_sqlite, "usd_rate": "1"})
    assert response.status_code == 400 and "not a SQLite database" in text(response)
    # A database that does not answer: a clear error, the password never echoed.
    response = operator.post(IMPORTS, {"url": "postgres://oneapi:hunter2secret@127.0.0.1:1/oneapi", "usd_rate": "1"})
    assert response.status_code == 400 and "hunter2secret" not in text(response)
    assert not ImportBatch.objects.exists()


def test_a_postgres_source_by_url_with_a_team_to_import_into(tmp_path):
    team = factories.TeamFactory(slug="self-use")
    operator = client_for(staff())
    with scratch("postgres", tmp_path) as db:
        fill(db, "new-api")
        preview = operator.post(IMPORTS, {"url": db.url, "into_team": "self-use", "usd_rate": "7.2"})
        assert preview.status_code == 200, text(preview)[-3000:]
        assert "New API" in text(preview)
        job = text(preview).split('name="job" value="')[1].split('"')[0]
        operator.post(reverse("operator-import-confirm"), {"job": job})
    batch = ImportBatch.objects.get()
    assert batch.product == "new-api"
    assert TeamBalance.objects.get(team=team).balance > 0     # every user's balance went into the one team


def test_support_reads_and_teams_get_nothing(one_api_file):
    batch = factories.import_batch()
    support = client_for(staff(roles.SUPPORT))
    assert support.get(IMPORTS).status_code == 200
    assert 'data-testid="import-source"' not in text(support.get(IMPORTS))
    assert support.get(reverse("operator-import-batch", kwargs={"pk": batch.pk})).status_code == 200
    assert support.post(IMPORTS, {"url": "postgres://x@127.0.0.1:1/x", "usd_rate": "1"}).status_code == 403
    assert support.get(reverse("operator-import-rollback", kwargs={"pk": batch.pk})).status_code == 403
    owner = client_for(factories.MembershipFactory(role=roles.OWNER).user)
    assert owner.get(IMPORTS).status_code == 403
    assert owner.post(reverse("operator-import-rollback", kwargs={"pk": batch.pk}),
                      {"confirm": batch.code}).status_code == 403
    assert ImportBatch.objects.get().rolled_back_at is None


# --- the operator API ---------------------------------------------------------------------------------------
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_twin_previews_runs_lists_and_rolls_back(one_api_file):
    path, made = one_api_file
    operator = api(staff())
    balance_before = balances()
    with open(path, "rb") as f:
        preview = operator.post("/api/operator/imports/preview/", {"file": f, "usd_rate": "1"}, format="multipart")
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["state"] == "previewed" and body["preview"]["dry_run"] is True
    assert body["preview"]["product"] == "one-api" and body["preview"]["skipped"]
    assert not ImportBatch.objects.exists() and balances() == balance_before
    run = operator.post("/api/operator/imports/", {"job": body["id"]}, format="json")
    assert run.status_code == 202 and run.json()["state"] == "done", run.content
    job = operator.get(f"/api/operator/imports/jobs/{body['id']}/").json()
    code = job["batch_code"]
    assert job["state"] == "done" and code.startswith("imp_")
    listed = operator.get("/api/operator/imports/").json()
    assert [b["code"] for b in listed] == [code] and listed[0]["status"] == "active"
    assert operator.get(f"/api/operator/imports/{code}/").json()["report"]["batch"] == code
    assert operator.post("/api/operator/imports/", {"job": "0" * 24}, format="json").status_code == 404
    bad = operator.post("/api/operator/imports/preview/", {"source": "sqlite:///etc/passwd"}, format="json")
    assert bad.status_code == 400
    support = api(staff(roles.SUPPORT))
    assert support.get("/api/operator/imports/").status_code == 200
    assert support.post(f"/api/operator/imports/{code}/rollback/").status_code == 403
    owner = api(factories.MembershipFactory(role=roles.OWNER).user)
    assert owner.get("/api/operator/imports/").status_code == 403
    rolled = operator.post(f"/api/operator/imports/{code}/rollback/")
    assert rolled.status_code == 200 and rolled.json()["status"] == "rolled_back"
    assert balances() == balance_before
    assert operator.post(f"/api/operator/imports/{code}/rollback/").status_code == 400
    assert operator.post("/api/operator/imports/imp_nosuch/rollback/").status_code == 404
    call_command("ledger_audit", stdout=io.StringIO())
