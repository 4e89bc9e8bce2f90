"""Client for Duffel's offer requests (`POST /air/offer_requests?return_offers=true`)."""
import datetime as dt
from collections.abc import Mapping

from fare_assets.streaming.providers import (
    FareProviderClient,
    ProviderRequest,
    RateLimitState,
    env_number,
    env_secret,
    env_setting,
    env_url,
    rate_limit_from_env,
    reset_time,
)
from fare_assets.streaming.watchlist import TripQuery

NAME = "duffel"
OFFER_REQUESTS_PATH = "/air/offer_requests"
DEFAULT_URL = "https://api.duffel.com"
DEFAULT_VERSION = "v2"
TOKEN_ENV, URL_ENV, VERSION_ENV = "FARES_DUFFEL_TOKEN", "FARES_DUFFEL_URL", "FARES_DUFFEL_VERSION"
CHILD_AGE_ENV = "FARES_DUFFEL_CHILD_AGE"
# Duffel prices a child by age; the watchlist counts children without ages.
DEFAULT_CHILD_AGE = 10
# Duffel's default wait for airlines is 20 s; asking for less keeps a sweep inside its slot.
SUPPLIER_TIMEOUT_MS = 15000
# Conservative until set to the account's quota (FARES_DUFFEL_RATE_PER_SECOND / _RATE_BURST).
DEFAULT_RATE_PER_SECOND, DEFAULT_BURST = 1.0, 5
CABIN_CLASSES = {"COACH": "economy", "PREMIUM_COACH": "premium_economy", "BUSINESS": "business", "FIRST": "first"}


def request_body(trip: TripQuery, child_age: int = DEFAULT_CHILD_AGE) -> dict:
    """The offer request for one trip: a slice per direction, the passengers and the cabin."""
    slices = [{"origin": trip.origin, "destination": trip.destination, "departure_date": trip.depart_date.isoformat()}]
    if trip.return_date:
        slices.append({"origin": trip.destination, "destination": trip.origin,
                       "departure_date": trip.return_date.isoformat()})
    passengers = [{"type": "adult"}] * trip.adults + [{"age": child_age}] * trip.children
    return {"data": {"slices": slices, "passengers": passengers, "cabin_class": CABIN_CLASSES[trip.cabin]}}


class DuffelClient(FareProviderClient):
    """Duffel with a bearer access token; honours 429 with the `ratelimit-*` headers."""

    provider = NAME

    def __init__(self, base_url: str, token: str, version: str = DEFAULT_VERSION,
                 child_age: int = DEFAULT_CHILD_AGE, **options):
        super().__init__(base_url, **options)
        self._token = token
        self.version = version
        self.child_age = child_age

    def __repr__(self) -> str:
        return f"DuffelClient({self.base_url!r}, version={self.version!r})"

    def build_request(self, trip: TripQuery) -> ProviderRequest:
        return ProviderRequest("POST", OFFER_REQUESTS_PATH,
                               {"return_offers": "true", "supplier_timeout": str(SUPPLIER_TIMEOUT_MS)},
                               request_body(trip, self.child_age))

    def authenticate(self, refused: dict[str, str] | None = None) -> dict[str, str]:
        # A Duffel access token does not expire: a 401 means a wrong or revoked token, not a stale one.
        return {"Authorization": f"Bearer {self._token}", "Duffel-Version": self.version,
                "Accept": "application/json", "Accept-Encoding": "gzip"}

    def answer_problem(self, parsed: object) -> str | None:
        data = parsed.get("data") if isinstance(parsed, dict) else None
        if not (isinstance(data, dict) and isinstance(data.get("offers"), list)):
            return "response is not a Duffel offer request with offers (data.offers)"
        return None

    def error_message(self, parsed: object) -> str | None:
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0].get("message") or errors[0].get("title")
        return None

    def observe_rate_limit(self, headers: Mapping[str, str], now: dt.datetime) -> None:
        if "ratelimit-limit" not in headers and "ratelimit-remaining" not in headers:
            return
        self._rate_limit = RateLimitState(_int(headers.get("ratelimit-limit")), _int(headers.get("ratelimit-remaining")),
                                          reset_time(headers.get("ratelimit-reset"), now))
        if self._rate_limit.remaining == 0 and self._rate_limit.reset_at and self.rate_limiter is not None:
            # The window is spent: no caller should try before it resets.
            wait = (self._rate_limit.reset_at - now).total_seconds()
            self.rate_limiter.hold(min(self.max_backoff_seconds, max(0.0, wait)))


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def duffel_client_from_env() -> DuffelClient:
    """A Duffel client from FARES_DUFFEL_TOKEN (required), FARES_DUFFEL_URL, FARES_DUFFEL_VERSION and the rate settings."""
    return DuffelClient(env_url(URL_ENV, DEFAULT_URL), env_secret(TOKEN_ENV),
                        env_setting(VERSION_ENV, DEFAULT_VERSION),
                        child_age=int(env_number(CHILD_AGE_ENV, DEFAULT_CHILD_AGE, int)),
                        rate_limiter=rate_limit_from_env(NAME, DEFAULT_RATE_PER_SECOND, DEFAULT_BURST))
