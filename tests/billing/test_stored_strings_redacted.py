"""A secret a client pastes into what the gateway stores (model, User-Agent, path, metadata) is stored and shown
masked (issue 11): through a live gateway, into the usage record, onto the console's log pages and CSV."""
import uuid

import httpx
import pytest
from django.urls import reverse

from accounts import roles
from billing import usage_journal
from billing.models import UsageRecord
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher  # noqa: F401
from tests.conftest import wait_for

pytestmark = pytest.mark.live

OPENAI_SECRET = "sk-proj-" + "Q7xv2LmN9pR4tY6wZ8bC1dF3gH5jK0aS"
ANTHROPIC_SECRET = "sk-ant-api03-" + "Hq2Wm9Xz4Lp7Rt1Vb8Nc3Kd6Jf0Gs5Ya"
GITHUB_SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def _stored(request_id):
    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).first(), timeout=10)


def _assert_masked(row, *secrets):
    values = [str(getattr(row, f.attname)) for f in UsageRecord._meta.concrete_fields]
    for secret in secrets:
        assert not any(secret in value for value in values), f"{secret[:8]}… stored in clear"
    return values


def test_secrets_in_model_user_agent_and_metadata_are_stored_and_shown_redacted(live):
    headers = {"Authorization": f"Bearer {live.secret}",
               "User-Agent": f"my-script/1.0 (key={GITHUB_SECRET}) {ANTHROPIC_SECRET}"}
    with httpx.Client(base_url=live.server.url, headers=headers, timeout=10) as http:
        unknown = http.post("/v1/chat/completions", json={
            "model": OPENAI_SECRET, "messages": [{"role": "user", "content": "hi"}]})
        served = http.post(f"/v1/messages?note={OPENAI_SECRET}", headers={"anthropic-version": "2023-06-01"}, json={
            "model": "gpt-4o-mini", "max_tokens": 20, "metadata": {"user_id": ANTHROPIC_SECRET},
            "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404 and served.status_code == 200, (unknown.text, served.text)

    refused = _stored(unknown.headers["x-request-id"])
    values = _assert_masked(refused, OPENAI_SECRET, ANTHROPIC_SECRET, GITHUB_SECRET)
    assert refused.requested_model == "[REDACTED…" + OPENAI_SECRET[-4:] + "]"
    assert refused.user_agent.startswith("my-script/1.0 (key=[REDACTED") and "[REDACTED…" + ANTHROPIC_SECRET[-4:] \
        in refused.user_agent
    assert any("[REDACTED" in v for v in values)
    ok = _stored(served.headers["request-id"])
    _assert_masked(ok, OPENAI_SECRET, ANTHROPIC_SECRET, GITHUB_SECRET)
    assert ok.requested_model == "gpt-4o-mini" and ok.status_code == 200  # ordinary values untouched

    owner = factories.MembershipFactory(team=live.team, role=roles.OWNER).user
    console = client_for(owner)
    for page in (reverse("console-logs", kwargs={"team": live.team.slug}),
                 reverse("console-logs-export", kwargs={"team": live.team.slug}),
                 reverse("console-log-detail", kwargs={"team": live.team.slug, "pk": refused.pk}),
                 reverse("console-log-detail", kwargs={"team": live.team.slug, "pk": ok.pk})):
        response = console.get(page)
        assert response.status_code == 200, page
        body = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
        for secret in (OPENAI_SECRET, ANTHROPIC_SECRET, GITHUB_SECRET):
            assert secret not in body, f"{secret[:8]}… shown on {page}"
    assert "[REDACTED…" + OPENAI_SECRET[-4:] + "]" in console.get(
        reverse("console-log-detail", kwargs={"team": live.team.slug, "pk": refused.pk})).content.decode()


def test_sanitize_redacts_client_columns_only_and_keeps_lengths_bounded():
    record = {"request_id": "req_" + uuid.uuid4().hex[:24], "requested_model": OPENAI_SECRET,
              "user_agent": ("x" * 2000) + " Bearer abcdefghijklmnop", "path": f"/v1/models?key={GITHUB_SECRET}",
              "attempts": [f"openai/gpt-4o via ch: upstream said invalid key {OPENAI_SECRET}"],
              "error_code": "model_not_found", "finish_reason": "stop", "sdk": "openai-python 1.2.3"}
    clean = usage_journal.sanitize(record)
    assert clean["requested_model"] == "[REDACTED…" + OPENAI_SECRET[-4:] + "]"
    assert len(clean["user_agent"]) == 300  # clipped to its column
    bearer = usage_journal.sanitize({"user_agent": "tool Bearer abcdefghijklmnop"})["user_agent"]
    assert bearer == "tool Bearer [REDACTED…mnop]"
    assert GITHUB_SECRET not in clean["path"] and clean["path"].startswith("/v1/models?key=[REDACTED")
    assert OPENAI_SECRET not in clean["attempts"][0] and clean["attempts"][0].startswith("openai/gpt-4o via ch")
    assert clean["error_code"] == "model_not_found" and clean["sdk"] == "openai-python 1.2.3"
    assert usage_journal.sanitize({"user_agent": "curl/8.5.0"})["user_agent"] == "curl/8.5.0"
