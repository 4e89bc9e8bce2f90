"""Collector overhead per response: a full sweep vs the bare provider calls it makes.

Both sides send the same BENCH_CALLS searches (default 336: two days of the watchlist) one at a
time to the fare market simulator over HTTP. The provider side only posts each request and reads
the body; the collector side runs `sweep` (rate limiter, retries, JSON parsing and shape check,
envelope, write-ahead spool, local delivery stream, flush). The difference per call is what the
collector itself costs, excluding the provider's latency.
"""
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import best_of, report  # noqa: E402
from fare_assets.market.server import SEARCH_PATH, market_in_thread  # noqa: E402
from fare_assets.settings import load_settings  # noqa: E402
from fare_assets.streaming.collector import sweep  # noqa: E402
from fare_assets.streaming.delivery import LocalDeliveryStream  # noqa: E402
from fare_assets.streaming.envelope import utc_iso  # noqa: E402
from fare_assets.streaming.qpx_client import CLOCK_HEADER, QpxClient, request_body  # noqa: E402
from fare_assets.streaming.watchlist import load_watchlist  # noqa: E402

CALLS = int(os.environ.get("BENCH_CALLS", "336"))
AT = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc)


def main() -> None:
    watchlist = load_watchlist(load_settings().watchlist)
    trips = []
    day = 0
    while len(trips) < CALLS:
        trips += watchlist.trips_at(AT + dt.timedelta(days=day))
        day += 1
    trips = trips[:CALLS]
    work = Path(tempfile.mkdtemp(prefix="fares-bench-"))
    with market_in_thread() as url:
        session = requests.Session()

        def provider_calls():
            for trip in trips:
                session.post(url + SEARCH_PATH, json=request_body(trip, 8), headers={CLOCK_HEADER: utc_iso(AT)}).content

        delivered = []

        def collector_sweep():
            stream = LocalDeliveryStream(work / "lake")
            stats = sweep(trips, QpxClient(url), stream, AT, concurrency=1)
            stream.flush()
            delivered.append((stats.calls, stats.succeeded, stream.records_delivered))

        try:
            provider_seconds, collector_seconds = best_of(provider_calls, repeat=3), best_of(collector_sweep, repeat=3)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if delivered[-1] != (CALLS, CALLS, CALLS):
        raise SystemExit(f"the sweep did not deliver every call: (calls, succeeded, records) = {delivered[-1]}")
    rows = [
        {"side": "provider calls only", "calls": CALLS, "seconds": provider_seconds,
         "ms_per_call": provider_seconds / CALLS * 1000},
        {"side": "collector sweep", "calls": CALLS, "seconds": collector_seconds,
         "ms_per_call": collector_seconds / CALLS * 1000},
        {"side": "collector overhead", "calls": CALLS, "seconds": collector_seconds - provider_seconds,
         "ms_per_call": (collector_seconds - provider_seconds) / CALLS * 1000},
    ]
    report("collector_overhead", rows, "collector sweep time / provider call time", collector_seconds / provider_seconds)


if __name__ == "__main__":
    main()
