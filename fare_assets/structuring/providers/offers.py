"""What the offer-style providers (Duffel, Amadeus) share: ISO durations, local times, keys, segment rows;
and the rule every provider, QPX included, applies to an option's total.

Not a provider itself: it has no NAME and is not in `PROVIDERS`.
"""
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, TimestampNTZType

from fare_assets.structuring.airports import airport_reference
from fare_assets.structuring.spark_compat import try_cast, try_make_timestamp
from fare_assets.structuring.tables import PARTITION_COLUMNS, TABLE_SCHEMAS, conform

PARTITIONS = list(PARTITION_COLUMNS)

# The range of the tables' int columns (durations, mileage, connections).
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1
# "PT1H35M", "PT01H35M" (zero-padded), "PT8H", "P1DT2H": days, hours and minutes of an ISO-8601 duration.
_DURATION_PATTERN = r"^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:[0-9.]+S)?)?$"

# The platform's cabin names (the QPX protocol's): providers' own names map onto them.
_CABINS = {
    "ECONOMY": "COACH", "PREMIUM_ECONOMY": "PREMIUM_COACH", "BUSINESS": "BUSINESS", "FIRST": "FIRST",
}

_KILOMETRES_PER_MILE = 1.609344


def struct_of(*pairs) -> StructType:
    return StructType([StructField(name, data_type) for name, data_type in pairs])


def succeeded() -> Column:
    """A call that answered: Duffel creates an offer request with 201, Amadeus searches with 200."""
    return F.col("status").between(200, 299)


def any_unpriced(options: Column, amount_of: Callable[[Column], Column],
                 currency_of: Callable[[Column], Column]) -> Column:
    """Whether some option lacks a readable, positive total amount with a currency (the warehouse needs both)."""
    # A null test would make `exists` null, and a null reason lets the record through.
    return F.exists(options, lambda option: ~F.coalesce(
        (amount_of(option) > 0) & (F.trim(currency_of(option)) != ""), F.lit(False)
    ))


# Why an answer with such an option is quarantined (every provider's rule says it alike).
OTHER_TRIP_SHAPE = ("successful status with an option of other slices than the search asked for (one-way for a "
                    "round trip, or the reverse)")


def any_other_trip_shape(options: Column, slices_of: Callable[[Column], Column]) -> Column:
    """Whether some option lists other than the search's slices: two for a round trip, one for a one-way search."""
    # A one-way fare answering a round-trip search would be ranked against round trips as the cheapest of them. An
    # option listing no slices says nothing of its shape and is kept, as an option without flights.
    asked = F.when(F.col("return_date").isNotNull(), F.lit(2)).otherwise(F.lit(1))

    def other_shape(option: Column) -> Column:
        slices = F.coalesce(F.size(slices_of(option)), F.lit(0))
        return (slices > 0) & (slices != asked)

    return F.exists(options, other_shape)


def duration_minutes(iso: Column) -> Column:
    """Whole minutes of an ISO-8601 duration; null when absent, not a duration, or too long for the column."""
    # Each step is a try_ form: with ANSI mode on (Spark 4) one absurd value ("P1500000D") would stop the job.
    def part(group: int) -> Column:
        digits = F.regexp_extract(iso, _DURATION_PATTERN, group)
        # An absent part counts 0; a part too long even for a long makes the whole duration null.
        return F.when(digits == "", F.lit(0).cast("long")).otherwise(try_cast(digits, "long"))

    minutes = F.try_add(F.try_add(F.try_multiply(part(1), F.lit(1440)), F.try_multiply(part(2), F.lit(60))), part(3))
    return F.when(iso.rlike(_DURATION_PATTERN) & (iso != "P") & (iso != "PT"), whole_int(minutes))


def whole_int(number: Column) -> Column:
    """`number` as an int, null outside the int range: a plain cast would fail under ANSI mode (Spark 4) and wrap
    or saturate without it (EMR's Spark 3.5)."""
    return F.when(number.between(_INT_MIN, _INT_MAX), number.cast("int"))


def wall_time(local: Column) -> Column:
    """A local time without offset ("2021-12-30T08:55:00") as a wall-clock timestamp."""
    return try_cast(local, TimestampNTZType())


def instant(wall: Column, time_zone: Column) -> Column:
    """The UTC instant of a wall-clock time in an IANA time zone; null when the zone is unknown."""
    return try_make_timestamp(
        F.year(wall), F.month(wall), F.dayofmonth(wall), F.hour(wall), F.minute(wall), F.second(wall),
        timezone=time_zone,
    )


