"""The MLlib engine's observations: read by Spark over JDBC from a real warehouse, the same rows as the pandas reader."""
import datetime as dt

import pandas as pd
import psycopg
import pytest

from fare_assets.storing import warehouse
from fare_assets.storing.spark_observations import jdbc_url, read_observations
from fare_assets_tests.test_webapp import NOW, fare_row


def _warehouse_rows() -> list[tuple]:
    """Twelve trips (national and international, two parties) over six weeks of departures, three collections each,
    two searches at one of the moments."""
    rows = []
    for trip in range(12):
        depart = NOW.date() + dt.timedelta(days=10 + 4 * trip)
        route = ("SFO", "JFK", True) if trip % 2 else ("SFO", "LHR", False)
        for collection in range(3):
            collected_at = NOW - dt.timedelta(hours=12 * collection)
            for option in range(2):
                rows.append(fare_row(f"{trip}-{collection}-{option}", f"{300 + 7 * trip + 5 * option - collection}.50",
                                     search_id=f"s{trip}-{collection}-{option % (1 + (collection == 0))}",
                                     collected_at=collected_at, origin=route[0], destination=route[1],
                                     national=route[2], depart=depart, back=depart + dt.timedelta(days=7),
                                     carriers=("UA", "AA,BA")[option], stops=(option, 0), adults=1 + trip % 2))
    return rows


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["origin", "destination", "depart_date", "return_date", "adults", "collected_at"]
    return frame.sort_values(columns).reset_index(drop=True)


def test_spark_reads_the_same_observations_as_pandas(spark, warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, _warehouse_rows())
        expected = warehouse.observations(conn)
        later = warehouse.observations(conn, departing_from=NOW.date() + dt.timedelta(days=30))
    frame = read_observations(spark, warehouse_dsn)
    # Read in ranges of departure date, one per core at most.
    assert 1 < frame.rdd.getNumPartitions() <= spark.sparkContext.defaultParallelism
    actual = frame.toPandas()
    actual["collected_at"] = pd.to_datetime(actual["collected_at"]).dt.tz_localize("UTC")
    for column in ("depart_date", "return_date"):
        actual[column] = pd.to_datetime(actual[column])
    assert len(expected) == 36 and sorted(actual.columns) == sorted(expected.columns)
    pd.testing.assert_frame_equal(_ordered(actual)[list(expected.columns)], _ordered(expected), check_dtype=False)
    assert read_observations(spark, warehouse_dsn, NOW.date() + dt.timedelta(days=30)).count() == len(later) == 21


def test_an_empty_warehouse_gives_no_observations_and_gets_its_tables(spark, warehouse_dsn):
    assert read_observations(spark, warehouse_dsn).count() == 0
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.table_counts(conn) == {"national_fares": 0, "international_fares": 0}


class _ConnectionInfo:
    """What jdbc_url reads of psycopg's ConnectionInfo, for servers the tests cannot start (TLS, IPv6, sockets)."""

    def __init__(self, host: str, parameters: dict[str, str], password: str | None = "s3cret"):
        self.host, self.port, self.dbname, self.user, self.password = host, 6543, "fares", "reader", password
        self._parameters = parameters

    def get_parameters(self) -> dict[str, str]:
        return self._parameters


def test_the_jdbc_url_names_the_server_psycopg_reached_and_no_credentials():
    url, properties = jdbc_url(_ConnectionInfo("db.example", {"sslmode": "require", "application_name": "fares & co",
                                                              "options": "-c jit=off"}))
    assert url == "jdbc:postgresql://db.example:6543/fares?sslmode=require&ApplicationName=fares%20%26%20co"
    assert properties == {"driver": "org.postgresql.Driver", "user": "reader", "password": "s3cret"}
    assert jdbc_url(_ConnectionInfo("::1", {}, password=None)) == (
        "jdbc:postgresql://[::1]:6543/fares", {"driver": "org.postgresql.Driver", "user": "reader"})
    with pytest.raises(ValueError, match="Unix socket"):
        jdbc_url(_ConnectionInfo("/var/run/postgresql", {}))
