"""One watchlist over three providers, end to end: the collect asset against fake Duffel and Amadeus
servers (auth, 429, token expiry) and the QPX market simulator, then Spark, then the PostgreSQL warehouse."""
import json
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, Definitions

from fare_assets.resources import FareSourceResource, LakeResource
from fare_assets.storing import warehouse
from fare_assets.storing.lake import RAW_PREFIX
from fare_assets.streaming.assets import collect_job, raw_fare_quotes
from fare_assets.streaming.providers import ProviderConfigError
from fare_assets.streaming.watchlist import WatchlistError, load_watchlist
from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.serving import fare_rows
from fare_assets.structuring.tables import read_table
from fare_assets_tests.conftest import load_fixture
from fare_assets_tests.fake_providers import FakeAmadeus, FakeDuffel, serving
from fare_assets_tests.test_amadeus import _envelope as amadeus_envelope
from fare_assets_tests.test_duffel import _envelope as duffel_envelope
from fare_assets_tests.test_structuring import _quarantined, _write_raw

DUFFEL_TOKEN = "duffel_test_e2e_not_real"
AMADEUS_ID, AMADEUS_SECRET = "fares-e2e", "fares-e2e-secret-not-real"
# Two departures (every third day within 1..6 days ahead) of one trip length per entry.
WATCHLIST = """trips:
  - {origin: LHR, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 6, every: 3}, provider: duffel}
  - {origin: LAX, destination: SFO, nights: [3], depart_days_ahead: {from: 1, to: 6, every: 3}, provider: duffel}
  - {origin: CDG, destination: MAD, nights: [3], depart_days_ahead: {from: 1, to: 6, every: 3}, provider: amadeus,
     adults: 2, children: 1}
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 6, every: 3}}
"""


def _lake_records(lake: Path) -> list[dict]:
    objects = sorted(path for path in (lake / RAW_PREFIX).rglob("*") if path.is_file() and not path.name.startswith("."))
    return [json.loads(line) for path in objects for line in path.read_text().splitlines()]


@pytest.fixture
def provider_env(monkeypatch):
    """Credentials and URLs as an operator sets them; the servers come later, so URLs are set by the test."""
    monkeypatch.setenv("FARES_DUFFEL_TOKEN", DUFFEL_TOKEN)
    monkeypatch.setenv("FARES_AMADEUS_CLIENT_ID", AMADEUS_ID)
    monkeypatch.setenv("FARES_AMADEUS_CLIENT_SECRET", AMADEUS_SECRET)
    monkeypatch.setenv("FARES_DUFFEL_RATE_PER_SECOND", "100")
    monkeypatch.setenv("FARES_AMADEUS_RATE_PER_SECOND", "100")
    return monkeypatch


def test_collect_structure_and_load_three_providers(tmp_path, spark, warehouse_dsn, market_url, provider_env):
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text(WATCHLIST)
    lake = tmp_path / "lake"
    with serving(FakeDuffel(DUFFEL_TOKEN, reset_seconds=1)) as duffel, \
            serving(FakeAmadeus(AMADEUS_ID, AMADEUS_SECRET, searches_per_token=1)) as amadeus:
        provider_env.setenv("FARES_DUFFEL_URL", duffel.url)
        provider_env.setenv("FARES_AMADEUS_URL", amadeus.url)
        duffel.refuse(1)
        defs = Definitions(assets=[raw_fare_quotes], jobs=[collect_job], resources={
            "fare_source": FareSourceResource(base_url=market_url, watchlist_path=str(watchlist),
                                              rate_per_second=500),
            "lake": LakeResource(root=str(lake))})
        with DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("collect_fares").execute_in_process(instance=instance)
    metadata = result.asset_materializations_for_node("raw_fare_quotes")[0].metadata

    # Collection: every call one record, the 429 retried and the expired token renewed within the call.
    records = _lake_records(lake)
    assert Counter(r["provider"] for r in records) == {"duffel": 4, "amadeus": 2, "qpx": 2}
    assert metadata["calls"].value == len(records) == 8 and metadata["failures"].value == 0
    assert {(r["provider"], r["status"]) for r in records} == {("duffel", 201), ("amadeus", 200), ("qpx", 200)}
    assert len(duffel.searches()) == 5 and amadeus.tokens_issued == 2
    assert metadata["rate_limits"].value["duffel"]["remaining"] == 119
    # Raw is the provider's answer as received.
    assert sorted(json.dumps(r["response"], sort_keys=True) for r in records if r["provider"] == "duffel") == sorted(
        json.dumps(answer, sort_keys=True) for answer in duffel.answers)

    # Structuring: the raw files alone, every record a search, nothing quarantined.
    raw_paths = [str(path) for path in sorted((lake / RAW_PREFIX).rglob("*"))
                 if path.is_file() and not path.name.startswith(".")]
    counts = structure_raw(spark, raw_paths, str(lake))
    assert (counts["searches"], counts["quarantined"]) == (8, 0)
    offered = {"duffel": sum(len(a["data"]["offers"]) for a in duffel.answers),
               "amadeus": sum(len(a["data"]) for a in amadeus.answers)}
    assert offered == {"duffel": 12, "amadeus": 6}

    # Warehouse: the same loader the storing asset uses, untouched by the new providers.
    projected = fare_rows(spark, str(lake)).select(*warehouse.LOAD_COLUMNS).toArrow()
    dimensions = {table: read_table(spark, str(lake), table).select(*(name for name, _ in columns)).toArrow()
                  for table, columns in warehouse.DIMENSION_COLUMNS.items()}
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, warehouse.rows_from_arrow(projected),
                                 {table: warehouse.rows_from_arrow(rows) for table, rows in dimensions.items()})
        rows = conn.execute(
            "SELECT provider, origin, destination, total_amount, currency, carriers, stops_out, stops_back, nights, "
            "duration_out_min, adults, children, true AS national FROM national_fares UNION ALL "
            "SELECT provider, origin, destination, total_amount, currency, carriers, stops_out, stops_back, nights, "
            "duration_out_min, adults, children, false FROM international_fares").fetchall()
        carriers = dict(conn.execute("SELECT code, name FROM carriers").fetchall())
    by_provider = Counter(row[0] for row in rows)
    assert by_provider["duffel"] == offered["duffel"] and by_provider["amadeus"] == offered["amadeus"]
    assert by_provider["qpx"] == counts["trip_options"] - sum(offered.values()) > 0

    duffel_totals = sorted(Decimal(o["total_amount"]) for a in duffel.answers for o in a["data"]["offers"])
    assert sorted(row[3] for row in rows if row[0] == "duffel") == duffel_totals
    amadeus_totals = sorted(Decimal(o["price"]["total"]) for a in amadeus.answers for o in a["data"])
    assert sorted(row[3] for row in rows if row[0] == "amadeus") == amadeus_totals
    routes = {(row[0], row[1], row[2], row[12], row[4]) for row in rows if row[0] != "qpx"}
    assert routes == {("duffel", "LHR", "JFK", False, "GBP"), ("duffel", "LAX", "SFO", True, "GBP"),
                      ("amadeus", "CDG", "MAD", False, "EUR")}
    for row in rows:
        if row[0] != "qpx":
            assert (row[6], row[7], row[8]) == (0, 0, 3) and row[9] > 0
    assert {(row[10], row[11]) for row in rows if row[0] == "amadeus"} == {(2, 1)}
    assert {row[5] for row in rows if row[0] == "duffel"} == {"AA", "BA", "IB"}
    assert carriers["IB"] in ("Iberia", "IBERIA")


