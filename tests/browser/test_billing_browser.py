"""Credit through the console, in a real browser against a live gateway: an operator makes a batch of redemption
codes on the operator's codes page, a billing member signs in and redeems one, and the team's balance rises by
exactly the code's amount (page and ledger). The spend report and the billing policy pages too; screenshots go
to docs/screenshots/."""
import httpx
import pytest

from accounts import roles
from billing.models import LedgerEntry, RedemptionCode, TeamBillingPolicy, UsageRecord
from billing.money import money_display
from billing.selectors import team_balance
from billing.services import usage_reconcile
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import PASSWORD, shot
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_operator_makes_codes_and_a_billing_member_redeems_one(live, chromium, page):
    base, team = live.server.url, live.team
    operator = factories.StaffRoleFactory(role=roles.OPERATOR, user__username="operator").user
    billing = factories.MembershipFactory(team=team, role=roles.BILLING, user__username="bea").user
    before = team_balance(team=team)
    assert before == 100_000_000   # the live setup's credit

    # The operator makes three codes worth 12.345678 each; they are shown once.
    sign_in(page, base, operator.username, PASSWORD)
    page.goto(f"{base}/console/operator/codes/")
    form = page.locator("[data-testid=new-batch]")
    form.locator("input[name=name]").fill("browser promo")
    form.locator("input[name=count]").fill("3")
    form.locator("input[name=amount]").fill("12.345678")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    codes = page.locator("[data-testid=codes]").input_value().split()
    assert len(codes) == 3 and all(c.startswith("TG-") for c in codes)
    assert RedemptionCode.objects.filter(name="browser promo", amount=12_345_678).count() == 3

    # A billing member, in a browser of their own, redeems one (typed by hand: lower case, spaces).
    context = chromium.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    try:
        member = context.new_page()
        member.set_default_timeout(10_000)
        sign_in(member, base, billing.username, PASSWORD)
        member.click("nav >> text=Billing")
        assert member.locator("[data-testid=balance]").inner_text() == "$100.00"
        member.fill("[data-testid=redeem] input[name=code]", codes[0].lower().replace("-", " "))
        member.click("[data-testid=redeem] button[type=submit]")
        member.wait_for_load_state()
        assert "Code redeemed: $12.345678 added; the balance is now $112.345678." in member.content()
        assert member.locator("[data-testid=balance]").inner_text() == "$112.345678"
        assert team_balance(team=team) - before == 12_345_678
        entry = LedgerEntry.objects.filter(team=team).order_by("-id").first()
        assert (entry.kind, entry.amount, entry.created_by) == (LedgerEntry.REDEMPTION, 12_345_678, billing)
        assert "+$12.345678" in member.locator("[data-testid=ledger]").inner_text()
        shot(member, "billing-redeem")

        # The same code again is refused, with the reason; the balance does not move.
        member.fill("[data-testid=redeem] input[name=code]", codes[0])
        member.click("[data-testid=redeem] button[type=submit]")
        member.wait_for_load_state()
        assert "This code has already been redeemed." in member.content()
        assert team_balance(team=team) - before == 12_345_678

        # A call through the relay shows up in the spend report once charged.
        response = httpx.post(f"{live.base_url}/chat/completions", headers={"Authorization": f"Bearer {live.secret}"},
                              json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
        assert wait_for(lambda: UsageRecord.objects.filter(team=team).exists())
        usage_reconcile()
        cost = UsageRecord.objects.get(team=team).cost
        member.click("nav >> text=Spend report")
        member.select_option("select[name=group_by]", "model")
        member.click("[data-testid=filters] button[type=submit]")
        member.wait_for_load_state()
        assert "openai/gpt-4o-mini" in member.locator("[data-testid=spend]").inner_text()
        assert member.locator("[data-testid=total-requests]").inner_text() == "1"
        assert member.locator("[data-testid=table-total]").inner_text() == money_display(cost)
        shot(member, "spend-report")

        # The billing policy: a monthly cap typed as a plain decimal; an exponent is refused.
        member.click("nav >> text=Billing")
        member.click("text=Billing policy")
        member.fill("input[name=monthly_cap]", "1e3")
        member.click("[data-testid=policy] button[type=submit]")
        member.wait_for_load_state()
        assert "Enter a plain amount such as 12.50" in member.content()
        member.fill("input[name=monthly_cap]", "500")
        member.fill("input[name=alert_thresholds]", "50, 80, 100")
        member.click("[data-testid=policy] button[type=submit]")
        member.wait_for_load_state()
        assert member.locator("[data-testid=cap]").inner_text() == "$500.00"
        policy = TeamBillingPolicy.objects.get(team=team)
        assert (policy.monthly_cap, policy.alert_thresholds) == (500_000_000, [50, 80, 100])
        shot(member, "billing-policy")
    finally:
        context.close()
