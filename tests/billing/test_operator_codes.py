"""Operator: redemption-code batches in the console and the API — made once, listed with counts, exported as
masks, unused codes voided (and then refused at redemption)."""
import base64
import csv
import io
import re

import pytest
from django.urls import reverse

from accounts import roles
from billing import selectors, services
from billing.models import RedemptionCode
from billing.selectors import team_balance
from billing.services import CreditError
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, staff, text  # noqa: F401
from tests.billing.test_ledger import run_threads

pytestmark = pytest.mark.django_db
CODE = re.compile(r"TG(?:-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{4}){4}")


def _make(client, **overrides):
    data = {"name": "launch promo", "count": "3", "amount": "2.50", "expires_at": "", "credit_valid_days": "30"}
    return client.post(reverse("operator-codes"), {**data, **overrides})


def test_a_batch_shows_its_codes_once_then_only_masks():
    client = client_for(staff())
    response = _make(client)
    assert response.status_code == 302
    shown = client.get(reverse("operator-codes"))
    codes = sorted(set(CODE.findall(text(shown))))
    assert len(codes) == 3 and "no-store" in shown["Cache-Control"]
    # The one-time CSV download is inside that page (a data: link): nothing on the server keeps the codes.
    link = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', text(shown)).group(1)
    rows = list(csv.reader(io.StringIO(base64.b64decode(link).decode("utf-8-sig"))))
    assert rows[0] == ["code", "batch"] and sorted(r[0] for r in rows[1:]) == codes
    again = client.get(reverse("operator-codes"))
    assert not CODE.findall(text(again))                      # shown once
    batch = RedemptionCode.objects.values_list("batch", flat=True).first()
    assert f'data-batch="{batch}"' in text(again) and "launch promo" in text(again)
    assert {c.code_hash for c in RedemptionCode.objects.all()}.isdisjoint(codes)   # only hashes are stored


def test_batch_list_counts_and_csv_export_has_masks_not_codes():
    team = factories.TeamFactory(slug="acme")
    codes = services.redemption_batch_create(created_by=staff(), count=3, amount=1_000_000, name="fall")
    services.redemption_redeem(team=team, user=None, code=codes[0])
    [batch] = selectors.redemption_batches()
    assert (batch["total"], batch["used"], batch["unused"], batch["disabled"]) == (3, 1, 2, 0)

    support = client_for(staff(roles.SUPPORT))        # support may read the batches, not make or void them
    page = support.get(reverse("operator-codes"))
    assert page.status_code == 200 and "New batch" not in text(page) and "Void unused" not in text(page)
    export = support.get(reverse("operator-codes-export") + f"?batch={batch['batch']}")
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    body = b"".join(export.streaming_content).decode()
    assert not CODE.findall(body)
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert sorted(r["status"] for r in rows) == ["unused", "unused", "used"]
    assert {r["redeemed_by_team"] for r in rows} == {"acme", ""}
    assert all(r["mask"].startswith("TG-…") for r in rows)
    assert support.get(reverse("operator-codes-export") + "?batch=nope").status_code == 302


def test_void_disables_the_unused_codes_only_and_they_cannot_be_redeemed():
    team = factories.TeamFactory()
    codes = services.redemption_batch_create(created_by=None, count=3, amount=1_000_000)
    other = services.redemption_batch_create(created_by=None, count=1, amount=1_000_000)
    services.redemption_redeem(team=team, user=None, code=codes[0])
    batch = services.redemption_batch_of(code=codes[0])
    url = reverse("operator-codes-void")
    assert client_for(staff(roles.SUPPORT)).post(url, {"batch": batch}).status_code == 403
    assert client_for(staff()).post(url, {"batch": batch}).status_code == 302
    assert sorted(RedemptionCode.objects.filter(batch=batch).values_list("status", flat=True)) == [
        "disabled", "disabled", "used"]
    with pytest.raises(CreditError) as refused:
        services.redemption_redeem(team=team, user=None, code=codes[1])
    assert refused.value.code == "code_disabled"
    services.redemption_redeem(team=team, user=None, code=other[0])   # another batch is untouched
    assert client_for(staff()).post(url, {"batch": "not a batch"}).status_code == 302


@pytest.mark.parametrize("field,value,message", [
    ("amount", "1e3", ""), ("amount", "abc", ""), ("amount", "0", "positive"), ("amount", "1.0000001", ""),
    ("count", "0", ""), ("count", "1001", ""), ("expires_at", "2020-01-01T00:00", "future"),
])
def test_bad_batch_input_is_a_400_form_error(field, value, message):
    response = _make(client_for(staff()), **{field: value})
    assert response.status_code == 400
    errors = response.context["form"].errors[field]
    assert errors and message in " ".join(errors)
    assert not RedemptionCode.objects.exists()


def test_api_lists_and_voids_batches():
    operator, support = client_for(staff()), client_for(staff(roles.SUPPORT))
    made = operator.post("/api/operator/redemption-batches/", {"count": 2, "amount": 500_000, "name": "api"},
                         content_type="application/json")
    assert made.status_code == 201
    batch = made.json()["batch"]
    assert len(made.json()["codes"]) == 2
    listed = operator.get("/api/operator/redemption-batches/")
    assert listed.status_code == 200
    assert [(b["batch"], b["name"], b["total"], b["unused"]) for b in listed.json()] == [(batch, "api", 2, 2)]
    assert "codes" not in listed.json()[0]
    assert support.get("/api/operator/redemption-batches/").status_code == 403
    void = f"/api/operator/redemption-batches/{batch}/void/"
    assert support.post(void).status_code == 403
    voided = operator.post(void)
    assert voided.status_code == 200 and voided.json() == {"batch": batch, "voided": 2}
    assert operator.post(void).json()["voided"] == 0
    assert operator.post("/api/operator/redemption-batches/0000000000000000/void/").status_code == 404
    assert operator.get("/api/operator/redemption-batches/").json()[0]["disabled"] == 2
    assert RedemptionCode.objects.filter(batch=batch, status="disabled").count() == 2


@pytest.mark.django_db(transaction=True)
def test_void_racing_redemptions_credits_each_code_at_most_once_and_voids_the_rest():
    teams = [factories.TeamFactory() for _ in range(6)]
    codes = services.redemption_batch_create(created_by=None, count=6, amount=1_000_000)
    batch = services.redemption_batch_of(code=codes[0])

    def work(i):
        if i == 6:
            return ("voided", services.redemption_batch_void(batch=batch))
        try:
            return ("redeemed", services.redemption_redeem(team=teams[i], user=None, code=codes[i]).amount)
        except CreditError as refused:
            return ("refused", refused.code)

    results = run_threads(7, work)
    voided = results[6][1]
    redeemed = [r for r in results[:6] if r[0] == "redeemed"]
    assert all(r == ("refused", "code_disabled") for r in results[:6] if r[0] != "redeemed")
    assert len(redeemed) + voided == 6            # every code is either credited once or voided, never both
    statuses = list(RedemptionCode.objects.filter(batch=batch).values_list("status", flat=True))
    assert sorted(statuses) == sorted(["used"] * len(redeemed) + ["disabled"] * voided)
    assert sum(team_balance(team=t) for t in teams) == 1_000_000 * len(redeemed)
