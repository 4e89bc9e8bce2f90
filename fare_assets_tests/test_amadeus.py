"""Amadeus: every real fixture through the Spark job, and the OAuth2 client against a fake Amadeus over HTTP."""
import copy
import datetime as dt
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import airportsdata
import pytest

from fare_assets.storing.lake import quarantine_path, raw_object_key
from fare_assets.streaming.amadeus_client import EXPIRY_MARGIN_SECONDS, AmadeusClient, amadeus_client_from_env
from fare_assets.streaming.providers import ProviderConfigError
from fare_assets.streaming.watchlist import TripQuery
from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.providers.offers import OTHER_TRIP_SHAPE
from fare_assets.structuring.tables import DIMENSION_SCHEMAS, FACT_KEYS, FACT_SCHEMAS, read_table
from fare_assets_tests.conftest import FIXTURES, load_fixture
from fare_assets_tests.fake_providers import FakeAmadeus, serving

AMADEUS_FIXTURES = sorted(path.name for path in (FIXTURES / "amadeus").glob("*.json"))
LANDING_HOUR = "2026-11-28-04"
CLIENT_ID, CLIENT_SECRET = "fares-test-client", "fares-test-secret-not-real"
UTC = dt.timezone.utc
ZONES = {code: row["tz"] for code, row in airportsdata.load("IATA").items()}


def _response(name: str) -> dict:
    return load_fixture(f"amadeus/{name}")


def _without_itineraries() -> dict:
    response = copy.deepcopy(_response("amadeus_02.json"))
    response["data"][0]["itineraries"] = []
    response["data"] = response["data"][:1]
    return response


def _taxes_and_kilos() -> dict:
    """Tax lines (one code twice) that add up to total - base, and a baggage allowance in kilos."""
    response = copy.deepcopy(_response("amadeus_02.json"))
    offer = response["data"][0]
    adult = offer["travelerPricings"][0]
    adult["price"]["taxes"] = [{"amount": "40.00", "code": "BR"}, {"amount": "40.00", "code": "BR"},
                               {"amount": "10.55", "code": "YQ"}]
    adult["fareDetailsBySegment"][0]["includedCheckedBags"] = {"weight": 23, "weightUnit": "KG"}
    response["data"] = [offer]
    return response


RESPONSES = {**{name: _response(name) for name in AMADEUS_FIXTURES},
             "without_itineraries": _without_itineraries(), "taxes_and_kilos": _taxes_and_kilos()}


def _envelope(response: dict | None, **fields) -> dict:
    record = {"v": 1, "search_id": str(uuid.uuid4()), "provider": "amadeus", "collected_at": "2026-11-28T04:00:00Z",
              "query": {"origin": "GIG", "destination": "MAD", "depart_date": "2020-08-01",
                        "return_date": "2020-08-05", "adults": 1, "children": 1, "cabin": "COACH"},
              "status": 200, "elapsed_ms": 700}
    if response is not None:
        record["response"] = response
    record.update(fields)
    return record


def write_raw(lake: Path, envelopes: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    """One Firehose-style raw object in the 04:00 landing hour."""
    path = lake / raw_object_key("fares", dt.datetime(2026, 11, 28, 4, 1, tzinfo=UTC), str(uuid.uuid4()))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(envelope) for envelope in envelopes] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


BROKEN = {
    json.dumps(_envelope(None)): "successful status without an Amadeus response",
    json.dumps(_envelope({"errors": [{"status": 500, "code": 141, "title": "SYSTEM ERROR HAS OCCURRED"}]})):
        "successful status with a response that is not an Amadeus flight-offers answer (no data)",
    # Round-trip offers answering a one-way search: not a one-way fare.
    json.dumps(_envelope(_response("amadeus_02.json"), query={**_envelope(None)["query"], "return_date": None})):
        OTHER_TRIP_SHAPE,
}


@dataclass
class Lake:
    root: Path
    search_ids: dict[str, str]
    counts: dict[str, int]
    tables: dict[str, list]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("amadeus_lake")
    envelopes = {name: _envelope(response) for name, response in RESPONSES.items()}
    envelopes["expired_token"] = _envelope(None, status=401, error="HTTP 401: Invalid access token")
    counts = structure_raw(spark, [write_raw(root, list(envelopes.values()), tuple(BROKEN))], str(root))
    tables = {table: read_table(spark, str(root), table).collect() for table in (*FACT_SCHEMAS, *DIMENSION_SCHEMAS)}
    return Lake(root, {name: envelope["search_id"] for name, envelope in envelopes.items()}, counts, tables)


