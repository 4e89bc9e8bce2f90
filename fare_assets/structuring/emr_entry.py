"""EMR step script: a Spark job Dagster names, on the cluster, its result reported back through Pipes.

`spark-submit --py-files fare_assets.zip emr_entry.py` on the cluster; Dagster's `EmrSparkRunner`
launches it. The job's name and arguments arrive in the Pipes context's extras (an S3 object), not
as step arguments: a backfill names thousands of raw objects, more than a step's arguments hold.
"""
import json

import boto3
from dagster_pipes import PipesParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes
from pyspark.sql import SparkSession

from fare_assets.structuring import spark_jobs
from fare_assets.structuring.spark import SPARK_CONF

JOB_EXTRA = "job"
ARGUMENTS_EXTRA = "arguments"


def run_with_pipes(spark: SparkSession, params_loader: PipesParamsLoader | None = None) -> dict:
    """Run the job the Pipes extras name; report its result as a custom message."""
    s3 = boto3.client("s3")
    with open_dagster_pipes(
        context_loader=PipesS3ContextLoader(s3),
        message_writer=PipesS3MessageWriter(s3),
        params_loader=params_loader,
    ) as pipes:
        job = pipes.get_extra(JOB_EXTRA)
        pipes.log.info(f"running the Spark job {job}")
        result = spark_jobs.run_spark_job(spark, job, pipes.get_extra(ARGUMENTS_EXTRA))
        pipes.report_custom_message(result)
    return result


def main() -> dict:
    """spark-submit entry: a session with the project's settings, the job, its result on stdout."""
    builder = SparkSession.builder.appName("fares")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        result = run_with_pipes(spark)
    finally:
        spark.stop()
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
