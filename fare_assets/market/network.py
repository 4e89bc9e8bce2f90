"""Who flies where and when: carriers serving a route, their routings via hubs, and daily schedules.

The network is geography, not pricing: it does not depend on the market seed, so every profile sees
the same airlines flying the same flights.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

from fare_assets.market.draws import unit
from fare_assets.market.reference import (
    AIRCRAFT,
    AIRLINES,
    HUB_AIRPORTS,
    REGIONAL_AIRCRAFT,
    US_COUNTRIES,
    Airline,
    airport,
    miles_between,
)

NARROWBODY_RANGE_MILES = 3600
WIDEBODY_RANGE_MILES = 9600
MIN_NONSTOP_MILES = 90
# Within this distance of its hubs an airline also serves foreign airports that are not gateways.
REGIONAL_RANGE_MILES = 1500
# A connection is offered only when the detour via the hub is modest (longer for short trips).
MAX_DETOUR_RATIO = 1.35
MAX_DETOUR_RATIO_SHORT_TRIP = 1.7
SHORT_TRIP_MILES = 700
REGIONAL_SPOKE_MILES = 700
CRUISE_MPH = 500
TAXI_CLIMB_MINUTES = 35
# Jet streams: eastbound flights are quicker than westbound ones over the same distance.
JET_STREAM_SHARE = 0.06
FIRST_DEPARTURE_MINUTE = 6 * 60
LAST_DEPARTURE_MINUTE = 22 * 60


@dataclass(frozen=True)
class Leg:
    """One takeoff and landing, with local times carrying their UTC offsets."""

    origin: str
    destination: str
    departs: datetime
    arrives: datetime
    duration_min: int
    mileage: int
    aircraft: str
    origin_terminal: str | None
    destination_terminal: str | None
    meal: str | None
    secure: bool
    operating_disclosure: str | None


@dataclass(frozen=True)
class Flight:
    """A marketed flight number (a QPX segment) and the legs it flies."""

    carrier: str
    number: int
    legs: tuple[Leg, ...]

    @property
    def departs(self) -> datetime:
        return self.legs[0].departs

    @property
    def arrives(self) -> datetime:
        return self.legs[-1].arrives


@dataclass(frozen=True)
class Routing:
    """A carrier's airport path from origin to destination (nonstop or via its hubs)."""

    carrier: str
    path: tuple[str, ...]

    @property
    def stops(self) -> int:
        return len(self.path) - 2


