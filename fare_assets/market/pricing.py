"""The fare market: a deterministic, seeded model of how airline fares move (pure logic, no HTTP).

A search asks for a trip (origin, destination, dates, passengers, cabin) at a moment `at`. The market
lists every scheduled journey real airlines could sell for it (see `network`), prices each one as it
would be priced on the purchase day `at.date()` (UTC), and returns the cheapest itineraries. The
same parameters, query and moment always give the same answer; prices depend on the purchase day
through `days_ahead = depart_date - at.date()`, never on the clock time. A departure is past once its date is
past at its origin, as an airline sells it: west of UTC its evening falls on the next UTC date, and is sold at the
price of its departure day. No journey is sold within `MIN_MINUTES_BEFORE_DEPARTURE` of its departure.

How a fare is built (every number is a `MarketParams` field, in brackets its default):

* **Route level.** A reference fare grows with the origin-destination distance, tapering with length:
  `reference_fixed_usd + reference_per_mile_factor * miles ** reference_distance_exponent`
  [300 + 1.7 * miles^0.7: about $700 coast to coast, $1,000 Chicago-London]. Fares are priced for the
  origin-destination pair, so a connecting itinerary pays for the trip, not for its legs.
* **Cabin.** `cabin_multipliers` [premium economy x1.7, business x3.6, first x5.5], compressed on short
  flights where premium cabins are a smaller upgrade.
* **Carriers.** Each airline has a price level (low-cost carriers well below legacy ones), perturbed
  per seed by `carrier_level_spread` [5%]. Competition lowers every fare on a route:
  `competitor_discount` [5%] per additional carrier, never below `competition_floor` [x0.75].
* **Nonstop vs connecting.** Nonstops carry `nonstop_premium` [+12%]; each stop after the first takes
  `extra_stop_discount` [6%] off.
* **Weekday and season.** `weekday_multipliers` on each slice's departure day [Tue/Wed/Sat cheaper,
  Fri/Sun dearer] and `month_multipliers` on its month [summer and December peaks, Jan/Feb and
  September troughs].
* **Booking classes.** Each cabin has a ladder of booking classes from cheap to dear
  (`booking_ladders`); a class closes once the flight's load factor passes its threshold. A flight's
  load factor grows as departure nears, `final_load * exp(-days_ahead / tau)`, where the final load
  [0.88 +- 0.12, +0.06 for peak-hour departures] and the booking time constant tau [40 days +- 30%]
  are drawn per flight. A connecting slice books the cheapest class open on all its flights (married
  segments), and reports the seats left in it (QPX `bookingCodeCount`, at most 9).
* **Advance purchase.** `advance_purchase_steps` [x1.10 inside 21 days, x1.25 inside 14, x1.45 inside
  7]: the cheap fares require booking ahead, so fares jump at those steps.
* **Fare filings.** Airlines refile a route's fares every `repricing_interval_days` [28] of the purchase
  calendar (with a route-specific phase); between filings the filed level holds, so fares move in
  steps, not daily jitter. Each filing sets the level for a departure from two parts:
  - a sweet-spot curve of the days ahead at the filing: lowest at `sweet_spot_days` [52], rising by
    `far_out_premium_per_100_days` [25% per 100 days] further out (discounts held back) and by
    `approach_premium_per_100_days` [40% per 100 days] closer in (demand building up);
  - a lognormal market move with `volatility` [5%], drawn per route, departure date and filing.
* **Short sales.** In each purchase week a route holds a sale with probability `sale_weekly_probability`
  [2%], lasting `sale_length_days` [2-5 days] and taking `sale_discount` [10-25%] off, for departures at
  least `sale_min_days_ahead` [14] days away. Sales are drawn per route and seed, so they are
  reproducible.
* **Round trips are priced as a whole.** A round trip with a Saturday-night stay earns
  `saturday_stay_discount` [18%] off both fare components; a one-way on a legacy carrier costs
  `one_way_premium` [+25%] more than half a round trip (low-cost carriers price one-ways as halves).
* **Passengers.** Children pay `child_fare_ratio` [75%] of the adult fare; taxes are per passenger
  (see `taxes`), carrier surcharges per mile at `surcharge_cents_per_mile` [2.5 cents].

Together these reproduce published patterns of real fares: the cheapest day to buy averages about 54
days ahead within roughly 21-112 days (the sweet-spot curve, spread by market moves and sales); about
two thirds of trips see their cheapest fare drop at least once in their last two months (filings and
sales are the only moves down: closing classes and advance-purchase steps only push fares up); fares
climb steeply in the last three weeks.

Schedules open `max_days_ahead` [331] days before departure; further out a search finds nothing.
"""
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from fare_assets.market.draws import normal, unit
from fare_assets.market.network import Flight, Journey, aircraft_seats, journeys
from fare_assets.market.reference import AIRLINES, US_COUNTRIES, airport, miles_between
from fare_assets.market.taxes import Tax, slice_taxes, transportation_tax

