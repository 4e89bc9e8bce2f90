"""The Spark structuring job on every real QPX fixture, with a real local Spark session."""
import copy
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import airportsdata
import pytest
from pyspark.sql import functions as F

from fare_assets.storing.lake import (curated_table_path, landing_hour_of_key, partial_object_path, quarantine_path,
                                      quarantine_root, raw_object_key)
from fare_assets.structuring.job import main, structure_raw
from fare_assets.structuring.providers.offers import OTHER_TRIP_SHAPE
from fare_assets.structuring.serving import empty_answers, fare_rows, searches_held
from fare_assets.structuring.tables import DIMENSION_SCHEMAS, FACT_KEYS, FACT_SCHEMAS, MONEY, read_table
from fare_assets_tests.conftest import FIXTURES

QPX_FIXTURES = sorted(path.name for path in (FIXTURES / "qpx").glob("*.json"))
LANDING_HOUR = "2026-11-28-04"
LATER_HOUR = "2026-11-28-05"
COLLECTED_AT = "2026-11-28T04:00:00Z"


def _response(name: str) -> dict:
    return json.loads((FIXTURES / "qpx" / name).read_text())


def _options(response: dict) -> list[dict]:
    return response.get("trips", {}).get("tripOption", [])


def _money(text: str) -> Decimal:
    return Decimal(text[3:])


def _query_of(response: dict) -> dict:
    """The search a response answers: first slice's ends and dates, return date from the second slice."""
    options = _options(response)
    if not options:
        return {"origin": "SFO", "destination": "JFK", "depart_date": "2027-01-10", "return_date": None,
                "adults": 1, "children": 0, "cabin": "COACH"}
    slices = options[0]["slice"]
    first_leg = slices[0]["segment"][0]["leg"][0]
    last_leg = slices[0]["segment"][-1]["leg"][-1]
    return {
        "origin": first_leg["origin"],
        "destination": last_leg["destination"],
        "depart_date": first_leg["departureTime"][:10],
        "return_date": slices[1]["segment"][0]["leg"][0]["departureTime"][:10] if len(slices) > 1 else None,
        "adults": 1,
        "children": 0,
        "cabin": "COACH",
    }


def _envelope(response: dict | None, search_id: str | None = None, **fields) -> dict:
    record = {
        "v": 1,
        "search_id": search_id or str(uuid.uuid4()),
        "provider": "qpx",
        "collected_at": COLLECTED_AT,
        "query": _query_of(response or {}),
        "status": 200,
        "elapsed_ms": 412,
        "response": response,
    }
    record.update(fields)
    return {key: value for key, value in record.items() if value is not None or key != "response"}


def _through_flight() -> dict:
    """ORD→IST→LHR sold as one segment with two legs, the connection given on the first leg."""
    response = copy.deepcopy(_response("01_USD_ORD-LHR.json"))
    option = response["trips"]["tripOption"][1]
    first, second = option["slice"][0]["segment"]
    first["leg"][0]["connectionDuration"] = first.pop("connectionDuration")
    first["leg"].append(second["leg"][0])
    option["slice"][0]["segment"] = [first]
    pricing = option["pricing"][0]
    pricing["segmentPricing"] = [sp for sp in pricing["segmentPricing"] if sp["segmentId"] == first["id"]]
    response["trips"]["tripOption"] = [option]
    return response


def _family() -> dict:
    """LGW→AMS for two adults and a child: one pricing per passenger type, totals per passenger."""
    response = copy.deepcopy(_response("04_GBP_LGW-AMS.json"))
    option = response["trips"]["tripOption"][0]
    adult = option["pricing"][0]
    adult["passengers"]["adultCount"] = 2
    child = copy.deepcopy(adult)
    child["ptc"] = "CNN"
    child["passengers"] = {"kind": "qpxexpress#passengerCounts", "childCount": 1}
    child["baseFareTotal"] = child["saleFareTotal"] = "GBP16.50"
    child["saleTotal"] = f"GBP{Decimal('16.50') + _money(child['saleTaxTotal'])}"
    option["pricing"] = [adult, child]
    option["saleTotal"] = f"GBP{2 * _money(adult['saleTotal']) + _money(child['saleTotal'])}"
    response["trips"]["tripOption"] = [option]
    return response


def _second_option_sold_for(sale_total: str | None) -> dict:
    """LGW→AMS whose second trip option has this saleTotal (None: none at all); the first one stays sound."""
    response = _response("04_GBP_LGW-AMS.json")
    option = response["trips"]["tripOption"][1]
    if sale_total is None:
        del option["saleTotal"]
    else:
        option["saleTotal"] = sale_total
    return response


def _renamed_option_list() -> dict:
    """LGW→AMS as if QPX had renamed `tripOption`: a parse by the schema reads no options at all."""
    response = _response("04_GBP_LGW-AMS.json")
    response["trips"]["solutions"] = response["trips"].pop("tripOption")
    return response


def _write_raw(lake: Path, arrival: datetime, envelopes: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    """One Firehose-style raw object: envelopes as JSON lines, then any extra (broken) lines."""
    path = lake / raw_object_key("fares", arrival, str(uuid.uuid4()))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(envelope) for envelope in envelopes] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


NOT_AN_OBJECT = "JSON that is not an object (a line holds one record)"
UNPRICED = "successful status with a trip option without a readable, positive saleTotal"
# Unreadable (no amount, amount before currency, missing) or not positive: the warehouse would refuse each.
UNPRICED_SALE_TOTALS = ("GBP", "62.27GBP", None, "GBP0.00", "GBP-62.27")

# What each broken line is, and the reason the quarantine must give for it.
BROKEN_LINES = {
    '{"v": 1, "search_id": "cut-short", "provider": "qpx", "resp': "malformed JSON",
    "<html><body><h1>502 Bad Gateway</h1></body></html>": "malformed JSON",
    '{"v": 1, "search_id": "typed-wrong", "status": "ok"}': "JSON that does not fit the envelope schema",
    '{"hello": "world"}': "missing envelope version 'v'",
    # Spark's JSON reader would make each element a record (two failed searches here) and `[]` none at all.
    json.dumps([_envelope(None, search_id="in-an-array", status=503), _envelope(None, status=503)]): NOT_AN_OBJECT,
    "[]": NOT_AN_OBJECT,
    '"a bare string"': NOT_AN_OBJECT,
    json.dumps(_envelope(None, v=2)): "unsupported envelope version 2",
    json.dumps(_envelope(None, provider="skyscanner")): "unknown provider 'skyscanner'",
    json.dumps(_envelope(None, collected_at="yesterday")): "missing or invalid collected_at",
    json.dumps(_envelope(None)): "successful status without a QPX response",
    # Any 2xx is an answer, as for Duffel's 201: without a body it is quarantined, not kept as a failed search.
    json.dumps(_envelope(None, status=203)): "successful status without a QPX response",
    # A 200 the collector could not read: it recorded why, and the answer as `body`.
    json.dumps(_envelope(None, error="invalid JSON in a 200 answer", body="<html>maintenance</html>")):
        "successful status without a QPX response: invalid JSON in a 200 answer",
    json.dumps(_envelope({"error": {"code": 500}})): "successful status with a response that is not QPX (no trips)",
    **{json.dumps(_envelope(_second_option_sold_for(total))): UNPRICED for total in UNPRICED_SALE_TOTALS},
}