def _rows(lake: Lake, table: str, name: str) -> list:
    search_id = lake.search_ids[name]
    if table in ("searches", "trip_options"):
        return [row for row in lake.tables[table] if row.search_id == search_id]
    option_ids = {row.option_id for row in _rows(lake, "trip_options", name)}
    return [row for row in lake.tables[table] if row.option_id in option_ids]


def _raw_offer(lake: Lake, name: str, option_id: str) -> dict:
    provider_id = {row.option_id: row.provider_option_id for row in _rows(lake, "trip_options", name)}[option_id]
    return next(offer for offer in RESPONSES[name]["data"] if offer["id"] == provider_id)


def _by_key(rows: list, *key: str) -> dict:
    return {tuple(getattr(row, column) for column in key): row for row in rows}


@pytest.mark.parametrize("name", list(RESPONSES))
def test_row_counts_match_the_json(lake, name):
    offers = RESPONSES[name]["data"]
    segments = [g for offer in offers for it in offer["itineraries"] for g in it["segments"]]
    pricings = [p for offer in offers for p in offer["travelerPricings"]]
    details = sum(len(p["fareDetailsBySegment"]) for p in pricings)
    priced_segments = sum(1 for offer in offers for p in offer["travelerPricings"] for d in p["fareDetailsBySegment"]
                          if d["segmentId"] in {g["id"] for it in offer["itineraries"] for g in it["segments"]})
    expected = {"trip_options": len(offers), "slices": sum(len(offer["itineraries"]) for offer in offers),
                "segments": len(segments), "legs": len(segments), "pricings": len(pricings), "fares": details,
                "segment_fares": priced_segments, "taxes": sum(len(p["price"].get("taxes", [])) for p in pricings)}
    assert {table: len(_rows(lake, table, name)) for table in expected} == expected
    (search,) = _rows(lake, "searches", name)
    assert (search.status, search.option_count, search.request_id) == (200, len(offers), None)


@pytest.mark.parametrize("name", list(RESPONSES))
def test_one_pricing_per_traveler_and_totals_reconcile(lake, name):
    pricings = _rows(lake, "pricings", name)
    for option in _rows(lake, "trip_options", name):
        raw = _raw_offer(lake, name, option.option_id)
        price = raw["price"]
        # The currency is the account's: read from the answer, never assumed.
        assert (option.total_amount, option.currency, option.base_amount) == (
            Decimal(price["total"]), price["currency"], Decimal(price["base"]))
        assert option.tax_amount == option.total_amount - option.base_amount
        own = sorted((p for p in pricings if p.option_id == option.option_id), key=lambda p: p.pricing_no)
        assert [(p.passenger_type, p.passenger_count) for p in own] == [
            (t["travelerType"], 1) for t in raw["travelerPricings"]]
        assert sum(p.sale_total_per_pax * p.passenger_count for p in own) == option.total_amount
        assert sum(p.tax_per_pax for p in own) == option.tax_amount
        assert {p.sale_currency for p in own} == {price["currency"]}


def test_the_family_fixture_has_two_adults_and_a_child(lake):
    types = Counter(p.passenger_type for p in _rows(lake, "pricings", "amadeus_01.json"))
    assert types == Counter({"ADULT": 20, "CHILD": 10})
    assert {o.currency for o in _rows(lake, "trip_options", "amadeus_01.json")} == {"EUR"}
    assert {o.currency for o in _rows(lake, "trip_options", "amadeus_02.json")} == {"USD"}


@pytest.mark.parametrize("name", [name for name in RESPONSES if name != "without_itineraries"])
def test_leg_times_are_utc_from_the_airport_time_zone(lake, name):
    legs = _rows(lake, "legs", name)
    assert legs
    for leg in legs:
        raw = _raw_offer(lake, name, leg.option_id)["itineraries"][leg.slice_no - 1]["segments"][leg.segment_no - 1]
        departs = dt.datetime.fromisoformat(raw["departure"]["at"])
        arrives = dt.datetime.fromisoformat(raw["arrival"]["at"])
        assert (leg.departs_local, leg.arrives_local) == (departs, arrives)
        assert leg.departs_at.timestamp() == departs.replace(tzinfo=ZoneInfo(ZONES[leg.origin])).timestamp()
        assert leg.arrives_at.timestamp() == arrives.replace(tzinfo=ZoneInfo(ZONES[leg.destination])).timestamp()


