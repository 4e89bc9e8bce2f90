"""Duffel: every real fixture through the Spark job, and the client against a fake Duffel over HTTP."""
import copy
import datetime as dt
import json
import math
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fare_assets.storing.lake import quarantine_path, raw_object_key
from fare_assets.streaming.duffel_client import DuffelClient, duffel_client_from_env
from fare_assets.streaming.providers import ProviderConfigError, Refusal
from fare_assets.streaming.watchlist import TripQuery
from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.providers.offers import OTHER_TRIP_SHAPE
from fare_assets.structuring.tables import DIMENSION_SCHEMAS, FACT_KEYS, FACT_SCHEMAS, read_table
from fare_assets_tests.conftest import FIXTURES, load_fixture
from fare_assets_tests.fake_providers import FakeDuffel, serving

DUFFEL_FIXTURES = sorted(path.name for path in (FIXTURES / "duffel").glob("*.json"))
LANDING_HOUR = "2026-11-28-04"
LATER_HOUR = "2026-11-28-07"
TOKEN = "duffel_test_not_a_real_token"
UTC = dt.timezone.utc


def _response(name: str) -> dict:
    return load_fixture(f"duffel/{name}")


def _offers(response: dict) -> list[dict]:
    return response["data"]["offers"]


def _without_slices() -> dict:
    """An offer that lists no slices (and one whose slices are null): still a priced option."""
    response = copy.deepcopy(_response("duffel_02.json"))
    empty, null = copy.deepcopy(_offers(response)[:2])
    empty["slices"], null["slices"] = [], None
    response["data"]["offers"] = [empty, null]
    return response


def _nulls() -> dict:
    """Duffel's documented nulls: no base or tax split, no conditions, no aircraft, no distance, no time zone."""
    response = copy.deepcopy(_response("duffel_01.json"))
    offer = copy.deepcopy(_offers(response)[0])
    offer["base_amount"] = offer["tax_amount"] = None
    offer["conditions"] = None
    segment = offer["slices"][0]["segments"][0]
    segment["aircraft"] = segment["distance"] = None
    segment["origin"]["time_zone"] = None
    response["data"]["offers"] = [offer]
    return response


def _absurd() -> dict:
    """Values no column can hold: a segment of 1,500,000 days, a slice of 10^11 minutes, 10^10 km."""
    response = copy.deepcopy(_response("duffel_01.json"))
    offer = copy.deepcopy(_offers(response)[0])
    offer["slices"][0]["duration"] = "PT99999999999M"
    segment = offer["slices"][0]["segments"][0]
    segment["duration"], segment["distance"] = "P1500000D", "1e10"
    response["data"]["offers"] = [offer]
    return response


def _tax_in_another_currency() -> dict:
    """An offer whose tax Duffel states in another currency than its total."""
    response = copy.deepcopy(_response("duffel_01.json"))
    offer = copy.deepcopy(_offers(response)[0])
    offer["tax_currency"] = "USD"
    response["data"]["offers"] = [offer]
    return response


def _family() -> dict:
    """Two passengers on one offer: Duffel prices the offer as a whole, never per passenger."""
    response = copy.deepcopy(_response("duffel_02.json"))
    offer = copy.deepcopy(_offers(response)[0])
    child = {"id": "pas_child", "type": None, "age": 9}
    offer["passengers"].append(child)
    for segment in offer["slices"][0]["segments"]:
        fare = copy.deepcopy(segment["passengers"][0])
        segment["passengers"].append({**fare, "passenger_id": "pas_child", "fare_basis_code": "CHILD9",
                                      "baggages": [{"type": "checked", "quantity": 2}]})
    response["data"]["offers"] = [offer]
    return response


