"""The warehouse's observations read by Spark over JDBC, for the MLlib engine: rows go from PostgreSQL to the
executors, split by departure date, and never through the driver.

The query is warehouse.observations_query, the one the pandas reader runs, so both engines learn from the same rows.
"""
import datetime as dt
from urllib.parse import quote

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame, SparkSession

from fare_assets.storing import warehouse
from fare_assets.structuring.spark import JDBC_DRIVER_JAR

JDBC_DRIVER = "org.postgresql.Driver"
# Rows fetched per round trip: the driver's default (all rows at once) would hold a partition in memory.
FETCH_SIZE = 10_000
# Ranges read at once, each on a connection of its own running the grouping query: on a cluster of many cores,
# one per core would take more of PostgreSQL's connections than a daily retrain should (the page needs them too).
MAX_CONNECTIONS = 8
# libpq connection settings and the names PgJDBC gives the same setting in its URL.
JDBC_SETTINGS = {"sslmode": "sslmode", "sslrootcert": "sslrootcert", "application_name": "ApplicationName",
                 "connect_timeout": "connectTimeout"}


def jdbc_url(info: psycopg.ConnectionInfo) -> tuple[str, dict[str, str]]:
    """The JDBC URL and connection properties of an open connection, so Spark reaches the server, database and user
    psycopg reached (environment variables and .pgpass included). The credentials travel as properties, never in
    the URL, so an error message that quotes the URL names no password."""
    host = info.host
    if host.startswith("/"):
        raise ValueError(f"the warehouse is reached through a Unix socket ({host}); JDBC needs a TCP host name")
    if ":" in host:
        host = f"[{host}]"
    given = info.get_parameters()
    params = "&".join(f"{JDBC_SETTINGS[name]}={quote(given[name], safe='')}" for name in JDBC_SETTINGS if name in given)
    url = f"jdbc:postgresql://{host}:{info.port}/{quote(info.dbname, safe='')}" + (f"?{params}" if params else "")
    properties = {"driver": JDBC_DRIVER, "user": info.user}
    if info.password:
        properties["password"] = info.password
    return url, properties


def read_observations(spark: SparkSession, dsn: str, departing_from: dt.date = dt.date.min) -> DataFrame:
    """warehouse.observations as a Spark frame: one row per trip and collection moment, read in parallel ranges of
    departure date (a trip's rows stay in one range)."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        warehouse.ensure_schema(conn)
        first, last = warehouse.departure_bounds(conn, departing_from)
        query = warehouse.observations_query(sql.Literal(departing_from).as_string(conn))
        url, properties = jdbc_url(conn.info)
    reader = (spark.read.format("jdbc").option("url", url).option("fetchsize", FETCH_SIZE).options(**properties)
              .option("dbtable", f"({query}) AS observations"))
    if first is not None:
        reader = (reader.option("partitionColumn", "depart_date").option("lowerBound", first.isoformat())
                  .option("upperBound", (last + dt.timedelta(days=1)).isoformat())
                  .option("numPartitions", min(spark.sparkContext.defaultParallelism, MAX_CONNECTIONS)))
    try:
        return reader.load()
    except Exception as error:
        if "ClassNotFoundException" in str(error) and JDBC_DRIVER in str(error):
            raise RuntimeError(f"PostgreSQL's JDBC driver is not on Spark's classpath: install libpostgresql-jdbc-java "
                               f"or point FARES_JDBC_DRIVER_JAR at the driver's jar (now {JDBC_DRIVER_JAR})") from error
        raise
