"""The UTF-8 check's cost in the structuring job's envelope read, on this project's Spark (4) and EMR's (3.5).

The job quarantines a raw line whose bytes are not UTF-8 (`spark_compat.is_valid_utf8`): Spark 4 has a function
for it, Spark 3.5 decodes the line again and compares the text, a copy of every line. Both sides read the same
BENCH_MB MB of simulator raw logs (default 500, see bench/raw_logs.py) and give every line its quarantine reason,
as the job's first step does (`read_envelopes` then `envelope_problem`, counted per reason): once with the check,
once with it replaced by a constant (what the job would cost without it), taking turns for BENCH_REPEAT rounds
(default 3) after a warm-up of each. Each Spark runs in its own process, one after the other (EMR's from
.venv-emr, which `make test` builds; skipped with a note when it is missing). The bench prints each side's best
time and, per Spark, the time with the check over the time without.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


MEGABYTES = int(os.environ.get("BENCH_MB", "500"))
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT", "3")))
CLUSTER_PYTHON = ROOT / ".venv-emr" / "bin" / "python"
_MEASURE = "--measure"


def measure(paths: list[str]) -> dict:
    """In this process's Spark: the seconds of each round with and without the check, and the reasons counted."""
    import time

    from pyspark.sql import functions as F

    from fare_assets.structuring import envelope
    from fare_assets.structuring.providers import PROVIDERS
    from fare_assets.structuring.spark import local_spark_session

    spark = local_spark_session("utf8-check-cost")
    checked = envelope.is_valid_utf8

    def reasons(check) -> tuple[dict, float]:
        envelope.is_valid_utf8 = check
        started = time.perf_counter()
        rows = (envelope.read_envelopes(spark, paths).withColumn("reason", envelope.envelope_problem(PROVIDERS))
                .groupBy("reason").count().collect())
        return {str(row["reason"]): row["count"] for row in rows}, time.perf_counter() - started

    sides = {"with the check": checked, "without the check": lambda column: F.lit(True)}
    counted = {side: reasons(check)[0] for side, check in sides.items()}
    if len(set(map(json.dumps, counted.values()))) != 1:
        raise SystemExit(f"the two sides counted different reasons: {counted}")
    seconds = {side: [] for side in sides}
    for _ in range(REPEAT):
        for side, check in sides.items():
            seconds[side].append(reasons(check)[1])
    return {"spark": spark.version, "seconds": seconds, "reasons": counted["with the check"]}


def _run(python: Path, paths: list[str]) -> dict:
    """`measure` in a fresh process of `python`, with only this project on its path (as the EMR step has)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "SPARK_HOME", "PYSPARK_DRIVER_PYTHON")}
    env.update(PYSPARK_PYTHON=str(python), SPARK_LOCAL_IP="127.0.0.1")
    finished = subprocess.run([str(python), __file__, _MEASURE], input="\n".join(paths), env=env, cwd=ROOT,
                              capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"{python} failed:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    # Imported here: EMR's Python has only what the job needs, not the simulator that writes the raw logs.
    from bench.harness import report
    from bench.raw_logs import raw_log_files, total_megabytes

    paths = raw_log_files(MEGABYTES)
    megabytes = total_megabytes(paths)
    pythons = [Path(sys.executable)]
    if CLUSTER_PYTHON.exists():
        pythons.append(CLUSTER_PYTHON)
    else:
        print(f"{CLUSTER_PYTHON} is missing (`make .venv-emr/.installed` builds it): Spark 3.5 not measured")
    rows, ratios = [], {}
    for python in pythons:
        measured = _run(python, paths)
        best = {side: min(seconds) for side, seconds in measured["seconds"].items()}
        for side, seconds in measured["seconds"].items():
            rows.append({"spark": measured["spark"], "side": side, "megabytes": round(megabytes, 2),
                         "lines": sum(measured["reasons"].values()), "best_seconds": best[side],
                         "rounds": " ".join(f"{second:.2f}" for second in seconds)})
        ratios[f"Spark {measured['spark']}: seconds with the check / without"] = (
            best["with the check"] / best["without the check"])
    headline, *others = reversed(list(ratios))
    report("utf8_check_cost", rows, headline, ratios[headline], {label: ratios[label] for label in others})


if __name__ == "__main__":
    if sys.argv[1:] == [_MEASURE]:
        print(json.dumps(measure(sys.stdin.read().split("\n"))))
    else:
        main()
