"""Spark session settings shared by the local runner, the tests and the EMR job."""
import os

SPARK_CONF = {
    # The INT96 default reads back as naive timestamps; micros keep UTC instants exact.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    # Rerunning one landing hour replaces only the partitions it writes.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    # Progress bars garble run logs and bench output.
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
}


def local_spark_session(app_name: str = "fares"):
    """A local[*] session with the project's settings (tests and `make pipeline`)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[*]").appName(app_name)
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
