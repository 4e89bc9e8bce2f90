"""What counting each answer's options in its text costs the structuring job's parse step (this project's Spark).

The job quarantines a QPX answer whose text names more or fewer trip options than the parse read
(`qpx.options_unread`: a renamed option list would otherwise be structured as an answer that found nothing). Both sides read the
same BENCH_MB MB of simulator raw logs (default 500, see bench/raw_logs.py) and do what the job's parse step does
for QPX: read the envelopes, give each its envelope reason, parse the sound ones' responses and give each its
response reason, counted per reason. Once with the count, once with it replaced by a constant (what the step would
cost without it), taking turns for BENCH_REPEAT rounds (default 3) after a warm-up of each. It prints each side's
best time and the time with the count over the time without.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEGABYTES = int(os.environ.get("BENCH_MB", "500"))
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT", "3")))


def main() -> None:
    from pyspark.sql import functions as F

    from bench.harness import report, timings
    from bench.raw_logs import raw_log_files, total_megabytes
    from fare_assets.structuring import envelope
    from fare_assets.structuring.providers import PROVIDERS, qpx
    from fare_assets.structuring.spark import local_spark_session

    paths = raw_log_files(MEGABYTES)
    spark = local_spark_session("option-count-check-cost")
    counted = qpx.options_unread
    sides = {"with the count": counted, "without the count": lambda: F.lit(False)}
    reasons = {}

    def parse_step(side: str) -> None:
        qpx.options_unread = sides[side]
        envelopes = envelope.read_envelopes(spark, paths).withColumn("reason", envelope.envelope_problem(PROVIDERS))
        sound = envelope.typed_envelopes(envelopes.where(F.col("reason").isNull()))
        parsed = qpx.parse_responses(sound).withColumn("reason", qpx.response_problem())
        reasons[side] = {str(row["reason"]): row["count"] for row in parsed.groupBy("reason").count().collect()}

    for side in sides:
        parse_step(side)
    if reasons["with the count"] != reasons["without the count"]:
        raise SystemExit(f"the two sides counted different reasons: {reasons}")
    seconds = {side: [] for side in sides}
    for _ in range(REPEAT):
        for side in sides:
            seconds[side] += timings(lambda: parse_step(side), 1)
    qpx.options_unread = counted
    best = {side: min(times) for side, times in seconds.items()}
    rows = [{"side": side, "megabytes": round(total_megabytes(paths), 2), "records": sum(reasons[side].values()),
             "best_seconds": best[side], "rounds": " ".join(f"{second:.2f}" for second in times)}
            for side, times in seconds.items()]
    report("option_count_check_cost", rows, f"Spark {spark.version}: seconds with the count / without",
           best["with the count"] / best["without the count"])


if __name__ == "__main__":
    main()
