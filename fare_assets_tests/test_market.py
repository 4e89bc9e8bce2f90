"""The fare market simulator: QPX format against the real fixtures, price dynamics against published
studies, and the HTTP server."""
import json
import re
import statistics
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from fare_assets.market.pricing import ALT_PARAMS, DEFAULT_PARAMS, PROFILES, Market, PastDeparture, Query
from fare_assets.market.qpx import BadRequest, parse_request, render_response
from fare_assets.market.server import SEARCH_PATH
from fare_assets_tests.conftest import FIXTURES

QPX_FIXTURES = sorted((FIXTURES / "qpx").glob("*.json"))
MONEY = re.compile(r"^[A-Z]{3}\d+(\.\d+)?$")
MONEY_KEYS = {"saleTotal", "baseFareTotal", "saleFareTotal", "saleTaxTotal", "salePrice"}
# No fixture prices a child, so childCount (documented in the QPX reference) never appears in them.
REFERENCE_KEYS_NOT_IN_FIXTURES = {"qpxexpress#passengerCounts": {"childCount"}}
PASSENGER_COUNT_KEYS = {"adultCount", "childCount"}
MARKET_TIME = datetime(2026, 10, 1, 12, 0, tzinfo=timezone.utc)


def _object_kind(obj: dict, parent: str | None, key: str | None) -> str:
    """An object's `kind`, or for the few objects without one (segment `flight`) its parent kind and key."""
    return obj.get("kind") or f"{parent}.{key}"


def _walk(value, visit, parent: str | None = None, key: str | None = None) -> None:
    if isinstance(value, dict):
        kind = _object_kind(value, parent, key)
        visit(kind, value)
        for child_key, child in value.items():
            _walk(child, visit, kind, child_key)
    elif isinstance(value, list):
        for item in value:
            _walk(item, visit, parent, key)


def _fixture_key_sets() -> tuple[dict[str, set], dict[str, set]]:
    """Per kind: every key seen in the fixtures, and the keys every fixture object of that kind has."""
    seen: dict[str, set] = defaultdict(set)
    always: dict[str, set] = {}

    def visit(kind: str, obj: dict) -> None:
        seen[kind] |= set(obj)
        always[kind] = always.get(kind, set(obj)) & set(obj)

    for path in QPX_FIXTURES:
        _walk(json.loads(path.read_text()), visit)
    return seen, always


def _money(value: str) -> Decimal:
    assert MONEY.match(value), value
    return Decimal(value[3:])


def _at(depart: date, days_ahead: int) -> datetime:
    return datetime.combine(depart - timedelta(days=days_ahead), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=3)


SAMPLE_QUERIES = [
    Query("SFO", "JFK", date(2027, 1, 10), date(2027, 1, 17)),
    Query("ORD", "LHR", date(2026, 12, 1)),
    Query("LIS", "TXL", date(2026, 12, 1), cabin="BUSINESS"),
    Query("BEY", "BOS", date(2027, 4, 21), date(2027, 4, 26), adults=2, children=1),
    Query("DEN", "CDG", date(2026, 12, 23), date(2027, 1, 4), cabin="PREMIUM_COACH"),
    Query("DEL", "GOI", date(2026, 11, 30), adults=1, children=2),
]


@pytest.fixture(scope="module")
def sample_responses() -> list[dict]:
    market = Market(DEFAULT_PARAMS)
    return [render_response(query, market.search(query, MARKET_TIME, 8), f"test{i}")
            for i, query in enumerate(SAMPLE_QUERIES)]


def test_fixtures_are_read_and_money_pattern_matches_them():
    seen, _ = _fixture_key_sets()
    assert len(QPX_FIXTURES) >= 10
    assert {"qpxexpress#tripOption", "qpxexpress#legInfo", "qpxexpress#taxInfo"} <= set(seen)
    amounts = []
    for path in QPX_FIXTURES:
        _walk(json.loads(path.read_text()),
              lambda kind, obj: amounts.extend(obj[k] for k in MONEY_KEYS & set(obj)))
    assert amounts and all(MONEY.match(amount) for amount in amounts)