@dataclass(frozen=True)
class Journey:
    """One scheduled way of flying a routing on a date: flights and the minutes between them."""

    routing: Routing
    flights: tuple[Flight, ...]
    connections_min: tuple[int, ...]

    @property
    def duration_min(self) -> int:
        return int((self.flights[-1].arrives - self.flights[0].departs).total_seconds() // 60)


def _is_hub(code: str, airline: Airline) -> bool:
    return code in airline.hubs


def _pair_draw(kind: str, airline: Airline, a: str, b: str) -> float:
    """A draw that is the same in both directions, so every route can be flown back."""
    first, second = sorted((a, b))
    return unit("network", kind, airline.code, first, second)


@lru_cache(maxsize=None)
def flies_nonstop(carrier: str, a: str, b: str) -> bool:
    """Whether `carrier` flies a↔b nonstop: hub to hub, hub to a home or nearby spoke, hub to a distant
    gateway (legacy carriers only), or low-cost point to point inside its home countries."""
    airline = AIRLINES[carrier]
    miles = miles_between(a, b)
    max_range = WIDEBODY_RANGE_MILES if airline.widebody else NARROWBODY_RANGE_MILES
    if miles < MIN_NONSTOP_MILES or miles > max_range:
        return False
    a_hub, b_hub = _is_hub(a, airline), _is_hub(b, airline)
    if a_hub and b_hub:
        return True
    if not (a_hub or b_hub):
        in_region = airport(a).country in airline.countries and airport(b).country in airline.countries
        return airline.low_cost and in_region and miles <= 2500 and _pair_draw("p2p", airline, a, b) < 0.35
    spoke = airport(b) if a_hub else airport(a)
    if spoke.country in airline.countries:
        return True
    # Big foreign markets (other airlines' hubs) draw most carriers; small airports only nearby ones.
    if miles <= REGIONAL_RANGE_MILES:
        chance = 0.85 if spoke.gateway else 0.5
    elif airline.low_cost:
        return False
    else:
        chance = 0.85 if spoke.code in HUB_AIRPORTS else 0.45 if spoke.gateway else 0.0
    return _pair_draw("spoke", airline, a, b) < chance


def _detour_ok(path: tuple[str, ...]) -> bool:
    direct = miles_between(path[0], path[-1])
    flown = sum(miles_between(x, y) for x, y in zip(path, path[1:]))
    limit = MAX_DETOUR_RATIO_SHORT_TRIP if direct <= SHORT_TRIP_MILES else MAX_DETOUR_RATIO
    return flown <= limit * direct


def _flown_miles(path: tuple[str, ...]) -> int:
    return sum(miles_between(x, y) for x, y in zip(path, path[1:]))


@lru_cache(maxsize=None)
def routings(origin: str, destination: str) -> tuple[Routing, ...]:
    """Every routing offered origin→destination: nonstops, up to two one-stops per carrier via its hubs,
    and a two-stop via two of its hubs when the carrier has nothing shorter."""
    found: list[Routing] = []
    for airline in AIRLINES.values():
        code = airline.code
        own: list[Routing] = []
        if flies_nonstop(code, origin, destination):
            own.append(Routing(code, (origin, destination)))
        one_stops = [
            (hub_path, _flown_miles(hub_path))
            for hub in airline.hubs
            if hub not in (origin, destination)
            for hub_path in [(origin, hub, destination)]
            if flies_nonstop(code, origin, hub) and flies_nonstop(code, hub, destination) and _detour_ok(hub_path)
        ]
        own.extend(Routing(code, path) for path, _ in sorted(one_stops, key=lambda item: item[1])[:2])
        if not own:
            two_stops = [
                (hub_path, _flown_miles(hub_path))
                for first in airline.hubs
                for second in airline.hubs
                if len({origin, first, second, destination}) == 4
                for hub_path in [(origin, first, second, destination)]
                if flies_nonstop(code, origin, first) and flies_nonstop(code, second, destination) and _detour_ok(hub_path)
            ]
            own.extend(Routing(code, path) for path, _ in sorted(two_stops, key=lambda item: item[1])[:1])
        found.extend(own)
    return tuple(found)


def block_minutes(origin: str, destination: str) -> int:
    """Scheduled flight time from distance: taxi and climb, cruise, and the jet-stream effect, to 5 minutes."""
    a, b = airport(origin), airport(destination)
    miles = miles_between(origin, destination)
    east = ((b.lon - a.lon + 540) % 360) - 180 > 0
    cruise = miles / CRUISE_MPH * 60 * (1 - JET_STREAM_SHARE if east else 1 + JET_STREAM_SHARE)
    return int(round((TAXI_CLIMB_MINUTES + cruise) / 5) * 5)


def _departures_per_day(routing: Routing) -> int:
    """Frequent short hops, one or two long-haul departures a day; connections offer a few banks."""
    miles = miles_between(routing.path[0], routing.path[1])
    if routing.stops:
        return 2 + int(unit("banks", routing.carrier, *routing.path) * 2)
    if miles < 800:
        return 4 + int(unit("frequency", routing.carrier, *routing.path) * 3)
    if miles < 2000:
        return 3 + int(unit("frequency", routing.carrier, *routing.path) * 2)
    return 1 if miles > 4000 else 2


def _aircraft(airline: Airline, miles: int, flight_number: int, regional: bool) -> str:
    if regional:
        fleet = REGIONAL_AIRCRAFT
    elif (miles > 3000 and airline.widebody) or not airline.narrowbody:
        fleet = airline.widebody
    else:
        fleet = airline.narrowbody
    return fleet[flight_number % len(fleet)]


def _terminal(carrier: str, code: str) -> str | None:
    """Some airports report terminals (a carrier always uses the same one), others do not."""
    if unit("has-terminals", code) < 0.35:
        return None
    names = ("1", "2", "3", "4", "5") if unit("terminal-style", code) < 0.6 else ("A", "B", "C", "D", "E")
    return names[int(unit("terminal", carrier, code) * len(names))]


def _meal(minutes: int, departs_minute: int, domestic_us: bool) -> str | None:
    if minutes < 90:
        return None
    if minutes < 240:
        return "Food and Beverages for Purchase" if domestic_us else "Snack or Brunch"
    if departs_minute < 10 * 60:
        return "Breakfast"
    return "Dinner" if departs_minute >= 17 * 60 else "Meal"


def _flight_number(airline: Airline, origin: str, destination: str, departs_utc: datetime, widebody: bool) -> int:
    """The same carrier, city pair and local departure time always carry the same flight number."""
    low, span = (1, 300) if widebody else (300, 2700)
    local_time = departs_utc.astimezone(airport(origin).tz).time()
    return low + int(unit("flight-number", airline.code, origin, destination, local_time) * span)


def _leg(airline: Airline, origin: str, destination: str, departs_utc: datetime, number: int) -> Leg:
    a, b = airport(origin), airport(destination)
    miles = miles_between(origin, destination)
    minutes = block_minutes(origin, destination)
    spoke = not (_is_hub(origin, airline) and _is_hub(destination, airline))
    regional = (
        airline.regional_operator is not None
        and spoke
        and miles < REGIONAL_SPOKE_MILES
        and unit("regional", airline.code, number) < 0.6
    )
    departs_local = departs_utc.astimezone(a.tz)
    domestic_us = a.country in US_COUNTRIES and b.country in US_COUNTRIES
    return Leg(
        origin=origin,
        destination=destination,
        departs=departs_local,
        arrives=(departs_utc + timedelta(minutes=minutes)).astimezone(b.tz),
        duration_min=minutes,
        mileage=miles,
        aircraft=_aircraft(airline, miles, number, regional),
        origin_terminal=_terminal(airline.code, origin),
        destination_terminal=_terminal(airline.code, destination),
        meal=_meal(minutes, departs_local.hour * 60 + departs_local.minute, domestic_us),
        secure=a.country in US_COUNTRIES or b.country in US_COUNTRIES,
        operating_disclosure=airline.regional_operator if regional else None,
    )


def _connection_minutes(routing: Routing, hub: str, bank: int) -> int:
    """Minimum connecting time (longer when the connection crosses borders) plus a schedule-dependent wait."""
    countries = {airport(code).country for code in routing.path}
    minimum = 50 if len(countries) == 1 else 75
    return minimum + 5 * int(unit("connection", routing.carrier, *routing.path, hub, bank) * 30)


@lru_cache(maxsize=8192)
def journeys(origin: str, destination: str, day: date) -> tuple[Journey, ...]:
    """All scheduled journeys origin→destination departing on `day` (local date at the origin)."""
    result = []
    for routing in routings(origin, destination):
        airline = AIRLINES[routing.carrier]
        banks = _departures_per_day(routing)
        window = LAST_DEPARTURE_MINUTE - FIRST_DEPARTURE_MINUTE
        for bank in range(banks):
            offset = (bank + unit("bank-time", routing.carrier, *routing.path, bank)) / banks
            minute = FIRST_DEPARTURE_MINUTE + 5 * int(window * offset / 5)
            local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=airport(origin).tz)
            departs_utc = local.astimezone(timezone.utc)
            flights, connections = [], []
            for seg_origin, seg_destination in zip(routing.path, routing.path[1:]):
                miles = miles_between(seg_origin, seg_destination)
                widebody = miles > 3000 and bool(airline.widebody)
                number = _flight_number(airline, seg_origin, seg_destination, departs_utc, widebody)
                leg = _leg(airline, seg_origin, seg_destination, departs_utc, number)
                flights.append(Flight(airline.code, number, (leg,)))
                if seg_destination != destination:
                    wait = _connection_minutes(routing, seg_destination, bank)
                    connections.append(wait)
                    departs_utc = leg.arrives.astimezone(timezone.utc) + timedelta(minutes=wait)
            result.append(Journey(routing, tuple(flights), tuple(connections)))
    return tuple(result)


def aircraft_seats(code: str) -> int:
    """Seats on an aircraft type."""
    return AIRCRAFT[code][1]
