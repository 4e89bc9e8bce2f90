"""The Spark jobs a runner runs by name: the same code in a local session and in an EMR step.

Each takes the session and keyword arguments, and returns plain JSON, which on EMR travels back to
Dagster as a Pipes message.
"""
from pyspark.sql import SparkSession

from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.quality import run_quality_rules
from fare_assets.structuring.serving import export_for_warehouse

SPARK_JOBS = {
    "structure": structure_raw,
    "quality": run_quality_rules,
    "export_for_warehouse": export_for_warehouse,
}


def run_spark_job(spark: SparkSession, job: str, arguments: dict) -> dict:
    """Run one job of SPARK_JOBS with its arguments; what it returns."""
    if job not in SPARK_JOBS:
        raise ValueError(f"no Spark job named {job!r}: choose one of {', '.join(SPARK_JOBS)}")
    return SPARK_JOBS[job](spark, **arguments)
