"""The collector's provider interface: one client per fare API, chosen per watchlist entry.

A client builds the request for a trip, authenticates, calls with retries and backoff, and reports the
provider's rate-limit state. Adding a provider means a client module beside this one (as `duffel_client.py`), a
module in `fare_assets.structuring.providers`, and their names in the registries the README's "Real fare providers"
lists.
"""
import datetime as dt
import math
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import requests
import urllib3

from fare_assets.settings import ENCRYPTED_URL_RULE, unencrypted_remote
from fare_assets.streaming.rate_limit import TokenBucket
from fare_assets.streaming.watchlist import TripQuery

# A number this large in a reset header is a Unix time, not a count of seconds.
_EPOCH_THRESHOLD = 1_000_000_000


RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class CallResult:
    """What one provider call produced: a `response`, or an `error` of kind `failure` (with the `body`, if any)."""

    status: int
    elapsed_ms: int
    response: dict | None = None
    error: str | None = None
    body: str | None = None
    failure: str | None = None

    def __post_init__(self) -> None:
        if (self.error is None) != (self.failure is None):
            raise ValueError("a failed call has both an error and its failure kind; a successful one neither")


def failure_kind(status: int) -> str:
    """How a call that got an HTTP answer failed, for the sweep's counts."""
    if status == 429:
        return "rate_limited"
    if status == 401:
        return "auth_error"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "bad_response"


class Refusal:
    """A provider that asked to wait longer than a sweep can (a spent quota) or refused the credentials: until then,
    the run's further calls to it are recorded as failed without being made, instead of each retrying in turn."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self._error: str | None = None
        self._failure: str | None = None

    def refuse(self, seconds: float, error: str, failure: str) -> None:
        """Record further calls as `failure` for `seconds` (infinity: the rest of the run), unless an earlier refusal
        lasts longer (refused credentials are not forgiven by a 429's shorter wait on another thread)."""
        until = self._clock() + seconds
        with self._lock:
            if until > self._until:
                self._until, self._error, self._failure = until, error, failure

    def refuses_wait(self, provider: str, status: int, asked: float | None, longest_wait: float) -> bool:
        """Whether a refusal (`status`) asking to wait `asked` seconds is longer than a retry waits (`longest_wait`):
        then this call and the provider's next ones until then are recorded as refused."""
        # A wait no retry can honour within the sweep (a spent quota): each call retrying would only be refused.
        if status not in RETRYABLE or asked is None or asked <= longest_wait:
            return False
        self.refuse(asked, f"{provider} asked to wait {asked:.0f} s (HTTP {status})", failure_kind(status))
        return True

    def refused_call(self) -> CallResult | None:
        """The failed call to record instead of calling, while the provider refuses; else None."""
        with self._lock:
            if self._clock() >= self._until:
                return None
            return CallResult(0, 0, error=f"not called: {self._error}", failure=self._failure)


def pause_before_retry(client, attempt: int, asked: float | None) -> None:
    """A client's backoff before retry `attempt + 1`: jittered and doubling, or the wait the provider `asked` for."""
    delay = client.backoff_seconds * 2 ** attempt * random.uniform(0.5, 1.5)
    if asked is not None:
        # Capped like any backoff: a sweep must end within its collection slot, and a call
        # still refused then is recorded as rate limited.
        asked = min(asked, client.max_backoff_seconds)
        if client.rate_limiter is not None:
            client.rate_limiter.hold(asked)
        delay = max(delay, asked)
    client._sleep(min(delay, client.max_backoff_seconds))


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (moment - now).total_seconds())


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


def env_url(name: str, default: str) -> str:
    """A provider's base URL: https, or http to this machine only (a test double), since every call carries a
    credential."""
    value = env_setting(name, default)
    if unencrypted_remote(value):
        raise ProviderConfigError(f"{name}={value!r} must be {ENCRYPTED_URL_RULE}: the provider's calls carry its "
                                  "credentials")
    return value


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

    def replay_headers(self, at: dt.datetime) -> dict[str, str] | None:
        """Headers asking the provider to answer as at `at` (a backfill), or None: a live provider answers for now."""
        return None

    def replay_problem(self, headers: Mapping[str, str], at: dt.datetime) -> str | None:
        """Why a successful answer to a replay at `at` is not one (its headers do not confirm the time), or None."""
        return None

    def wait_after_refusal(self, status: int, headers: Mapping[str, str], now: dt.datetime) -> float | None:
        """Seconds the provider asks to wait after a retryable `status`: Retry-After, else, for a 429, the window's
        reset."""
        asked = retry_after_seconds(headers.get("Retry-After"), now)
        # Only a 429 is about the quota: Duffel reports its window on every answer, and a 502 waiting for it would
        # refuse the provider for the rest of a minute with quota to spare.
        if asked is None and status == 429 and self._rate_limit.reset_at is not None:
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
        # A redirect would carry the request (and a posted body's secrets) to wherever it points.
        return self.session.request(request.method, self.base_url + request.path, params=request.params,
                                    json=request.body, headers=headers, timeout=self.timeout, allow_redirects=False)

    def search(self, trip: TripQuery, at: dt.datetime | None = None) -> CallResult:
        """One search now, or as at `at` where the provider can replay a past market time (replay_headers)."""
        replay = {} if at is None else self.replay_headers(at)
        if replay is None:
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
                answer = self._send(request, {**headers, **replay})
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
                # A search posted may have reached the provider unless the connection never opened (a timeout while
                # reading, a hang-up after the request): it may still run, and be billed, there, and sent again it
                # would be paid for twice.
                unsent = request.method != "POST" or _never_connected(error)
                if last or not unsent:
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
            if answer.status_code == 401:
                # Credentials refused (renewed already, where they can be) stay refused for this run, as at the token
                # endpoint: each further call would be refused the same way. (A 403 is not: QPX-style APIs and
                # gateways send it for a quota or a blocked burst too.)
                result = self._result(answer, started)
                self.refusal.refuse(math.inf, f"{self.provider} refused the credentials ({result.error})", "auth_error")
                return result
            asked = (self.wait_after_refusal(answer.status_code, answer.headers, now)
                     if answer.status_code in RETRYABLE else None)
            if self.refusal.refuses_wait(self.provider, answer.status_code, asked, self.max_backoff_seconds):
                return self._result(answer, started)
            if answer.status_code in RETRYABLE and not last:
                self._pause(attempt, asked)
                attempt += 1
                continue
            problem = at is not None and 200 <= answer.status_code < 300 and self.replay_problem(answer.headers, at)
            if problem:
                return CallResult(0, _ms_since(started), error=problem, failure="unsupported_replay")
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


def _never_connected(error: requests.RequestException) -> bool:
    """Whether the request failed before a connection opened (refused, unresolvable, timed out connecting), so the
    provider never saw it."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = error.args[0] if isinstance(error, requests.exceptions.ConnectionError) and error.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


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