# What write_encoding_cases' object quarantines; its one sound record is a search with one option.
ENCODING_CASES_QUARANTINED = Counter(["text that is not valid UTF-8", "malformed JSON"])


def write_encoding_cases(lake: Path, arrival: datetime) -> str:
    """A raw object opening with a byte order mark before a sound record, then a line with a Latin-1 byte, a line
    holding a form feed (not blank: a record, and not JSON) and a blank line."""
    raw = Path(_write_raw(lake, arrival, []))
    sound = json.dumps(_envelope(_response("02_EUR_LIS-TXL.json"))).encode()
    latin1 = json.dumps(_envelope(None, status=503, error="Gar\u00e7on")).encode().replace(b"\\u00e7", b"\xe7")
    raw.write_bytes(b"\xef\xbb\xbf" + sound + b"\r\n" + latin1 + b"\n\f\n \t\n")
    return str(raw)


@dataclass
class Lake:
    root: Path
    raw_paths: list[str]
    raw_lines: int
    search_ids: dict[str, str]
    counts: dict[str, int]
    tables: dict[str, list]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    """Every fixture, the synthetic cases, a failed call, broken lines and a redelivery, structured once."""
    root = tmp_path_factory.mktemp("lake")
    responses = {name: _response(name) for name in QPX_FIXTURES}
    responses["through_flight"] = _through_flight()
    responses["family"] = _family()
    envelopes = {name: _envelope(response) for name, response in responses.items()}
    envelopes["failed_call"] = _envelope(None, status=503, error="503 Service Unavailable")
    first_arrival = datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc)
    # Blank lines carry no record: they are not counted.
    first = _write_raw(root, first_arrival, list(envelopes.values()), (*BROKEN_LINES, "", "  \t"))
    # Firehose delivers at least once: the MIA-LGA record arrives again in a later object.
    second = _write_raw(root, datetime(2026, 11, 28, 4, 31, tzinfo=timezone.utc), [envelopes["09_USD_MIA-LGA.json"]])
    raw_paths = [first, second]
    counts = structure_raw(spark, raw_paths, str(root))
    tables = {table: read_table(spark, str(root), table).collect() for table in (*FACT_SCHEMAS, *DIMENSION_SCHEMAS)}
    return Lake(
        root=root,
        raw_paths=raw_paths,
        raw_lines=len(envelopes) + len(BROKEN_LINES) + 1,
        search_ids={name: envelope["search_id"] for name, envelope in envelopes.items()},
        counts=counts,
        tables=tables,
    )


def _quarantined(root: Path, landing_hour: str) -> list[dict]:
    """The quarantine lines of one landing hour (none when its folder is absent)."""
    return [json.loads(line) for path in Path(quarantine_path(str(root), landing_hour)).glob("*.json")
            for line in path.read_text().splitlines()]


def _rows_of(lake: Lake, table: str, name: str) -> list:
    """The rows of one fact table that belong to the search of fixture `name`."""
    search_id = lake.search_ids[name]
    if table in ("searches", "trip_options"):
        return [row for row in lake.tables[table] if row.search_id == search_id]
    option_ids = {row.option_id for row in _rows_of(lake, "trip_options", name)}
    return [row for row in lake.tables[table] if row.option_id in option_ids]


def _provider_option_ids(lake: Lake, name: str) -> dict[str, str]:
    return {row.option_id: row.provider_option_id for row in _rows_of(lake, "trip_options", name)}


ALL_RESPONSES = (*QPX_FIXTURES, "through_flight", "family")
# The answers holding options: a rule over each option's rows has nothing to check in the others, which
# test_no_solutions_is_a_search_without_options covers.
WITH_OPTIONS = tuple(name for name in ALL_RESPONSES if name != "15_NONE_no-solutions.json")


def _all_responses() -> dict[str, dict]:
    responses = {name: _response(name) for name in QPX_FIXTURES}
    return {**responses, "through_flight": _through_flight(), "family": _family()}


@pytest.mark.parametrize("name", ALL_RESPONSES)
def test_row_counts_match_the_json(lake, name):
    options = _options(_all_responses()[name])
    slices = [s for o in options for s in o["slice"]]
    segments = [g for s in slices for g in s["segment"]]
    pricings = [p for o in options for p in o["pricing"]]
    expected = {
        "trip_options": len(options),
        "slices": len(slices),
        "segments": len(segments),
        "legs": sum(len(g["leg"]) for g in segments),
        "pricings": len(pricings),
        "fares": sum(len(p["fare"]) for p in pricings),
        "segment_fares": sum(len(p["segmentPricing"]) for p in pricings),
        "taxes": sum(len(p.get("tax", [])) for p in pricings),
    }
    assert {table: len(_rows_of(lake, table, name)) for table in expected} == expected
    (search,) = _rows_of(lake, "searches", name)
    assert (search.status, search.option_count) == (200, len(options))


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_money_is_exact_and_pricings_add_up_to_the_option(lake, name):
    by_provider_id = {option["id"]: option for option in _options(_all_responses()[name])}
    pricings, options = _rows_of(lake, "pricings", name), _rows_of(lake, "trip_options", name)
    assert options and pricings
    for option in options:
        raw = by_provider_id[option.provider_option_id]
        assert option.total_amount == _money(raw["saleTotal"]) and option.currency == raw["saleTotal"][:3]
        own = [p for p in pricings if p.option_id == option.option_id]
        assert sum(p.sale_total_per_pax * p.passenger_count for p in own) == option.total_amount
        assert sum(p.tax_per_pax * p.passenger_count for p in own) == option.tax_amount
        assert option.base_currency == raw["pricing"][0]["baseFareTotal"][:3]


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_taxes_keep_every_line_and_sum_to_the_pricing_tax(lake, name):
    by_provider_id = {option["id"]: option for option in _options(_all_responses()[name])}
    option_ids = _provider_option_ids(lake, name)
    taxes, pricings = _rows_of(lake, "taxes", name), _rows_of(lake, "pricings", name)
    assert pricings
    for pricing in pricings:
        raw = by_provider_id[option_ids[pricing.option_id]]["pricing"][pricing.pricing_no - 1]
        own = sorted((t.tax_no, t.tax_id, t.amount) for t in taxes
                     if (t.option_id, t.pricing_no) == (pricing.option_id, pricing.pricing_no))
        assert [(tax_id, amount) for _, tax_id, amount in own] == [
            (tax["id"], _money(tax["salePrice"])) for tax in raw.get("tax", [])
        ]
        if "saleTaxTotal" in raw:
            assert sum(amount for _, _, amount in own) == pricing.tax_per_pax == _money(raw["saleTaxTotal"])