CABINS = ("COACH", "PREMIUM_COACH", "BUSINESS", "FIRST")
ADULT = "ADT"
CHILD = "CHD"
# QPX shows at most nine seats per booking class.
MAX_SEATS_SHOWN = 9
# Nothing departing within this many minutes of the search moment is still sold.
MIN_MINUTES_BEFORE_DEPARTURE = 60
SHORT_HAUL_MILES = 3000
# Latest ticketing times are shown in QPX's home time zone, as the fixtures show.
TICKETING_ZONE = ZoneInfo("America/New_York")
TICKETING_DAYS = 3
SATURDAY = 5
FRIDAY = 4
# Local departure hours travellers want most (early morning, early evening): those flights fill fuller.
PEAK_HOURS = frozenset({7, 8, 17, 18})


class MarketError(ValueError):
    """A search the market cannot answer."""


class PastDeparture(MarketError):
    """The departure date lies before the search moment's date at the origin."""


class UnknownAirport(MarketError):
    """An airport code that airportsdata does not know."""


class InvalidQuery(MarketError):
    """A query whose fields contradict each other or are out of range."""


@dataclass(frozen=True)
class MarketParams:
    """Every knob of the market; see the module docstring for how each one shapes fares."""

    # Seed of every random draw (carrier levels, flight loads, market moves, sales).
    seed: int = 7
    # Reference one-way fare in USD = fixed + factor * miles ** exponent.
    reference_fixed_usd: float = 300.0
    reference_per_mile_factor: float = 1.7
    reference_distance_exponent: float = 0.7
    # Cabin price relative to coach on long flights (shorter flights compress it toward 1).
    cabin_multipliers: tuple[tuple[str, float], ...] = (
        ("COACH", 1.0), ("PREMIUM_COACH", 1.7), ("BUSINESS", 3.6), ("FIRST", 5.5),
    )
    # Per cabin, booking classes from cheapest to dearest: (code, share of the reference fare, closes
    # when the flight's load factor reaches this); the last class never closes and is refundable.
    booking_ladders: tuple[tuple[str, tuple[tuple[str, float, float], ...]], ...] = (
        ("COACH", (("L", 0.38, 0.45), ("K", 0.45, 0.58), ("Q", 0.54, 0.70), ("H", 0.65, 0.80),
                   ("M", 0.78, 0.88), ("B", 0.92, 0.95), ("Y", 1.25, 2.0))),
        ("PREMIUM_COACH", (("E", 0.55, 0.55), ("T", 0.7, 0.8), ("W", 0.9, 2.0))),
        ("BUSINESS", (("I", 0.6, 0.6), ("D", 0.75, 0.8), ("C", 0.9, 0.92), ("J", 1.1, 2.0))),
        ("FIRST", (("A", 0.8, 0.75), ("F", 1.0, 2.0))),
    )
    # Flight load factor at departure: mean and total spread (uniform) across flights.
    final_load_mean: float = 0.88
    final_load_spread: float = 0.24
    # Bookings arrive like exp(-days_ahead / tau): tau in days and its relative spread across flights.
    booking_tau_days: float = 40.0
    booking_tau_spread: float = 0.6
    # Extra final load on flights leaving at peak hours.
    peak_hour_load_bonus: float = 0.06
    # (days ahead, multiplier): booking within that many days pays the multiplier (the largest applies).
    advance_purchase_steps: tuple[tuple[int, float], ...] = ((21, 1.10), (14, 1.25), (7, 1.45))
    # Fares are lowest around sweet_spot_days ahead: they carry far_out_premium_per_100_days beyond it
    # (discounts held back) and approach_premium_per_100_days inside it (demand building up).
    sweet_spot_days: int = 52
    far_out_premium_per_100_days: float = 0.25
    approach_premium_per_100_days: float = 0.4
    # Standard deviation of the log route level, redrawn at each filing, and the days between filings.
    volatility: float = 0.05
    repricing_interval_days: int = 28
    # Monday..Sunday multipliers on a slice's departure day.
    weekday_multipliers: tuple[float, ...] = (1.0, 0.93, 0.94, 1.02, 1.09, 0.96, 1.08)
    # January..December multipliers on a slice's month.
    month_multipliers: tuple[float, ...] = (0.88, 0.9, 1.0, 0.98, 1.0, 1.12, 1.15, 1.08, 0.92, 0.95, 0.97, 1.12)
    # Short sales: weekly chance per route, length range in days, discount range, minimum days ahead.
    sale_weekly_probability: float = 0.02
    sale_length_days: tuple[int, int] = (2, 5)
    sale_discount: tuple[float, float] = (0.10, 0.25)
    sale_min_days_ahead: int = 14
    # Competition: discount per carrier beyond the first, and the lowest multiplier it can reach.
    competitor_discount: float = 0.05
    competition_floor: float = 0.75
    # Log-normal spread of each carrier's price level around its table level.
    carrier_level_spread: float = 0.05
    nonstop_premium: float = 0.12
    extra_stop_discount: float = 0.06
    # Round trip with a Saturday-night stay: discount on the whole fare; legacy one-way premium.
    saturday_stay_discount: float = 0.18
    one_way_premium: float = 0.25
    child_fare_ratio: float = 0.75
    surcharge_cents_per_mile: float = 2.5
    max_days_ahead: int = 331

    def ladder(self, cabin: str) -> tuple[tuple[str, float, float], ...]:
        """The booking classes of a cabin, cheapest first."""
        return dict(self.booking_ladders)[cabin]

    def cabin_multiplier(self, cabin: str) -> float:
        """A cabin's long-haul price relative to coach."""
        return dict(self.cabin_multipliers)[cabin]