def _query(response: dict | None) -> dict:
    """The search a response answers: its first flown slice's ends and date (SYD-MEL when it has none)."""
    offers = ((response or {}).get("data") or {}).get("offers") or []
    segments = offers[0]["slices"][0]["segments"] if offers and offers[0]["slices"] else None
    if not segments:
        return {"origin": "SYD", "destination": "MEL", "depart_date": "2022-04-16", "return_date": None,
                "adults": 1, "children": 0, "cabin": "COACH"}
    return {"origin": segments[0]["origin"]["iata_code"], "destination": segments[-1]["destination"]["iata_code"],
            "depart_date": segments[0]["departing_at"][:10], "return_date": None, "adults": 1, "children": 0,
            "cabin": "COACH"}


def _envelope(response: dict | None, **fields) -> dict:
    record = {"v": 1, "search_id": str(uuid.uuid4()), "provider": "duffel", "collected_at": "2026-11-28T04:00:00Z",
              "query": _query(response), "status": 201, "elapsed_ms": 950}
    if response is not None:
        record["response"] = response
    record.update(fields)
    return record


def write_raw(lake: Path, envelopes: list[dict], extra_lines: tuple[str, ...] = (), hour: int = 4) -> str:
    """One Firehose-style raw object in the landing hour `hour` (04:00 unless told) of 2026-11-28."""
    path = lake / raw_object_key("fares", dt.datetime(2026, 11, 28, hour, 1, tzinfo=UTC), str(uuid.uuid4()))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(envelope) for envelope in envelopes] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


BROKEN = {
    json.dumps(_envelope(None)): "successful status without a Duffel response",
    json.dumps(_envelope({"errors": [{"code": "internal_server_error"}]})):
        "successful status with a response that is not a Duffel offer request (no data.offers)",
    # One-way offers answering a round-trip search: ranked among round trips, each would read as the cheapest.
    json.dumps(_envelope(_response("duffel_02.json"),
                         query={**_query(_response("duffel_02.json")), "return_date": "2022-04-23"})): OTHER_TRIP_SHAPE,
}
RESPONSES = {**{name: _response(name) for name in DUFFEL_FIXTURES},
             "without_slices": _without_slices(), "nulls": _nulls(), "family": _family(), "absurd": _absurd(),
             "tax_in_another_currency": _tax_in_another_currency()}


@dataclass
class Lake:
    root: Path
    search_ids: dict[str, str]
    counts: dict[str, int]
    tables: dict[str, list]
    raw: str


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("duffel_lake")
    envelopes = {name: _envelope(response) for name, response in RESPONSES.items()}
    envelopes["rate_limited"] = _envelope(None, status=429, error="HTTP 429: Too many requests")
    raw = write_raw(root, list(envelopes.values()), tuple(BROKEN))
    counts = structure_raw(spark, [raw], str(root))
    tables = {table: read_table(spark, str(root), table).collect() for table in (*FACT_SCHEMAS, *DIMENSION_SCHEMAS)}
    return Lake(root, {name: envelope["search_id"] for name, envelope in envelopes.items()}, counts, tables, raw)


def _rows(lake: Lake, table: str, name: str) -> list:
    search_id = lake.search_ids[name]
    if table in ("searches", "trip_options"):
        return [row for row in lake.tables[table] if row.search_id == search_id]
    option_ids = {row.option_id for row in _rows(lake, "trip_options", name)}
    return [row for row in lake.tables[table] if row.option_id in option_ids]


def _raw_offer(lake: Lake, name: str, option_id: str) -> dict:
    provider_id = {row.option_id: row.provider_option_id for row in _rows(lake, "trip_options", name)}[option_id]
    return next(offer for offer in _offers(RESPONSES[name]) if offer["id"] == provider_id)


