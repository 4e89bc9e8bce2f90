"""A collection sweep: every watched trip is searched once and every call becomes a raw record."""
import datetime as dt
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fare_assets.streaming.envelope import encode, envelope
from fare_assets.streaming.providers import CallResult
from fare_assets.streaming.watchlist import TripQuery


@dataclass
class SweepStats:
    """What a sweep did, for the asset's metadata."""

    calls: int = 0
    failures: Counter = field(default_factory=Counter)
    latencies_ms: list[int] = field(default_factory=list)
    bytes: int = 0
    provider_calls: Counter = field(default_factory=Counter)
    # (provider, failure kind) → calls
    provider_failures: Counter = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return self.calls - sum(self.failures.values())

    def add(self, other: "SweepStats") -> None:
        self.calls += other.calls
        self.failures.update(other.failures)
        self.latencies_ms.extend(other.latencies_ms)
        self.bytes += other.bytes
        self.provider_calls.update(other.provider_calls)
        self.provider_failures.update(other.provider_failures)

    def providers_without_success(self) -> dict[str, dict]:
        """Each provider called that never answered usefully: its calls and failures by kind.

        While another provider answers, its outage (a revoked token, a withdrawn contract) fails no sweep: every trip
        it watches just stops being collected.
        """
        failed: dict[str, Counter] = {}
        for (provider, kind), count in self.provider_failures.items():
            failed.setdefault(provider, Counter())[kind] += count
        return {provider: {"calls": calls, "failures_by_kind": dict(sorted(failed[provider].items()))}
                for provider, calls in sorted(self.provider_calls.items())
                if calls and sum(failed.get(provider, Counter()).values()) == calls}

    def percentile_ms(self, share: float) -> int:
        if not self.latencies_ms:
            return 0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _search(client, trip: TripQuery, at: dt.datetime | None) -> CallResult:
    """The client's answer; any exception becomes a failed call, so one broken call cannot lose the others' records."""
    started = time.monotonic()
    try:
        return client.search(trip, at)
    except Exception as error:
        return CallResult(0, int((time.monotonic() - started) * 1000), error=f"{type(error).__name__}: {error}",
                          failure="collector_error")


def sweep(trips: list[TripQuery], client, delivery, at: dt.datetime | None = None,
          concurrency: int = 4, chosen_at: dt.datetime | None = None) -> SweepStats:
    """Search every trip (at market time `at`, or now) and deliver one record per call, all collected at one moment.

    A live sweep (`at` None) is stamped `chosen_at`, the moment its trips were picked from the watchlist, when given:
    picked at 23:59:59 and stamped after midnight, every trip's days ahead would be off by one.
    """
    stats = SweepStats()
    # A sweep is one look at the market: every record carries the sweep's moment (its start when live), so a trip
    # searched on two providers is one collection to every reader (the page's latest fares, the advisor's observations).
    collected_at = at or chosen_at or dt.datetime.now(dt.timezone.utc)

    def call(trip: TripQuery) -> tuple[CallResult, int]:
        result = _search(client, trip, at)
        # The watchlist entry chose the provider; `client` may route to several.
        record = encode(envelope(trip.provider, trip.as_dict(), collected_at, result.status, result.elapsed_ms,
                                 response=result.response, error=result.error, body=result.body))
        delivery.put_record_batch([record])
        return result, len(record)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for trip, (result, size) in zip(trips, pool.map(call, trips)):
            stats.calls += 1
            stats.latencies_ms.append(result.elapsed_ms)
            stats.bytes += size
            if result.error is not None:
                stats.failures[result.failure] += 1
            # A live provider asked to replay the past is not called: no outage of its (every backfill would say so).
            if result.failure != "unsupported_replay":
                stats.provider_calls[trip.provider] += 1
                if result.error is not None:
                    stats.provider_failures[trip.provider, result.failure] += 1
    return stats