DEFAULT_PARAMS = MarketParams()
# A noisier market with other advance-purchase steps and a later booking curve, for robustness checks.
ALT_PARAMS = MarketParams(
    seed=2027,
    volatility=0.09,
    repricing_interval_days=21,
    advance_purchase_steps=((28, 1.06), (14, 1.2), (3, 1.6)),
    booking_tau_days=32.0,
    sweet_spot_days=55,
    far_out_premium_per_100_days=0.3,
    approach_premium_per_100_days=0.6,
    sale_weekly_probability=0.05,
    saturday_stay_discount=0.12,
)
PROFILES: dict[str, MarketParams] = {"default": DEFAULT_PARAMS, "alt": ALT_PARAMS}


@dataclass(frozen=True)
class Query:
    """A trip to price: IATA airports, dates, passengers and cabin."""

    origin: str
    destination: str
    depart_date: date
    return_date: date | None = None
    adults: int = 1
    children: int = 0
    cabin: str = "COACH"

    def __post_init__(self) -> None:
        if self.cabin not in CABINS:
            raise InvalidQuery(f"cabin must be one of {', '.join(CABINS)}")
        if self.adults < 1 or self.children < 0:
            raise InvalidQuery("a trip needs at least one adult and no negative counts")
        if self.origin == self.destination:
            raise InvalidQuery("origin and destination are the same airport")
        if self.return_date is not None and self.return_date < self.depart_date:
            raise InvalidQuery("return date is before the departure date")


@dataclass(frozen=True)
class Segment:
    """A flight as sold in this option: cabin, booking class, seats left and the wait after it."""

    flight: Flight
    cabin: str
    booking_code: str
    seats_left: int
    connection_min: int | None
    # Segments sold together (married) share a group: here, one group per slice.
    married_group: int

    @property
    def duration_min(self) -> int:
        return sum(leg.duration_min for leg in self.flight.legs)


@dataclass(frozen=True)
class Slice:
    """One direction of the trip."""

    segments: tuple[Segment, ...]
    duration_min: int


@dataclass(frozen=True)
class Fare:
    """One fare component: a carrier's fare for one slice, priced city to city."""

    carrier: str
    origin_city: str
    destination_city: str
    basis_code: str
    slice_index: int
    amount_cents: int


