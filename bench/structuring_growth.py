"""Structuring growth: how the Spark structuring job's time grows as its input doubles.

A backfill structures many hours in one job, so its cost must stay linear in the input: doubling the
raw logs should at most double the time (the job's fixed per-run cost makes a doubling cheaper than
2 at small sizes; more than 2 means something grows faster than the data, e.g. a shuffle or a
single-partition write). The bench runs the real job, `structure_raw`, on the first 1, 2 and 4 times
BENCH_BASE_MB MB (default 100) of one set of simulator raw logs (see bench/raw_logs.py), in landing-hour
order, in one warm local session, and prints each time and the cost of each doubling (t2/t1, t4/t2).
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import best_of, report  # noqa: E402
from bench.raw_logs import raw_log_files, total_megabytes  # noqa: E402
from fare_assets.structuring.job import structure_raw  # noqa: E402
from fare_assets.structuring.spark import local_spark_session  # noqa: E402

BASE_MEGABYTES = int(os.environ.get("BENCH_BASE_MB", "100"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
MULTIPLES = (1, 2, 4)


def first_megabytes(raw_paths: list[str], megabytes: int) -> list[str]:
    """The shortest prefix of `raw_paths` holding at least `megabytes` MB."""
    prefix, size = [], 0
    for path in raw_paths:
        if size >= megabytes * 1e6:
            break
        prefix.append(path)
        size += os.path.getsize(path)
    return prefix


def main() -> None:
    raw_paths = raw_log_files(BASE_MEGABYTES * MULTIPLES[-1])
    work = Path(tempfile.mkdtemp(prefix="fares-growth-bench-"))
    try:
        spark = local_spark_session("bench-structuring-growth")
        spark.sparkContext.setLogLevel("ERROR")
        structure_raw(spark, raw_paths[:1], str(work / "warm-up"))
        rows = []
        for multiple in MULTIPLES:
            paths = first_megabytes(raw_paths, BASE_MEGABYTES * multiple)
            counts = {}

            def structure():
                shutil.rmtree(work / "lake", ignore_errors=True)
                counts.update(structure_raw(spark, paths, str(work / "lake")))

            seconds = best_of(structure, repeat=REPEAT)
            megabytes = total_megabytes(paths)
            rows.append({
                "input": f"{multiple}x", "raw_objects": len(paths), "megabytes": megabytes,
                "raw_records": counts["raw_records"], "trip_options": counts["trip_options"],
                "legs": counts["legs"], "seconds": seconds, "mb_per_s": megabytes / seconds,
                "time_over_half_input": f"{seconds / rows[-1]['seconds']:.2f}" if rows else "-",
            })
        spark.stop()
        doubling_costs = [later["seconds"] / earlier["seconds"] for earlier, later in zip(rows, rows[1:])]
        report("structuring_growth", rows, "worst doubling cost (time at 2x input / time at 1x)", max(doubling_costs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