@pytest.mark.parametrize("name", list(RESPONSES))
def test_row_counts_match_the_json(lake, name):
    offers = _offers(RESPONSES[name])
    slices = [s for offer in offers for s in offer["slices"] or []]
    segments = [g for s in slices for g in s["segments"]]
    flown_per_passenger = sum(len(offer["passengers"]) * sum(len(s["segments"]) for s in offer["slices"] or [])
                              for offer in offers)
    expected = {"trip_options": len(offers), "slices": len(slices), "segments": len(segments), "legs": len(segments),
                "pricings": sum(len(offer["passengers"]) for offer in offers),
                "fares": flown_per_passenger, "segment_fares": flown_per_passenger, "taxes": 0}
    assert {table: len(_rows(lake, table, name)) for table in expected} == expected
    (search,) = _rows(lake, "searches", name)
    assert (search.status, search.option_count, search.request_id) == (201, len(offers), RESPONSES[name]["data"]["id"])


@pytest.mark.parametrize("name", list(RESPONSES))
def test_totals_are_exact_and_reconcile(lake, name):
    pricings = _rows(lake, "pricings", name)
    for option in _rows(lake, "trip_options", name):
        raw = _raw_offer(lake, name, option.option_id)
        assert (option.total_amount, option.currency) == (Decimal(raw["total_amount"]), raw["total_currency"])
        assert isinstance(option.total_amount, Decimal)
        own = [p for p in pricings if p.option_id == option.option_id]
        assert [p.passenger_count for p in own] == [1] * len(raw["passengers"])
        if raw["base_amount"] is None:
            assert option.base_amount is None and option.tax_amount is None
        elif raw["tax_currency"] != raw["total_currency"]:
            # The tables' tax amounts are in the sale currency: one in another currency is not one of them.
            assert option.tax_amount is None and {p.tax_per_pax for p in own} == {None}
        else:
            assert option.base_amount + option.tax_amount == option.total_amount
        if len(own) == 1:
            assert sum(p.sale_total_per_pax * p.passenger_count for p in own) == option.total_amount
        else:
            assert {p.sale_total_per_pax for p in own} == {None}


@pytest.mark.parametrize("name", [name for name in RESPONSES if name != "without_slices"])
def test_leg_times_are_utc_with_the_local_time_beside(lake, name):
    legs = _rows(lake, "legs", name)
    assert legs
    for leg in legs:
        segment = _raw_offer(lake, name, leg.option_id)["slices"][leg.slice_no - 1]["segments"][leg.segment_no - 1]
        departs_local = dt.datetime.fromisoformat(segment["departing_at"])
        assert leg.departs_local == departs_local
        assert leg.arrives_local == dt.datetime.fromisoformat(segment["arriving_at"])
        assert (leg.origin, leg.destination) == (segment["origin"]["iata_code"], segment["destination"]["iata_code"])
        zone = segment["origin"]["time_zone"]
        if zone is None:
            assert leg.departs_at is None
        else:
            assert leg.departs_at.timestamp() == departs_local.replace(tzinfo=ZoneInfo(zone)).timestamp()
        arrives = dt.datetime.fromisoformat(segment["arriving_at"]).replace(
            tzinfo=ZoneInfo(segment["destination"]["time_zone"]))
        assert leg.arrives_at.timestamp() == arrives.timestamp()


def test_values_no_column_can_hold_are_null_and_the_offer_still_structures(lake):
    (option,) = _rows(lake, "trip_options", "absurd")
    assert option.total_amount > 0
    first_slice = next(row for row in _rows(lake, "slices", "absurd") if row.slice_no == 1)
    first_segment = next(row for row in _rows(lake, "segments", "absurd") if (row.slice_no, row.segment_no) == (1, 1))
    first_leg = next(row for row in _rows(lake, "legs", "absurd") if (row.slice_no, row.segment_no) == (1, 1))
    assert (first_slice.duration_min, first_segment.duration_min, first_leg.mileage) == (None, None, None)


def test_zero_padded_iso_durations(lake):
    slices = _rows(lake, "slices", "duffel_02.json")
    assert slices and {s.duration_min for s in slices} == {95}
    assert {s.duration_min for s in _rows(lake, "segments", "duffel_02.json")} == {95}
    nyc = {s.duration_min for s in _rows(lake, "slices", "duffel_01.json")}
    assert 8 * 60 in nyc and 12 * 60 + 58 in nyc


