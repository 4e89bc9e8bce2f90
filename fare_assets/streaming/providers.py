"""The collector's provider interface: one client per fare API, chosen per watchlist entry.

A client builds the request for a trip, authenticates, calls with retries and backoff, reports the
provider's rate-limit state, and names the structuring module that maps its raw records to the
3NF tables. Adding a provider means a client here and a module in `fare_assets.structuring.providers`.
"""
import datetime as dt
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import ModuleType

import requests

from fare_assets.streaming.qpx_client import (RETRYABLE, CallResult, Refusal, failure_kind, pause_before_retry,
                                              retry_after_seconds)
from fare_assets.streaming.rate_limit import TokenBucket
from fare_assets.streaming.watchlist import TripQuery

# A number this large in a reset header is a Unix time, not a count of seconds.
_EPOCH_THRESHOLD = 1_000_000_000


class ProviderConfigError(ValueError):
    """A provider the watchlist uses is not configured (a missing credential or a bad setting)."""


@dataclass(frozen=True)
class ProviderRequest:
    """One HTTP call to a provider: method, path under the base URL, query parameters and JSON body."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: dict | None = None


@dataclass(frozen=True)
class RateLimitState:
    """What the provider last said about its quota (None where it did not say)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: dt.datetime | None = None

    def as_dict(self) -> dict:
        return {"limit": self.limit, "remaining": self.remaining,
                "reset_at": self.reset_at.isoformat() if self.reset_at else None}


class AuthError(RuntimeError):
    """No credentials to call with (the message never holds a secret). `transient`: the token endpoint could not be
    reached or was overloaded (429, 5xx), so a later attempt may succeed; otherwise it refused the credentials."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def reset_time(value: str | None, now: dt.datetime) -> dt.datetime | None:
    """When a rate-limit window resets, from an HTTP date, a Unix time or a number of seconds."""
    if not value:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    if number >= _EPOCH_THRESHOLD:
        return dt.datetime.fromtimestamp(number, dt.timezone.utc)
    return now + dt.timedelta(seconds=number)


def env_setting(name: str, default: str | None = None) -> str:
    """An environment setting, or `default`; a required one (no default) that is unset is an error naming it."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ProviderConfigError(f"{name} is not set")
    return default


def env_secret(name: str) -> str:
    """A required credential; one with a space or a control character inside (a pasted two-line secret) is an error
    naming the variable, not its value: sent in a header, it would fail each call with the value in the error text."""
    value = env_setting(name)
    if not value.isascii() or any(character.isspace() or not character.isprintable() for character in value):
        raise ProviderConfigError(f"{name} holds a space, a line break, a control character or a non-ASCII one: "
                                  "set it as the provider gave it, on one line")
    return value


def env_number(name: str, default: float, kind: type) -> float:
    text = env_setting(name, str(default))
    try:
        return kind(text)
    except ValueError:
        raise ProviderConfigError(f"{name}={text!r} is not a valid {kind.__name__}") from None


def rate_limit_from_env(provider: str, default_rate: float, default_burst: int) -> TokenBucket:
    """The provider's bucket from FARES_<PROVIDER>_RATE_PER_SECOND / _RATE_BURST, else the defaults."""
    prefix = f"FARES_{provider.upper()}"
    return TokenBucket(env_number(f"{prefix}_RATE_PER_SECOND", default_rate, float),
                       int(env_number(f"{prefix}_RATE_BURST", default_burst, int)))


