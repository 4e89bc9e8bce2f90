"""Turn a fare request's raw query parameters into a checked Trip, or say what to fix (pure, given the time)."""
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from fare_assets.local_dates import airport_timezone, airports, today_at
from fare_assets.streaming.watchlist import CABINS, MAX_PASSENGERS

# Airlines sell seats about 330 days ahead; a later date is a typo, and bounding it keeps date arithmetic safe.
MAX_DAYS_AHEAD = 365
# Free text longer than any city name is rejected before it is matched.
MAX_PLACE_LENGTH = 60
SUGGESTIONS_LIMIT = 10
TRIP_FIELDS = ("origin", "destination", "depart", "return")
# How the page names the watchlist's cabins (the providers' names are the QPX ones).
CABIN_LABELS = {"COACH": "Economy", "PREMIUM_COACH": "Premium economy", "BUSINESS": "Business", "FIRST": "First"}


class TripError(ValueError):
    """One or more request fields are invalid; `problems` maps each field to what to fix."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(problems.values()))


@dataclass(frozen=True)
class Trip:
    """A round trip to look up; adults/children/cabin are None when the request does not filter on them, or, with
    `exact_party`, when the searches to match did not record them."""

    origin: str
    destination: str
    depart_date: dt.date
    return_date: dt.date
    adults: int | None = None
    children: int | None = None
    cabin: str | None = None
    exact_party: bool = False

    def as_params(self) -> dict[str, str]:
        """The query parameters that ask for this trip again (for links)."""
        params = {"origin": self.origin, "destination": self.destination,
                  "depart": self.depart_date.isoformat(), "return": self.return_date.isoformat()}
        if self.adults is not None:
            params["adults"] = str(self.adults)
        if self.children is not None:
            params["children"] = str(self.children)
        if self.cabin is not None:
            params["cabin"] = self.cabin
        return params

    @property
    def any_party(self) -> bool:
        """True when the request filters on no part of the party (passengers or cabin)."""
        return self.adults is None and self.children is None and self.cabin is None


def airport_name(code: str) -> str | None:
    """The airport's name and city, e.g. "San Francisco International Airport, San Francisco"."""
    airport = airports().get(code)
    return f"{airport['name']}, {airport['city']}" if airport else None


def _shown(raw: str) -> str:
    """The submitted text quoted for a message, cut short so a huge input is not echoed whole."""
    return repr(raw if len(raw) <= 20 else raw[:20] + "…")


@lru_cache(maxsize=1)
def _airports_by_city() -> dict[str, list[str]]:
    by_city: dict[str, list[str]] = {}
    for code, airport in airports().items():
        by_city.setdefault(airport["city"].casefold(), []).append(code)
    return by_city


# Words naming fields no airline flies to: a seaplane base named after New York is no "New York" airport.
_NOT_AIRLINE_FIELDS = re.compile(r"\b(seaplane|heliport|base|afb|raf|naval|army|airstrip)\b")


def _rank(code: str) -> int:
    """How unlikely the airport is its city's main one: 0 "international" or named after its city, 1 another name,
    2 a field no airline flies to."""
    # Without traffic figures: "Charles de Gaulle International" and "London Heathrow" before Paris, Texas's "Cox
    # Field" (airportsdata names its city Paris too), and those before "RAF Northolt" or a seaplane base.
    airport = airports()[code]
    name, city = airport["name"].casefold(), airport["city"].casefold()
    if _NOT_AIRLINE_FIELDS.search(name):
        return 2
    return 0 if "international" in name or name.startswith(city) else 1


def suggest_airports(text: str) -> list[dict]:
    """Airports whose code starts with, or whose city or name contains, `text` (codes first)."""
    needle = text.strip().casefold()[:MAX_PLACE_LENGTH]
    if not needle:
        return []
    # Without traffic figures, an exact code and then international airports are the likeliest meant.
    by_code = sorted((code for code in airports() if code.casefold().startswith(needle)),
                     key=lambda code: (code.casefold() != needle,
                                       "international" not in airports()[code]["name"].casefold(), code)
                     ) if len(needle) <= 3 else []
    # Sets to look in: a one-letter needle matches most of the 7,900 airports, and a list's scan made it 0.9 s.
    taken = set(by_code)
    by_city = sorted((code for code, airport in airports().items()
                      if code not in taken and needle in airport["city"].casefold()),
                     key=lambda code: (airports()[code]["city"].casefold() != needle,
                                       not airports()[code]["city"].casefold().startswith(needle), _rank(code), code))
    taken.update(by_city)
    by_name = sorted((code for code, airport in airports().items()
                      if code not in taken and needle in airport["name"].casefold()),
                     key=lambda code: (_rank(code), code))
    return [{"code": code, "name": airports()[code]["name"], "city": airports()[code]["city"],
             "country": airports()[code]["country"]} for code in (by_code + by_city + by_name)[:SUGGESTIONS_LIMIT]]


# A suggestion's text: a code, then punctuation ("SFO – San Francisco…", "SFO (San Francisco)"). A code and a letter
# after a space is a place's name ("New York City", "Del Mar"), not the code NEW or DEL.
_SUGGESTION = re.compile(r"[A-Za-z]{3}\s*[^\sA-Za-z]")