def test_durations_connections_and_seats(lake):
    segments = _by_key(_rows(lake, "segments", "amadeus_02.json"), "option_id", "slice_no", "segment_no")
    first_offer = {o.option_id for o in _rows(lake, "trip_options", "amadeus_02.json") if o.provider_option_id == "1"}
    slices = [s for s in _rows(lake, "slices", "amadeus_02.json") if s.option_id in first_offer]
    assert {(s.slice_no, s.duration_min, s.stops) for s in slices} == {(1, 15 * 60 + 55, 1), (2, 13 * 60 + 35, 1)}
    first = [g for (_, slice_no, segment_no), g in segments.items() if (slice_no, segment_no) == (1, 1)]
    # GIG 21:50 (UTC-3) to LHR 13:10 (UTC+1), on to MAD at 15:15: 125 minutes at Heathrow.
    assert {(g.duration_min, g.connection_min, g.booking_code, g.cabin) for g in first} == {(680, 125, "R", "BUSINESS")}
    assert {g.duration_min for g in segments.values() if g.provider_segment_id == "6"} == {60}
    for (option_id, _, _), segment in segments.items():
        assert segment.seats_left == _raw_offer(lake, "amadeus_02.json", option_id)["numberOfBookableSeats"]


def test_operating_carriers_missing_or_different(lake):
    legs = _by_key(_rows(lake, "legs", "amadeus_01.json"), "option_id", "slice_no", "segment_no")
    segments = _rows(lake, "segments", "amadeus_01.json")
    disclosed = {legs[(g.option_id, g.slice_no, g.segment_no)].operating_disclosure for g in segments}
    assert {g.carrier for g in segments} == {"SN"} and disclosed == {None, "OPERATED BY AIR CANADA"}
    operated_by_ac = sum(1 for offer in RESPONSES["amadeus_01.json"]["data"] for it in offer["itineraries"]
                         for g in it["segments"] if g["operating"]["carrierCode"] == "AC")
    assert sum(1 for leg in legs.values() if leg.operating_disclosure) == operated_by_ac == 34
    rio = _by_key(_rows(lake, "legs", "amadeus_02.json"), "option_id", "slice_no", "segment_no")
    latam = [g for g in _rows(lake, "segments", "amadeus_02.json") if g.carrier == "LA"]
    assert latam and all(rio[(g.option_id, g.slice_no, g.segment_no)].operating_disclosure is None for g in latam)


def test_fares_belong_to_the_marketing_carrier_not_the_validating_one(lake):
    """Rio-Madrid is ticketed by BA (validating) but its return flies IB and LA."""
    segments = _by_key(_rows(lake, "segments", "amadeus_02.json"), "option_id", "slice_no", "segment_no")
    for row in _rows(lake, "segment_fares", "amadeus_02.json"):
        fare = _by_key(_rows(lake, "fares", "amadeus_02.json"), "option_id", "pricing_no", "fare_no")[
            (row.option_id, row.pricing_no, row.fare_no)]
        segment = segments[(row.option_id, row.slice_no, row.segment_no)]
        assert fare.provider_fare_id == segment.provider_segment_id and fare.carrier == segment.carrier
    assert {f.carrier for f in _rows(lake, "fares", "amadeus_02.json")} == {"BA", "IB", "LA"}
    fares = {(f.carrier, f.origin_city, f.destination_city, f.basis_code) for f in _rows(lake, "fares", "amadeus_02.json")}
    assert ("BA", "RIO", "LON", "RNNZ60S3") in fares and ("LA", "SAO", "RIO", "VDH0NNM3") in fares


def test_baggage_pieces_kilos_and_missing(lake):
    bags = Counter(row.free_bag_pieces for row in _rows(lake, "segment_fares", "amadeus_01.json"))
    assert bags == Counter({0: 108, None: 54})
    kilos = {(r.pricing_no, r.slice_no, r.segment_no): (r.free_bag_pieces, r.free_bag_kilos)
             for r in _rows(lake, "segment_fares", "taxes_and_kilos")}
    assert kilos[(1, 1, 1)] == (None, 23) and kilos[(1, 1, 2)] == (2, None) and kilos[(2, 1, 1)] == (None, None)