@pytest.mark.parametrize("name", ["05_INR_DEL-GOI.json", "07_LBP_BEY-BOS.json", "10_USD_DEN-CDG.json"])
def test_duplicate_tax_ids_are_kept_apart(lake, name):
    per_pricing = Counter((t.option_id, t.pricing_no, t.tax_id) for t in _rows_of(lake, "taxes", name))
    assert max(per_pricing.values()) == 2
    assert all(isinstance(t.amount, Decimal) for t in _rows_of(lake, "taxes", name))


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_leg_times_are_utc_instants_with_the_local_wall_time_beside(lake, name):
    by_provider_id = {option["id"]: option for option in _options(_all_responses()[name])}
    option_ids = _provider_option_ids(lake, name)
    legs = _rows_of(lake, "legs", name)
    assert legs
    for leg in legs:
        raw_slice = by_provider_id[option_ids[leg.option_id]]["slice"][leg.slice_no - 1]
        raw_leg = raw_slice["segment"][leg.segment_no - 1]["leg"][leg.leg_no - 1]
        departs = datetime.fromisoformat(raw_leg["departureTime"])
        arrives = datetime.fromisoformat(raw_leg["arrivalTime"])
        # Spark hands instants back as naive local datetimes; .timestamp() turns both sides into epochs.
        assert leg.departs_at.timestamp() == departs.timestamp()
        assert leg.arrives_at.timestamp() == arrives.timestamp()
        assert leg.departs_local == departs.replace(tzinfo=None)
        assert leg.arrives_local == arrives.replace(tzinfo=None)
        assert (leg.origin, leg.destination) == (raw_leg["origin"], raw_leg["destination"])
        assert leg.mileage == raw_leg["mileage"]


def test_a_utc_conversion_across_midnight(lake):
    """ORD 21:30 at UTC-5 is 02:30 UTC the next day."""
    legs = [leg for leg in _rows_of(lake, "legs", "01_USD_ORD-LHR.json") if leg.origin == "ORD"]
    assert legs and all(leg.departs_local == datetime(2016, 6, 11, 21, 30) for leg in legs)
    utc = datetime(2016, 6, 12, 2, 30, tzinfo=timezone.utc)
    assert all(leg.departs_at.timestamp() == utc.timestamp() for leg in legs)


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_segment_fares_follow_segment_ids_not_list_order(lake, name):
    by_provider_id = {option["id"]: option for option in _options(_all_responses()[name])}
    option_ids = _provider_option_ids(lake, name)
    fares = {(f.option_id, f.pricing_no, f.fare_no): f for f in _rows_of(lake, "fares", name)}
    expected, segment_fares = set(), _rows_of(lake, "segment_fares", name)
    assert segment_fares
    for row in segment_fares:
        raw = by_provider_id[option_ids[row.option_id]]
        segment_id = raw["slice"][row.slice_no - 1]["segment"][row.segment_no - 1]["id"]
        segment_pricings = raw["pricing"][row.pricing_no - 1]["segmentPricing"]
        (fare_id,) = [sp["fareId"] for sp in segment_pricings if sp["segmentId"] == segment_id]
        assert fares[(row.option_id, row.pricing_no, row.fare_no)].provider_fare_id == fare_id
        expected.add((row.option_id, row.pricing_no, segment_id))
    assert expected == {
        (option_id, p_no, sp["segmentId"])
        for option_id, provider_id in option_ids.items()
        for p_no, pricing in enumerate(by_provider_id[provider_id]["pricing"], 1)
        for sp in pricing["segmentPricing"]
    }


def test_a_fare_listed_twice_under_one_id_prices_each_direction(lake):
    """F9 prices MIA→NYC and NYC→MIA with one fare id: each slice takes the copy leaving its city."""
    fares = {(f.option_id, f.pricing_no, f.fare_no): f for f in _rows_of(lake, "fares", "09_USD_MIA-LGA.json")}
    directions = {
        (row.slice_no, fares[(row.option_id, row.pricing_no, row.fare_no)].origin_city)
        for row in _rows_of(lake, "segment_fares", "09_USD_MIA-LGA.json")
        if fares[(row.option_id, row.pricing_no, row.fare_no)].carrier == "F9"
    }
    assert directions == {(1, "MIA"), (2, "NYC")}


def _component_start_cities(response: dict, option: dict, pricing: dict) -> dict[str, str]:
    """Per segment id: the city where its fare component starts (the first of the slice's consecutive segments
    with its fare id)."""
    cities = {airport["code"]: airport.get("city") for airport in response["trips"]["data"].get("airport", [])}
    fare_ids = {sp["segmentId"]: sp["fareId"] for sp in pricing["segmentPricing"]}
    starts = {}
    for slice_ in option["slice"]:
        previous_fare, start = None, None
        for segment in slice_["segment"]:
            if fare_ids.get(segment["id"]) is None or fare_ids[segment["id"]] != previous_fare:
                origin = segment["leg"][0]["origin"]
                start = cities.get(origin) or origin
            starts[segment["id"]], previous_fare = start, fare_ids.get(segment["id"])
    return starts


