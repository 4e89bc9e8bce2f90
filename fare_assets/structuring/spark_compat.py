"""The few things the jobs need that EMR's Spark (3.5 on emr-7.x) lacks and this project's Spark (4) has.

Spark 4 added `Column.try_cast` and `try_make_timestamp`: null where a value does not convert. Spark 3.5 has
neither, but with ANSI mode off a plain cast or make_timestamp is null there too; ANSI_OFF, part of
spark.SPARK_CONF, turns it off on 3.5 (it is off by default, but a cluster may turn it on). Spark 4 keeps
ANSI mode on, so a lapse anywhere else fails loudly. Spark 4 also added `is_valid_utf8`.
fare_assets_tests/test_emr_cluster_spark.py runs the jobs on both and compares every table.
"""
from pyspark.sql import Column
from pyspark.sql import functions as F

HAS_TRY_FORMS = hasattr(Column, "try_cast")
ANSI_OFF = {} if HAS_TRY_FORMS else {"spark.sql.ansi.enabled": "false"}


def try_cast(column: Column, data_type) -> Column:
    """`column.try_cast(data_type)`: null where the value does not convert."""
    return column.try_cast(data_type) if HAS_TRY_FORMS else column.cast(data_type)


def try_make_timestamp(*parts: Column, timezone: Column) -> Column:
    """`F.try_make_timestamp(*parts, timezone=timezone)`: null where the parts or the zone are not valid."""
    make = F.try_make_timestamp if HAS_TRY_FORMS else F.make_timestamp
    return make(*parts, timezone=timezone)


def is_valid_utf8(column: Column) -> Column:
    """`F.is_valid_utf8(column)`: whether a string's bytes are valid UTF-8."""
    if hasattr(F, "is_valid_utf8"):
        return F.is_valid_utf8(column)
    # Spark 3.5's decode replaces what does not decode, so a string the round trip changes was not UTF-8.
    return F.decode(column.cast("binary"), "UTF-8") == column