def test_responses_use_only_fixture_keys_and_every_always_present_key(sample_responses):
    seen, always = _fixture_key_sets()
    used_kinds = set()
    for response in sample_responses:
        assert response["trips"]["tripOption"], "each sample route has options"

        def visit(kind: str, obj: dict) -> None:
            used_kinds.add(kind)
            assert kind in seen, f"kind {kind} never appears in the fixtures"
            allowed = seen[kind] | REFERENCE_KEYS_NOT_IN_FIXTURES.get(kind, set())
            assert set(obj) <= allowed, f"{kind} has keys {set(obj) - allowed} absent from the fixtures"
            required = always[kind] - PASSENGER_COUNT_KEYS
            assert required <= set(obj), f"{kind} lacks {required - set(obj)}"
            if kind == "qpxexpress#passengerCounts":
                assert len(set(obj) & PASSENGER_COUNT_KEYS) == 1
            for key in MONEY_KEYS & set(obj):
                assert MONEY.match(obj[key]), obj[key]

        _walk(response, visit)
    expected = {"qpxexpress#tripOption", "qpxexpress#sliceInfo", "qpxexpress#segmentInfo", "qpxexpress#legInfo",
                "qpxexpress#pricingInfo", "qpxexpress#fareInfo", "qpxexpress#segmentPricing", "qpxexpress#taxInfo",
                "qpxexpress#airportData", "qpxexpress#cityData", "qpxexpress#carrierData", "qpxexpress#aircraftData",
                "qpxexpress#taxData", "qpxexpress#passengerCounts", "qpxexpress#segmentInfo.flight"}
    assert expected <= used_kinds


def test_times_ids_and_dictionaries_look_like_qpx(sample_responses):
    time_pattern = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}[+-]\d{2}:\d{2}$")
    for response in sample_responses:
        trips = response["trips"]
        data = trips["data"]
        airports = {a["code"] for a in data["airport"]}
        cities = {c["code"] for c in data["city"]}
        carriers = {c["code"] for c in data["carrier"]}
        tax_ids = {t["id"] for t in data["tax"]}
        assert {a["city"] for a in data["airport"]} <= cities
        for option in trips["tripOption"]:
            assert re.match(r"^[A-Za-z0-9_-]{22}\d{3}$", option["id"])
            segment_ids = set()
            for slice_ in option["slice"]:
                for segment in slice_["segment"]:
                    segment_ids.add(segment["id"])
                    assert segment["flight"]["carrier"] in carriers
                    assert 1 <= segment["bookingCodeCount"] <= 9
                    for leg in segment["leg"]:
                        assert {leg["origin"], leg["destination"]} <= airports
                        assert time_pattern.match(leg["departureTime"]) and time_pattern.match(leg["arrivalTime"])
                        departs = datetime.fromisoformat(leg["departureTime"])
                        arrives = datetime.fromisoformat(leg["arrivalTime"])
                        assert (arrives - departs) == timedelta(minutes=leg["duration"])
                        assert leg["mileage"] > 0
            for pricing in option["pricing"]:
                assert {t["id"] for t in pricing["tax"]} <= tax_ids
                assert {sp["segmentId"] for sp in pricing["segmentPricing"]} == segment_ids
                assert {sp["fareId"] for sp in pricing["segmentPricing"]} == {f["id"] for f in pricing["fare"]}
                assert {f["origin"] for f in pricing["fare"]} <= cities
                assert time_pattern.match(pricing["latestTicketingTime"])


def test_totals_reconcile_per_passenger_type(sample_responses):
    family = sample_responses[3]
    assert {p["ptc"] for p in family["trips"]["tripOption"][0]["pricing"]} == {"ADT", "CHD"}
    for response in sample_responses:
        for option in response["trips"]["tripOption"]:
            total = Decimal(0)
            for pricing in option["pricing"]:
                counts = pricing["passengers"]
                count = counts.get("adultCount", 0) + counts.get("childCount", 0)
                fare, tax, sale = (_money(pricing[k]) for k in ("saleFareTotal", "saleTaxTotal", "saleTotal"))
                assert _money(pricing["baseFareTotal"]) == fare
                assert fare + tax == sale
                assert sum(_money(t["salePrice"]) for t in pricing["tax"]) == tax
                assert fare > 0 and all(_money(t["salePrice"]) > 0 for t in pricing["tax"])
                total += sale * count
            assert _money(option["saleTotal"]) == total
    family_option = family["trips"]["tripOption"][0]
    assert sum(p["passengers"].get("adultCount", 0) for p in family_option["pricing"]) == 2
    assert sum(p["passengers"].get("childCount", 0) for p in family_option["pricing"]) == 1


