"""An operator moves a small One API database in from the console, in a real browser against a live gateway
and a real Celery worker (the production path: the confirmed import is queued, the worker runs it, the page
polls until it is done): upload → dry-run report (nothing written) → confirm → progress → done; an imported
token's secret then authenticates at the gateway; the batch's rollback (typed confirmation) revokes it."""

import httpx
import pytest

from accounts import roles
from billing.models import ImportBatch
from tests import factories
from tests.billing.oneapi_source import fill, scratch
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's




def models_call(live, secret):
    return httpx.get(f"{live.base_url}/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10)


def test_operator_imports_a_one_api_database_and_rolls_it_back(live, celery_worker, page, tmp_path, settings):
    assert not settings.CELERY_TASK_ALWAYS_EAGER        # the gateway queues the run; the worker runs it
    with scratch("sqlite", tmp_path) as db:
        made = fill(db, "one-api")
        path = db.url.removeprefix("sqlite:///")
    secret = made["secrets"]["alice_unlimited"]   # not tried before the import: a refusal would be remembered
    operator = factories.StaffRoleFactory(role=roles.OPERATOR).user

    sign_in(page, live.server.url, operator.username, PASSWORD)
    page.goto(f"{live.server.url}/console/operator/catalog/")
    page.click("[data-testid=nav] >> text=Import from One API")
    form = page.locator("[data-testid=import-source]")
    form.locator("input[name=upload]").set_input_files(path)
    form.locator("[data-testid=import-dry-run]").click()
    report = page.locator("[data-testid=import-report]")
    assert "One API" in report.locator("[data-testid=import-product]").inner_text()
    assert page.locator("[data-testid=import-skipped] tbody tr").count() >= 1    # reported, never dropped
    assert int(page.locator("[data-testid=import-kinds] tr[data-kind=token] td.num").first.inner_text()) >= 4
    assert not ImportBatch.objects.exists()
    shot(page, "operator-import-dry-run", full_page=True)

    page.click("[data-testid=import-confirm]")
    assert "/console/operator/imports/progress/" in page.url
    # The page polls the job; once the worker is done it shows the batch.
    page.locator("[data-testid=import-done]").wait_for(state="visible", timeout=60_000)
    assert page.locator("[data-testid=import-progress]").get_attribute("data-state") == "done"
    batch = ImportBatch.objects.get()
    page.click("[data-testid=import-batch-link]")
    assert page.locator("[data-testid=import-batch]").get_attribute("data-status") == "active"
    assert batch.code in page.locator("h1").inner_text()
    ok = wait_for(lambda: models_call(live, secret).status_code == 200, timeout=10)
    assert ok, "the imported token's secret does not authenticate"

    page.click("[data-testid=import-rollback]")
    page.fill("[data-testid=rollback-code]", batch.code)
    page.click("[data-testid=rollback-submit]")
    assert page.locator("[data-testid=import-batch]").get_attribute("data-status") == "rolled_back"
    assert page.locator("[data-testid=import-rollback-report]").is_visible()
    assert wait_for(lambda: models_call(live, secret).status_code == 401, timeout=10)
    page.goto(f"{live.server.url}/console/operator/imports/")
    assert "rolled back" in page.locator(f"[data-testid=import-batches] tr[data-batch={batch.code}]").inner_text()
    shot(page, "operator-import-batches")
