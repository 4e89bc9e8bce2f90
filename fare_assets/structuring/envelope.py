"""The raw record envelope (DESIGN.md "Raw records"): reading it, checking it, and the searches rows it yields."""
from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from fare_assets.storing.lake import RAW_HOUR_PATTERN
from fare_assets.structuring.spark_compat import is_valid_utf8, try_cast
from fare_assets.structuring.tables import conform

CORRUPT_RECORD = "_corrupt_record"
RAW_LINE = "raw_line"
SUPPORTED_VERSIONS = (1,)

QUERY_SCHEMA = StructType([
    StructField("origin", StringType()),
    StructField("destination", StringType()),
    StructField("depart_date", StringType()),
    StructField("return_date", StringType()),
    StructField("adults", IntegerType()),
    StructField("children", IntegerType()),
    StructField("cabin", StringType()),
])

# Dates and times are read as text and checked afterwards, so a bad value gets its own reason
# instead of turning the whole line into a corrupt record.
ENVELOPE_SCHEMA = StructType([
    StructField("v", LongType()),
    StructField("search_id", StringType()),
    StructField("provider", StringType()),
    StructField("collected_at", StringType()),
    StructField("query", QUERY_SCHEMA),
    StructField("status", IntegerType()),
    StructField("elapsed_ms", LongType()),
    StructField("error", StringType()),
    # A string field keeps the provider's JSON as text: each provider parses it with its own schema.
    StructField("response", StringType()),
    # The answer the collector could not read (a failed call's text): kept for the quarantine record.
    StructField("body", StringType()),
    StructField(CORRUPT_RECORD, StringType()),
])


def _landing_hour(raw_key: Column) -> Column:
    """"YYYY-MM-DD-HH" from the object's hour folders, or null outside the raw layout (the job refuses such files)."""
    parts = [F.regexp_extract(raw_key, RAW_HOUR_PATTERN, group) for group in (1, 2, 3, 4)]
    return F.when(raw_key.rlike(RAW_HOUR_PATTERN), F.concat_ws("-", *parts))


def read_envelopes(spark: SparkSession, raw_paths: list[str]) -> DataFrame:
    """Every non-blank raw line as one envelope row with its text, its object and its landing hour.

    Lines are read as text and parsed with `from_json`, so a line yields exactly one row whatever it holds and the
    count of records does not depend on the parser it checks: Spark's JSON reader turns a line holding an array
    into one row per element (`[]` into none). Blank lines (spaces, tabs) carry no record. Hadoop's line reader
    drops a byte order mark opening a file (an editor's save).
    """
    parse_options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD}
    line = F.col("value")
    return (
        spark.read.text(raw_paths)
        .where(line.rlike(r"[^ \t\r]"))
        .select(
            F.from_json(line, ENVELOPE_SCHEMA, parse_options).alias("envelope"),
            line.alias(RAW_LINE),
            F.col("_metadata.file_path").alias("raw_key"),
        )
        .select("envelope.*", RAW_LINE, "raw_key", _landing_hour(F.col("raw_key")).alias("landing_hour"))
    )


def _collected_at() -> Column:
    return try_cast(F.col("collected_at"), TimestampType())


def _query_date(field: str) -> Column:
    return try_cast(F.col("query").getField(field), DateType())


def envelope_problem(known_providers: Iterable[str]) -> Column:
    """Why a record cannot be structured, or null when its envelope is sound."""
    corrupt = F.col(CORRUPT_RECORD)
    version = F.col("v")
    provider = F.col("provider")
    query = F.col("query")
    return (
        # from_json reads text: bytes that are not UTF-8 would be structured as replacement characters.
        F.when(~is_valid_utf8(F.col(RAW_LINE)), F.lit("text that is not valid UTF-8"))
        .when(corrupt.isNotNull() & F.get_json_object(corrupt, "$").isNull(), F.lit("malformed JSON"))
        .when(corrupt.isNotNull() & ~corrupt.rlike(r"^\s*\{"),
              F.lit("JSON that is not an object (a line holds one record)"))
        .when(corrupt.isNotNull(), F.lit("JSON that does not fit the envelope schema"))
        .when(version.isNull(), F.lit("missing envelope version 'v'"))
        .when(~version.isin(*SUPPORTED_VERSIONS), F.concat(F.lit("unsupported envelope version "), version))
        .when(F.trim(F.col("search_id")).isNull() | (F.trim(F.col("search_id")) == ""), F.lit("missing search_id"))
        .when(provider.isNull(), F.lit("missing provider"))
        .when(~provider.isin(*known_providers), F.concat(F.lit("unknown provider '"), provider, F.lit("'")))
        .when(_collected_at().isNull(), F.lit("missing or invalid collected_at"))
        .when(F.col("status").isNull(), F.lit("missing status"))
        .when(
            query.origin.isNull() | query.destination.isNull() | _query_date("depart_date").isNull(),
            F.lit("query without origin, destination and a valid depart_date"),
        )
        .when(
            query.return_date.isNotNull() & _query_date("return_date").isNull(),
            F.lit("query with an invalid return_date"),
        )
    )


def typed_envelopes(envelopes: DataFrame) -> DataFrame:
    """Sound envelopes with typed times and the partition columns of every table they feed."""
    return (
        envelopes.withColumn("collected_at", _collected_at())
        .withColumn("depart_date", _query_date("depart_date"))
        .withColumn("return_date", _query_date("return_date"))
        .withColumn("collected_date", F.to_date("collected_at"))
    )


def without_response(reason: str) -> Column:
    """Why a successful status without a response is quarantined: `reason`, then the collector's `error` if it
    recorded why it could not read the answer (its `body` stays in the quarantine record)."""
    return F.concat_ws(": ", F.lit(reason), F.col("error"))


def quarantine_record() -> Column:
    """The record as text: the raw line when its envelope was rejected, the parsed envelope otherwise."""
    envelope_fields = [F.col(field.name) for field in ENVELOPE_SCHEMA if field.name != CORRUPT_RECORD]
    return F.coalesce(F.col(RAW_LINE), F.to_json(F.struct(*envelope_fields)))


def search_rows(envelopes: DataFrame, request_id: Column, option_count: Column) -> DataFrame:
    """One `searches` row per typed envelope; the provider supplies what only its response knows."""
    query = F.col("query")
    return conform(
        envelopes.select(
            "search_id", "provider", "collected_at",
            query.origin.alias("origin"), query.destination.alias("destination"),
            "depart_date", "return_date",
            query.adults.alias("adults"), query.children.alias("children"), query.cabin.alias("cabin"),
            "status", "error", "elapsed_ms",
            option_count.alias("option_count"), request_id.alias("request_id"),
            "raw_key", "collected_date", "landing_hour",
        ),
        "searches",
    )