def test_options_are_sorted_cheapest_first_and_capped(sample_responses):
    for response in sample_responses:
        totals = [_money(option["saleTotal"]) for option in response["trips"]["tripOption"]]
        assert totals == sorted(totals) and 1 <= len(totals) <= 8


def test_no_solutions_mimics_the_empty_fixture():
    empty = json.loads((FIXTURES / "qpx" / "15_NONE_no-solutions.json").read_text())
    query = Query("SFO", "JFK", MARKET_TIME.date() + timedelta(days=DEFAULT_PARAMS.max_days_ahead + 5))
    options = Market().search(query, MARKET_TIME, 8)
    rendered = render_response(query, options, "x")
    assert options == []
    assert set(rendered) == set(empty) and set(rendered["trips"]) == set(empty["trips"])
    assert rendered["trips"]["data"] == empty["trips"]["data"]


def test_parse_request_reads_a_genuine_round_trip_body():
    body = {"request": {
        "slice": [{"kind": "qpxexpress#sliceInput", "origin": "SFO", "destination": "JFK", "date": "2027-01-10",
                   "preferredCabin": "BUSINESS"},
                  {"kind": "qpxexpress#sliceInput", "origin": "JFK", "destination": "SFO", "date": "2027-01-17"}],
        "passengers": {"kind": "qpxexpress#passengerCounts", "adultCount": 2, "childCount": 1,
                       "infantInLapCount": 0, "infantInSeatCount": 0, "seniorCount": 0},
        "refundable": False,
    }}
    query, solutions = parse_request(body)
    assert query == Query("SFO", "JFK", date(2027, 1, 10), date(2027, 1, 17), 2, 1, "BUSINESS")
    assert solutions == 10


BASE_BODY = {"slice": [{"origin": "SFO", "destination": "JFK", "date": "2027-01-10"},
                       {"origin": "JFK", "destination": "SFO", "date": "2027-01-17"}],
             "passengers": {"adultCount": 1}, "solutions": 5}


def _body(**changes) -> dict:
    request = json.loads(json.dumps(BASE_BODY))
    for path, value in changes.items():
        target = request
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return {"request": request}