@pytest.mark.parametrize("name", WITH_OPTIONS)
def test_a_segment_takes_the_fare_copy_leaving_where_its_fare_component_starts(lake, name):
    response = _all_responses()[name]
    by_provider_id = {option["id"]: option for option in _options(response)}
    option_ids = _provider_option_ids(lake, name)
    fares = {(f.option_id, f.pricing_no, f.fare_no): f for f in _rows_of(lake, "fares", name)}
    checked = 0
    for row in _rows_of(lake, "segment_fares", name):
        option = by_provider_id[option_ids[row.option_id]]
        pricing = option["pricing"][row.pricing_no - 1]
        segment_id = option["slice"][row.slice_no - 1]["segment"][row.segment_no - 1]["id"]
        start = _component_start_cities(response, option, pricing)[segment_id]
        fare = fares[(row.option_id, row.pricing_no, row.fare_no)]
        copies = [f for f in pricing["fare"] if f["id"] == fare.provider_fare_id]
        if any(copy["origin"] == start for copy in copies):
            assert fare.origin_city == start, (option["id"], segment_id)
            checked += 1
    assert checked


def test_a_return_from_new_york_via_toronto_takes_the_toronto_copy_of_a_fare_listed_twice(lake):
    # The return JFK-YUL-YYZ-MIA prices YYZ-MIA with the fare also pricing MIA-YUL-YYZ out: fare 1 is MIA-YTO,
    # fare 4 YTO-MIA. The slice starts in New York, where neither copy leaves from.
    option_ids = {provider: option for option, provider in _provider_option_ids(lake, "09_USD_MIA-LGA.json").items()}
    (option_id,) = [option for provider, option in option_ids.items() if provider.endswith("yON00F")]
    by_segment = {(row.slice_no, row.segment_no): row.fare_no
                  for row in _rows_of(lake, "segment_fares", "09_USD_MIA-LGA.json") if row.option_id == option_id}
    assert by_segment == {(1, 1): 1, (1, 2): 1, (1, 3): 2, (2, 1): 3, (2, 2): 3, (2, 3): 4}


def test_segment_pricing_order_differs_and_one_fare_covers_both_segments(lake):
    segment_fares = _rows_of(lake, "segment_fares", "01_USD_ORD-LHR.json")
    assert {(r.slice_no, r.segment_no, r.fare_no) for r in segment_fares} == {(1, 1, 1), (1, 2, 1)}


def test_connections_on_segments_and_through_flight_legs(lake):
    connections = {(s.provider_segment_id, s.connection_min) for s in _rows_of(lake, "segments", "01_USD_ORD-LHR.json")}
    assert ("GO1NtJ9P5u4xp3Sc", 245) in connections and ("GO1NtJ9P5u4xp3Sc", 145) in connections
    (segment,) = _rows_of(lake, "segments", "through_flight")
    legs = sorted(_rows_of(lake, "legs", "through_flight"), key=lambda leg: leg.leg_no)
    assert [(leg.origin, leg.destination, leg.connection_min) for leg in legs] == [
        ("ORD", "IST", 145), ("IST", "LHR", None)
    ]
    (slice_,) = _rows_of(lake, "slices", "through_flight")
    assert (slice_.origin, slice_.destination, slice_.stops) == ("ORD", "LHR", 1)


def test_codeshares_cabins_and_baggage(lake):
    disclosures = {leg.operating_disclosure for leg in _rows_of(lake, "legs", "03_EUR_BCN-PRG.json")}
    assert disclosures == {"OPERATED BY CZECH AIRLINES"}
    assert "PREMIUM_COACH" in {s.cabin for s in _rows_of(lake, "segments", "10_USD_DEN-CDG.json")}
    (baggage,) = _rows_of(lake, "segment_fares", "03_EUR_BCN-PRG.json")
    assert (baggage.free_bag_kilos, baggage.free_bag_pieces) == (15, None)
    fares = _rows_of(lake, "fares", "02_EUR_LIS-TXL.json")
    assert {(f.origin_city, f.destination_city) for f in fares} == {("LIS", "BER")}
    assert {o.refundable for o in _rows_of(lake, "trip_options", "01_USD_ORD-LHR.json")} == {True}
    assert {o.refundable for o in _rows_of(lake, "trip_options", "04_GBP_LGW-AMS.json")} == {None}
    (bey_bos,) = {(o.base_currency, o.currency) for o in _rows_of(lake, "trip_options", "07_LBP_BEY-BOS.json")}
    assert bey_bos == ("USD", "LBP")


def test_the_family_pricing_counts_passengers_per_type(lake):
    pricings = sorted(_rows_of(lake, "pricings", "family"), key=lambda p: p.pricing_no)
    assert [(p.passenger_type, p.passenger_count) for p in pricings] == [("ADT", 2), ("CNN", 1)]
    (option,) = _rows_of(lake, "trip_options", "family")
    assert option.base_amount == 2 * pricings[0].base_per_pax + pricings[1].base_per_pax


def test_no_solutions_is_a_search_without_options(lake):
    (search,) = _rows_of(lake, "searches", "15_NONE_no-solutions.json")
    assert (search.status, search.option_count, search.request_id) == (200, 0, "6ZL1zpxrd9Gzar9950MSlH")
    assert _rows_of(lake, "trip_options", "15_NONE_no-solutions.json") == []


def test_a_failed_call_is_a_search_not_a_quarantined_record(lake):
    (search,) = _rows_of(lake, "searches", "failed_call")
    assert (search.status, search.error, search.option_count) == (503, "503 Service Unavailable", 0)
    assert search.request_id is None and search.elapsed_ms == 412


def test_broken_records_are_quarantined_with_reasons_and_every_record_is_accounted_for(lake):
    lines = _quarantined(lake.root, LANDING_HOUR)
    assert Counter(line["reason"] for line in lines) == Counter(BROKEN_LINES.values())
    # A record whose envelope was rejected is kept as it landed, character for character.
    assert {line["record"] for line in lines if not line["reason"].startswith("successful status")} == {
        raw for raw, reason in BROKEN_LINES.items() if not reason.startswith("successful status")
    }
    assert "in-an-array" not in {row.search_id for row in lake.tables["searches"]}
    assert all(line["raw_key"].endswith(lake.raw_paths[0]) for line in lines)
    counts = lake.counts
    assert counts["quarantined"] == len(BROKEN_LINES) and counts["duplicates"] == 1
    assert counts["raw_records"] == lake.raw_lines
    assert counts["raw_records"] == counts["searches"] + counts["quarantined"] + counts["duplicates"]
    expected_options = sum(len(_options(response)) for response in _all_responses().values())
    assert counts["options_announced"] == counts["trip_options"] == expected_options


def test_an_answer_the_collector_could_not_read_keeps_its_body_in_the_quarantine(lake):
    (line,) = [line for line in _quarantined(lake.root, LANDING_HOUR) if line["reason"].endswith("a 200 answer")]
    assert json.loads(line["record"])["body"] == "<html>maintenance</html>"


