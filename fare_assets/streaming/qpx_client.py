"""Client for the QPX Express protocol (the simulator, or any QPX-compatible endpoint)."""
import datetime as dt
import json
import random
import time
from dataclasses import dataclass

import requests

from fare_assets.streaming.envelope import utc_iso
from fare_assets.streaming.watchlist import TripQuery

SEARCH_PATH = "/qpxExpress/v1/trips/search"
# The simulator's settable clock: lets a backfill replay past collection times quickly.
CLOCK_HEADER = "X-Market-Time"
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class CallResult:
    """What one provider call produced, successful or not."""

    status: int
    elapsed_ms: int
    response: dict | None = None
    error: str | None = None
    body: str | None = None


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


class QpxClient:
    """Calls `trips.search` with timeouts, retrying 429/5xx and network errors with backoff."""

    provider = "qpx"

    def __init__(self, base_url: str, solutions: int = 8, timeout: tuple[float, float] = (3.0, 30.0),
                 retries: int = 3, backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0):
        self.url = base_url.rstrip("/") + SEARCH_PATH
        self.solutions = solutions
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.session = requests.Session()

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_seconds * 2 ** attempt * random.uniform(0.5, 1.5)
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, self.max_backoff_seconds))

    def search(self, trip: TripQuery, at: dt.datetime | None = None) -> CallResult:
        """One search; `at` sets the market's clock (backfills), None means now."""
        headers = {CLOCK_HEADER: utc_iso(at)} if at else {}
        body = request_body(trip, self.solutions)
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                answer = self.session.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as error:
                if last:
                    return CallResult(0, _ms_since(started), error=f"{type(error).__name__}: {error}")
                self._pause(attempt, None)
                continue
            if answer.status_code in RETRYABLE and not last:
                self._pause(attempt, answer.headers.get("Retry-After"))
                continue
            return _result(answer, started)
        raise AssertionError("unreachable: the last attempt always returns")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _result(answer: requests.Response, started: float) -> CallResult:
    elapsed = _ms_since(started)
    try:
        parsed = answer.json()
    except ValueError as error:
        return CallResult(answer.status_code, elapsed, error=f"response is not valid JSON: {error}",
                          body=answer.text[:65536])
    if answer.status_code != 200:
        message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) else None
        return CallResult(answer.status_code, elapsed, error=message or f"HTTP {answer.status_code}",
                          body=json.dumps(parsed)[:65536])
    return CallResult(200, elapsed, response=parsed)
