"""A collection sweep: every watched trip is searched once and every call becomes a raw record."""
import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fare_assets.streaming.envelope import encode, envelope
from fare_assets.streaming.watchlist import TripQuery


@dataclass
class SweepStats:
    """What a sweep did, for the asset's metadata."""

    calls: int = 0
    failures: Counter = field(default_factory=Counter)
    latencies_ms: list[int] = field(default_factory=list)
    bytes: int = 0

    def add(self, other: "SweepStats") -> None:
        self.calls += other.calls
        self.failures.update(other.failures)
        self.latencies_ms.extend(other.latencies_ms)
        self.bytes += other.bytes

    def percentile_ms(self, share: float) -> int:
        if not self.latencies_ms:
            return 0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _failure_kind(status: int) -> str:
    if status == 0:
        return "network"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "bad_response"


def sweep(trips: list[TripQuery], client, delivery, at: dt.datetime | None = None,
          concurrency: int = 4) -> SweepStats:
    """Search every trip (at market time `at`, or now) and deliver one record per call."""
    stats = SweepStats()

    def call(trip: TripQuery) -> tuple[int, str | None, int, int]:
        collected_at = at or dt.datetime.now(dt.timezone.utc)
        result = client.search(trip, at)
        record = encode(envelope(client.provider, trip.as_dict(), collected_at, result.status, result.elapsed_ms,
                                 response=result.response, error=result.error, body=result.body))
        delivery.put_record_batch([record])
        return result.status, result.error, result.elapsed_ms, len(record)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for status, error, elapsed_ms, size in pool.map(call, trips):
            stats.calls += 1
            stats.latencies_ms.append(elapsed_ms)
            stats.bytes += size
            if error is not None:
                stats.failures[_failure_kind(status)] += 1
    return stats