def test_an_option_without_a_readable_positive_total_quarantines_its_whole_record(lake):
    lines = _quarantined(lake.root, LANDING_HOUR)
    records = [json.loads(line["record"]) for line in lines if line["reason"] == UNPRICED]
    second_options = [json.loads(record["response"])["trips"]["tripOption"][1] for record in records]
    assert Counter(option.get("saleTotal") for option in second_options) == Counter(UNPRICED_SALE_TOTALS)
    # Their sound first option is not structured either: a search is stored whole or not at all.
    search_ids = {record["search_id"] for record in records}
    assert len(search_ids) == len(UNPRICED_SALE_TOTALS)
    assert not search_ids & {row.search_id for table in ("searches", "trip_options") for row in lake.tables[table]}
    assert all(row.total_amount > 0 and row.currency for row in lake.tables["trip_options"])


def test_a_redelivered_search_is_kept_once_from_its_first_delivery(lake):
    (search,) = _rows_of(lake, "searches", "09_USD_MIA-LGA.json")
    assert search.raw_key.endswith(lake.raw_paths[0])
    assert len(_rows_of(lake, "trip_options", "09_USD_MIA-LGA.json")) == 20


def test_keys_are_unique_and_counts_match_the_files(lake):
    for table, key in FACT_KEYS.items():
        rows = lake.tables[table]
        assert len(rows) == lake.counts[table]
        assert len({tuple(row[column] for column in key) for row in rows}) == len(rows), table
        assert {(row.collected_date, row.landing_hour) for row in rows} == {(date(2026, 11, 28), LANDING_HOUR)}
    for table in DIMENSION_SCHEMAS:
        codes = [row.code for row in lake.tables[table]]
        assert len(codes) == len(set(codes)) == lake.counts[table]


def test_money_columns_are_decimal(spark, lake):
    schema = read_table(spark, str(lake.root), "trip_options").schema
    assert schema["total_amount"].dataType == MONEY and schema["tax_amount"].dataType == MONEY


def test_dimensions_are_enriched_from_airportsdata(lake):
    airports = {row.code: row for row in lake.tables["airports"]}
    assert (airports["LHR"].name, airports["LHR"].city_code) == ("London Heathrow", "LON")
    assert (airports["LHR"].country, airports["LHR"].tz) == ("GB", "Europe/London")
    assert airports["GOI"].country == "IN" and abs(airports["DEN"].lat - 39.86) < 0.1
    assert {row.code: row.name for row in lake.tables["carriers"]}["TK"] == "Turkish Airlines Inc."
    assert "US_002" in {row.code for row in lake.tables["tax_codes"]}


def test_rerunning_the_landing_hour_is_idempotent(spark, lake):
    again = structure_raw(spark, lake.raw_paths, str(lake.root))
    on_disk = {t: read_table(spark, str(lake.root), t).count() for t in (*FACT_SCHEMAS, *DIMENSION_SCHEMAS)}
    assert again == lake.counts
    # The first run's files held exactly lake.counts rows (test_keys_are_unique_and_counts_match_the_files).
    assert on_disk == {t: lake.counts[t] for t in on_disk}
    option_ids = {row.option_id for row in read_table(spark, str(lake.root), "trip_options").collect()}
    assert option_ids == {row.option_id for row in lake.tables["trip_options"]}


@pytest.fixture(scope="module")
def later_hour(spark, lake) -> dict[str, int]:
    """A later landing hour: BA renamed, plus the ORD-LHR search delivered a second time."""
    renamed = _response("04_GBP_LGW-AMS.json")
    for carrier in renamed["trips"]["data"]["carrier"]:
        carrier["name"] = "British Airways Plc"
    envelopes = [
        _envelope(renamed, collected_at="2026-11-28T05:00:00Z"),
        _envelope(_response("01_USD_ORD-LHR.json"), search_id=lake.search_ids["01_USD_ORD-LHR.json"]),
    ]
    path = _write_raw(lake.root, datetime(2026, 11, 28, 5, 2, tzinfo=timezone.utc), envelopes)
    return structure_raw(spark, [path], str(lake.root))


def test_dimensions_are_upserted_latest_name_wins(spark, lake, later_hour):
    carriers = {row.code: row.name for row in read_table(spark, str(lake.root), "carriers").collect()}
    assert carriers["BA"] == "British Airways Plc"
    assert carriers["TK"] == "Turkish Airlines Inc."
    assert len(carriers) == later_hour["carriers"] == lake.counts["carriers"]
    earlier_hour = read_table(spark, str(lake.root), "trip_options").where(f"landing_hour = '{LANDING_HOUR}'").count()
    assert earlier_hour == lake.counts["trip_options"]


def test_fare_rows_one_per_option_national_or_not(spark, lake, later_hour):
    rows = {row.option_id: row for row in fare_rows(spark, str(lake.root), [LANDING_HOUR]).collect()}
    assert len(rows) == lake.counts["trip_options"]

    def of(name):
        return [rows[option_id] for option_id in _provider_option_ids(lake, name)]

    # MIA-LGA is a US route, but some of its options connect in Canada (YYZ, YUL, YOW).
    countries = {code: row["country"] for code, row in airportsdata.load("IATA").items()}
    mia_lga = _all_responses()["09_USD_MIA-LGA.json"]
    national_options = {
        option["id"]
        for option in _options(mia_lga)
        if {countries[leg[end]] for s in option["slice"] for g in s["segment"] for leg in g["leg"]
            for end in ("origin", "destination")} == {"US"}
    }
    option_ids = _provider_option_ids(lake, "09_USD_MIA-LGA.json")
    assert 0 < len(national_options) < len(option_ids)
    assert {option_ids[row.option_id] for row in of("09_USD_MIA-LGA.json") if row.national} == national_options
    assert not any(row.national for row in of("10_USD_DEN-CDG.json"))
    assert {row.nights for row in of("10_USD_DEN-CDG.json")} == {(date(2018, 1, 4) - date(2017, 12, 23)).days}
    for row in of("01_USD_ORD-LHR.json"):
        assert (row.stops_out, row.carriers, row.duration_out_min in (1140, 1035)) == (1, "TK", True)
        assert row.stops_back is row.duration_back_min is row.depart_back_local is row.nights is row.return_date is None
        assert row.days_ahead == (date(2016, 6, 11) - date(2026, 11, 28)).days
        assert row.depart_out_local == datetime(2016, 6, 11, 21, 30) and not row.national
    for row in of("09_USD_MIA-LGA.json"):
        assert row.stops_back is not None and row.depart_back_local.date() == date(2016, 4, 10)
    bey_bos = {option["id"]: option for option in _options(_response("07_LBP_BEY-BOS.json"))}
    provider_ids = _provider_option_ids(lake, "07_LBP_BEY-BOS.json")
    for row in of("07_LBP_BEY-BOS.json"):
        raw = bey_bos[provider_ids[row.option_id]]
        assert row.carriers == ",".join(sorted({g["flight"]["carrier"] for s in raw["slice"] for g in s["segment"]}))
    assert any("," in row.carriers for row in of("07_LBP_BEY-BOS.json"))


