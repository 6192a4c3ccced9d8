"""Prices per customer: a team's per-model overrides (from a date on), the team's and key group's multipliers;
a live gateway charges new calls at them within a second, past records keep their cost; the team sees
"your price" beside the list price."""
import asyncio
import datetime as dt

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from billing import selectors, services
from billing.models import PriceOverride, UsageRecord
from routing.catalog import bump_version
from routing.relay import snapshot
from tests import factories
from tests.accounts.console_helpers import client_for, fast_hasher, member, staff, text  # noqa: F401
from tests.conftest import wait_for

ONE_PER_TOKEN = dict(input_per_m=1_000_000, output_per_m=1_000_000, cached_input_per_m=500_000)


def _chat(live):
    return httpx.post(f"{live.base_url}/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {live.secret}"},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def _last_record(live, after_pk=0):
    return wait_for(lambda: UsageRecord.objects.filter(api_key=live.key, pk__gt=after_pk).order_by("-pk").first())


@pytest.mark.live
def test_an_override_prices_the_next_call_on_a_live_gateway_but_not_past_ones(live):
    live.model.prices.update(**ONE_PER_TOKEN)
    bump_version()
    assert wait_for(lambda: _chat(live).status_code == 200)
    first = _last_record(live)
    tokens = first.prompt_tokens + first.completion_tokens
    assert first.cost == tokens > 0                           # 1 micro-unit a token at the list price

    operator = client_for(staff())
    response = operator.post(reverse("operator-team-prices", kwargs={"pk": live.team.pk}), {
        "model": live.model.pk, "input_per_m": "3", "output_per_m": "3", "cached_input_per_m": "1",
        "request_fee": "0.000100", "effective_from": ""})
    assert response.status_code == 302, response.content
    # Within a second (the catalog version is bumped on commit), new calls pay the override.
    def repriced():
        assert _chat(live).status_code == 200
        record = _last_record(live, first.pk)
        return record if record and record.cost == 3 * tokens + 100 else None
    assert wait_for(repriced, timeout=3)
    first.refresh_from_db()
    assert first.cost == tokens                               # the past keeps its price

    # The team's multiplier applies on top of the override, as soon as it is saved.
    assert operator.post(reverse("operator-team-multiplier", kwargs={"pk": live.team.pk}),
                         {"multiplier": "0.5"}).status_code == 302
    last = UsageRecord.objects.filter(api_key=live.key).order_by("-pk").first()

    def halved():
        assert _chat(live).status_code == 200
        record = _last_record(live, last.pk)
        return record if record and record.cost == (3 * tokens + 100 + 1) // 2 else None
    last = wait_for(halved, timeout=3)
    assert last

    # And the key group's on top of the team's (its keys' cached contexts are republished).
    assert operator.post(reverse("operator-group-multiplier", kwargs={"pk": live.team.pk}),
                         {"group": live.key.group_id, "multiplier": "0.5"}).status_code == 302

    def quartered():
        assert _chat(live).status_code == 200
        record = _last_record(live, last.pk)
        return record if record and record.cost == (3 * tokens + 100 + 2) // 4 else None
    assert wait_for(quartered, timeout=3)


@pytest.mark.django_db(transaction=True)
def test_snapshot_picks_the_override_in_force_per_team_and_time():
    price = factories.PriceFactory(**ONE_PER_TOKEN)
    team, other = factories.TeamFactory(), factories.TeamFactory()
    now = timezone.now()
    services.price_override_set(team=team, model=price.model, input_per_m=2_000_000, output_per_m=2_000_000,
                                cached_input_per_m=0, effective_from=now)
    services.price_override_set(team=team, model=price.model, input_per_m=9_000_000, output_per_m=9_000_000,
                                cached_input_per_m=0, effective_from=now + dt.timedelta(hours=1))
    snapshot.invalidate_local()
    snap = asyncio.run(snapshot.current())
    entry = snap.resolve(price.model.public_id)
    assert snap.price_for(entry, team.pk).input_per_m == 2_000_000
    assert snap.price_for(entry, other.pk).input_per_m == 1_000_000                  # list price
    later = (now + dt.timedelta(hours=2)).timestamp()
    assert snap.price_for(entry, team.pk, at=later).input_per_m == 9_000_000         # starts without a reload
    # A catalog price announced for later starts on time too (for teams without an override).
    services.price_set(model=price.model, input_per_m=5_000_000, output_per_m=5_000_000, cached_input_per_m=0,
                       effective_from=now + dt.timedelta(hours=1))
    snapshot.invalidate_local()
    snap = asyncio.run(snapshot.current())
    entry = snap.resolve(price.model.public_id)
    assert entry.price.input_per_m == 1_000_000 and snap.price_for(entry, other.pk).input_per_m == 1_000_000
    assert snap.price_for(entry, other.pk, at=later).input_per_m == 5_000_000
    assert snap.price_for(entry, team.pk, at=later).input_per_m == 9_000_000          # the override wins