def test_tax_lines_keep_repeated_codes(lake):
    taxes = sorted(_rows(lake, "taxes", "taxes_and_kilos"), key=lambda t: t.tax_no)
    assert [(t.tax_no, t.tax_code, t.amount, t.currency) for t in taxes] == [
        (1, "BR", Decimal("40.00"), "USD"), (2, "BR", Decimal("40.00"), "USD"), (3, "YQ", Decimal("10.55"), "USD")]
    (adult,) = [p for p in _rows(lake, "pricings", "taxes_and_kilos") if p.pricing_no == 1]
    assert sum(t.amount for t in taxes) == adult.tax_per_pax
    assert {"BR", "YQ"} <= {row.code for row in lake.tables["tax_codes"]}


def test_refund_rules_and_ticketing_dates(lake):
    assert {o.refundable for o in _rows(lake, "trip_options", "amadeus_01.json")} == {False}
    assert {o.refundable for o in _rows(lake, "trip_options", "amadeus_02.json")} == {None}
    (option, _) = sorted(_rows(lake, "trip_options", "amadeus_02.json"), key=lambda o: o.provider_option_id)
    assert option.latest_ticketing_at.timestamp() == dt.datetime(2020, 1, 16, tzinfo=UTC).timestamp()


def test_an_offer_without_itineraries_is_an_option_without_flights(lake):
    (option,) = _rows(lake, "trip_options", "without_itineraries")
    assert option.total_amount == Decimal("3842.10")
    assert _rows(lake, "slices", "without_itineraries") == [] and _rows(lake, "segment_fares", "without_itineraries") == []
    assert len(_rows(lake, "pricings", "without_itineraries")) == 2
    # Its fare details stay (their basis codes are data), though no flight names their carrier.
    fares = _rows(lake, "fares", "without_itineraries")
    assert len(fares) == 8 and {(f.carrier, f.basis_code) for f in fares} == {(None, "RNNZ60S3"), (None, "VDH0NNM3")}


def test_keys_unique_and_every_record_accounted_for(lake):
    for table, key in FACT_KEYS.items():
        rows = lake.tables[table]
        assert len({tuple(row[column] for column in key) for row in rows}) == len(rows) == lake.counts[table], table
    lines = [json.loads(line) for path in Path(quarantine_path(str(lake.root), LANDING_HOUR)).glob("*.json")
             for line in path.read_text().splitlines()]
    assert Counter(line["reason"] for line in lines) == Counter(BROKEN.values())
    counts = lake.counts
    assert counts["raw_records"] == len(RESPONSES) + 1 + len(BROKEN)
    assert counts["raw_records"] == counts["searches"] + counts["quarantined"] + counts["duplicates"]
    assert counts["options_announced"] == counts["trip_options"] == sum(len(r["data"]) for r in RESPONSES.values())
    (failed,) = _rows(lake, "searches", "expired_token")
    assert (failed.status, failed.option_count) == (401, 0)


def test_dictionaries_feed_the_dimensions(lake):
    carriers = {row.code: row.name for row in lake.tables["carriers"]}
    assert carriers["SN"] == "BRUSSELS AIRLINES" and carriers["LA"] == "LATAM AIRLINES GROUP"
    airports = {row.code: row for row in lake.tables["airports"]}
    assert airports["YUL"].city_code == "YMQ" and airports["YUL"].tz == "America/Toronto"
    assert airports["GIG"].name  # the job names airports Amadeus lists by code only
    assert {row.code: row.name for row in lake.tables["aircraft"]}["788"] == "BOEING 787-8"
    assert {"YMQ", "RIO", "LON"} <= {row.code for row in lake.tables["cities"]}


# --- the client against a fake Amadeus ------------------------------------------------------------