def test_fare_rows_across_hours_dedupe_options_without_doubling_children(spark, lake, later_hour):
    everything = fare_rows(spark, str(lake.root)).collect()
    option_ids = [row.option_id for row in everything]
    assert len(option_ids) == len(set(option_ids)) == lake.counts["trip_options"] + later_hour["trip_options"] - 2
    redelivered = [row for row in everything if row.search_id == lake.search_ids["01_USD_ORD-LHR.json"]]
    assert len(redelivered) == 2 and {row.stops_out for row in redelivered} == {1}


def test_the_command_line_runs_the_same_job(spark, tmp_path, capsys):
    response = _response("02_EUR_LIS-TXL.json")
    path = Path(_write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), [_envelope(response)]))
    # An object the local lake is still writing: the job lists the hour folder as the assets do, without it.
    partial_object_path(path.with_name("fares-local-1-next")).write_text('{"v": 1, "search_id": "half-wri')
    counts = main(["--lake", str(tmp_path), str(path.parent)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == counts
    (option,) = _options(response)
    assert (counts["searches"], counts["trip_options"], counts["quarantined"]) == (1, 1, 0)
    assert counts["taxes"] == len(option["pricing"][0]["tax"])
    legs_in_json = len(option["slice"][0]["segment"][0]["leg"])
    assert read_table(spark, str(tmp_path), "legs").count() == counts["legs"] == legs_in_json


def test_one_run_over_several_hours_files_each_under_its_own_hour(spark, tmp_path):
    hours = {hour: _write_raw(tmp_path, datetime(2026, 11, 28, hour, 1, tzinfo=timezone.utc),
                              [_envelope(_response(name))])
             for hour, name in ((4, "02_EUR_LIS-TXL.json"), (7, "09_USD_MIA-LGA.json"))}
    counts = structure_raw(spark, list(hours.values()), str(tmp_path))
    options = read_table(spark, str(tmp_path), "trip_options").groupBy("landing_hour").count().collect()
    assert {row["landing_hour"]: row["count"] for row in options} == {"2026-11-28-04": 1, "2026-11-28-07": 20}
    assert counts["trip_options"] == 21 and counts["searches"] == 2


def test_a_search_re_sent_into_a_later_hour_is_that_hours_whether_the_hours_run_together_or_apart(spark, tmp_path):
    search = _envelope(_response("02_EUR_LIS-TXL.json"))
    sent, re_sent = (_write_raw(tmp_path, datetime(2026, 11, 28, hour, 1, tzinfo=timezone.utc), [search])
                     for hour in (4, 7))
    together, apart = tmp_path / "together", tmp_path / "apart"
    counts = structure_raw(spark, [sent, re_sent], str(together))
    for raw in (sent, re_sent):
        structure_raw(spark, [raw], str(apart))
    per_hour = {}
    for lake in (together, apart):
        options = read_table(spark, str(lake), "trip_options").groupBy("landing_hour").count().collect()
        per_hour[lake.name] = {row["landing_hour"]: row["count"] for row in options}
    assert per_hour == {"together": {"2026-11-28-04": 1, "2026-11-28-07": 1},
                        "apart": {"2026-11-28-04": 1, "2026-11-28-07": 1}}
    assert (counts["searches"], counts["duplicates"]) == (2, 0)


@pytest.mark.parametrize("name, return_date", [("03_EUR_BCN-PRG.json", "2015-06-09"), ("09_USD_MIA-LGA.json", None)])
def test_an_answer_of_other_slices_than_its_search_is_quarantined(spark, tmp_path, name, return_date):
    # A one-way fare answering a round-trip search would be ranked as the trip's cheapest round trip.
    envelope = _envelope(_response(name))
    envelope["query"] = {**envelope["query"], "return_date": return_date}
    raw = _write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), [envelope])
    counts = structure_raw(spark, [raw], str(tmp_path))
    assert (counts["raw_records"], counts["searches"], counts["trip_options"], counts["quarantined"]) == (1, 0, 0, 1)
    (line,) = _quarantined(tmp_path, LANDING_HOUR)
    assert (json.loads(line["record"])["search_id"], line["reason"]) == (envelope["search_id"], OTHER_TRIP_SHAPE)


@pytest.mark.parametrize("answer_first", [False, True])
def test_an_answer_is_kept_over_a_failed_copy_of_its_search(spark, tmp_path, answer_first):
    # A backfill rerun at its pinned moments after an outage repeats the failed calls' search ids.
    answer = _envelope(_response("02_EUR_LIS-TXL.json"))
    failure = {**{key: value for key, value in answer.items() if key != "response"}, "status": 503,
               "error": "503 Service Unavailable"}
    copies = [answer, failure] if answer_first else [failure, answer]
    apart = [_write_raw(tmp_path, datetime(2026, 11, 28, 4, minute, tzinfo=timezone.utc), [envelope])
             for minute, envelope in zip((1, 31), copies)]
    together = _write_raw(tmp_path / "together", datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), copies)
    for raw_paths, lake in ((apart, tmp_path), ([together], tmp_path / "together")):
        counts = structure_raw(spark, raw_paths, str(lake))
        assert (counts["searches"], counts["duplicates"], counts["trip_options"]) == (1, 1, 1)
        [search] = read_table(spark, str(lake), "searches").collect()
        assert (search.search_id, search.status) == (answer["search_id"], 200)


def test_amounts_and_counts_no_column_holds_are_null_and_the_run_goes_on(spark, tmp_path):
    # Spark 4 runs with ANSI mode on: one overflowing sum or count would otherwise stop the whole job.
    response = _response("02_EUR_LIS-TXL.json")
    pricing = response["trips"]["tripOption"][0]["pricing"][0]
    pricing["saleTaxTotal"] = "EUR600000000000000"
    pricing["passengers"].update(adultCount=2_147_483_647, childCount=2_147_483_647)
    raw = _write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), [_envelope(response)])
    counts = structure_raw(spark, [raw], str(tmp_path))
    assert (counts["searches"], counts["trip_options"], counts["quarantined"]) == (1, 1, 0)
    [option] = read_table(spark, str(tmp_path), "trip_options").collect()
    [priced] = read_table(spark, str(tmp_path), "pricings").collect()
    assert (option.total_amount, option.tax_amount, priced.passenger_count) == (Decimal("136.91"), None, None)