def test_connections_stops_and_cabins(lake):
    slices = {s.option_id: s for s in _rows(lake, "slices", "duffel_01.json")}
    segments = _rows(lake, "segments", "duffel_01.json")
    for option_id, slice_ in slices.items():
        own = sorted((g for g in segments if g.option_id == option_id), key=lambda g: g.segment_no)
        assert slice_.stops == len(own) - 1
        assert own[-1].connection_min is None
        assert all(g.connection_min > 0 for g in own[:-1])
    assert {g.cabin for g in _rows(lake, "segments", "duffel_02.json")} == {"COACH", "BUSINESS"}


def test_a_search_re_sent_into_a_later_hour_times_each_copys_connections_alone(spark, tmp_path):
    # Both copies share their option ids: a connection is the wait for the next segment of its own copy.
    envelope = _envelope(_response("duffel_01.json"))
    raws = [write_raw(tmp_path, [envelope], hour=hour) for hour in (4, 7)]
    structure_raw(spark, raws, str(tmp_path / "together"))
    structure_raw(spark, raws[:1], str(tmp_path / "alone"))

    def connections(lake: str) -> Counter:
        return Counter((row.landing_hour, row.option_id, row.slice_no, row.segment_no, row.connection_min)
                       for row in read_table(spark, lake, "segments").collect())

    together, alone = connections(str(tmp_path / "together")), connections(str(tmp_path / "alone"))
    assert together == alone + Counter({(LATER_HOUR, *key[1:]): count for key, count in alone.items()})
    assert sum(minutes is not None for *_, minutes in alone) == sum(len(s["segments"]) - 1 for offer in
                                                                    _offers(_response("duffel_01.json"))
                                                                    for s in offer["slices"])


def test_codeshares_keep_the_marketing_carrier_and_disclose_the_operating_one(lake):
    legs = {(leg.option_id, leg.slice_no, leg.segment_no): leg for leg in _rows(lake, "legs", "duffel_01.json")}
    codeshares = [g for g in _rows(lake, "segments", "duffel_01.json") if g.carrier == "B6"
                  and legs[(g.option_id, g.slice_no, g.segment_no)].operating_disclosure]
    assert len(codeshares) == 2
    assert {legs[(g.option_id, g.slice_no, g.segment_no)].operating_disclosure for g in codeshares} == {
        "OPERATED BY AMERICAN AIRLINES"}
    assert {g.flight_number for g in codeshares} == {"4185", "4391"}
    own_flights = [leg for leg in legs.values() if leg.operating_disclosure is None]
    assert len(own_flights) == len(legs) - 2


def test_nulls_and_distances(lake):
    (leg,) = [leg for leg in _rows(lake, "legs", "nulls") if leg.segment_no == 1]
    assert (leg.aircraft, leg.mileage, leg.departs_at) == (None, None, None) and leg.arrives_at is not None
    (option,) = _rows(lake, "trip_options", "nulls")
    assert option.refundable is None
    zz = [leg for leg in _rows(lake, "legs", "duffel_01.json") if leg.aircraft == "773"]
    assert zz and {leg.mileage for leg in zz} == {round(2545.901461327729 / 1.609344)}
    refundable = {o.refundable for o in _rows(lake, "trip_options", "duffel_01.json")}
    assert True in refundable and None in refundable


def test_an_offer_without_slices_is_an_option_without_flights(lake):
    options = _rows(lake, "trip_options", "without_slices")
    assert len(options) == 2 and all(o.total_amount > 0 for o in options)
    assert _rows(lake, "slices", "without_slices") == [] and _rows(lake, "fares", "without_slices") == []
    assert len(_rows(lake, "pricings", "without_slices")) == 2


