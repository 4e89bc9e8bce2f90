"""Client for the QPX Express protocol (the simulator, or any QPX-compatible endpoint)."""
import datetime as dt

from fare_assets.streaming.envelope import utc_iso
from fare_assets.streaming.providers import FareProviderClient, ProviderRequest, rate_limit_from_env
from fare_assets.streaming.rate_limit import TokenBucket
from fare_assets.streaming.watchlist import TripQuery

SEARCH_PATH = "/qpxExpress/v1/trips/search"
# The simulator's settable clock: lets a backfill replay past collection times quickly.
CLOCK_HEADER = "X-Market-Time"
RESPONSE_KIND = "qpxExpress#tripsSearch"
# The aws deployment's provider until set (FARES_QPX_RATE_PER_SECOND / _RATE_BURST).
DEFAULT_RATE_PER_SECOND, DEFAULT_BURST = 20.0, 10


def request_body(trip: TripQuery, solutions: int) -> dict:
    """The QPX Express `trips.search` request for one trip."""
    slices = [{"origin": trip.origin, "destination": trip.destination,
               "date": trip.depart_date.isoformat(), "preferredCabin": trip.cabin}]
    if trip.return_date:
        slices.append({"origin": trip.destination, "destination": trip.origin,
                       "date": trip.return_date.isoformat(), "preferredCabin": trip.cabin})
    return {"request": {"slice": slices,
                        "passengers": {"adultCount": trip.adults, "childCount": trip.children},
                        "solutions": solutions, "refundable": False}}


class QpxClient(FareProviderClient):
    """Calls `trips.search`; a QPX endpoint with a settable clock (the simulator) answers for a past `at` too."""

    provider = "qpx"

    def __init__(self, base_url: str, solutions: int = 8, timeout: tuple[float, float] = (3.0, 30.0), **options):
        super().__init__(base_url, timeout=timeout, **options)
        self.solutions = solutions

    def build_request(self, trip: TripQuery) -> ProviderRequest:
        return ProviderRequest("POST", SEARCH_PATH, body=request_body(trip, self.solutions))

    def authenticate(self, refused: dict[str, str] | None = None) -> dict[str, str]:
        return {}

    def replay_headers(self, at: dt.datetime) -> dict[str, str] | None:
        return {CLOCK_HEADER: utc_iso(at)}

    def replay_problem(self, headers, at: dt.datetime) -> str | None:
        # An endpoint that ignores the clock answers for now: recorded as collected at `at`, today's fares would pass
        # for history.
        if headers.get(CLOCK_HEADER) == utc_iso(at):
            return None
        return (f"{self.provider} did not confirm answering for {utc_iso(at)} "
                f"({CLOCK_HEADER} {headers.get(CLOCK_HEADER)!r} in its answer)")

    def answer_problem(self, parsed: object) -> str | None:
        if isinstance(parsed, dict) and parsed.get("kind") == RESPONSE_KIND and isinstance(parsed.get("trips"), dict):
            return None
        return f"response is not a QPX trips.search answer (kind {RESPONSE_KIND!r} with trips)"

    def error_message(self, parsed: object) -> str | None:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        return error.get("message") if isinstance(error, dict) else None


def qpx_rate_limit(rate_per_second: float | None = None) -> TokenBucket:
    """The QPX provider's bucket: `rate_per_second` (the local simulator's, unthrottled) with the default burst, else
    FARES_QPX_RATE_PER_SECOND / _RATE_BURST, else the defaults."""
    if rate_per_second is not None:
        return TokenBucket(rate_per_second, DEFAULT_BURST)
    return rate_limit_from_env("qpx", DEFAULT_RATE_PER_SECOND, DEFAULT_BURST)