class FareProviderClient(ABC):
    """Calls one fare API with timeouts, retrying 429/5xx and network errors with backoff.

    Every HTTP attempt first takes a token from `rate_limiter` when one is given. A provider whose
    credentials expire (`renews_credentials`) renews them once on a 401 before the call counts as failed.
    """

    provider: str
    renews_credentials = False

    def __init__(self, base_url: str, timeout: tuple[float, float] = (3.0, 60.0), retries: int = 3,
                 backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0,
                 rate_limiter: TokenBucket | None = None, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.rate_limiter = rate_limiter
        self._sleep = sleep
        self.session = requests.Session()
        self._rate_limit = RateLimitState()
        self.refusal = Refusal()

    @property
    def structuring(self) -> ModuleType:
        """The structuring module that maps this provider's raw records into the 3NF tables."""
        from fare_assets.structuring.providers import PROVIDERS

        return PROVIDERS[self.provider]

    @abstractmethod
    def build_request(self, trip: TripQuery) -> ProviderRequest:
        """The search request for one watched trip."""

    @abstractmethod
    def authenticate(self, refused: dict[str, str] | None = None) -> dict[str, str]:
        """The headers that authenticate a call; `refused` are headers a 401 answered, to be renewed if still current."""

    @abstractmethod
    def answer_problem(self, parsed: object) -> str | None:
        """Why a successful HTTP answer is not a search result of this provider, or None."""

    @abstractmethod
    def error_message(self, parsed: object) -> str | None:
        """The provider's own error text from an error body, if any."""

    def observe_rate_limit(self, headers: Mapping[str, str], now: dt.datetime) -> None:
        """Remember what the response said about the quota (providers override to read their headers)."""

    def wait_after_refusal(self, headers: Mapping[str, str], now: dt.datetime) -> float | None:
        """Seconds the provider asks to wait after a 429 or 503: Retry-After, else the window's reset."""
        asked = retry_after_seconds(headers.get("Retry-After"), now)
        if asked is None and self._rate_limit.reset_at is not None:
            asked = max(0.0, (self._rate_limit.reset_at - now).total_seconds())
        return asked

    def rate_limit_state(self) -> RateLimitState:
        """The provider's quota as last reported."""
        return self._rate_limit

    def _pause(self, attempt: int, asked: float | None) -> None:
        pause_before_retry(self, attempt, asked)

    def _send(self, request: ProviderRequest, headers: dict[str, str]) -> requests.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        return self.session.request(request.method, self.base_url + request.path, params=request.params,
                                    json=request.body, headers=headers, timeout=self.timeout)

    def search(self, trip: TripQuery, at: dt.datetime | None = None) -> CallResult:
        """One search now; a live provider cannot answer for a past market time, so `at` is refused."""
        if at is not None:
            return CallResult(0, 0, error=f"{self.provider} answers for the present only: cannot replay {at.isoformat()}",
                              failure="unsupported_replay")
        refused_call = self.refusal.refused_call()
        if refused_call is not None:
            return refused_call
        request = self.build_request(trip)
        started = time.monotonic()
        renewed = False
        refused = None
        attempt = 0
        while True:
            last = attempt == self.retries
            try:
                headers = self.authenticate(refused)
                refused = None
                answer = self._send(request, headers)
            except AuthError as error:
                if error.transient and not last:
                    self._pause(attempt, None)
                    attempt += 1
                    continue
                failed = f"{self.provider} authentication failed: {error}"
                if not error.transient:
                    # Refused credentials stay refused for this run: the next calls would only ask again.
                    self.refusal.refuse(math.inf, failed, "auth_error")
                return CallResult(0, _ms_since(started), error=failed, failure="auth_error")
            except requests.exceptions.InvalidHeader:
                # Its text quotes the header's value, a credential, and the error is kept in the raw lake for good.
                # Every call would send the same header: the rest of the run's calls are refused.
                failed = f"{self.provider} authentication failed: a credential is not a valid header value"
                self.refusal.refuse(math.inf, failed, "auth_error")
                return CallResult(0, _ms_since(started), error=failed, failure="auth_error")
            except requests.RequestException as error:
                if last:
                    kind = "timeout" if isinstance(error, requests.Timeout) else "network"
                    return CallResult(0, _ms_since(started), error=f"{type(error).__name__}: {error}", failure=kind)
                self._pause(attempt, None)
                attempt += 1
                continue
            now = dt.datetime.now(dt.timezone.utc)
            self.observe_rate_limit(answer.headers, now)
            if answer.status_code == 401 and self.renews_credentials and not renewed:
                # An expired or revoked token: renew once, and the retry does not count as one.
                renewed, refused = True, headers
                continue
            asked = self.wait_after_refusal(answer.headers, now) if answer.status_code in RETRYABLE else None
            if self.refusal.refuses_wait(self.provider, answer.status_code, asked, self.max_backoff_seconds):
                return self._result(answer, started)
            if answer.status_code in RETRYABLE and not last:
                self._pause(attempt, asked)
                attempt += 1
                continue
            return self._result(answer, started)

    def _result(self, answer: requests.Response, started: float) -> CallResult:
        elapsed = _ms_since(started)
        try:
            parsed = answer.json()
        except ValueError as error:
            return self._failed(answer, elapsed, f"HTTP {answer.status_code}: response is not valid JSON: {error}")
        if not 200 <= answer.status_code < 300:
            message = self.error_message(parsed)
            return self._failed(answer, elapsed, f"HTTP {answer.status_code}" + (f": {message}" if message else ""))
        problem = self.answer_problem(parsed)
        if problem:
            return self._failed(answer, elapsed, f"HTTP {answer.status_code}: {problem}")
        return CallResult(answer.status_code, elapsed, response=parsed)

    @staticmethod
    def _failed(answer: requests.Response, elapsed: int, error: str) -> CallResult:
        # The answer's text is kept whole: raw records are complete, even when unusable.
        kind = failure_kind(answer.status_code) if answer.status_code >= 300 else "bad_response"
        return CallResult(answer.status_code, elapsed, error=error, body=answer.text, failure=kind)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class ProviderClients:
    """Routes each trip to the client of the provider its watchlist entry chose."""

    def __init__(self, clients: Mapping[str, object]):
        self.clients = dict(clients)

    def search(self, trip: TripQuery, at: dt.datetime | None = None) -> CallResult:
        client = self.clients.get(trip.provider)
        if client is None:
            raise ProviderConfigError(f"no client for provider {trip.provider!r}")
        return client.search(trip, at)

    def rate_limit_states(self) -> dict[str, dict]:
        """Each provider's last reported quota (providers that report one)."""
        return {name: client.rate_limit_state().as_dict() for name, client in self.clients.items()
                if hasattr(client, "rate_limit_state")}
