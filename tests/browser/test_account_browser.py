"""A new member's first sign-in, in a real browser against a live gateway: the team owner adds them on the
members page and reads the one-time password once; the member signs in with it, is sent to the change page
whatever they open, chooses a password, signs out and in again with it, and the one-time password is dead."""
import pytest

from accounts.models import UserPreference
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
NEW_PASSWORD = "my-own-passphrase-2026"


def sign_out(page) -> None:
    page.click("[data-testid=sign-out]")
    page.wait_for_url("**/console/login/")


def test_member_changes_the_one_time_password(live, chromium, page):
    base, team, owner = live.server.url, live.team, live.key.owner

    # The owner adds "mia" on the members page; the one-time password is shown once.
    sign_in(page, base, owner.username, PASSWORD)
    page.goto(f"{base}/console/t/{team.slug}/members/")
    page.fill("[data-testid=invite] input[name=identifier]", "mia")
    page.select_option("[data-testid=invite] select[name=role]", "member")
    page.click("[data-testid=invite] button[type=submit]")
    one_time = page.locator("[data-testid=new-password] code").inner_text().strip()
    assert len(one_time) >= 12
    page.reload()
    assert page.locator("[data-testid=new-password]").count() == 0
    assert "mia" in page.locator("[data-testid=members]").inner_text()

    # Mia, in her own browser: any console page sends her to the change page first.
    context = chromium.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    mia = context.new_page()
    mia.set_default_timeout(10_000)
    try:
        sign_in(mia, base, "mia", one_time)
        assert "/console/account/" in mia.url
        assert mia.locator("[data-testid=password-change-required]").is_visible()
        mia.goto(f"{base}/console/t/{team.slug}/keys/")
        assert "/console/account/?next=" in mia.url

        # A wrong current password is refused on the page.
        mia.fill("input[name=old_password]", "not-the-password")
        mia.fill("input[name=new_password1]", NEW_PASSWORD)
        mia.fill("input[name=new_password2]", NEW_PASSWORD)
        mia.click("[data-testid=password-change] button[type=submit]")
        assert mia.locator(".field.invalid input[name=old_password]").count() == 1

        # The real change: back to the keys page she asked for, still signed in.
        mia.fill("input[name=old_password]", one_time)
        mia.fill("input[name=new_password1]", NEW_PASSWORD)
        mia.fill("input[name=new_password2]", NEW_PASSWORD)
        mia.click("[data-testid=password-change] button[type=submit]")
        mia.wait_for_url(f"**/console/t/{team.slug}/keys/")
        assert mia.locator("h1").inner_text() == "API keys"
        assert not UserPreference.objects.get(user__username="mia").password_change_required

        # Sign out; the one-time password no longer works, the new one does, with no detour.
        sign_out(mia)
        sign_in(mia, base, "mia", one_time)
        assert mia.url.endswith("/console/login/")
        assert mia.locator(".form-errors").is_visible()
        sign_in(mia, base, "mia", NEW_PASSWORD)
        assert mia.url.endswith(f"/console/t/{team.slug}/")
        mia.click("[data-testid=account-link]")
        assert mia.url.endswith("/console/account/")
        assert mia.locator("[data-testid=password-change-required]").count() == 0
    finally:
        context.close()
