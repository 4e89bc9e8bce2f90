"""The warehouse projection of the curated tables: one row per trip option, ready for PostgreSQL."""
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType, TimestampType

from fare_assets.storing.lake import export_table_path, quarantine_path
from fare_assets.structuring.airports import airport_reference
from fare_assets.structuring.envelope import ENVELOPE_SCHEMA
from fare_assets.structuring.providers.offers import succeeded
from fare_assets.structuring.spark_compat import try_cast
from fare_assets.structuring.tables import DIMENSION_SCHEMAS, matching_paths, read_table, write_counted

# A search delivered in two landing hours is stored twice; child rows are matched to the kept copy.
_DELIVERY = ["option_id", "collected_date", "landing_hour"]

FARE_ROW_COLUMNS = (
    "option_id", "search_id", "provider", "collected_at", "origin", "destination",
    "depart_date", "return_date", "days_ahead", "nights", "adults", "children", "cabin",
    "total_amount", "currency", "carriers", "stops_out", "stops_back",
    "duration_out_min", "duration_back_min", "depart_out_local", "depart_back_local", "national",
)
# The export's folder of fare rows, beside one folder per dimension.
FARES_EXPORT = "fares"
# The export's folder of every search its landing hours hold, answered or quarantined: the load withdraws the
# warehouse's options of these searches that the fare rows no longer hold (a rerun's stricter rule dropped them).
SEARCHES_EXPORT = "searches"
SEARCH_KEY_COLUMNS = ("search_id", "collected_at")
# The export's folder of answers without options: the provider looked and found nothing, which no fare row says.
# Its columns are warehouse.EMPTY_ANSWER_COLUMNS', which the loader reads by name (declared here so the Spark job
# never imports the loader's PostgreSQL driver).
EMPTY_ANSWERS_EXPORT = "empty_answers"
_EMPTY_ANSWER_COLUMNS = ("search_id", "provider", "collected_at", "origin", "destination", "depart_date",
                         "return_date", "adults", "children", "cabin")
# A quarantined record is kept as text (DESIGN.md "Quarantine"): its search, and whether it was an answer, are read
# back from the envelope's fields.
_QUARANTINED_SEARCH = StructType([ENVELOPE_SCHEMA[name] for name in (*SEARCH_KEY_COLUMNS, "status", "response")])


def _of_slice(slice_no: int, value: str):
    return F.max(F.when(F.col("slice_no") == slice_no, F.col(value)))


def fare_rows(spark: SparkSession, lake_root: str, landing_hours: list[str] | None = None) -> DataFrame:
    """One row per trip option (deduplicated by option_id), optionally of some landing hours only."""
    latest_delivery = Window.partitionBy("option_id").orderBy(F.col("landing_hour").desc())
    options = (
        read_table(spark, lake_root, "trip_options", landing_hours)
        .withColumn("delivery_rank", F.row_number().over(latest_delivery))
        .where(F.col("delivery_rank") == 1)
        .select(*_DELIVERY, "search_id", "total_amount", "currency")
    )
    searches = read_table(spark, lake_root, "searches", landing_hours).select(
        "search_id", "collected_date", "landing_hour", "provider", "collected_at", "origin", "destination",
        "depart_date", "return_date", "adults", "children", "cabin",
    )
    slices = read_table(spark, lake_root, "slices", landing_hours).groupBy(*_DELIVERY).agg(
        _of_slice(1, "stops").alias("stops_out"),
        _of_slice(2, "stops").alias("stops_back"),
        _of_slice(1, "duration_min").alias("duration_out_min"),
        _of_slice(2, "duration_min").alias("duration_back_min"),
    )
    carriers = read_table(spark, lake_root, "segments", landing_hours).groupBy(*_DELIVERY).agg(
        F.array_join(F.array_sort(F.collect_set("carrier")), ",").alias("carriers")
    )
    legs = read_table(spark, lake_root, "legs", landing_hours)
    first_leg = (F.col("segment_no") == 1) & (F.col("leg_no") == 1)
    departures = legs.where(first_leg).groupBy(*_DELIVERY).agg(
        _of_slice(1, "departs_local").alias("depart_out_local"),
        _of_slice(2, "departs_local").alias("depart_back_local"),
    )
    rows = (
        options.join(searches, ["search_id", "collected_date", "landing_hour"])
        .join(slices, _DELIVERY, "left")
        .join(carriers, _DELIVERY, "left")
        .join(departures, _DELIVERY, "left")
    )
    touched = legs.select(*_DELIVERY, F.explode(F.array("origin", "destination")).alias("code")).unionByName(
        rows.select(*_DELIVERY, F.explode(F.array("origin", "destination")).alias("code"))
    )
    # Codes airportsdata does not know (city codes such as NYC in a query) are not airports flown:
    # the legs name the airports, so only known ones decide.
    countries = airport_reference(spark).select("code", "country")
    national = (
        touched.join(F.broadcast(countries), "code")
        .groupBy(*_DELIVERY)
        .agg((F.count_distinct("country") == 1).alias("national"))
    )
    return (
        rows.join(national, _DELIVERY, "left")
        .withColumn("days_ahead", F.datediff("depart_date", F.to_date("collected_at")))
        .withColumn("nights", F.datediff("return_date", "depart_date"))
        .withColumn("national", F.coalesce("national", F.lit(False)))
        .select(*FARE_ROW_COLUMNS)
    )