BAD_BODIES = [
    ({"no": "request"}, "request"),
    ({"request": {"slice": "SFO-JFK", "passengers": {"adultCount": 1}}}, "request.slice"),
    (_body(slice=BASE_BODY["slice"] * 2), "request.slice"),
    (_body(slice__0__origin="XQZ"), "request.slice[0].origin"),
    (_body(slice__0__destination="sfo"), "request.slice[0].destination"),
    (_body(slice__0__destination="SFO"), "request.slice[0].destination"),
    (_body(slice__1__date="2027-02-30"), "request.slice[1].date"),
    (_body(slice__1__date="2027-01-09"), "request.slice[1].date"),
    (_body(slice__1__destination="LAX"), "request.slice[1].destination"),
    (_body(slice__0__preferredCabin="ECONOMY"), "request.slice[0].preferredCabin"),
    (_body(passengers={"adultCount": 0}), "request.passengers.adultCount"),
    (_body(passengers={"adultCount": 5, "childCount": 5}), "request.passengers"),
    (_body(passengers={"adultCount": 1, "infantInLapCount": 1}), "request.passengers.infantInLapCount"),
    (_body(solutions=51), "request.solutions"),
    (_body(solutions="8"), "request.solutions"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_parse_request_names_the_bad_field(body, field):
    with pytest.raises(BadRequest) as raised:
        parse_request(body)
    assert raised.value.field == field


# ---- price dynamics -------------------------------------------------------------------------------

DYNAMICS_ROUTES = [("SFO", "JFK"), ("ORD", "LHR"), ("BOS", "MIA"), ("LAX", "SEA"), ("DEN", "CDG"),
                   ("ATL", "DFW"), ("JFK", "FCO"), ("MAD", "LIS"), ("SEA", "ORD"), ("YYZ", "LAX"),
                   ("LHR", "DXB"), ("BCN", "PRG")]
HORIZON_DAYS = 150


def _dynamics_trips() -> list[Query]:
    trips = []
    for i, (origin, destination) in enumerate(DYNAMICS_ROUTES):
        for k in range(6):
            depart = date(2027, 1, 8) + timedelta(days=31 * k + 5 * i)
            nights = (3, 5, 7, 10, 2, 4)[(k + i) % 6]
            trips.append(Query(origin, destination, depart, depart + timedelta(days=nights)))
    return trips


@pytest.fixture(scope="module")
def cheapest_series() -> list[dict[int, int]]:
    """For each trip, the cheapest total (cents) observed daily from HORIZON_DAYS ahead to departure day."""
    market = Market(DEFAULT_PARAMS)
    series = []
    for query in _dynamics_trips():
        observed = {}
        for days_ahead in range(HORIZON_DAYS + 1):
            options = market.search(query, _at(query.depart_date, days_ahead), 1)
            observed[days_ahead] = options[0].total_cents
        series.append(observed)
    return series


def test_cheapest_day_to_buy_averages_about_54_days_within_21_to_112(cheapest_series):
    best_days = []
    for observed in cheapest_series:
        lowest = min(observed.values())
        best_days.append(statistics.mean(d for d, total in observed.items() if total == lowest))
    assert 44 <= statistics.mean(best_days) <= 66
    assert sum(21 <= d <= 112 for d in best_days) / len(best_days) >= 0.8


def test_about_two_thirds_of_trips_see_a_drop_in_their_last_60_days(cheapest_series):
    dropped = [any(observed[d] < observed[d + 1] for d in range(60)) for observed in cheapest_series]
    assert 0.5 <= sum(dropped) / len(dropped) <= 0.8


def test_fares_climb_steeply_in_the_last_three_weeks(cheapest_series):
    late = statistics.mean(observed[d] for observed in cheapest_series for d in range(0, 22))
    earlier = statistics.mean(observed[d] for observed in cheapest_series for d in range(22, 61))
    assert late > 1.2 * earlier
    assert all(observed[0] > observed[30] for observed in cheapest_series[:20])


def test_no_fare_is_zero_or_negative(cheapest_series):
    assert min(total for observed in cheapest_series for total in observed.values()) > 0


def test_weekday_effect_tuesday_departures_beat_fridays():
    market = Market(DEFAULT_PARAMS)
    cheaper = []
    for origin, destination in DYNAMICS_ROUTES:
        for week in range(4):
            tuesday = date(2027, 3, 2) + timedelta(weeks=week)
            friday = tuesday + timedelta(days=3)
            prices = [
                market.search(Query(origin, destination, day, day + timedelta(days=7)), _at(day, 45), 1)[0].total_cents
                for day in (tuesday, friday)
            ]
            cheaper.append(prices[0] < prices[1])
    assert sum(cheaper) / len(cheaper) >= 0.75


def test_round_trip_with_saturday_stay_is_cheaper_than_two_one_ways():
    market = Market(DEFAULT_PARAMS)
    out_day, back_day = date(2027, 3, 3), date(2027, 3, 9)
    at = _at(out_day, 50)
    for origin, destination in DYNAMICS_ROUTES[:6]:
        round_trip = market.search(Query(origin, destination, out_day, back_day), at, 1)[0]
        outbound = market.search(Query(origin, destination, out_day), at, 1)[0]
        inbound = market.search(Query(destination, origin, back_day), at, 1)[0]
        assert round_trip.total_cents < outbound.total_cents + inbound.total_cents


def test_same_inputs_give_identical_options_and_profiles_differ():
    query = Query("ORD", "LHR", date(2027, 5, 4), date(2027, 5, 12), adults=2, children=1)
    first = Market(DEFAULT_PARAMS).search(query, MARKET_TIME, 8)
    again = Market(DEFAULT_PARAMS).search(query, MARKET_TIME, 8)
    alt = Market(PROFILES["alt"]).search(query, MARKET_TIME, 8)
    assert first == again and len(first) == 8
    assert [o.total_cents for o in first] != [o.total_cents for o in alt]
    assert ALT_PARAMS.seed != DEFAULT_PARAMS.seed and ALT_PARAMS.advance_purchase_steps != DEFAULT_PARAMS.advance_purchase_steps


def test_children_pay_less_than_adults_and_more_passengers_cost_more():
    market = Market(DEFAULT_PARAMS)
    alone = market.search(Query("ORD", "LHR", date(2027, 2, 2), date(2027, 2, 9)), MARKET_TIME, 1)[0]
    family = market.search(Query("ORD", "LHR", date(2027, 2, 2), date(2027, 2, 9), adults=2, children=1),
                           MARKET_TIME, 1)[0]
    adult, child = family.pricings
    assert child.base_cents < adult.base_cents
    assert family.total_cents > 2 * alone.total_cents


def test_departure_before_the_market_day_is_refused():
    with pytest.raises(PastDeparture):
        Market().search(Query("SFO", "JFK", MARKET_TIME.date() - timedelta(days=1)), MARKET_TIME, 8)


def test_a_departure_is_sold_through_its_day_at_its_origin():
    # 01:00 UTC on 12 October is 18:00 on 11 October in Los Angeles and 10:00 on 12 October in Tokyo.
    at = datetime(2026, 10, 12, 1, 0, tzinfo=timezone.utc)
    market = Market()
    query = Query("LAX", "JFK", date(2026, 10, 11), date(2026, 10, 14))
    # The route's fares are refiled that night (UTC), so a price of the 12th would differ from one of the 11th.
    assert market.filing("LAX", "JFK", date(2026, 10, 12)) != market.filing("LAX", "JFK", date(2026, 10, 11))
    evening = market.search(query, at, 50)
    assert evening and all(option.slices[0].segments[0].flight.departs >= at + timedelta(hours=1)
                           for option in evening)

    def flights(option):
        return tuple(segment.flight.number for piece in option.slices for segment in piece.segments)

    # Priced as on its departure day: a journey costs what it cost in that UTC day's last hour.
    afternoon = {flights(option): option.total_cents
                 for option in market.search(query, datetime(2026, 10, 11, 23, 0, tzinfo=timezone.utc), 50)}
    shared = [option for option in evening if flights(option) in afternoon]
    assert shared and all(option.total_cents == afternoon[flights(option)] for option in shared)
    with pytest.raises(PastDeparture, match=r"before today at NRT \(2026-10-12\)"):
        market.search(Query("NRT", "LAX", date(2026, 10, 11), date(2026, 10, 14)), at, 8)


# ---- HTTP server ----------------------------------------------------------------------------------

def _post(url: str, payload: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=payload, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


TIME_HEADER = {"X-Market-Time": "2026-10-01T12:00:00Z"}


def test_server_answers_a_search_with_the_same_bytes_twice(market_url):
    payload = json.dumps(_body()).encode()
    status, first = _post(f"{market_url}{SEARCH_PATH}?key=ignored", payload, TIME_HEADER)
    again_status, again = _post(f"{market_url}{SEARCH_PATH}", payload, TIME_HEADER)
    assert status == again_status == 200
    assert first == again
    response = json.loads(first)
    assert response["kind"] == "qpxExpress#tripsSearch"
    assert 1 <= len(response["trips"]["tripOption"]) <= 5
    assert b"\n" not in first and b": " not in first


@pytest.mark.parametrize(("payload", "headers", "field"), [
    (b"{not json", TIME_HEADER, "body"),
    (json.dumps({"request": {}}).encode(), TIME_HEADER, "request.slice"),
    (json.dumps(_body(slice__0__origin="ZZZ")).encode(), TIME_HEADER, "request.slice[0].origin"),
    (json.dumps(_body(slice__1__date="2027-01-01")).encode(), TIME_HEADER, "request.slice[1].date"),
    (json.dumps(_body()).encode(), {"X-Market-Time": "2027-06-01T12:00:00Z"}, "request.slice[0].date"),
    (json.dumps(_body()).encode(), {"X-Market-Time": "tomorrow"}, "X-Market-Time"),
    (json.dumps(_body()).encode(), {"X-Market-Time": "2026-10-01T12:00:00+02:00"}, "X-Market-Time"),
])
def test_server_rejects_malformed_requests_with_400_naming_the_field(market_url, payload, headers, field):
    status, body = _post(f"{market_url}{SEARCH_PATH}", payload, headers)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == 400 and error["field"] == field and error["message"]


def test_server_unknown_path_is_404_json_and_health_is_ok(market_url):
    status, body = _post(f"{market_url}/qpxExpress/v1/trips/list", b"{}", TIME_HEADER)
    assert status == 404 and json.loads(body)["error"]["code"] == 404
    with urllib.request.urlopen(f"{market_url}/healthz", timeout=10) as response:
        assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