def test_each_passenger_has_their_fare_basis_and_bags(lake):
    pricings = sorted(_rows(lake, "pricings", "family"), key=lambda p: p.pricing_no)
    assert [p.passenger_type for p in pricings] == ["adult", "age 9"]
    fares = {(f.pricing_no, f.fare_no): f for f in _rows(lake, "fares", "family")}
    assert fares[(2, 1)].basis_code == "CHILD9" and fares[(1, 1)].basis_code != "CHILD9"
    assert {(f.carrier, f.origin_city, f.destination_city) for f in fares.values()} == {("QF", "SYD", "MEL")}
    bags = {row.pricing_no: row.free_bag_pieces for row in _rows(lake, "segment_fares", "family")}
    assert bags == {1: 0, 2: 2}


def test_keys_are_stable_and_unique(lake, spark, tmp_path):
    # The same raw object structured again, into another lake, keys every row alike.
    again = tmp_path / "again"
    copied = again / Path(lake.raw).relative_to(lake.root)
    copied.parent.mkdir(parents=True)
    copied.write_bytes(Path(lake.raw).read_bytes())
    structure_raw(spark, [str(copied)], str(again))
    for table, key in FACT_KEYS.items():
        rekeyed = {tuple(row[column] for column in key) for row in read_table(spark, str(again), table).collect()}
        assert rekeyed == {tuple(row[column] for column in key) for row in lake.tables[table]}, table
    assert len(lake.tables["trip_options"]) > 0
    for table, key in FACT_KEYS.items():
        rows = lake.tables[table]
        assert len({tuple(row[column] for column in key) for row in rows}) == len(rows) == lake.counts[table], table


def test_bad_records_are_quarantined_and_every_record_is_accounted_for(lake):
    lines = [json.loads(line) for path in Path(quarantine_path(str(lake.root), LANDING_HOUR)).glob("*.json")
             for line in path.read_text().splitlines()]
    assert Counter(line["reason"] for line in lines) == Counter(BROKEN.values())
    counts = lake.counts
    assert counts["raw_records"] == len(RESPONSES) + 1 + len(BROKEN)
    assert counts["raw_records"] == counts["searches"] + counts["quarantined"] + counts["duplicates"]
    assert counts["options_announced"] == counts["trip_options"] == sum(len(_offers(r)) for r in RESPONSES.values())
    (failed,) = _rows(lake, "searches", "rate_limited")
    assert (failed.status, failed.option_count, failed.error) == (429, 0, "HTTP 429: Too many requests")


def test_dimensions_name_airlines_airports_and_aircraft(lake):
    carriers = {row.code: row.name for row in lake.tables["carriers"]}
    assert carriers["B6"] == "JetBlue Airways" and carriers["ZZ"] == "Duffel Airways" and carriers["QF"] == "Qantas"
    airports = {row.code: row for row in lake.tables["airports"]}
    assert airports["PBI"].city_code == "PBI" and airports["SYD"].tz == "Australia/Sydney"
    assert {row.code: row.name for row in lake.tables["aircraft"]}["773"] == "Boeing 777-300"


# --- the client against a fake Duffel -------------------------------------------------------------

ROUND_TRIP = TripQuery("duffel", "LHR", "JFK", dt.date(2027, 3, 10), dt.date(2027, 3, 17), 2, 1, "PREMIUM_COACH")


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_the_request_is_an_offer_request_for_both_directions():
    sleeps = Sleeps()
    with serving(FakeDuffel(TOKEN)) as server:
        result = DuffelClient(server.url, TOKEN, sleep=sleeps).search(ROUND_TRIP)
    (request,) = server.searches()
    assert (request["method"], request["path"], request["query"]["return_offers"]) == (
        "POST", "/air/offer_requests", ["true"])
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}" and request["headers"]["duffel-version"] == "v2"
    assert json.loads(request["body"]) == {"data": {
        "slices": [{"origin": "LHR", "destination": "JFK", "departure_date": "2027-03-10"},
                   {"origin": "JFK", "destination": "LHR", "departure_date": "2027-03-17"}],
        "passengers": [{"type": "adult"}, {"type": "adult"}, {"age": 10}], "cabin_class": "premium_economy"}}
    assert result.status == 201 and result.error is None and sleeps == []
    assert result.response == server.answers[0] and len(result.response["data"]["offers"]) == 3