def _quarantined_searches(spark: SparkSession, lake_root: str, landing_hours: list[str] | None) -> DataFrame:
    """The search id and collection time of each quarantined answer of these landing hours (a record with a response
    and no failed status) that names both.

    A 2xx the collector could not read is recorded as a failed call (no response, its `error` and `body`): like one,
    it never yielded options, and its search may have been answered in another hour.
    """
    hours = "*" if landing_hours is None else "{" + ",".join(landing_hours) + "}"
    folders = matching_paths(spark, quarantine_path(lake_root, hours))
    # An hour with nothing quarantined has no folder.
    if not folders:
        return spark.createDataFrame([], "search_id string, collected_at timestamp")
    answered = F.col("response").isNotNull() & (F.col("status").isNull() | succeeded())
    return (
        spark.read.schema("record string").json(folders)
        .select(F.from_json(F.col("record"), _QUARANTINED_SEARCH).alias("record")).select("record.*")
        .where(answered)
        .select("search_id", try_cast(F.col("collected_at"), TimestampType()).alias("collected_at"))
    )


def searches_held(spark: SparkSession, lake_root: str, landing_hours: list[str] | None) -> DataFrame:
    """Each search these landing hours hold as an answer or in quarantine, once: (search_id, collected_at).

    A failed call never yielded options, and its search may have been answered in a later hour (a backfill rerun
    after an outage repeats its id): it withdraws nothing.
    """
    structured = read_table(spark, lake_root, "searches", landing_hours).where(succeeded()).select(*SEARCH_KEY_COLUMNS)
    return (
        structured.unionByName(_quarantined_searches(spark, lake_root, landing_hours))
        .where(F.col("search_id").isNotNull() & F.col("collected_at").isNotNull())
        .distinct()
    )


def empty_answers(spark: SparkSession, lake_root: str, landing_hours: list[str] | None) -> DataFrame:
    """Each search these landing hours hold that was answered with no trip option, once."""
    options = read_table(spark, lake_root, "trip_options", landing_hours).select("search_id", "collected_date",
                                                                                 "landing_hour")
    return (
        read_table(spark, lake_root, "searches", landing_hours).where(succeeded())
        .join(options, ["search_id", "collected_date", "landing_hour"], "left_anti")
        .where(F.col("search_id").isNotNull() & F.col("collected_at").isNotNull())
        .select(*_EMPTY_ANSWER_COLUMNS)
        .distinct()
    )


def export_for_warehouse(spark: SparkSession, lake_root: str, landing_hours: list[str] | None,
                         export_root: str) -> dict[str, int]:
    """Write what a warehouse load reads as Parquet under `export_root`; rows per table.

    The fare rows of these landing hours (`fares`), the searches they hold (`searches`), those of them answered with
    no option (`empty_answers`) and every dimension whole.
    The loader reads the files with pyarrow, so it needs no Spark of its own that can reach the lake (on EMR the
    export is in S3).
    """
    tables = {FARES_EXPORT: fare_rows(spark, lake_root, landing_hours),
              SEARCHES_EXPORT: searches_held(spark, lake_root, landing_hours),
              EMPTY_ANSWERS_EXPORT: empty_answers(spark, lake_root, landing_hours)}
    # A few hundred rows each: one file per dimension.
    tables.update({table: read_table(spark, lake_root, table).coalesce(1) for table in DIMENSION_SCHEMAS})
    return {
        table: write_counted(frame, table, lambda frame, table=table: frame.write.mode("overwrite").parquet(
            export_table_path(export_root, table)))
        for table, frame in tables.items()
    }
