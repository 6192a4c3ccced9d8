"""The operator console's One API / New API imports: a dry run, then a confirmed run whose progress a page polls.

A job lives in the shared cache (a few hours): the source URL encrypted (it may hold a database password), the
dry run's report, and — once confirmed — the real run's state (queued, running with the table it is on, done
with its ImportBatch, failed with why). The run itself is a Celery task (`run_import_job`; the embedded
default runs it eagerly, in the confirming request). An uploaded SQLite file is kept in the import directory
only until its job ends (or expires), because it holds the old gateway's secrets."""
import logging
import secrets
import time
from pathlib import Path

import orjson
from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from billing.oneapi_import.services import SourceError, import_preview, import_run
from gateway_site import crypto, shared_cache

log = logging.getLogger(__name__)

JOB_TTL = 6 * 3600
PREVIEWED, QUEUED, RUNNING, DONE, FAILED = "previewed", "queued", "running", "done", "failed"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Database URLs the console accepts; a SQLite database is uploaded instead (no server-side path from a form).
URL_SCHEMES = ("postgres://", "postgresql://", "mysql://", "mariadb://")


def import_dir() -> Path:
    path = Path(getattr(settings, "TOLLGATE_IMPORT_DIR", settings.BASE_DIR / "var" / "imports"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _key(job: str) -> str:
    return f"tg:import:job:{job}"


def _is_job_id(job) -> bool:
    return isinstance(job, str) and len(job) == 24 and all(c in "0123456789abcdef" for c in job)


def job_get(job) -> dict | None:
    """The job's state (without its source), or None when unknown or expired."""
    if not _is_job_id(job):
        return None
    raw = shared_cache.get(_key(job))
    if raw is None:
        return None
    state = orjson.loads(raw)
    state.pop("source", None)
    return {**state, "id": job}


def _save(job: str, state: dict) -> None:
    shared_cache.set(_key(job), orjson.dumps(state), ttl=JOB_TTL)


def _update(job: str, **fields) -> dict | None:
    raw = shared_cache.get(_key(job))
    if raw is None:
        return None
    state = {**orjson.loads(raw), **fields}
    _save(job, state)
    return state


def _sweep_uploads() -> None:
    """Uploaded files whose job expired unconfirmed go too."""
    cutoff = time.time() - JOB_TTL
    for path in import_dir().glob("*.db"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def save_upload(upload) -> tuple[str, Path]:
    """An uploaded SQLite file, stored under a new job id; SourceError when it is no SQLite database."""
    _sweep_uploads()
    head = upload.read(len(SQLITE_MAGIC))
    upload.seek(0)
    if head != SQLITE_MAGIC:
        raise SourceError("the uploaded file is not a SQLite database (One API's one-api.db)")
    job = secrets.token_hex(12)
    path = import_dir() / f"{job}.db"
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    path.chmod(0o600)
    return job, path


def check_url(url: str) -> str:
    url = (url or "").strip()
    if not url.startswith(URL_SCHEMES):
        raise SourceError("give a PostgreSQL or MySQL/MariaDB database URL (postgres://user:password@host/db, "
                          "mysql://…), or upload a SQLite file")
    return url


def job_preview(*, source: str, into_team: str | None, usd_rate: str, by, job: str | None = None) -> dict:
    """The dry run, kept as a job the operator may confirm. SourceError when the source cannot be read (an
    uploaded file is then removed)."""
    job = job or secrets.token_hex(12)
    try:
        report = import_preview(source=source, into_team=into_team or None, usd_rate=usd_rate)
    except SourceError:
        _upload_path(job).unlink(missing_ok=True)
        raise
    _save(job, {"state": PREVIEWED, "source": crypto.encrypt(source), "into_team": into_team or "",
                "usd_rate": str(usd_rate), "by": by.pk if by else None, "label": report.source,
                "preview": report.as_dict(), "created": time.time()})
    return {**job_get(job)}


def job_confirm(*, job: str, by) -> dict | None:
    """Start the real run of a previewed job (a job already started is left alone); its state after."""
    state = job_get(job)
    if state is None or state["state"] != PREVIEWED:
        return state
    _update(job, state=QUEUED, by=by.pk if by else None, step="", done=0, total=0)
    run_import_job.delay(job)
    return job_get(job)


def _upload_path(job: str) -> Path:
    return import_dir() / f"{job}.db"


@shared_task(ignore_result=True, soft_time_limit=3300, time_limit=3600)
def run_import_job(job: str) -> None:
    """The confirmed import of a job: one transaction (billing.oneapi_import), progress written as it goes."""
    raw = shared_cache.get(_key(job)) if _is_job_id(job) else None
    if raw is None:
        return
    state = orjson.loads(raw)
    if state.get("state") != QUEUED:
        return
    _update(job, state=RUNNING, started=time.time())
    by = get_user_model().objects.filter(pk=state.get("by")).first()

    def progress(step: str, done: int, total: int) -> None:
        _update(job, step=step, done=done, total=total)

    try:
        batch, report = import_run(source=crypto.decrypt(state["source"]), into_team=state["into_team"] or None,
                                   usd_rate=state["usd_rate"], created_by=by, progress=progress)
    except SourceError as exc:
        _update(job, state=FAILED, error=str(exc), source="")
    except Exception:
        log.exception("import job %s failed", job)
        _update(job, state=FAILED, error="The import failed and nothing was written; the server log has the "
                                         "details.", source="")
    else:
        _update(job, state=DONE, batch_id=batch.pk, batch_code=batch.code, finished=time.time(), source="")
    finally:
        _upload_path(job).unlink(missing_ok=True)