def cabin(name: Column) -> Column:
    """A provider's cabin ("economy", "PREMIUM_ECONOMY") in the platform's names; unknown ones kept, upper-cased."""
    upper = F.upper(name)
    mapping = F.create_map(*[F.lit(value) for pair in _CABINS.items() for value in pair])
    return F.coalesce(F.try_element_at(mapping, upper), upper)


def miles(kilometres: Column) -> Column:
    """Statute miles (the legs' `mileage`, as QPX gives it) from a distance in kilometres."""
    return whole_int(F.round(try_cast(kilometres, "double") / F.lit(_KILOMETRES_PER_MILE)))


def operating_disclosure(marketing_code: Column, operating_code: Column, operating_name: Column) -> Column:
    """QPX's free-text codeshare note ("OPERATED BY AMERICAN AIRLINES") when another airline flies the segment.

    A missing operating carrier means the marketing carrier flies it.
    """
    return F.when(
        operating_code.isNotNull() & (operating_code != marketing_code),
        F.concat(F.lit("OPERATED BY "), F.upper(F.coalesce(operating_name, operating_code))),
    )


def option_id(provider_option_id: Column) -> Column:
    """The trip option's key, derived like QPX's: 128 bits of a hash of (search, provider option)."""
    return F.substring(F.sha2(F.concat_ws("|", F.col("search_id"), provider_option_id), 256), 1, 32)


def options_of(searches: DataFrame, offers: Column, id_field: str, *keep: Column) -> DataFrame:
    """One row per offer of the successful searches, with `option_id`, `provider_option_id` and `option`."""
    exploded = searches.where(succeeded()).select(
        "search_id", *PARTITIONS, *keep, F.posexplode(offers).alias("option_pos", "option"),
    )
    # A missing offer id falls back to the position, so two such offers cannot collide.
    provider_option_id = F.coalesce(F.col("option")[id_field], F.concat(F.lit("#"), F.col("option_pos")))
    return exploded.withColumn("provider_option_id", provider_option_id).withColumn(
        "option_id", option_id(provider_option_id)
    )


def with_reference_time_zones(flat_segments: DataFrame) -> DataFrame:
    """Fill `origin_tz` / `destination_tz` from `airportsdata` for providers whose times carry no zone."""
    zones = airport_reference(flat_segments.sparkSession).select("code", "tz")
    origin_zones = F.broadcast(zones.withColumnRenamed("code", "origin").withColumnRenamed("tz", "origin_tz"))
    destination_zones = F.broadcast(
        zones.withColumnRenamed("code", "destination").withColumnRenamed("tz", "destination_tz")
    )
    return flat_segments.join(origin_zones, "origin", "left").join(destination_zones, "destination", "left")


def segment_and_leg_rows(flat_segments: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The `segments` and `legs` tables from one row per flown segment (one leg each).

    Expects option_id, slice_no, segment_no, the partitions, provider_segment_id, carrier,
    flight_number, cabin, booking_code, seats_left, duration_min, origin, destination, departs_local,
    arrives_local, origin_tz, destination_tz, aircraft, mileage, operating_disclosure.
    Offer providers give no connection time: it is the wait until the slice's next departure.
    """
    # A search re-sent into a later landing hour has its option ids in both hours: each copy is its own.
    next_in_slice = Window.partitionBy("option_id", *PARTITIONS, "slice_no").orderBy("segment_no")
    timed = (
        flat_segments.withColumn("departs_at", instant(F.col("departs_local"), F.col("origin_tz")))
        .withColumn("arrives_at", instant(F.col("arrives_local"), F.col("destination_tz")))
    )
    with_connection = timed.withColumn(
        "connection_min",
        whole_int((F.unix_timestamp(F.lead("departs_at").over(next_in_slice)) - F.unix_timestamp("arrives_at")) / 60),
    ).withColumn("married_segment_group", F.lit(None).cast("string")).withColumn("leg_no", F.lit(1))
    return conform(with_connection, "segments"), conform(with_connection, "legs")


def named_codes(pairs: DataFrame, table: str) -> DataFrame:
    """A dimension's (code, name, updated_at) rows, once each: offers repeat the same airline many times."""
    return conform(pairs.where(F.col("code").isNotNull()).distinct(), table)


def empty_table(spark: SparkSession, table: str) -> DataFrame:
    """A table the provider's format has nothing for (no rows, the table's schema)."""
    return spark.createDataFrame([], TABLE_SCHEMAS[table])
