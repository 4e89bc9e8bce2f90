"""EMR step script: the structuring job on the raw files Dagster names, its counts reported back through Pipes.

`spark-submit --py-files fare_assets.zip emr_entry.py` on the cluster; Dagster's `EmrSparkRunner`
launches it. The lake root and the raw paths arrive in the Pipes context's extras (an S3 object),
not as step arguments: a backfill names thousands of objects, more than a step's arguments hold.
"""
import json

import boto3
from dagster_pipes import PipesParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes
from pyspark.sql import SparkSession

from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.spark import SPARK_CONF

LAKE_ROOT_EXTRA = "lake_root"
RAW_PATHS_EXTRA = "raw_paths"


def structure_with_pipes(spark: SparkSession, params_loader: PipesParamsLoader | None = None) -> dict[str, int]:
    """Structure the raw paths of the Pipes extras into their lake root; report the counts as a custom message."""
    s3 = boto3.client("s3")
    with open_dagster_pipes(
        context_loader=PipesS3ContextLoader(s3),
        message_writer=PipesS3MessageWriter(s3),
        params_loader=params_loader,
    ) as pipes:
        lake_root = pipes.get_extra(LAKE_ROOT_EXTRA)
        raw_paths = pipes.get_extra(RAW_PATHS_EXTRA)
        pipes.log.info(f"structuring {len(raw_paths)} raw objects into {lake_root}")
        counts = structure_raw(spark, raw_paths, lake_root)
        pipes.report_custom_message(counts)
    return counts


def main() -> dict[str, int]:
    """spark-submit entry: a session with the project's settings, the job, its counts on stdout."""
    builder = SparkSession.builder.appName("fares-structuring")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        counts = structure_with_pipes(spark)
    finally:
        spark.stop()
    print(json.dumps(counts, sort_keys=True))
    return counts


if __name__ == "__main__":
    main()
