"""The live proof of the One API / New API import (issue 13): every imported token's secret, sent as clients
sent it to One API, is served by a running gateway through the imported channel to the simulator, which
receives the name the old `model_mapping` rewrote to; the usage is billed from the imported balance. Each
product from each source backend the importer reads (SQLite, PostgreSQL, MariaDB)."""
import io

import httpx
import pytest
from django.core.management import call_command

from billing.models import TeamBalance, UsageRecord
from billing.oneapi_import.services import import_rollback, import_run
from billing.services import usage_reconcile
from tests.billing.oneapi_source import fill, scratch
from tests.conftest import wait_for

# alice's laptop token may only use gpt-4o-mini (model_limits); the others ask for the old name One API mapped.
ASKS = {"alice_unlimited": "gpt-4o-mini"}


def chat(gateway, secret, model):
    return httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": "Hello after the move"}]})


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
@pytest.mark.parametrize("product", ["new-api", "one-api"])
def test_imported_secrets_reach_the_mapped_model_through_a_gateway(product, backend, transactional_db, gateway,
                                                                   simulator, tmp_path):
    with scratch(backend, tmp_path) as db:
        made = fill(db, product, upstream=simulator.url)
        batch, _ = import_run(source=db.url)
    before = dict(TeamBalance.objects.values_list("team__slug", "balance"))
    httpx.delete(f"{simulator.url}/_sim/requests")
    for name, secret in made["secrets"].items():
        asked = ASKS.get(name, "gpt-4-turbo-preview")
        reply = wait_for(lambda s=secret, a=asked: (r := chat(gateway, s, a)).status_code == 200 and r, timeout=10)
        assert reply, (name, chat(gateway, secret, asked).text)
        assert reply.json()["choices"][0]["message"]["content"]
        route = reply.headers["x-tollgate-route"]
        assert f"model=openai/{asked}" in route and "channel=" in route, route
    seen = httpx.get(f"{simulator.url}/_sim/requests", params={"limit": 50}).json()["requests"]
    sent = [r["body"]["model"] for r in seen if r["path"] == "/v1/chat/completions"]
    assert len(sent) == len(made["secrets"]) and set(sent) == {"gpt-4o-mini"}   # the mapping applied upstream

    # bob's group (vip) had no channel serving Claude in the source: it may not use Claude in Tollgate either.
    refused = chat(gateway, made["secrets"]["bob_vip"], "claude-3-5-sonnet-20240620")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed", refused.text

    # A refused token (expired, disabled, of a disabled user…) is refused by the gateway too.
    for name, secret in made["refused"].items():
        assert chat(gateway, secret, "gpt-4o-mini").status_code == 401, name

    # The calls are charged to the imported balances at the imported prices.
    assert wait_for(lambda: UsageRecord.objects.filter(status_code=200).count() == len(made["secrets"]), timeout=10)
    wait_for(lambda: usage_reconcile() == 0 and not UsageRecord.objects.filter(billed_at=None).exists(), timeout=10)
    after = dict(TeamBalance.objects.values_list("team__slug", "balance"))
    spent = sum(UsageRecord.objects.values_list("cost", flat=True))
    assert spent > 0 and sum(before.values()) - sum(after.values()) == spent
    assert after["alice"] < before["alice"] == 5_000_002

    import_rollback(batch=batch.code)
    revoked = wait_for(lambda: chat(gateway, made["secrets"]["root"], "gpt-4o-mini").status_code == 401, timeout=5)
    assert revoked
    # The reversal takes back each opening balance in full: a team is left below zero by exactly what it spent
    # in Tollgate, and the ledger (and the gateway's balance counters) audit clean.
    spent_by = {slug: sum(UsageRecord.objects.filter(team__slug=slug).values_list("cost", flat=True))
                for slug in before}
    assert dict(TeamBalance.objects.values_list("team__slug", "balance")) == {
        slug: -spent for slug, spent in spent_by.items()}
    call_command("ledger_audit", stdout=io.StringIO())