FAMILY_TRIP = TripQuery("amadeus", "CDG", "MAD", dt.date(2027, 3, 10), dt.date(2027, 3, 13), 2, 1, "COACH")


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _searched_at_once(client: AmadeusClient, calls: int) -> list:
    """The results of `calls` searches of FAMILY_TRIP made by as many threads at once."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.search(FAMILY_TRIP))) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _token_requests(server) -> list[dict]:
    return [r for r in server.requests if r["path"] == "/v1/security/oauth2/token"]


def test_a_search_takes_a_token_then_asks_for_offers():
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET)) as server:
        result = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, sleep=Sleeps()).search(FAMILY_TRIP)
    (token_request,) = _token_requests(server)
    assert token_request["method"] == "POST"
    assert dict(pair.split("=") for pair in token_request["body"].split("&")) == {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    (search,) = server.searches()
    assert search["method"] == "GET" and search["headers"]["authorization"].startswith("Bearer ")
    assert {key: values[0] for key, values in search["query"].items()} == {
        "originLocationCode": "CDG", "destinationLocationCode": "MAD", "departureDate": "2027-03-10",
        "returnDate": "2027-03-13", "adults": "2", "children": "1", "travelClass": "ECONOMY", "max": "20"}
    assert "currencyCode" not in search["query"]
    assert result.status == 200 and result.response == server.answers[0]
    assert [len(offer["travelerPricings"]) for offer in result.response["data"]] == [3, 3, 3]


def test_the_token_is_cached_until_it_is_about_to_expire():
    clock = Clock()
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET, expires_in=1799)) as server:
        client = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, clock=clock, sleep=Sleeps())
        for _ in range(3):
            assert client.search(FAMILY_TRIP).status == 200
        clock.now += 1799 - EXPIRY_MARGIN_SECONDS
        assert client.search(FAMILY_TRIP).status == 200
    assert len(_token_requests(server)) == client.tokens_fetched == 2 and len(server.searches()) == 4


def test_an_expired_token_is_renewed_once_on_401_even_by_concurrent_calls():
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET)) as server:
        client = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, sleep=Sleeps())
        assert client.search(FAMILY_TRIP).status == 200
        server.expire_tokens()
        results = _searched_at_once(client, 4)
    assert [result.status for result in results] == [200] * 4
    # Calls that met the expired token renewed it once between them; none needed a third token.
    assert server.tokens_issued == 2 and client.tokens_fetched == 2
    assert len({r["headers"]["authorization"] for r in server.searches()}) == 2
    assert 5 <= len(server.searches()) <= 9


def test_a_429_is_retried_after_the_asked_wait():
    sleeps = Sleeps()
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET, retry_after_seconds=3)) as server:
        server.refuse(1)
        result = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, max_backoff_seconds=10, sleep=sleeps).search(FAMILY_TRIP)
    assert result.status == 200 and len(server.searches()) == 2
    assert len(sleeps) == 1 and 3 <= sleeps[0] <= 10


def test_wrong_credentials_fail_clearly_without_the_secret():
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET)) as server:
        client = AmadeusClient(server.url, CLIENT_ID, "wrong-secret", sleep=Sleeps())
        result, next_trip = client.search(FAMILY_TRIP), client.search(FAMILY_TRIP)
    assert (result.status, result.failure) == (0, "auth_error")
    assert result.error == "amadeus authentication failed: token endpoint answered HTTP 401: Client credentials are invalid"
    assert "wrong-secret" not in result.error and server.searches() == []
    # Refused credentials stay refused for the run: neither a retry nor the next trip asks again.
    assert len(_token_requests(server)) == 1
    assert (next_trip.failure, next_trip.error) == ("auth_error", f"not called: {result.error}")


def test_an_overloaded_token_endpoint_is_retried_with_backoff():
    sleeps = Sleeps()
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET)) as server:
        server.token_outages.add(2)
        result = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, sleep=sleeps).search(FAMILY_TRIP)
    assert result.status == 200 and len(server.searches()) == 1
    assert len(_token_requests(server)) == 3 and len(sleeps) == 2


def test_calls_queued_behind_a_failing_token_request_do_not_each_ask_again():
    with serving(FakeAmadeus(CLIENT_ID, CLIENT_SECRET)) as server:
        server.token_outages.add(1_000)
        client = AmadeusClient(server.url, CLIENT_ID, CLIENT_SECRET, sleep=Sleeps())
        results = _searched_at_once(client, 8)
    assert {(result.status, result.failure) for result in results} == {(0, "auth_error")}
    assert all("token endpoint answered HTTP 503" in result.error for result in results)
    # Each call makes its attempts; a call that queued behind a failed request shares its failure instead of asking.
    assert len(_token_requests(server)) < 8 * (client.retries + 1)


def test_credentials_come_from_the_environment(monkeypatch):
    for name in ("FARES_AMADEUS_CLIENT_ID", "FARES_AMADEUS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProviderConfigError, match="FARES_AMADEUS_CLIENT_ID is not set"):
        amadeus_client_from_env()
    monkeypatch.setenv("FARES_AMADEUS_CLIENT_ID", CLIENT_ID)
    with pytest.raises(ProviderConfigError, match="FARES_AMADEUS_CLIENT_SECRET is not set"):
        amadeus_client_from_env()
    monkeypatch.setenv("FARES_AMADEUS_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("FARES_AMADEUS_URL", "http://127.0.0.1:9")
    client = amadeus_client_from_env()
    assert client.base_url == "http://127.0.0.1:9" and CLIENT_SECRET not in repr(client)
