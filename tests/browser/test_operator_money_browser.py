"""The operator's money pages in a real browser against a live gateway, no restart in between: an operator
makes a batch of codes (shown once), a billing member redeems one on the team's billing page, the operator
voids the rest and the next one is refused; a credit is reviewed before it is posted; an override set on the
team's price page is what the team sees as "your price" and what its next call costs."""
from pathlib import Path

import httpx
import pytest

from accounts import roles
from billing.models import LedgerEntry, UsageRecord
from billing.selectors import team_balance
from tests import factories
from tests.browser.conftest import sign_in
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _new_page(chromium):
    context = chromium.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def test_operator_makes_codes_and_a_billing_member_redeems_one(live, chromium, page):
    base, team = live.server.url, live.team
    operator = factories.StaffRoleFactory(role=roles.OPERATOR).user
    billing = factories.MembershipFactory(team=team, role=roles.BILLING).user
    start = team_balance(team=team)

    sign_in(page, base, operator.username, PASSWORD)
    page.goto(f"{base}/console/operator/catalog/")
    page.click("[data-testid=nav] >> text=Redemption codes")
    page.fill("[data-testid=new-batch] input[name=name]", "browser promo")
    page.fill("[data-testid=new-batch] input[name=count]", "2")
    page.fill("[data-testid=new-batch] input[name=amount]", "5")
    page.click("[data-testid=new-batch] button[type=submit]")
    codes = page.locator("[data-testid=codes]").input_value().split()
    assert len(codes) == 2 and all(c.startswith("TG-") for c in codes)
    assert page.locator("[data-testid=download-codes]").get_attribute("href").startswith("data:text/csv")
    shot(page, "operator-codes")
    page.reload()
    assert page.locator("[data-testid=new-codes]").count() == 0           # shown once
    row = page.locator("[data-testid=batches] tbody tr").first
    assert "browser promo" in row.inner_text() and "$5.00" in row.inner_text()

    context, member = _new_page(chromium)
    try:
        sign_in(member, base, billing.username, PASSWORD)
        member.goto(f"{base}/console/t/{team.slug}/billing/")
        member.fill("[data-testid=redeem] input[name=code]", codes[0].lower())
        member.click("[data-testid=redeem] button[type=submit]")
        assert member.locator("[data-testid=balance]").inner_text().strip() != ""
        assert team_balance(team=team) == start + 5_000_000

        # The operator voids the unused code: the member's next try is refused on the form.
        page.reload()
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("[data-testid=batches] button:has-text('Void unused')")
        page.wait_for_load_state()
        assert "1 unused code voided" in page.locator(".messages").inner_text()
        member.fill("[data-testid=redeem] input[name=code]", codes[1])
        member.click("[data-testid=redeem] button[type=submit]")
        assert "disabled" in member.locator("[data-testid=redeem] .errors").inner_text()
        assert team_balance(team=team) == start + 5_000_000
    finally:
        context.close()


def test_credit_is_confirmed_and_an_override_is_the_teams_price(live, chromium, page):
    base, team = live.server.url, live.team
    operator = factories.StaffRoleFactory(role=roles.OPERATOR).user
    start = team_balance(team=team)
    sign_in(page, base, operator.username, PASSWORD)

    page.goto(f"{base}/console/operator/teams/{team.pk}/")
    page.select_option("[data-testid=credit] select[name=kind]", "credit")
    page.fill("[data-testid=credit] input[name=amount]", "12.5")
    page.fill("[data-testid=credit] textarea[name=reason]", "invoice 7")
    page.click("[data-testid=credit] button[type=submit]")
    assert page.locator("[data-testid=confirm-amount]").inner_text() == "$12.50"
    shot(page, "operator-credit-confirm")
    assert not LedgerEntry.objects.filter(team=team, reason="invoice 7").exists()    # not yet
    page.click("[data-testid=confirm-post]")
    page.wait_for_url(f"**/console/operator/teams/{team.pk}/")
    assert team_balance(team=team) == start + 12_500_000
    page.go_back()                                                                     # resubmitting the
    page.click("[data-testid=confirm-post]")                                          # confirmation posts
    page.wait_for_load_state()                                                          # nothing more
    assert LedgerEntry.objects.filter(team=team, reason="invoice 7").count() == 1

    # A per-model override: the team sees it as "your price", and the live gateway charges it.
    page.goto(f"{base}/console/operator/teams/{team.pk}/prices/")
    page.select_option("[data-testid=override-form] select[name=model]", str(live.model.pk))
    for field, value in (("input_per_m", "2"), ("output_per_m", "2"), ("cached_input_per_m", "1"),
                         ("request_fee", "0")):
        page.fill(f"[data-testid=override-form] input[name={field}]", value)
    page.click("[data-testid=override-form] button[type=submit]")
    assert "pays its own price" in page.locator(".messages").inner_text()
    shot(page, "operator-team-prices")
    page.click("text=As the team sees it")
    row = page.locator(f"[data-testid=prices] tr[data-model='{live.model.public_id}']")
    assert "$2.00" in row.locator("[data-testid=your-input]").inner_text()
    assert "your rate" in row.inner_text()
    shot(page, "team-prices")
    page.click("[data-testid=language] button[value=zh-hans]")
    page.wait_for_load_state()
    shot(page, "team-prices-zh")
    page.click("[data-testid=language] button[value=en]")
    page.wait_for_load_state()

    def charged_at_override():
        response = httpx.post(f"{live.base_url}/chat/completions", timeout=20,
                              headers={"Authorization": f"Bearer {live.secret}"},
                              json={"model": live.model.public_id, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
        record = wait_for(lambda: UsageRecord.objects.filter(
            request_id="req_" + response.json()["id"].removeprefix("chatcmpl-")).first())
        return record and record.cost == 2 * (record.prompt_tokens + record.completion_tokens)
    assert wait_for(charged_at_override, timeout=3)
