"""The warehouse's observations read by Spark over JDBC, for the MLlib engine: rows go from PostgreSQL to the
executors, split by departure date, and never through the driver.

The query is warehouse.observations_query, the one the pandas reader runs, so both engines learn from the same rows.
"""
import datetime as dt

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame, SparkSession

from fare_assets.storing import warehouse
from fare_assets.structuring.spark import JDBC_DRIVER_JAR

JDBC_DRIVER = "org.postgresql.Driver"
# Rows fetched per round trip: the driver's default (all rows at once) would hold a partition in memory.
FETCH_SIZE = 10_000
# libpq connection settings PgJDBC takes as URL parameters under the same name.
PASSED_SETTINGS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout")


def jdbc_url(dsn: str) -> tuple[str, dict[str, str]]:
    """A libpq DSN as a JDBC URL and its connection properties (the credentials travel as properties, not in the
    URL, so an error message that quotes the URL names no password)."""
    settings = conninfo_to_dict(dsn)
    host, port, database = settings.get("host", "localhost"), settings.get("port", "5432"), settings.get("dbname", "")
    if "," in host:
        raise ValueError("a JDBC read takes one warehouse host; the DSN names several")
    params = "&".join(f"{name}={settings[name]}" for name in PASSED_SETTINGS if name in settings)
    url = f"jdbc:postgresql://{host}:{port}/{database}" + (f"?{params}" if params else "")
    properties = {"driver": JDBC_DRIVER, **{name: settings[name] for name in ("user", "password") if name in settings}}
    return url, properties


def _departure_bounds(dsn: str, departing_from: dt.date) -> tuple[dt.date | None, dt.date | None]:
    """The first and last departure dates the observations hold (an index probe per fare table partition)."""
    with psycopg.connect(dsn) as conn:
        warehouse.ensure_schema(conn)
        return conn.execute(
            "SELECT min(depart_date), max(depart_date) FROM ("
            " SELECT depart_date FROM national_fares WHERE depart_date >= %(from)s"
            " UNION ALL SELECT depart_date FROM international_fares WHERE depart_date >= %(from)s) AS departures",
            {"from": departing_from}).fetchone()


def read_observations(spark: SparkSession, dsn: str, departing_from: dt.date = dt.date.min) -> DataFrame:
    """warehouse.observations as a Spark frame: one row per trip and collection moment, read in parallel ranges of
    departure date (a trip's rows stay in one range)."""
    first, last = _departure_bounds(dsn, departing_from)
    query = warehouse.observations_query(f"DATE '{departing_from.isoformat()}'")
    url, properties = jdbc_url(dsn)
    reader = (spark.read.format("jdbc").option("url", url).option("fetchsize", FETCH_SIZE).options(**properties)
              .option("dbtable", f"({query}) AS observations"))
    if first is not None:
        reader = (reader.option("partitionColumn", "depart_date").option("lowerBound", first.isoformat())
                  .option("upperBound", (last + dt.timedelta(days=1)).isoformat())
                  .option("numPartitions", spark.sparkContext.defaultParallelism))
    try:
        return reader.load()
    except Exception as error:
        if "ClassNotFoundException" in str(error) and JDBC_DRIVER in str(error):
            raise RuntimeError(f"PostgreSQL's JDBC driver is not on Spark's classpath: install libpostgresql-jdbc-java "
                               f"or point FARES_JDBC_DRIVER_JAR at the driver's jar (now {JDBC_DRIVER_JAR})") from error
        raise