def test_a_file_outside_the_raw_layout_is_refused_before_anything_is_written(spark, tmp_path):
    # No landing hour means no quarantine partition a later run would leave alone: the file is named, not lost.
    stray = tmp_path / "downloads" / "fares.json"
    stray.parent.mkdir()
    stray.write_text(json.dumps(_envelope(_response("02_EUR_LIS-TXL.json"))) + "\n")
    with pytest.raises(ValueError, match=r"raw files outside the raw/fares/YYYY/MM/DD/HH/ layout, such as .*"
                                         r"downloads/fares\.json: move them under the hour folder"):
        structure_raw(spark, [str(stray)], str(tmp_path))
    assert not (tmp_path / "quarantine").exists() and not (tmp_path / "curated").exists()


def test_bytes_that_are_not_utf8_are_quarantined_and_a_byte_order_mark_is_not_part_of_the_record(spark, tmp_path):
    raw = write_encoding_cases(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc))
    counts = structure_raw(spark, [raw], str(tmp_path))
    assert (counts["raw_records"], counts["searches"], counts["quarantined"]) == (3, 1, 2)
    assert Counter(line["reason"] for line in _quarantined(tmp_path, LANDING_HOUR)) == ENCODING_CASES_QUARANTINED
    assert read_table(spark, str(tmp_path), "trip_options").count() == 1


@pytest.mark.parametrize("name", ["_restored-fares", ".fares-1-copy", "fares-1-copy._COPYING_"])
def test_a_raw_file_spark_would_skip_is_refused_before_anything_is_written(spark, tmp_path, name):
    envelopes = [_envelope(_response("02_EUR_LIS-TXL.json"))]
    hidden = Path(_write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), envelopes))
    hidden = hidden.rename(hidden.with_name(name))
    sound = _write_raw(tmp_path, datetime(2026, 11, 28, 4, 2, tzinfo=timezone.utc), envelopes)
    refused = (r"raw files named as Spark skips them \(hidden or partial: '_…', '\.…', '…\._COPYING_'\), such as "
               rf".*/04/{re.escape(name)}: rename a whole object, delete a partial one")
    with pytest.raises(ValueError, match=refused):
        structure_raw(spark, [sound, str(hidden)], str(tmp_path))
    # The command line takes hour folders: one is listed, so Spark's own listing cannot skip the file either.
    with pytest.raises(ValueError, match=refused):
        main(["--lake", str(tmp_path), str(hidden.parent)])
    assert not (tmp_path / "quarantine").exists() and not (tmp_path / "curated").exists()


def test_an_object_in_a_folder_below_its_hour_belongs_to_that_hour(spark, tmp_path):
    copy = tmp_path / "raw" / "fares" / "2026" / "11" / "28" / "04" / "restored" / "fares-1-copy"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(_envelope(_response("02_EUR_LIS-TXL.json"))) + "\n")
    counts = structure_raw(spark, [str(copy)], str(tmp_path))
    assert (counts["raw_records"], counts["quarantined"], counts["searches"]) == (1, 0, 1)
    (search,) = read_table(spark, str(tmp_path), "searches").collect()
    assert search["landing_hour"] == "2026-11-28-04" and search["raw_key"].endswith("/04/restored/fares-1-copy")
    assert landing_hour_of_key(search["raw_key"]) == "2026-11-28-04"


DAY_BEFORE = "2026-11-27T23:30:00Z"
STALE_PARTITION = f"collected_date=2026-11-27/landing_hour={LANDING_HOUR}"


def _partition_folders(root: Path, table: str) -> set[str]:
    """A fact table's partition folders, as collected_date=…/landing_hour=…"""
    folder = Path(curated_table_path(str(root), table))
    return {str(path.relative_to(folder)) for path in folder.glob("collected_date=*/landing_hour=*")}


@dataclass
class Rerun:
    root: Path
    search_ids: dict[str, str]
    first: dict[str, int]
    again: dict[str, int]
    folders_before: dict[str, set[str]]


@pytest.fixture(scope="module")
def rerun(spark, tmp_path_factory) -> Rerun:
    """Hours 04 and 05 structured, then hour 04 again after a fix: its bad record reads, a day-before record is gone."""
    root = tmp_path_factory.mktemp("rerun_lake")
    envelopes = {
        "fixed": _envelope(_second_option_sold_for("GBP")),
        "gone": _envelope(_response("02_EUR_LIS-TXL.json"), collected_at=DAY_BEFORE),
        "kept": _envelope(_response("03_EUR_BCN-PRG.json")),
        "later_bad": _envelope(_second_option_sold_for(None)),
        "later_day_before": _envelope(_response("02_EUR_LIS-TXL.json"), collected_at=DAY_BEFORE),
    }
    hour_04 = _write_raw(root, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc),
                         [envelopes[name] for name in ("fixed", "gone", "kept")])
    hour_05 = _write_raw(root, datetime(2026, 11, 28, 5, 1, tzinfo=timezone.utc),
                         [envelopes["later_bad"], envelopes["later_day_before"]])
    first = structure_raw(spark, [hour_04, hour_05], str(root))
    folders_before = {table: _partition_folders(root, table) for table in FACT_SCHEMAS}
    # A parser fix, played by the hour's raw object: the bad record now reads and the day-before one is gone.
    Path(hour_04).unlink()
    fixed = dict(envelopes["fixed"], response=_response("04_GBP_LGW-AMS.json"))
    hour_04 = _write_raw(root, datetime(2026, 11, 28, 4, 2, tzinfo=timezone.utc), [fixed, envelopes["kept"]])
    again = structure_raw(spark, [hour_04], str(root))
    return Rerun(root, {name: envelope["search_id"] for name, envelope in envelopes.items()}, first, again,
                 folders_before)