@dataclass(frozen=True)
class Pricing:
    """The price of one passenger of a type (ADT or CHD), and how many travel at that price."""

    passenger_type: str
    passenger_count: int
    fares: tuple[Fare, ...]
    taxes: tuple[Tax, ...]
    refundable: bool
    latest_ticketing: datetime

    @property
    def base_cents(self) -> int:
        return sum(fare.amount_cents for fare in self.fares)

    @property
    def tax_cents(self) -> int:
        return sum(tax.amount_cents for tax in self.taxes)

    @property
    def total_cents(self) -> int:
        return self.base_cents + self.tax_cents


@dataclass(frozen=True)
class Option:
    """A priced itinerary: its slices and one pricing per passenger type, all in USD."""

    slices: tuple[Slice, ...]
    pricings: tuple[Pricing, ...]
    currency: str = "USD"

    @property
    def total_cents(self) -> int:
        return sum(pricing.total_cents * pricing.passenger_count for pricing in self.pricings)


@dataclass(frozen=True)
class _FlightLoad:
    """How a flight fills: its departure day, final load factor, booking time constant and seats."""

    day_ordinal: int
    final: float
    tau: float
    seats: int


@dataclass(frozen=True)
class _Quote:
    """What is fixed about selling a journey in a cabin, whatever the purchase day."""

    journey: Journey
    # Reference fare times cabin, carrier, competition, stops, weekday and season, in USD.
    slice_usd: float
    loads: tuple[_FlightLoad, ...]
    taxes: tuple[Tax, ...]
    taxes_cents: int
    low_cost: bool
    first_departure: datetime


@dataclass(frozen=True)
class _PricedJourney:
    """A journey priced on the purchase day: booking class, seats and per-passenger fare components."""

    quote: _Quote
    booking_code: str
    seats_left: int
    refundable: bool
    adult_cents: int
    child_cents: int
    # What this slice adds to the option total for the whole party: the ranking key.
    party_cents: int

    @property
    def journey(self) -> Journey:
        return self.quote.journey


def purchase_day(at: datetime) -> date:
    """The UTC calendar day of a search moment (the market's clock)."""
    if at.tzinfo is None:
        raise MarketError("the search moment must be timezone-aware")
    return at.astimezone(timezone.utc).date()


def saturday_night_stay(depart: date, back: date) -> bool:
    """Whether a round trip spends a Saturday night away (a Saturday before the return day)."""
    days_to_saturday = (SATURDAY - depart.weekday()) % 7
    return days_to_saturday < (back - depart).days


def _is_peak_hour(moment: datetime) -> bool:
    return moment.hour in PEAK_HOURS


