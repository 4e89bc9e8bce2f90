"""Hourly lake reads: what one landing hour's quality rules and warehouse rows cost as the curated lake grows.

An hourly run checks and exports only its own landing hour, but Spark lists every file under the paths it is given
before it prunes a partition. Read whole and then filtered (the job until 2026-12-07), each of the run's dozens of
table reads listed every hour the lake ever landed; read by its hours' folders (`tables.read_table` with
`landing_hours`), a read lists one folder per collection date and the hour's own files. The bench structures one
small landing hour of simulator records, copies its partition folders under BENCH_LAKE_HOURS earlier hours (default
24, 720 and 2160: a day, a month, three months of hourly landings, each hour under its own collection date), and at
each size times, in one warm local session, every quality rule and the warehouse's fare rows of that one hour, both
ways, on the same lake. It prints each time and the ratio whole/by-hours at the largest size.
"""
import datetime as dt
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import functions as F  # noqa: E402

from bench.harness import best_of, report  # noqa: E402
from bench.raw_logs import STREAM, market_searches  # noqa: E402
from fare_assets.storing.lake import (LANDING_HOUR_FORMAT, curated_partition_path, curated_table_path,  # noqa: E402
                                     raw_object_key)
from fare_assets.streaming.envelope import encode, envelope  # noqa: E402
from fare_assets.structuring import quality, serving  # noqa: E402
from fare_assets.structuring.job import structure_raw  # noqa: E402
from fare_assets.structuring.spark import local_spark_session  # noqa: E402
from fare_assets.structuring.tables import FACT_SCHEMAS, TABLE_SCHEMAS, read_table  # noqa: E402

LAKE_HOURS = [int(hours) for hours in os.environ.get("BENCH_LAKE_HOURS", "24,720,2160").split(",")]
RECORDS = int(os.environ.get("BENCH_RECORDS", "40"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))
LANDING_HOUR = dt.datetime(2026, 11, 1, 12, tzinfo=dt.timezone.utc)


def whole_table_then_filtered(spark, lake_root: str, table: str, landing_hours: list[str] | None = None):
    """The read before 2026-12-07: the whole table, then its rows of the hours."""
    frame = spark.read.schema(TABLE_SCHEMAS[table]).parquet(curated_table_path(lake_root, table))
    if landing_hours is None or table not in FACT_SCHEMAS:
        return frame
    return frame.where(F.col("landing_hour").isin(*landing_hours))


def one_landing_hour(work: Path) -> str:
    """A raw object of RECORDS simulator answers landed in LANDING_HOUR; returns its path."""
    lines = [encode(envelope("qpx", query, LANDING_HOUR + dt.timedelta(seconds=second), 200, 300, response=response))
             for second, (query, response, _) in enumerate(market_searches(RECORDS))]
    path = work / raw_object_key(STREAM, LANDING_HOUR + dt.timedelta(minutes=5), "bench-hourly-reads")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return str(path)


def grow_lake(lake: Path, hour: str, hours: int, grown: int) -> None:
    """Copies of `hour`'s partition folders of every fact table under earlier hours, from `grown` up to `hours`."""
    for table in FACT_SCHEMAS:
        sources = [Path(path) for path in glob.glob(curated_partition_path(str(lake), table, landing_hour=hour))]
        for copy in range(grown, hours):
            earlier = LANDING_HOUR - dt.timedelta(hours=copy + 1)
            for source in sources:
                shutil.copytree(source, curated_partition_path(str(lake), table, f"{earlier:%Y-%m-%d}",
                                                               earlier.strftime(LANDING_HOUR_FORMAT)))


def hourly_reads(spark, lake_root: str, hour: str) -> None:
    """What an hourly run reads of its hour: every quality rule, and the warehouse's fare rows."""
    quality.run_quality_rules(spark, lake_root, [hour], [rule.key for rule in quality.QUALITY_RULES])
    serving.fare_rows(spark, lake_root, [hour]).count()


def timed_with(reader, spark, lake_root: str, hour: str) -> float:
    """Seconds of hourly_reads with `reader` as the rules' and the export's table reader."""
    quality.read_table, serving.read_table = reader, reader
    try:
        return best_of(lambda: hourly_reads(spark, lake_root, hour), repeat=REPEAT)
    finally:
        quality.read_table, serving.read_table = read_table, read_table


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fares-hourly-reads-bench-"))
    try:
        spark = local_spark_session("bench-hourly-lake-reads")
        spark.sparkContext.setLogLevel("ERROR")
        lake = work / "lake"
        counts = structure_raw(spark, [one_landing_hour(work)], str(lake))
        hour = LANDING_HOUR.strftime(LANDING_HOUR_FORMAT)
        hourly_reads(spark, str(lake), hour)
        rows, grown = [], 0
        for hours in LAKE_HOURS:
            grow_lake(lake, hour, hours, grown)
            grown = hours
            files = sum(1 for table in TABLE_SCHEMAS
                        for _ in Path(curated_table_path(str(lake), table)).rglob("*.parquet"))
            whole = timed_with(whole_table_then_filtered, spark, str(lake), hour)
            by_hours = timed_with(read_table, spark, str(lake), hour)
            rows.append({"landing_hours_in_lake": hours + 1, "parquet_files": files,
                         "hour_trip_options": counts["trip_options"], "whole_then_filtered_s": whole,
                         "by_hours_folders_s": by_hours, "whole/by_hours": whole / by_hours})
        report("hourly_lake_reads", rows, "whole-table reads / by-hour reads at the largest lake",
               rows[-1]["whole/by_hours"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