def test_a_rerun_that_quarantines_nothing_removes_the_hours_old_quarantine(spark, rerun):
    assert (rerun.first["quarantined"], rerun.first["searches"]) == (2, 3)
    assert (rerun.again["raw_records"], rerun.again["searches"], rerun.again["quarantined"]) == (2, 2, 0)
    assert not Path(quarantine_path(str(rerun.root), LANDING_HOUR)).exists()
    searches = {row.search_id: row.landing_hour for row in read_table(spark, str(rerun.root), "searches").collect()}
    ids = rerun.search_ids
    assert searches == {ids["fixed"]: LANDING_HOUR, ids["kept"]: LANDING_HOUR, ids["later_day_before"]: LATER_HOUR}
    (later,) = _quarantined(rerun.root, LATER_HOUR)
    assert (json.loads(later["record"])["search_id"], later["reason"]) == (ids["later_bad"], UNPRICED)


def test_the_searches_an_hour_holds_are_its_answers_quarantined_or_not_and_never_a_failed_call_or_read(spark, lake):
    held = {row.search_id for row in searches_held(spark, str(lake.root), [LANDING_HOUR]).collect()}
    assert lake.search_ids["failed_call"] not in held
    assert {lake.search_ids["15_NONE_no-solutions.json"], lake.search_ids["09_USD_MIA-LGA.json"]} <= held
    quarantined = {line["reason"]: json.loads(line["record"])["search_id"] for line in _quarantined(lake.root, LANDING_HOUR)
                   if line["reason"] in (UNPRICED, "successful status without a QPX response: invalid JSON in a 200 answer")}
    # An answer a rule refused may have been structured by an earlier run; a 200 the collector could not read never.
    assert quarantined[UNPRICED] in held
    assert quarantined["successful status without a QPX response: invalid JSON in a 200 answer"] not in held


def test_an_answer_without_options_is_exported_as_empty_and_a_failed_call_or_quarantined_answer_is_not(spark, lake):
    # The warehouse keeps these so a provider that looked and found nothing is not taken for one whose call failed.
    (answer,) = empty_answers(spark, str(lake.root), [LANDING_HOUR]).collect()
    (search,) = _rows_of(lake, "searches", "15_NONE_no-solutions.json")
    assert answer.asDict() == {name: search[name] for name in answer.asDict()}


def test_the_searches_an_hour_holds_are_its_answered_and_its_quarantined_ones(spark, rerun):
    # The warehouse load withdraws the options of these searches that the hour's fare rows no longer hold.
    def held(hours):
        # Formatted by Spark in its session's zone (UTC): collect() would turn times into this process's zone.
        collected = F.date_format("collected_at", "yyyy-MM-dd'T'HH:mm:ss'Z'")
        return {row.search_id: row.collected for row in
                searches_held(spark, str(rerun.root), hours).select("search_id", collected.alias("collected")).collect()}

    ids = rerun.search_ids
    assert held([LATER_HOUR]) == {ids["later_bad"]: COLLECTED_AT, ids["later_day_before"]: DAY_BEFORE}
    # Hour 04 quarantines nothing since its rerun: it has no quarantine folder to read.
    assert held([LANDING_HOUR]) == {ids["fixed"]: COLLECTED_AT, ids["kept"]: COLLECTED_AT}
    assert set(held(None)) == set(ids.values()) - {ids["gone"]}


def test_a_fact_partition_a_rerun_leaves_empty_is_removed_and_other_hours_stay(spark, rerun):
    kept = {f"collected_date=2026-11-28/landing_hour={LANDING_HOUR}",
            f"collected_date=2026-11-27/landing_hour={LATER_HOUR}"}
    for table in FACT_SCHEMAS:
        assert rerun.folders_before[table] == kept | {STALE_PARTITION}, table
        assert _partition_folders(rerun.root, table) == kept, table
    options = read_table(spark, str(rerun.root), "trip_options").groupBy("landing_hour").count().collect()
    assert {row["landing_hour"]: row["count"] for row in options} == {LANDING_HOUR: 3, LATER_HOUR: 1}


def test_an_answer_whose_option_list_was_renamed_is_quarantined_not_kept_as_finding_nothing(spark, tmp_path):
    changed, sound, nothing = (_envelope(_renamed_option_list()), _envelope(_response("04_GBP_LGW-AMS.json")),
                               _envelope(_response("15_NONE_no-solutions.json")))
    path = _write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc), [changed, sound, nothing])
    counts = structure_raw(spark, [path], str(tmp_path))
    assert (counts["raw_records"], counts["searches"], counts["quarantined"]) == (3, 2, 1)
    assert counts["trip_options"] == counts["options_announced"] == 2
    [line] = _quarantined(tmp_path, LANDING_HOUR)
    assert (json.loads(line["record"])["search_id"], line["reason"]) == (
        changed["search_id"], "successful status with more or fewer trip options in its text than were read (has QPX's "
                              "format changed?)")
    searches = {row.search_id: row.option_count for row in read_table(spark, str(tmp_path), "searches").collect()}
    assert searches == {sound["search_id"]: 2, nothing["search_id"]: 0}

def test_a_run_that_quarantines_records_succeeds_and_alerts_naming_them(spark, tmp_path, monkeypatch):
    from dagster import materialize
    from dagster_pyspark import PySparkResource

    from fare_assets.partitions import partition_of_landing_hour
    from fare_assets.resources import LakeResource
    from fare_assets.structuring.assets import structured_fare_tables
    from fare_assets.structuring.emr import LocalSparkRunner
    from fare_assets.structuring.spark import SPARK_CONF
    from fare_assets_tests.test_collector import ALERT_ENV, url_of, webhook

    # A provider that renamed its option list: its answer is quarantined, and only an alert says fares are missing.
    _write_raw(tmp_path, datetime(2026, 11, 28, 4, 1, tzinfo=timezone.utc),
               [_envelope(_response("04_GBP_LGW-AMS.json")), _envelope(_renamed_option_list())],
               extra_lines=("not json",))
    for name in ALERT_ENV:
        monkeypatch.delenv(f"FARES_ALERT_{name}", raising=False)
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        result = materialize([structured_fare_tables], partition_key=partition_of_landing_hour(LANDING_HOUR),
                             resources={"spark_runner": LocalSparkRunner(pyspark=PySparkResource(
                                 spark_config={"spark.master": "local[*]", **SPARK_CONF})),
                                 "lake": LakeResource(root=str(tmp_path))})
    assert result.success
    [alert] = receiver.payloads
    assert (alert["kind"], alert["records"], alert["landing_hours"]) == ("records_quarantined", 2, [LANDING_HOUR])
    assert alert["folder"] == quarantine_root(str(tmp_path)) and "2 record(s) quarantined in 2026-11-28-04" in alert["text"]
    assert len(_quarantined(tmp_path, LANDING_HOUR)) == 2