class Market:
    """The seeded market: answers searches with priced options, cheapest first."""

    def __init__(self, params: MarketParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self._quotes = lru_cache(maxsize=4096)(self._build_quotes)

    def search(self, query: Query, at: datetime, solutions: int) -> list[Option]:
        """Up to `solutions` options for `query` as sold at moment `at`, sorted by total (cheapest first)."""
        today = purchase_day(at)
        for code in (query.origin, query.destination):
            if airport(code) is None:
                raise UnknownAirport(f"unknown airport {code}")
        local_today = at.astimezone(airport(query.origin).tz).date()
        if query.depart_date < local_today:
            raise PastDeparture(f"departure {query.depart_date} is before today at {query.origin} ({local_today})")
        # A departure's evening west of UTC is on the next UTC date: priced as on its own day, its last purchase day.
        today = min(today, query.depart_date)
        days_ahead = (query.depart_date - today).days
        if solutions <= 0 or days_ahead > self.params.max_days_ahead:
            return []
        ticket_factor = self._ticket_factor(query, today, days_ahead)
        outbound = self._price(query, self._quotes(query.origin, query.destination, query.depart_date, query.cabin),
                               today, ticket_factor, at)
        if query.return_date is None:
            combos = [(priced,) for priced in outbound]
        else:
            inbound = self._price(query, self._quotes(query.destination, query.origin, query.return_date, query.cabin),
                                  today, ticket_factor, at)
            combos = self._round_trip_combos(outbound, inbound, solutions)
        combos.sort(key=self._combo_order)
        return [self._option(query, combo, at, days_ahead) for combo in combos[:solutions]]

    def _ticket_factor(self, query: Query, today: date, days_ahead: int) -> float:
        """Multipliers shared by every option of a search: advance purchase, filed level, sale, Saturday stay."""
        p = self.params
        factor = max((m for threshold, m in p.advance_purchase_steps if days_ahead <= threshold), default=1.0)
        factor *= self._filed_level(query.origin, query.destination, query.depart_date, today)
        factor *= 1.0 - self._sale_discount(query.origin, query.destination, today, days_ahead)
        if query.return_date is not None and saturday_night_stay(query.depart_date, query.return_date):
            factor *= 1.0 - p.saturday_stay_discount
        return factor

    def filing(self, origin: str, destination: str, today: date) -> tuple[int, date]:
        """The route's latest fare filing as of purchase day `today`: its number and the day it was filed."""
        p = self.params
        phase = int(unit(p.seed, "filing-phase", origin, destination) * p.repricing_interval_days)
        number = (today.toordinal() + phase) // p.repricing_interval_days
        return number, date.fromordinal(number * p.repricing_interval_days - phase)

    def sweet_spot_curve(self, days_ahead_at_filing: int) -> float:
        """The filed level's deterministic part: lowest at sweet_spot_days ahead, dearer further out and closer in."""
        p = self.params
        distance = days_ahead_at_filing - p.sweet_spot_days
        slope = p.far_out_premium_per_100_days if distance > 0 else p.approach_premium_per_100_days
        return 1.0 + slope * abs(distance) / 100.0

    def market_move(self, origin: str, destination: str, depart: date, filing_number: int) -> float:
        """The filed level's random part: a lognormal move drawn per route, departure date and filing."""
        p = self.params
        return math.exp(p.volatility * normal(p.seed, "level", origin, destination, depart.isoformat(), filing_number))

    def _filed_level(self, origin: str, destination: str, depart: date, today: date) -> float:
        """The route's fare level for this departure as of the latest filing: the sweet-spot curve at the
        filing day times a lognormal market move, constant until the next filing."""
        number, filed_on = self.filing(origin, destination, today)
        return self.sweet_spot_curve((depart - filed_on).days) * self.market_move(origin, destination, depart, number)

    def _sale_discount(self, origin: str, destination: str, today: date, days_ahead: int) -> float:
        """The discount of a short sale running on the purchase day, or 0."""
        p = self.params
        if days_ahead < p.sale_min_days_ahead:
            return 0.0
        day = today.toordinal()
        shortest, longest = p.sale_length_days
        for week in (day // 7 - 1, day // 7):
            if unit(p.seed, "sale", origin, destination, week) >= p.sale_weekly_probability:
                continue
            start = week * 7 + int(unit(p.seed, "sale-start", origin, destination, week) * 7)
            length = shortest + int(unit(p.seed, "sale-length", origin, destination, week) * (longest - shortest + 1))
            if start <= day < start + length:
                low, high = p.sale_discount
                return low + (high - low) * unit(p.seed, "sale-depth", origin, destination, week)
        return 0.0

    def _build_quotes(self, origin: str, destination: str, day: date, cabin: str) -> tuple[_Quote, ...]:
        """The purchase-day-independent part of pricing every journey origin→destination on `day`."""
        scheduled = journeys(origin, destination, day)
        competitors = len({journey.routing.carrier for journey in scheduled})
        return tuple(
            _Quote(
                journey=journey,
                slice_usd=self._slice_usd(journey, cabin, competitors),
                loads=tuple(self._flight_load(flight) for flight in journey.flights),
                taxes=(taxes := slice_taxes(journey, cabin, self.params.surcharge_cents_per_mile)),
                taxes_cents=sum(tax.amount_cents for tax in taxes),
                low_cost=AIRLINES[journey.routing.carrier].low_cost,
                first_departure=journey.flights[0].departs,
            )
            for journey in scheduled
        )

    def _flight_load(self, flight: Flight) -> _FlightLoad:
        """A flight's final load factor (peak hours fill fuller) and booking time constant, drawn per seed."""
        p = self.params
        day = flight.departs.date()
        key = (p.seed, flight.carrier, flight.number, day)
        final = p.final_load_mean + p.final_load_spread * (unit(*key, "final-load") - 0.5)
        if _is_peak_hour(flight.departs):
            final += p.peak_hour_load_bonus
        tau = p.booking_tau_days * (1.0 + p.booking_tau_spread * (unit(*key, "tau") - 0.5))
        return _FlightLoad(day.toordinal(), min(final, 1.0), tau, aircraft_seats(flight.legs[0].aircraft))

    def _slice_usd(self, journey: Journey, cabin: str, competitors: int) -> float:
        """Reference fare times everything fixed for this journey: cabin, carrier, competition, stops, weekday, season."""
        p = self.params
        flights = journey.flights
        miles = miles_between(flights[0].legs[0].origin, flights[-1].legs[-1].destination)
        reference = p.reference_fixed_usd + p.reference_per_mile_factor * miles ** p.reference_distance_exponent
        cabin_factor = 1.0 + (p.cabin_multiplier(cabin) - 1.0) * min(1.0, max(0.35, miles / SHORT_HAUL_MILES))
        carrier = journey.routing.carrier
        carrier_level = AIRLINES[carrier].price_level * math.exp(p.carrier_level_spread * normal(p.seed, "carrier", carrier))
        competition = max(p.competition_floor, 1.0 - p.competitor_discount * (competitors - 1))
        stops = journey.routing.stops
        stop_factor = 1.0 + p.nonstop_premium if stops == 0 else (1.0 - p.extra_stop_discount) ** (stops - 1)
        day = flights[0].departs.date()
        calendar = p.weekday_multipliers[day.weekday()] * p.month_multipliers[day.month - 1]
        return reference * cabin_factor * carrier_level * competition * stop_factor * calendar

    def _price(self, query: Query, quotes: tuple[_Quote, ...], today: date, ticket_factor: float,
               at: datetime) -> list[_PricedJourney]:
        """Price each sellable journey on the purchase day for the query's party."""
        p = self.params
        ladder = p.ladder(query.cabin)
        top_rung = len(ladder) - 1
        earliest = at + timedelta(minutes=MIN_MINUTES_BEFORE_DEPARTURE)
        today_ordinal = today.toordinal()
        domestic_us = (airport(query.origin).country in US_COUNTRIES
                       and airport(query.destination).country in US_COUNTRIES)
        one_way_factor = 1.0 + p.one_way_premium if query.return_date is None else 1.0
        priced = []
        for quote in quotes:
            if quote.first_departure < earliest:
                continue
            rung, seats = self._booking_class(quote.loads, ladder, today_ordinal)
            code, share, _ = ladder[rung]
            trip_factor = ticket_factor if quote.low_cost else ticket_factor * one_way_factor
            adult_cents = max(100, round(quote.slice_usd * share * trip_factor * 100))
            child_cents = round(adult_cents * p.child_fare_ratio)
            adult_total = adult_cents + quote.taxes_cents
            child_total = child_cents + quote.taxes_cents
            if domestic_us:
                adult_total += transportation_tax(adult_cents).amount_cents
                child_total += transportation_tax(child_cents).amount_cents
            party = query.adults * adult_total + query.children * child_total
            priced.append(_PricedJourney(quote, code, seats, rung == top_rung, adult_cents, child_cents, party))
        return priced

    @staticmethod
    def _booking_class(loads: tuple[_FlightLoad, ...], ladder: tuple[tuple[str, float, float], ...],
                       today_ordinal: int) -> tuple[int, int]:
        """The cheapest class open on every flight (married segments), and the seats left in it."""
        rung = 0
        factors = []
        for load in loads:
            factor = load.final * math.exp(-max(0, load.day_ordinal - today_ordinal) / load.tau)
            factors.append((factor, load.seats))
            while ladder[rung][2] <= factor:
                rung += 1
        closes_at = min(ladder[rung][2], 1.0)
        seats = min(int((closes_at - factor) * capacity) for factor, capacity in factors)
        return rung, max(1, min(MAX_SEATS_SHOWN, seats))

    @staticmethod
    def _round_trip_combos(outbound: list[_PricedJourney], inbound: list[_PricedJourney],
                           solutions: int) -> list[tuple[_PricedJourney, ...]]:
        """Same-carrier pairs of outbound and return journeys; only each carrier's cheapest few can make the cut."""
        def cheapest_by_carrier(priced: list[_PricedJourney]) -> dict[str, list[_PricedJourney]]:
            grouped: dict[str, list[_PricedJourney]] = {}
            for journey in sorted(priced, key=Market._journey_order):
                grouped.setdefault(journey.journey.routing.carrier, []).append(journey)
            return {carrier: journeys[:solutions] for carrier, journeys in grouped.items()}

        backs_by_carrier = cheapest_by_carrier(inbound)
        combos = []
        for carrier, outs in cheapest_by_carrier(outbound).items():
            for out in outs:
                arrival = out.journey.flights[-1].arrives
                combos.extend((out, back) for back in backs_by_carrier.get(carrier, ())
                              if back.quote.first_departure > arrival)
        return combos

    @staticmethod
    def _journey_order(priced: _PricedJourney) -> tuple:
        return (priced.party_cents, priced.quote.first_departure, [f.number for f in priced.journey.flights])

    @staticmethod
    def _combo_order(combo: tuple[_PricedJourney, ...]) -> tuple:
        return (
            sum(priced.party_cents for priced in combo),
            combo[0].journey.routing.carrier,
            [(priced.quote.first_departure, [f.number for f in priced.journey.flights]) for priced in combo],
        )

    def _option(self, query: Query, combo: tuple[_PricedJourney, ...], at: datetime, days_ahead: int) -> Option:
        slices = tuple(
            Slice(
                segments=tuple(
                    Segment(flight, query.cabin, priced.booking_code, priced.seats_left,
                            priced.journey.connections_min[i] if i < len(priced.journey.connections_min) else None,
                            slice_index)
                    for i, flight in enumerate(priced.journey.flights)
                ),
                duration_min=priced.journey.duration_min,
            )
            for slice_index, priced in enumerate(combo)
        )
        deadline = datetime.combine(at.astimezone(TICKETING_ZONE).date() + timedelta(days=TICKETING_DAYS),
                                    time(23, 59), tzinfo=TICKETING_ZONE)
        first_departure = combo[0].quote.first_departure - timedelta(minutes=1)
        latest_ticketing = min(deadline, first_departure).astimezone(TICKETING_ZONE)
        refundable = all(priced.refundable for priced in combo)
        domestic_us = (airport(query.origin).country in US_COUNTRIES
                       and airport(query.destination).country in US_COUNTRIES)
        pricings = [self._pricing(query, combo, ADULT, query.adults, domestic_us, refundable, latest_ticketing, days_ahead)]
        if query.children:
            pricings.append(self._pricing(query, combo, CHILD, query.children, domestic_us, refundable,
                                          latest_ticketing, days_ahead))
        return Option(slices, tuple(pricings))

    def _pricing(self, query: Query, combo: tuple[_PricedJourney, ...], passenger_type: str, count: int,
                 domestic_us: bool, refundable: bool, latest_ticketing: datetime, days_ahead: int) -> Pricing:
        """One passenger type's fares (one per slice) and taxes, taxes with the same id added together."""
        child = passenger_type == CHILD
        fares = []
        taxes: dict[str, Tax] = {}
        for slice_index, priced in enumerate(combo):
            flights = priced.journey.flights
            amount = priced.child_cents if child else priced.adult_cents
            fares.append(Fare(
                carrier=priced.journey.routing.carrier,
                origin_city=airport(flights[0].legs[0].origin).city_code,
                destination_city=airport(flights[-1].legs[-1].destination).city_code,
                basis_code=self._basis_code(priced, query, days_ahead) + ("/CH" if child else ""),
                slice_index=slice_index,
                amount_cents=amount,
            ))
            slice_taxes_ = ((transportation_tax(amount),) if domestic_us else ()) + priced.quote.taxes
            for tax in slice_taxes_:
                known = taxes.get(tax.tax_id)
                taxes[tax.tax_id] = tax if known is None else replace(known, amount_cents=known.amount_cents + tax.amount_cents)
        return Pricing(passenger_type, count, tuple(fares), tuple(taxes.values()), refundable, latest_ticketing)

    def _basis_code(self, priced: _PricedJourney, query: Query, days_ahead: int) -> str:
        """An ATPCO-style fare basis: class, season (H/K/L), advance purchase days, weekday (X) or weekend (W), trip type."""
        day = priced.quote.first_departure.date()
        month = self.params.month_multipliers[day.month - 1]
        season = "H" if month >= 1.05 else "L" if month <= 0.95 else "K"
        advance = next((str(t) for t, _ in sorted(self.params.advance_purchase_steps, reverse=True) if days_ahead > t), "")
        weekday = "W" if day.weekday() >= FRIDAY else "X"
        trip = "OW" if query.return_date is None else "RT"
        return f"{priced.booking_code}{season}{advance}{weekday}{trip}"
