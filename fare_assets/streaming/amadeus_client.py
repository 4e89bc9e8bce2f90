"""Client for Amadeus Flight Offers Search (`GET /v2/shopping/flight-offers`) with an OAuth2 token."""
import threading
import time
from collections.abc import Callable

import requests

from fare_assets.streaming.providers import (
    AuthError,
    FareProviderClient,
    ProviderRequest,
    env_number,
    env_secret,
    env_url,
    rate_limit_from_env,
)
from fare_assets.streaming.watchlist import TripQuery

NAME = "amadeus"
TOKEN_PATH = "/v1/security/oauth2/token"
SEARCH_PATH = "/v2/shopping/flight-offers"
DEFAULT_URL = "https://api.amadeus.com"
CLIENT_ID_ENV, CLIENT_SECRET_ENV, URL_ENV = "FARES_AMADEUS_CLIENT_ID", "FARES_AMADEUS_CLIENT_SECRET", "FARES_AMADEUS_URL"
MAX_OFFERS_ENV = "FARES_AMADEUS_MAX_OFFERS"
DEFAULT_MAX_OFFERS = 20
# Conservative until set to the contract's quota (FARES_AMADEUS_RATE_PER_SECOND / _RATE_BURST).
DEFAULT_RATE_PER_SECOND, DEFAULT_BURST = 5.0, 5
TRAVEL_CLASSES = {"COACH": "ECONOMY", "PREMIUM_COACH": "PREMIUM_ECONOMY", "BUSINESS": "BUSINESS", "FIRST": "FIRST"}
# A token is renewed this long before it expires, so no call carries one that dies in flight.
EXPIRY_MARGIN_SECONDS = 30


def search_params(trip: TripQuery, max_offers: int = DEFAULT_MAX_OFFERS) -> dict[str, str]:
    """The query of one search; no currencyCode, so prices come in the account's currency."""
    params = {
        "originLocationCode": trip.origin, "destinationLocationCode": trip.destination,
        "departureDate": trip.depart_date.isoformat(), "adults": str(trip.adults),
        "travelClass": TRAVEL_CLASSES[trip.cabin], "max": str(max_offers),
    }
    if trip.return_date:
        params["returnDate"] = trip.return_date.isoformat()
    if trip.children:
        params["children"] = str(trip.children)
    return params


class AmadeusClient(FareProviderClient):
    """Amadeus with a client-credentials token, cached until shortly before it expires and renewed on 401."""

    provider = NAME
    renews_credentials = True

    def __init__(self, base_url: str, client_id: str, client_secret: str, max_offers: int = DEFAULT_MAX_OFFERS,
                 clock: Callable[[], float] = time.monotonic, **options):
        super().__init__(base_url, **options)
        self._client_id = client_id
        self._client_secret = client_secret
        self.max_offers = max_offers
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._token_lock = threading.Lock()
        self._token_failures = 0
        self._last_token_error: AuthError | None = None
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        return f"AmadeusClient({self.base_url!r})"

    def build_request(self, trip: TripQuery) -> ProviderRequest:
        return ProviderRequest("GET", SEARCH_PATH, search_params(trip, self.max_offers))

    def authenticate(self, refused: dict[str, str] | None = None) -> dict[str, str]:
        failures_before = self._token_failures
        with self._token_lock:
            # Concurrent calls refused with the same token renew it once: the first renews, the rest reuse.
            stale = refused is not None and refused.get("Authorization") == self._header()
            if stale or self._token is None or self._clock() >= self._expires_at - EXPIRY_MARGIN_SECONDS:
                # Calls queued behind a fetch that failed meanwhile fail with it (and back off), instead of each
                # asking a failing or hanging token endpoint again in turn.
                if self._token_failures != failures_before:
                    raise AuthError(str(self._last_token_error), transient=self._last_token_error.transient)
                try:
                    self._fetch_token()
                except AuthError as error:
                    self._token_failures, self._last_token_error = self._token_failures + 1, error
                    raise
            return {"Authorization": self._header(), "Accept": "application/vnd.amadeus+json"}

    def _header(self) -> str:
        return f"Bearer {self._token}"

    def _fetch_token(self) -> None:
        try:
            answer = self.session.post(
                self.base_url + TOKEN_PATH, timeout=self.timeout, allow_redirects=False,
                data={"grant_type": "client_credentials", "client_id": self._client_id,
                      "client_secret": self._client_secret},
            )
        except requests.RequestException as error:
            raise AuthError(f"token endpoint unreachable ({type(error).__name__})", transient=True) from None
        try:
            parsed = answer.json()
        except ValueError:
            parsed = {}
        if answer.status_code != 200 or not isinstance(parsed, dict) or not parsed.get("access_token"):
            reason = parsed.get("error_description") or parsed.get("error") if isinstance(parsed, dict) else None
            raise AuthError(f"token endpoint answered HTTP {answer.status_code}" + (f": {reason}" if reason else ""),
                            transient=answer.status_code == 429 or answer.status_code >= 500)
        self._token = parsed["access_token"]
        self._expires_at = self._clock() + float(parsed.get("expires_in", 0))
        self.tokens_fetched += 1

    def answer_problem(self, parsed: object) -> str | None:
        if not (isinstance(parsed, dict) and isinstance(parsed.get("data"), list)):
            return "response is not an Amadeus flight-offers answer (data)"
        return None

    def error_message(self, parsed: object) -> str | None:
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0].get("detail") or errors[0].get("title")
        return None


def amadeus_client_from_env() -> AmadeusClient:
    """An Amadeus client from FARES_AMADEUS_CLIENT_ID / _SECRET (required), FARES_AMADEUS_URL and rate settings."""
    return AmadeusClient(env_url(URL_ENV, DEFAULT_URL), env_secret(CLIENT_ID_ENV), env_secret(CLIENT_SECRET_ENV),
                         max_offers=int(env_number(MAX_OFFERS_ENV, DEFAULT_MAX_OFFERS, int)),
                         rate_limiter=rate_limit_from_env(NAME, DEFAULT_RATE_PER_SECOND, DEFAULT_BURST))