@pytest.mark.django_db
def test_team_sees_its_price_beside_the_list_price():
    team = factories.TeamFactory()
    cheap = factories.PriceFactory(model__public_id="acme/cheap", input_per_m=1_000_000, output_per_m=4_000_000)
    factories.PriceFactory(model__public_id="acme/listed", input_per_m=2_000_000, output_per_m=8_000_000)
    services.price_override_set(team=team, model=cheap.model, input_per_m=500_000, output_per_m=2_000_000,
                                cached_input_per_m=0)
    services.team_multiplier_set(team=team, multiplier_ppm=900_000)
    group = factories.KeyGroupFactory(team=team, name="batch jobs")
    services.group_multiplier_set(group=group, multiplier_ppm=800_000)

    page = client_for(member(team, roles.MEMBER)).get(reverse("console-prices", kwargs={"team": team.slug}))
    assert page.status_code == 200
    rows = {r.model.public_id: r for r in page.context["prices"]}
    assert (rows["acme/cheap"].input_per_m, rows["acme/cheap"].output_per_m) == (450_000, 1_800_000)
    assert (rows["acme/listed"].input_per_m, rows["acme/listed"].output_per_m) == (1_800_000, 7_200_000)
    assert rows["acme/cheap"].list_price.input_per_m == 1_000_000
    body = text(page)
    assert "$0.45" in body and "$1.00" in body and "your rate" in body
    assert "batch jobs" in body and "×0.8" in body
    other = factories.TeamFactory()
    assert client_for(member(other)).get(reverse("console-prices", kwargs={"team": team.slug})).status_code == 404


@pytest.mark.django_db
def test_operator_price_forms_and_their_errors():
    team = factories.TeamFactory()
    price = factories.PriceFactory()
    group = factories.KeyGroupFactory(team=team)
    client = client_for(staff())
    url = reverse("operator-team-prices", kwargs={"pk": team.pk})
    good = {"model": price.model.pk, "input_per_m": "0.1", "output_per_m": "0.2", "cached_input_per_m": "0.05",
            "request_fee": "0", "effective_from": ""}
    for field, bad in (("input_per_m", "1e3"), ("input_per_m", "-1"), ("output_per_m", "NaN"),
                       ("cached_input_per_m", "0.0000001"), ("effective_from", "2020-01-01T00:00")):
        response = client.post(url, {**good, field: bad})
        assert response.status_code == 400 and response.context["override_form"].errors[field], (field, bad)
    assert not PriceOverride.objects.exists()
    assert client.post(url, good).status_code == 302
    override = PriceOverride.objects.get(team=team)
    assert (override.input_per_m, override.output_per_m, override.cached_input_per_m) == (100_000, 200_000, 50_000)

    multiplier = reverse("operator-team-multiplier", kwargs={"pk": team.pk})
    for bad in ("1e3", "-1", "abc", "101"):
        assert client.post(multiplier, {"multiplier": bad}).status_code == 400, bad
    assert client.post(multiplier, {"multiplier": "1.25"}).status_code == 302
    assert selectors.team_multiplier_ppm(team=team) == 1_250_000

    group_url = reverse("operator-group-multiplier", kwargs={"pk": team.pk})
    assert client.post(group_url, {"group": group.pk, "multiplier": "0.75"}).status_code == 302
    group.refresh_from_db()
    assert group.price_multiplier_ppm == 750_000
    assert client.post(group_url, {"group": group.pk, "multiplier": ""}).status_code == 302
    group.refresh_from_db()
    assert group.price_multiplier_ppm is None
    foreign = factories.KeyGroupFactory()
    assert client.post(group_url, {"group": foreign.pk, "multiplier": "0.1"}).status_code == 400
    foreign.refresh_from_db()
    assert foreign.price_multiplier_ppm is None

    delete = reverse("operator-override-delete", kwargs={"pk": team.pk})
    assert client.post(delete, {"override": override.pk}).status_code == 302
    assert not PriceOverride.objects.exists()
    support = client_for(staff(roles.SUPPORT))
    assert support.get(url).status_code == 200 and support.post(url, good).status_code == 403