def test_the_watchlist_chooses_a_provider_per_entry(tmp_path):
    path = tmp_path / "watchlist.yaml"
    path.write_text(WATCHLIST)
    assert load_watchlist(path).providers == {"duffel", "amadeus", "qpx"}
    path.write_text(WATCHLIST.replace("provider: amadeus", "provider: skyscanner"))
    with pytest.raises(WatchlistError, match=r"trips\[2\]\.provider: expected one of qpx, duffel, amadeus"):
        load_watchlist(path)


def test_a_provider_without_credentials_fails_before_any_call(tmp_path, monkeypatch):
    monkeypatch.delenv("FARES_DUFFEL_TOKEN", raising=False)
    source = FareSourceResource(base_url="http://127.0.0.1:9", watchlist_path=str(tmp_path / "unused.yaml"))
    assert set(source.client({"qpx"}).clients) == {"qpx"}
    with pytest.raises(ProviderConfigError, match="FARES_DUFFEL_TOKEN is not set"):
        source.client({"qpx", "duffel"})


DUFFEL_UNPRICED = "successful status with an offer without a readable, positive total_amount and total_currency"
AMADEUS_UNPRICED = "successful status with an offer without a readable, positive price.total and price.currency"


def _duffel_with_second_offer(**fields) -> dict:
    """duffel_01 whose second offer has these fields (None: null)."""
    answer = load_fixture("duffel/duffel_01.json")
    offer = answer["data"]["offers"][1]
    offer.update(fields)
    return answer


def _amadeus_with_second_price(**fields) -> dict:
    """amadeus_02 whose second offer's price has these fields."""
    answer = load_fixture("amadeus/amadeus_02.json")
    answer["data"][1]["price"].update(fields)
    return answer


def test_every_offer_provider_quarantines_an_answer_with_an_unpriced_offer(spark, tmp_path):
    unpriced = {
        "duffel_zero": duffel_envelope(_duffel_with_second_offer(total_amount="0.00")),
        "duffel_unreadable": duffel_envelope(_duffel_with_second_offer(total_amount="about 90")),
        "duffel_no_currency": duffel_envelope(_duffel_with_second_offer(total_currency=None)),
        "amadeus_negative": amadeus_envelope(_amadeus_with_second_price(total="-12.00")),
        "amadeus_no_currency": amadeus_envelope(_amadeus_with_second_price(currency=None)),
    }
    sound = [duffel_envelope(load_fixture("duffel/duffel_01.json")),
             amadeus_envelope(load_fixture("amadeus/amadeus_02.json"))]
    path = _write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), [*unpriced.values(), *sound])
    counts = structure_raw(spark, [path], str(tmp_path))
    assert (counts["raw_records"], counts["searches"], counts["quarantined"], counts["duplicates"]) == (7, 2, 5, 0)
    lines = _quarantined(tmp_path, "2026-11-28-04")
    assert {json.loads(line["record"])["search_id"]: line["reason"] for line in lines} == {
        envelope["search_id"]: DUFFEL_UNPRICED if name.startswith("duffel") else AMADEUS_UNPRICED
        for name, envelope in unpriced.items()
    }
    searches = read_table(spark, str(tmp_path), "searches").collect()
    assert {row.search_id for row in searches} == {envelope["search_id"] for envelope in sound}