def _airport(raw: str, label: str) -> tuple[str | None, str | None]:
    """A code ("sfo"), a suggestion's text ("SFO – San Francisco…") or a city with one airport."""
    if len(raw) > MAX_PLACE_LENGTH:
        return None, f"{label} must be an airport code or a city name of at most {MAX_PLACE_LENGTH} characters"
    leading = raw[:3].upper()
    if len(raw) == 3:
        if not (leading.isascii() and leading.isalpha()):
            return None, f"{label} must be a 3-letter IATA airport code such as SFO, or a city name, got {_shown(raw)}"
        if leading not in airports():
            return None, f"{label} {leading} is not a known IATA airport code"
        return leading, None
    by_city = _airports_by_city()
    # "San Francisco, CA": the city before a comma.
    codes = by_city.get(raw.casefold()) or by_city.get(raw.split(",")[0].strip().casefold())
    if codes is None and _SUGGESTION.match(raw) and leading in airports():
        codes = [leading]
    if codes is None:
        return None, (f"{label} must be a 3-letter IATA airport code such as SFO, or a city name, "
                      f"got {_shown(raw)}")
    if len(codes) > 1:
        # Named with their country: Paris, Texas's field beside Charles de Gaulle.
        named = ", ".join(f"{code} ({airports()[code]['name']}, {airports()[code]['country']})"
                          for code in sorted(codes, key=lambda code: (_rank(code), code)))
        return None, f"{label} {raw} has several airports: {named}; pick one"
    return codes[0], None


def _date(raw: str, label: str) -> tuple[dt.date | None, str | None]:
    try:
        return dt.date.fromisoformat(raw), None
    except ValueError:
        return None, f"{label} must be a date as YYYY-MM-DD, got {_shown(raw)}"


def _date_problem(day: dt.date, label: str, origin: str | None, now: dt.datetime | None) -> str | None:
    """Why a trip from `origin` cannot be on `day`: past or too far ahead, by the date at the origin."""
    today = today_at(origin, now)
    where = f"at {origin}" if origin and airport_timezone(origin) else "UTC"
    if day < today:
        return f"{label} {day.isoformat()} is in the past (today is {today.isoformat()} {where})"
    if (day - today).days > MAX_DAYS_AHEAD:
        return f"{label} {day.isoformat()} is more than {MAX_DAYS_AHEAD} days ahead; fares are not sold that far out"
    return None


def _count(raw: str, label: str, low: int) -> tuple[int | None, str | None]:
    # Length first: int() refuses a string of over 4,300 digits with a ValueError of its own (a 500, not this 400).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not low <= int(raw) <= MAX_PASSENGERS:
        return None, f"{label} must be a whole number from {low} to {MAX_PASSENGERS}, got {_shown(raw)}"
    return int(raw), None


def cabin_code(text: str) -> str | None:
    """The watchlist cabin a code (COACH) or the page's label (economy) names, in any case; None for neither."""
    wanted = text.strip().upper().replace(" ", "_")
    return next((cabin for cabin, label in CABIN_LABELS.items()
                 if wanted in (cabin, label.upper().replace(" ", "_"))), None)


def _cabin(raw: str) -> tuple[str | None, str | None]:
    cabin = cabin_code(raw)
    if cabin is None:
        return None, f"cabin must be one of {', '.join(CABINS)}, got {_shown(raw)}"
    return cabin, None


def parse_trip(args: Mapping[str, str], now: dt.datetime | None = None) -> Trip:
    """Check origin, destination, depart, return (and optional adults, children, cabin); the dates against today at
    the origin (at `now`, default the current time).

    Every problem is collected, not just the first, so a form can flag each field at once.
    """
    problems: dict[str, str] = {}
    labels = {"origin": "origin", "destination": "destination", "depart": "departure date",
              "return": "return date", "adults": "adults", "children": "children", "cabin": "cabin"}
    for field in TRIP_FIELDS:
        if not (args.get(field) or "").strip():
            problems[field] = f"{labels[field]} is required"

    values: dict[str, object] = {}
    checks = {"origin": lambda raw: _airport(raw, "origin"),
              "destination": lambda raw: _airport(raw, "destination"),
              "depart": lambda raw: _date(raw, "departure date"),
              "return": lambda raw: _date(raw, "return date"),
              "adults": lambda raw: _count(raw, "adults", 1),
              "children": lambda raw: _count(raw, "children", 0),
              "cabin": _cabin}
    # Each check receives the stripped, non-empty text of its field.
    for field, check in checks.items():
        raw = (args.get(field) or "").strip()
        if field in problems or not raw:
            continue
        value, problem = check(raw)
        if problem:
            problems[field] = problem
        else:
            values[field] = value

    for field in ("depart", "return"):
        if field in values:
            problem = _date_problem(values[field], labels[field], values.get("origin"), now)
            if problem:
                problems[field] = problem
                del values[field]
    if "origin" in values and values.get("origin") == values.get("destination"):
        problems["destination"] = f"destination must differ from origin ({values['origin']})"
    if "depart" in values and "return" in values and values["return"] < values["depart"]:
        problems["return"] = (f"return date {values['return'].isoformat()} is before the departure date "
                              f"{values['depart'].isoformat()}")
    # A party has at least one adult, asked for or not: 9 children alone are one passenger too many.
    if (values.get("adults") or 1) + (values.get("children") or 0) > MAX_PASSENGERS:
        problems["children"] = f"at most {MAX_PASSENGERS} passengers (adults + children) per search"
    if problems:
        raise TripError(problems)
    return Trip(values["origin"], values["destination"], values["depart"], values["return"],
                values.get("adults"), values.get("children"), values.get("cabin"))