@pytest.mark.django_db
def test_price_api_sets_overrides_and_multipliers_and_the_team_reads_its_prices():
    team = factories.TeamFactory()
    price = factories.PriceFactory(model__public_id="acme/m1", input_per_m=1_000_000, output_per_m=2_000_000)
    group = factories.KeyGroupFactory(team=team)
    operator, support = client_for(staff()), client_for(staff(roles.SUPPORT))
    base = f"/api/operator/teams/{team.pk}/"
    body = {"model": "acme/m1", "input_per_m": 400_000, "output_per_m": 800_000, "cached_input_per_m": 0}
    assert support.post(base + "prices/", body, content_type="application/json").status_code == 403
    made = operator.post(base + "prices/", body, content_type="application/json")
    assert made.status_code == 201 and made.json()["model"] == "acme/m1"
    for bad in ({**body, "input_per_m": -1}, {**body, "input_per_m": "1e3"}, {**body, "model": "no/such"},
                {**body, "effective_from": "2020-01-01T00:00:00Z"}):
        response = operator.post(base + "prices/", bad, content_type="application/json")
        assert response.status_code == 400, (bad, response.content)
    assert operator.put(base + "multiplier/", {"multiplier_ppm": 500_000},
                        content_type="application/json").json() == {"multiplier_ppm": 500_000}
    assert operator.put(base + "multiplier/", {"multiplier_ppm": 1.5},
                        content_type="application/json").status_code == 400
    grouped = operator.put(base + f"key-groups/{group.pk}/multiplier/", {"multiplier_ppm": 900_000},
                           content_type="application/json")
    assert grouped.status_code == 200 and grouped.json()["multiplier_ppm"] == 900_000
    foreign = factories.KeyGroupFactory()
    assert operator.put(base + f"key-groups/{foreign.pk}/multiplier/", {"multiplier_ppm": 1},
                        content_type="application/json").status_code == 404
    terms = operator.get(base + "prices/").json()
    assert terms["multiplier_ppm"] == 500_000 and terms["groups"][0]["multiplier_ppm"] == 900_000
    assert [o["input_per_m"] for o in terms["overrides"]] == [400_000]

    mine = client_for(member(team)).get(f"/api/teams/{team.slug}/prices/")
    assert mine.status_code == 200
    [row] = [r for r in mine.json() if r["model"] == "acme/m1"]
    assert (row["list_input_per_m"], row["input_per_m"], row["output_per_m"]) == (1_000_000, 200_000, 400_000)
    assert row["override_since"] is not None and row["multiplier_ppm"] == 500_000

    override_id = made.json()["id"]
    assert operator.delete(base + f"prices/{override_id}/").status_code == 204
    assert operator.delete(base + f"prices/{override_id}/").status_code == 404
    assert price.model.price_overrides.count() == 0


@pytest.mark.django_db
def test_team_creation_api():
    operator = client_for(staff())
    made = operator.post("/api/operator/teams/", {"name": "API Co", "slug": "api-co", "owner": "new@api.test"},
                         content_type="application/json")
    assert made.status_code == 201 and made.json()["one_time_password"]
    assert made.json()["slug"] == "api-co"
    again = operator.post("/api/operator/teams/", {"name": "API Co", "slug": "api-co", "owner": "x"},
                          content_type="application/json")
    assert again.status_code == 400 and "taken" in again.json()["error"]["message"]
    assert client_for(staff(roles.SUPPORT)).post("/api/operator/teams/", {"name": "n", "slug": "n", "owner": "o"},
                                                 content_type="application/json").status_code == 403


@pytest.mark.django_db
def test_teams_list_shows_custom_pricing():
    factories.TeamFactory(name="A plain")
    custom = factories.TeamFactory(name="B custom")
    price = factories.PriceFactory()
    services.team_multiplier_set(team=custom, multiplier_ppm=850_000)
    services.price_override_set(team=custom, model=price.model, input_per_m=1, output_per_m=1, cached_input_per_m=1)
    page = client_for(staff(roles.SUPPORT)).get(reverse("operator-teams"))
    teams = {t.name: t for t in page.context["teams"]}
    assert (teams["A plain"].multiplier, teams["A plain"].override_count) == (None, 0)
    assert (teams["B custom"].multiplier, teams["B custom"].override_count) == (0.85, 1)
    body = text(page)
    assert "×0.85" in body and "1 override" in body and "list prices" in body
