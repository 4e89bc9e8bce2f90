"""Structuring throughput: one Spark job over a backlog of landing hours vs one job per hour.

The sensor structures each hour as it lands; a backfill (or a sensor catching up after an outage)
can instead structure many hours in one run. Both sides structure the same raw objects of
BENCH_HOURS landing hours (default 12), collected from the fare market simulator over HTTP, in
one warm local Spark session; the bench prints records per second for each and the speed-up.
"""
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import best_of, report  # noqa: E402
from fare_assets.market.server import market_in_thread  # noqa: E402
from fare_assets.settings import load_settings  # noqa: E402
from fare_assets.storing.lake import raw_object_key  # noqa: E402
from fare_assets.streaming.collector import sweep  # noqa: E402
from fare_assets.streaming.delivery import LocalDeliveryStream  # noqa: E402
from fare_assets.streaming.qpx_client import QpxClient  # noqa: E402
from fare_assets.streaming.watchlist import load_watchlist  # noqa: E402
from fare_assets.structuring.job import structure_raw  # noqa: E402
from fare_assets.structuring.spark import local_spark_session  # noqa: E402

HOURS = int(os.environ.get("BENCH_HOURS", "12"))
FIRST_HOUR = dt.datetime(2026, 11, 27, 0, tzinfo=dt.timezone.utc)


def collect_backlog(work: Path) -> dict[str, list[str]]:
    """One watchlist sweep per hour for HOURS hours, each filed under its own landing hour: {hour: paths}."""
    watchlist = load_watchlist(load_settings().watchlist)
    backlog = {}
    with market_in_thread() as url:
        client = QpxClient(url)
        for number in range(HOURS):
            arrival = FIRST_HOUR + dt.timedelta(hours=number)
            staging = LocalDeliveryStream(work / "staging")
            sweep(watchlist.trips_at(arrival), client, staging, arrival)
            staging.flush()
            # The delivery stream files objects under the real clock's hour; a backlog needs distinct hours.
            paths = []
            for key in staging.objects_written:
                target = work / "lake" / raw_object_key("fares-bench", arrival, Path(key).name[-36:])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(work / "staging" / key, target)
                paths.append(str(target))
            backlog[arrival.strftime("%Y-%m-%d-%H")] = paths
    return backlog


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fares-bench-"))
    try:
        backlog = collect_backlog(work)
        records = sum(sum(1 for _ in open(path, "rb")) for paths in backlog.values() for path in paths)
        spark = local_spark_session("bench-structuring")
        spark.sparkContext.setLogLevel("ERROR")
        structure_raw(spark, next(iter(backlog.values())), str(work / "warm-up"))
        per_hour_counts, one_run_counts = [], {}

        def per_hour():
            per_hour_counts[:] = [structure_raw(spark, paths, str(work / "per-hour")) for paths in backlog.values()]

        def one_run():
            one_run_counts.update(structure_raw(spark, [p for paths in backlog.values() for p in paths],
                                                str(work / "one-run")))

        per_hour_seconds, one_run_seconds = best_of(per_hour, repeat=2), best_of(one_run, repeat=2)
        for table in ("searches", "trip_options", "legs"):
            per_hour_rows = sum(counts[table] for counts in per_hour_counts)
            if per_hour_rows != one_run_counts[table]:
                raise SystemExit(f"{table}: per-hour runs wrote {per_hour_rows} rows, one run {one_run_counts[table]}")
        rows = [
            {"side": side, "spark_jobs": jobs, "landing_hours": HOURS, "raw_records": records,
             "trip_options": one_run_counts["trip_options"], "seconds": seconds, "records_per_s": records / seconds}
            for side, jobs, seconds in (("one job per hour (sensor)", HOURS, per_hour_seconds),
                                        ("one job for the backlog", 1, one_run_seconds))
        ]
        report("structuring_throughput", rows, "speed-up of one job over per-hour jobs", per_hour_seconds / one_run_seconds)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
