"""Reference airport data (IATA code → name, city, country, time zone, position) from `airportsdata`."""
from functools import lru_cache

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

AIRPORT_REFERENCE_SCHEMA = StructType([
    StructField("code", StringType(), False),
    StructField("name", StringType(), True),
    StructField("city", StringType(), True),
    StructField("country", StringType(), True),
    StructField("tz", StringType(), True),
    StructField("lat", DoubleType(), True),
    StructField("lon", DoubleType(), True),
])


@lru_cache(maxsize=1)
def _airport_rows() -> tuple[tuple, ...]:
    """Every IATA airport the package knows, as rows (read once per process)."""
    import airportsdata

    return tuple(
        (code, row["name"], row["city"], row["country"], row["tz"], float(row["lat"]), float(row["lon"]))
        for code, row in airportsdata.load("IATA").items()
    )


def airport_reference(spark: SparkSession) -> DataFrame:
    """A small DataFrame of the reference airports, meant to be broadcast in joins."""
    return spark.createDataFrame(_airport_rows(), AIRPORT_REFERENCE_SCHEMA)
