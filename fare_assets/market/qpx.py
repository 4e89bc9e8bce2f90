"""The QPX Express `trips.search` protocol on the simulator side: parse a request, render a response.

Requests and responses have the shape of Google's QPX Express v1 API (shut down in 2018), exactly as
the real responses in the shared fixtures show it: kinds, keys, money as "USD123.45", local times
with offsets ("2027-01-10T08:05-08:00"), opaque ids, one pricing per passenger type whose `saleTotal`
is per passenger.
"""
import re
from datetime import date, datetime
from typing import Any

from fare_assets.market.draws import token
from fare_assets.market.network import Flight, Leg
from fare_assets.market.pricing import ADULT, CABINS, Fare, Option, Pricing, Query, Segment
from fare_assets.market.reference import AIRCRAFT, AIRLINES, airport

DEFAULT_SOLUTIONS = 10
MAX_SOLUTIONS = 50
MAX_ADULTS = 9
MAX_CHILDREN = 8
MAX_PASSENGERS = 9
# Passenger types QPX knows but the simulator does not price.
UNSUPPORTED_PASSENGERS = ("infantInLapCount", "infantInSeatCount", "seniorCount")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AIRPORT = re.compile(r"^[A-Z]{3}$")


class BadRequest(ValueError):
    """A request the protocol rejects, naming the offending field (e.g. `request.slice[1].date`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(field, "must be a JSON object")
    return value


def _count(passengers: dict, key: str, low: int, high: int, default: int) -> int:
    value = passengers.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"request.passengers.{key}", f"must be an integer from {low} to {high}")
    return value


def _airport_code(slice_input: dict, key: str, field: str) -> str:
    value = slice_input.get(key)
    if not isinstance(value, str) or not _AIRPORT.match(value):
        raise BadRequest(f"{field}.{key}", "must be a three-letter IATA airport code")
    if airport(value) is None:
        raise BadRequest(f"{field}.{key}", f"unknown airport {value}")
    return value


def _date(slice_input: dict, field: str) -> date:
    value = slice_input.get("date")
    if not isinstance(value, str) or not _DATE.match(value):
        raise BadRequest(f"{field}.date", "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field}.date", f"{value} is not a calendar date") from None


def _cabin(slice_input: dict, field: str) -> str:
    value = slice_input.get("preferredCabin", "COACH")
    if value not in CABINS:
        raise BadRequest(f"{field}.preferredCabin", f"must be one of {', '.join(CABINS)}")
    return value


def parse_request(body: Any) -> tuple[Query, int]:
    """The query and number of solutions asked for by a QPX `trips.search` request body."""
    request = _object(_object(body, "body").get("request"), "request")
    slices = request.get("slice")
    if not isinstance(slices, list) or not 1 <= len(slices) <= 2:
        raise BadRequest("request.slice", "must be a list of one slice (one way) or two (round trip)")
    outbound = _object(slices[0], "request.slice[0]")
    origin = _airport_code(outbound, "origin", "request.slice[0]")
    destination = _airport_code(outbound, "destination", "request.slice[0]")
    if origin == destination:
        raise BadRequest("request.slice[0].destination", "must differ from the origin")
    depart = _date(outbound, "request.slice[0]")
    cabin = _cabin(outbound, "request.slice[0]")
    back = None
    if len(slices) == 2:
        inbound = _object(slices[1], "request.slice[1]")
        if _airport_code(inbound, "origin", "request.slice[1]") != destination:
            raise BadRequest("request.slice[1].origin", "a return slice must leave from the first slice's destination")
        if _airport_code(inbound, "destination", "request.slice[1]") != origin:
            raise BadRequest("request.slice[1].destination", "a return slice must go back to the first slice's origin")
        back = _date(inbound, "request.slice[1]")
        if back < depart:
            raise BadRequest("request.slice[1].date", "the return is before the departure")
        _cabin(inbound, "request.slice[1]")
    passengers = _object(request.get("passengers"), "request.passengers")
    adults = _count(passengers, "adultCount", 1, MAX_ADULTS, 0)
    children = _count(passengers, "childCount", 0, MAX_CHILDREN, 0)
    for key in UNSUPPORTED_PASSENGERS:
        _count(passengers, key, 0, 0, 0)
    if adults + children > MAX_PASSENGERS:
        raise BadRequest("request.passengers", f"at most {MAX_PASSENGERS} passengers in one search")
    solutions = request.get("solutions", DEFAULT_SOLUTIONS)
    if not isinstance(solutions, int) or isinstance(solutions, bool) or not 1 <= solutions <= MAX_SOLUTIONS:
        raise BadRequest("request.solutions", f"must be an integer from 1 to {MAX_SOLUTIONS}")
    if "refundable" in request and not isinstance(request["refundable"], bool):
        raise BadRequest("request.refundable", "must be true or false")
    return Query(origin, destination, depart, back, adults, children, cabin), solutions


def money(cents: int, currency: str = "USD") -> str:
    """QPX money: currency code then amount with two decimals ("USD929.60")."""
    return f"{currency}{cents // 100}.{cents % 100:02d}"


def local_time(moment: datetime) -> str:
    """QPX local time with its UTC offset, to the minute ("2016-06-11T21:30-05:00")."""
    offset = moment.strftime("%z")
    return f"{moment.strftime('%Y-%m-%dT%H:%M')}{offset[:3]}:{offset[3:]}"


def make_request_id(*parts: Any) -> str:
    """An opaque 22-character request id that depends only on `parts`."""
    return token(22, "request", *parts)


def _segment_id(flight: Flight) -> str:
    return "G" + token(15, "segment", flight.carrier, flight.number, flight.departs.isoformat())


def _leg_id(leg: Leg) -> str:
    return "L" + token(15, "leg", leg.origin, leg.destination, leg.departs.isoformat(), leg.aircraft)


def _fare_id(fare: Fare, pricing: Pricing) -> str:
    return "A" + token(43, "fare", pricing.passenger_type, fare.carrier, fare.origin_city, fare.destination_city,
                       fare.basis_code, fare.amount_cents)


def _leg(leg: Leg) -> dict:
    rendered = {
        "kind": "qpxexpress#legInfo",
        "id": _leg_id(leg),
        "aircraft": leg.aircraft,
        "arrivalTime": local_time(leg.arrives),
        "departureTime": local_time(leg.departs),
        "origin": leg.origin,
        "destination": leg.destination,
    }
    if leg.origin_terminal:
        rendered["originTerminal"] = leg.origin_terminal
    if leg.destination_terminal:
        rendered["destinationTerminal"] = leg.destination_terminal
    if leg.operating_disclosure:
        rendered["operatingDisclosure"] = leg.operating_disclosure
    rendered["duration"] = leg.duration_min
    rendered["mileage"] = leg.mileage
    if leg.meal:
        rendered["meal"] = leg.meal
    if leg.secure:
        rendered["secure"] = True
    return rendered


def _segment(segment: Segment) -> dict:
    flight = segment.flight
    rendered = {
        "kind": "qpxexpress#segmentInfo",
        "duration": segment.duration_min,
        "flight": {"carrier": flight.carrier, "number": str(flight.number)},
        "id": _segment_id(flight),
        "cabin": segment.cabin,
        "bookingCode": segment.booking_code,
        "bookingCodeCount": segment.seats_left,
        "marriedSegmentGroup": str(segment.married_group),
        "leg": [_leg(leg) for leg in flight.legs],
    }
    if segment.connection_min is not None:
        rendered["connectionDuration"] = segment.connection_min
    return rendered


def _amount(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _fare_calculation(option: Option, pricing: Pricing) -> str:
    """The linear fare calculation line of a ticket: the route with each fare component, the total, the taxes."""
    parts = []
    previous_city = None
    for fare in pricing.fares:
        segments = option.slices[fare.slice_index].segments
        if fare.origin_city != previous_city:
            parts.append(fare.origin_city)
        previous_city = fare.destination_city
        for segment in segments[:-1]:
            parts.append(f"{segment.flight.carrier} X/{airport(segment.flight.legs[-1].destination).city_code}")
        parts.append(f"{segments[-1].flight.carrier} {fare.destination_city} {_amount(fare.amount_cents)}{fare.basis_code}")
    taxes = " ".join(f"{_amount(tax.amount_cents)}{tax.code}" for tax in pricing.taxes)
    return f"{' '.join(parts)} {option.currency} {_amount(pricing.base_cents)} END XT {taxes}"


def _pricing(option: Option, pricing: Pricing, segment_ids: list[list[str]]) -> dict:
    currency = option.currency
    fares = [(fare, _fare_id(fare, pricing)) for fare in pricing.fares]
    count_key = "adultCount" if pricing.passenger_type == ADULT else "childCount"
    rendered = {
        "kind": "qpxexpress#pricingInfo",
        "fare": [
            {
                "kind": "qpxexpress#fareInfo",
                "id": fare_id,
                "carrier": fare.carrier,
                "origin": fare.origin_city,
                "destination": fare.destination_city,
                "basisCode": fare.basis_code,
            }
            for fare, fare_id in fares
        ],
        "segmentPricing": [
            {"kind": "qpxexpress#segmentPricing", "fareId": fare_id, "segmentId": segment_id}
            for fare, fare_id in fares
            for segment_id in segment_ids[fare.slice_index]
        ],
        "baseFareTotal": money(pricing.base_cents, currency),
        "saleFareTotal": money(pricing.base_cents, currency),
        "saleTaxTotal": money(pricing.tax_cents, currency),
        "saleTotal": money(pricing.total_cents, currency),
        "passengers": {"kind": "qpxexpress#passengerCounts", count_key: pricing.passenger_count},
        "tax": [
            {
                "kind": "qpxexpress#taxInfo",
                "id": tax.tax_id,
                "chargeType": tax.charge_type,
                "code": tax.code,
                **({"country": tax.country} if tax.country else {}),
                "salePrice": money(tax.amount_cents, currency),
            }
            for tax in pricing.taxes
        ],
        "fareCalculation": _fare_calculation(option, pricing),
        "latestTicketingTime": local_time(pricing.latest_ticketing),
        "ptc": pricing.passenger_type,
    }
    if pricing.refundable:
        rendered["refundable"] = True
    return rendered


def _trip_option(option: Option, option_id: str) -> dict:
    segment_ids = [[_segment_id(segment.flight) for segment in slice_.segments] for slice_ in option.slices]
    return {
        "kind": "qpxexpress#tripOption",
        "saleTotal": money(option.total_cents, option.currency),
        "id": option_id,
        "slice": [
            {
                "kind": "qpxexpress#sliceInfo",
                "duration": slice_.duration_min,
                "segment": [_segment(segment) for segment in slice_.segments],
            }
            for slice_ in option.slices
        ],
        "pricing": [_pricing(option, pricing, segment_ids) for pricing in option.pricings],
    }


def _data(options: list[Option]) -> dict:
    """The dictionaries QPX sends beside the options: airports, cities, aircraft, taxes and carriers used."""
    legs = [leg for option in options for slice_ in option.slices for segment in slice_.segments
            for leg in segment.flight.legs]
    airports = sorted({code for leg in legs for code in (leg.origin, leg.destination)})
    cities = {airport(code).city_code: airport(code).city_name for code in airports}
    taxes = {tax.tax_id: tax.name for option in options for pricing in option.pricings for tax in pricing.taxes}
    carriers = sorted({segment.flight.carrier for option in options for slice_ in option.slices
                       for segment in slice_.segments})
    return {
        "kind": "qpxexpress#data",
        "airport": [
            {"kind": "qpxexpress#airportData", "code": code, "city": airport(code).city_code, "name": airport(code).name}
            for code in airports
        ],
        "city": [{"kind": "qpxexpress#cityData", "code": code, "name": name} for code, name in sorted(cities.items())],
        "aircraft": [
            {"kind": "qpxexpress#aircraftData", "code": code, "name": AIRCRAFT[code][0]}
            for code in sorted({leg.aircraft for leg in legs})
        ],
        "tax": [{"kind": "qpxexpress#taxData", "id": tax_id, "name": name} for tax_id, name in taxes.items()],
        "carrier": [{"kind": "qpxexpress#carrierData", "code": code, "name": AIRLINES[code].name} for code in carriers],
    }


def render_response(query: Query, options: list[Option], request_id: str) -> dict:
    """A QPX `trips.search` response for `options`; with none, the bare shape QPX sends for no solutions."""
    trips: dict[str, Any] = {"kind": "qpxexpress#tripOptions", "requestId": request_id}
    if not options:
        trips["data"] = {"kind": "qpxexpress#data"}
        return {"kind": "qpxExpress#tripsSearch", "trips": trips}
    trips["data"] = _data(options)
    prefix = token(22, "trip-options", request_id, query.origin, query.destination)
    trips["tripOption"] = [_trip_option(option, f"{prefix}{index:03d}") for index, option in enumerate(options)]
    return {"kind": "qpxExpress#tripsSearch", "trips": trips}
