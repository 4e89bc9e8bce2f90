"""Client for the QPX Express protocol (the simulator, or any QPX-compatible endpoint)."""
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests

from fare_assets.streaming.envelope import utc_iso
from fare_assets.streaming.rate_limit import TokenBucket
from fare_assets.streaming.watchlist import TripQuery

SEARCH_PATH = "/qpxExpress/v1/trips/search"
# The simulator's settable clock: lets a backfill replay past collection times quickly.
CLOCK_HEADER = "X-Market-Time"
RETRYABLE = {429, 500, 502, 503, 504}
RESPONSE_KIND = "qpxExpress#tripsSearch"


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
        self._until = 0.0
        self._error: str | None = None
        self._failure: str | None = None

    def refuse(self, seconds: float, error: str, failure: str) -> None:
        """Record further calls as `failure` for `seconds` (infinity: the rest of the run)."""
        self._until, self._error, self._failure = self._clock() + seconds, error, failure

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


class QpxClient:
    """Calls `trips.search` with timeouts, retrying 429/5xx and network errors with backoff.

    Every HTTP attempt, retries included, first takes a token from `rate_limiter` when one is given.
    """

    provider = "qpx"

    def __init__(self, base_url: str, solutions: int = 8, timeout: tuple[float, float] = (3.0, 30.0),
                 retries: int = 3, backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0,
                 rate_limiter: TokenBucket | None = None, sleep: Callable[[float], None] = time.sleep):
        self.url = base_url.rstrip("/") + SEARCH_PATH
        self.solutions = solutions
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.rate_limiter = rate_limiter
        self._sleep = sleep
        self.session = requests.Session()
        self.refusal = Refusal()

    def _pause(self, attempt: int, asked: float | None) -> None:
        pause_before_retry(self, attempt, asked)

    def _post(self, body: dict, headers: dict) -> requests.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        return self.session.post(self.url, json=body, headers=headers, timeout=self.timeout)

    def search(self, trip: TripQuery, at: dt.datetime | None = None) -> CallResult:
        """One search; `at` sets the market's clock (backfills), None means now."""
        refused = self.refusal.refused_call()
        if refused is not None:
            return refused
        headers = {CLOCK_HEADER: utc_iso(at)} if at else {}
        body = request_body(trip, self.solutions)
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                answer = self._post(body, headers)
            except requests.RequestException as error:
                if last:
                    kind = "timeout" if isinstance(error, requests.Timeout) else "network"
                    return CallResult(0, _ms_since(started), error=f"{type(error).__name__}: {error}", failure=kind)
                self._pause(attempt, None)
                continue
            asked = retry_after_seconds(answer.headers.get("Retry-After"), dt.datetime.now(dt.timezone.utc))
            if self.refusal.refuses_wait(self.provider, answer.status_code, asked, self.max_backoff_seconds):
                return _result(answer, started)
            if answer.status_code in RETRYABLE and not last:
                self._pause(attempt, asked)
                continue
            if at is not None and answer.status_code == 200 and answer.headers.get(CLOCK_HEADER) != utc_iso(at):
                # An endpoint that ignores the clock answers for now: recorded as collected at `at`, today's fares
                # would pass for history.
                return CallResult(0, _ms_since(started), failure="unsupported_replay",
                                  error=f"{self.provider} did not confirm answering for {utc_iso(at)} "
                                        f"({CLOCK_HEADER} {answer.headers.get(CLOCK_HEADER)!r} in its answer)")
            return _result(answer, started)
        raise AssertionError("unreachable: the last attempt always returns")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failed(answer: requests.Response, elapsed: int, error: str) -> CallResult:
    # The answer's text is kept whole: raw records are complete, even when unusable.
    return CallResult(answer.status_code, elapsed, error=error, body=answer.text,
                      failure=failure_kind(answer.status_code))


def _result(answer: requests.Response, started: float) -> CallResult:
    elapsed = _ms_since(started)
    try:
        parsed = answer.json()
    except ValueError as error:
        return _failed(answer, elapsed, f"HTTP {answer.status_code}: response is not valid JSON: {error}")
    if answer.status_code != 200:
        message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) else None
        return _failed(answer, elapsed, f"HTTP {answer.status_code}" + (f": {message}" if message else ""))
    if not (isinstance(parsed, dict) and parsed.get("kind") == RESPONSE_KIND and isinstance(parsed.get("trips"), dict)):
        return _failed(answer, elapsed, f"HTTP 200: response is not a QPX trips.search answer "
                                        f"(kind {RESPONSE_KIND!r} with trips)")
    return CallResult(200, elapsed, response=parsed)
