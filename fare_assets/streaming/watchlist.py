"""The watchlist: which round trips to collect, read from a YAML file and validated."""
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from fare_assets.local_dates import airports, today_at

CABINS = ("COACH", "PREMIUM_COACH", "BUSINESS", "FIRST")
# Per search, as the fare APIs take it (QPX, Duffel and Amadeus all stop at 9 seated travellers).
MAX_PASSENGERS = 9
# The watchlist chooses a provider per entry; each has a client in fare_assets.streaming.
PROVIDERS = ("qpx", "duffel", "amadeus")


class WatchlistError(ValueError):
    """The watchlist file is unreadable or has an invalid field."""


@dataclass(frozen=True)
class TripQuery:
    """One search to send: a round trip (or one-way when return_date is None) on one provider."""

    provider: str
    origin: str
    destination: str
    depart_date: dt.date
    return_date: dt.date | None
    adults: int
    children: int
    cabin: str

    def as_dict(self) -> dict:
        return {
            "origin": self.origin, "destination": self.destination,
            "depart_date": self.depart_date.isoformat(),
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "adults": self.adults, "children": self.children, "cabin": self.cabin,
        }


@dataclass(frozen=True)
class WatchedRoute:
    """One watchlist entry: a route, trip lengths and the rolling window of departures."""

    origin: str
    destination: str
    nights: tuple[int, ...]
    from_days: int
    to_days: int
    every_days: int
    adults: int
    children: int
    cabin: str
    provider: str

    def trips_at(self, at: dt.datetime) -> list[TripQuery]:
        """The trips this entry watches at collection time `at`, its days ahead counted from today at the origin.

        The origin's date, by which the page and the alerts judge a departure past: a Los Angeles departure is
        collected through its evening, when the UTC date has moved on, and a Tokyo one not after its day has ended
        there, while the UTC date has not.
        """
        today = today_at(self.origin, at)
        trips = []
        for ahead in range(self.from_days, self.to_days + 1):
            depart = today + dt.timedelta(days=ahead)
            if depart.toordinal() % self.every_days:
                continue
            for nights in self.nights:
                trips.append(TripQuery(self.provider, self.origin, self.destination, depart,
                                       depart + dt.timedelta(days=nights), self.adults, self.children, self.cabin))
        return trips

    def collects(self, origin: str, destination: str, depart: dt.date, back: dt.date, adults: int, children: int,
                 cabin: str) -> bool:
        """True when this entry watches the round trip (on some day, if not today)."""
        return ((origin, destination, adults, children, cabin)
                == (self.origin, self.destination, self.adults, self.children, self.cabin)
                and (back - depart).days in self.nights and not depart.toordinal() % self.every_days)


@dataclass(frozen=True)
class Watchlist:
    routes: tuple[WatchedRoute, ...]

    def trips_at(self, at: dt.datetime) -> list[TripQuery]:
        """Every trip the entries watch at `at`, once: entries that overlap would otherwise pay for the same call twice."""
        return list(dict.fromkeys(trip for route in self.routes for trip in route.trips_at(at)))

    def last_collection_days_ahead(self, origin: str, destination: str, depart: dt.date, back: dt.date, adults: int,
                                   children: int, cabin: str) -> int | None:
        """The fewest days before departure at which an entry collects the trip; None when no entry watches it."""
        return min((route.from_days for route in self.routes
                    if route.collects(origin, destination, depart, back, adults, children, cabin)), default=None)

    @property
    def providers(self) -> set[str]:
        """The providers the entries use: only these need credentials."""
        return {route.provider for route in self.routes}


def _field(entry: dict, name: str, where: str, default=None):
    if name not in entry:
        if default is None:
            raise WatchlistError(f"{where}.{name}: missing")
        return default
    return entry[name]


def _int(value, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WatchlistError(f"{where}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _airport(value, where: str) -> str:
    code = str(value).upper()
    if code not in airports():
        raise WatchlistError(f"{where}: {value!r} is not a known IATA airport code")
    return code


def _route(entry, where: str) -> WatchedRoute:
    if not isinstance(entry, dict):
        raise WatchlistError(f"{where}: expected a mapping, got {entry!r}")
    origin = _airport(_field(entry, "origin", where), f"{where}.origin")
    destination = _airport(_field(entry, "destination", where), f"{where}.destination")
    if origin == destination:
        raise WatchlistError(f"{where}.destination: same as origin ({origin})")
    nights = _field(entry, "nights", where)
    if not isinstance(nights, list) or not nights:
        raise WatchlistError(f"{where}.nights: expected a non-empty list of trip lengths, got {nights!r}")
    nights = tuple(_int(n, f"{where}.nights[{i}]", 0, 60) for i, n in enumerate(nights))
    window = _field(entry, "depart_days_ahead", where)
    if not isinstance(window, dict):
        raise WatchlistError(f"{where}.depart_days_ahead: expected {{from, to, every}}, got {window!r}")
    from_days = _int(_field(window, "from", f"{where}.depart_days_ahead"), f"{where}.depart_days_ahead.from", 0, 330)
    to_days = _int(_field(window, "to", f"{where}.depart_days_ahead"), f"{where}.depart_days_ahead.to", from_days, 330)
    every = _int(window.get("every", 1), f"{where}.depart_days_ahead.every", 1, 30)
    adults = _int(entry.get("adults", 1), f"{where}.adults", 1, MAX_PASSENGERS)
    children = _int(entry.get("children", 0), f"{where}.children", 0, MAX_PASSENGERS - 1)
    if adults + children > MAX_PASSENGERS:
        raise WatchlistError(f"{where}: at most {MAX_PASSENGERS} passengers per search, got {adults + children}")
    cabin = entry.get("cabin", "COACH")
    if cabin not in CABINS:
        raise WatchlistError(f"{where}.cabin: expected one of {', '.join(CABINS)}, got {cabin!r}")
    provider = entry.get("provider", "qpx")
    if provider not in PROVIDERS:
        raise WatchlistError(f"{where}.provider: expected one of {', '.join(PROVIDERS)}, got {provider!r}")
    return WatchedRoute(origin, destination, nights, from_days, to_days, every, adults, children, cabin, provider)


def load_watchlist(path: Path) -> Watchlist:
    """Read and validate a watchlist file; errors name the file and the field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise WatchlistError(f"{path}: cannot read the watchlist: {error}") from error
    try:
        if not isinstance(document, dict) or not isinstance(document.get("trips"), list) or not document["trips"]:
            raise WatchlistError("trips: expected a non-empty list of watched routes")
        return Watchlist(tuple(_route(entry, f"trips[{i}]") for i, entry in enumerate(document["trips"])))
    except WatchlistError as error:
        raise WatchlistError(f"{path}: {error}") from None