def test_a_429_waits_for_the_rate_limit_reset_then_succeeds():
    sleeps = Sleeps()
    with serving(FakeDuffel(TOKEN, reset_seconds=30)) as server:
        server.refuse(1)
        client = DuffelClient(server.url, TOKEN, max_backoff_seconds=60, sleep=sleeps)
        result = client.search(ROUND_TRIP)
    assert result.status == 201 and len(server.searches()) == 2
    (waited,) = sleeps
    assert 28 <= waited <= 31
    state = client.rate_limit_state()
    assert (state.limit, state.remaining) == (120, 119) and state.reset_at > dt.datetime.now(UTC)


class HoldRecorder:
    """A rate limiter that records holds (the bucket's own behaviour is tested in test_collector)."""

    def __init__(self) -> None:
        self.acquired, self.holds = 0, []

    def acquire(self) -> None:
        self.acquired += 1

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)


def test_a_spent_window_holds_every_caller_until_it_resets():
    limiter = HoldRecorder()
    with serving(FakeDuffel(TOKEN, remaining_after_search=0)) as server:
        client = DuffelClient(server.url, TOKEN, max_backoff_seconds=120, rate_limiter=limiter, sleep=Sleeps())
        assert client.search(ROUND_TRIP).status == 201
    assert limiter.acquired == 1 and len(limiter.holds) == 1 and 58 <= limiter.holds[0] <= 60
    assert client.rate_limit_state().remaining == 0


def test_a_provider_that_keeps_refusing_is_recorded_as_rate_limited():
    sleeps = Sleeps()
    with serving(FakeDuffel(TOKEN, reset_seconds=4)) as server:
        server.refuse(10)
        result = DuffelClient(server.url, TOKEN, retries=2, max_backoff_seconds=5, sleep=sleeps).search(ROUND_TRIP)
    assert (result.status, result.failure, result.error) == (429, "rate_limited", "HTTP 429: Too many requests")
    assert len(server.searches()) == 3 and len(sleeps) == 2 and all(3 <= waited <= 5 for waited in sleeps)
    assert json.loads(result.body)["errors"][0]["code"] == "rate_limit_exceeded"


def test_a_wait_longer_than_a_sweep_retries_for_records_the_providers_next_calls_without_making_them():
    # A spent quota: retrying every trip four times within the sweep would only be refused again.
    sleeps = Sleeps()
    with serving(FakeDuffel(TOKEN, reset_seconds=30)) as server:
        server.refuse(10)
        client = DuffelClient(server.url, TOKEN, retries=2, max_backoff_seconds=5, sleep=sleeps)
        first, second = client.search(ROUND_TRIP), client.search(ROUND_TRIP)
    assert (first.status, first.failure) == (429, "rate_limited") and sleeps == []
    assert (second.status, second.failure) == (0, "rate_limited") and len(server.searches()) == 1
    assert re.fullmatch(r"not called: duffel asked to wait (29|30) s \(HTTP 429\)", second.error)


def test_a_gateway_error_is_retried_though_the_quota_window_resets_later():
    # A 502 without Retry-After is no request to wait for the window (55 s away, with quota to spare): waiting for it
    # would refuse Duffel for the rest of the minute.
    sleeps = Sleeps()
    with serving(FakeDuffel(TOKEN)) as server:
        server.fail(1)
        client = DuffelClient(server.url, TOKEN, max_backoff_seconds=8, sleep=sleeps)
        first, second = client.search(ROUND_TRIP), client.search(ROUND_TRIP)
    assert (first.status, second.status) == (201, 201) and len(server.searches()) == 3
    assert len(sleeps) == 1 and sleeps[0] < 1


