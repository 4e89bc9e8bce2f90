"""Spark session settings shared by the local runner, the tests and the EMR job."""
import os

from fare_assets.settings import env_or_default
from fare_assets.structuring.spark_compat import ANSI_OFF

SPARK_CONF = {
    # The INT96 default reads back as naive timestamps; micros keep UTC instants exact.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    # Rerunning one landing hour replaces only the partitions it writes.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # size(null) is null, not -1: Spark 4 does so with ANSI mode on, EMR's Spark 3.5 (ANSI off) only with this.
    "spark.sql.legacy.sizeOfNull": "false",
    "spark.sql.shuffle.partitions": "8",
    # Each task writes one file per landing hour it holds into each of 14 tables, and Spark packs raw objects into
    # splits by size, not by hour, so every split of a backfill holds every hour: at the 128 MB default 500 MB of
    # raw logs made 55 files per table. Splits up to 512 MB (still one per core when the input is smaller) made 16.
    # On EMR too, where each S3 object costs more than a local file; measured only locally.
    "spark.sql.files.maxPartitionBytes": "512m",
    "spark.ui.enabled": "false",
    # Progress bars garble run logs and bench output.
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    **ANSI_OFF,
}


# PostgreSQL's JDBC driver (Debian's libpostgresql-jdbc-java), so a local session reads the warehouse (the MLlib
# engine's observations) without downloading anything; a cluster brings its own.
JDBC_DRIVER_JAR = env_or_default("FARES_JDBC_DRIVER_JAR", "/usr/share/java/postgresql.jar")


# The throughput collector: a local session is one batch JVM, and the 500 MB structuring bench ran faster with it
# than with G1, Java 17's default (README, Benchmarks). Only the first session of a process, which launches the JVM,
# applies it. Not in SPARK_CONF: under spark-submit (EMR) the driver's JVM is already running.
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseParallelGC"


def local_spark_conf() -> dict[str, str]:
    """SPARK_CONF for a session started in this process: with the JDBC driver on its classpath where installed."""
    return {
        **SPARK_CONF,
        "spark.driver.extraJavaOptions": LOCAL_DRIVER_JAVA_OPTIONS,
        **({"spark.jars": JDBC_DRIVER_JAR} if os.path.isfile(JDBC_DRIVER_JAR) else {}),
    }


def local_spark_session(app_name: str = "fares"):
    """A local[*] session with the project's settings (tests and `make pipeline`)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[*]").appName(app_name)
    for key, value in local_spark_conf().items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