def test_a_wrong_token_fails_without_showing_it_and_is_not_sent_again_in_the_run():
    with serving(FakeDuffel(TOKEN)) as server:
        client = DuffelClient(server.url, "duffel_test_wrong", sleep=Sleeps())
        result, later = client.search(ROUND_TRIP), client.search(ROUND_TRIP)
    assert (result.status, result.failure) == (401, "auth_error")
    assert result.error == "HTTP 401: The access token used is not valid" and "duffel_test_wrong" not in result.error
    assert (later.status, later.failure) == (0, "auth_error") and len(server.searches()) == 1
    assert later.error == "not called: duffel refused the credentials (HTTP 401: The access token used is not valid)"


def test_a_token_that_is_no_valid_header_fails_every_call_without_showing_it():
    # A pasted two-line secret: requests refuses the header, quoting it; the error is kept in the raw lake.
    two_lines = "duffel_test_SECRET\nTAIL"
    with serving(FakeDuffel(TOKEN)) as server:
        client = DuffelClient(server.url, two_lines, sleep=Sleeps())
        first, second = client.search(ROUND_TRIP), client.search(ROUND_TRIP)
    assert (first.failure, second.failure) == ("auth_error", "auth_error")
    assert first.error == "duffel authentication failed: a credential is not a valid header value"
    assert second.error == f"not called: {first.error}"
    assert "SECRET" not in first.error + second.error and server.searches() == []


def test_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FARES_DUFFEL_TOKEN", raising=False)
    with pytest.raises(ProviderConfigError, match="FARES_DUFFEL_TOKEN is not set"):
        duffel_client_from_env()
    monkeypatch.setenv("FARES_DUFFEL_TOKEN", "duffel_test_SECRET\nTAIL")
    with pytest.raises(ProviderConfigError) as refused:
        duffel_client_from_env()
    assert "FARES_DUFFEL_TOKEN holds a space, a line break" in str(refused.value)
    assert "SECRET" not in str(refused.value)
    monkeypatch.setenv("FARES_DUFFEL_TOKEN", TOKEN)
    # The token would travel unencrypted.
    monkeypatch.setenv("FARES_DUFFEL_URL", "http://api.duffel.example")
    with pytest.raises(ProviderConfigError, match="FARES_DUFFEL_URL='http://api.duffel.example' must be an https URL"):
        duffel_client_from_env()
    monkeypatch.setenv("FARES_DUFFEL_URL", "http://127.0.0.1:9/")
    client = duffel_client_from_env()
    assert client.base_url == "http://127.0.0.1:9" and client.version == "v2"
    assert TOKEN not in repr(client)


def test_a_redirect_is_not_followed_with_the_token():
    with serving(FakeDuffel(TOKEN)) as elsewhere:
        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self):
                self.send_response(307)
                self.send_header("Location", elsewhere.url + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass

        redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=redirecting.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{redirecting.server_address[1]}"
            result = DuffelClient(url, TOKEN, sleep=Sleeps()).search(ROUND_TRIP)
        finally:
            redirecting.shutdown()
    assert (result.status, result.failure) == (307, "bad_response") and elsewhere.requests == []


def test_a_past_market_time_is_refused_not_faked():
    with serving(FakeDuffel(TOKEN)) as server:
        result = DuffelClient(server.url, TOKEN).search(ROUND_TRIP, dt.datetime(2026, 10, 1, tzinfo=UTC))
    assert result.failure == "unsupported_replay" and server.searches() == []


def test_a_shorter_refusal_does_not_forgive_refused_credentials():
    # One worker's credentials refused for the run, another's 429 asking for 20 s at the same moment.
    now = [100.0]
    refusal = Refusal(clock=lambda: now[0])
    refusal.refuse(math.inf, "duffel refused the credentials", "auth_error")
    refusal.refuse(20, "duffel asked to wait 20 s (HTTP 429)", "rate_limited")
    now[0] += 60
    assert refusal.refused_call().failure == "auth_error"
