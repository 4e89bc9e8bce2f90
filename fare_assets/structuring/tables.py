"""The curated 3NF tables every provider produces: names, keys and explicit Parquet schemas."""
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from fare_assets.storing.lake import CURATED_PARTITION_COLUMNS, curated_partition_path, curated_table_path
from fare_assets.structuring.spark_compat import try_cast

# Money is exact: 3 decimals fit every ISO currency (KWD has 3); 15 integer digits fit LBP or IDR fares.
MONEY = DecimalType(18, 3)

# Fact tables are Hive-partitioned so one landing hour's rerun replaces exactly its own folders.
PARTITION_COLUMNS = CURATED_PARTITION_COLUMNS


def _fields(*pairs) -> list[StructField]:
    """StructFields from (name, type) pairs, all nullable: providers leave fields out freely."""
    return [StructField(name, data_type, True) for name, data_type in pairs]


_PARTITION_FIELDS = _fields(("collected_date", DateType()), ("landing_hour", StringType()))
_STRING, _INT, _LONG, _BOOL = StringType(), IntegerType(), LongType(), BooleanType()

FACT_SCHEMAS: dict[str, StructType] = {
    "searches": StructType(_fields(
        ("search_id", _STRING), ("provider", _STRING), ("collected_at", TimestampType()),
        ("origin", _STRING), ("destination", _STRING), ("depart_date", DateType()),
        ("return_date", DateType()), ("adults", _INT), ("children", _INT), ("cabin", _STRING),
        ("status", _INT), ("error", _STRING), ("elapsed_ms", _LONG), ("option_count", _INT),
        ("request_id", _STRING), ("raw_key", _STRING),
    ) + _PARTITION_FIELDS),
    "trip_options": StructType(_fields(
        ("option_id", _STRING), ("search_id", _STRING), ("provider_option_id", _STRING),
        ("total_amount", MONEY), ("currency", _STRING), ("base_amount", MONEY),
        ("base_currency", _STRING), ("tax_amount", MONEY), ("refundable", _BOOL),
        ("latest_ticketing_at", TimestampType()),
    ) + _PARTITION_FIELDS),
    "pricings": StructType(_fields(
        ("option_id", _STRING), ("pricing_no", _INT), ("passenger_type", _STRING),
        ("passenger_count", _INT), ("sale_total_per_pax", MONEY), ("sale_currency", _STRING),
        ("sale_fare_per_pax", MONEY), ("base_per_pax", MONEY), ("base_currency", _STRING),
        ("tax_per_pax", MONEY), ("fare_calculation", _STRING),
    ) + _PARTITION_FIELDS),
    "fares": StructType(_fields(
        ("option_id", _STRING), ("pricing_no", _INT), ("fare_no", _INT),
        ("provider_fare_id", _STRING), ("carrier", _STRING), ("origin_city", _STRING),
        ("destination_city", _STRING), ("basis_code", _STRING),
    ) + _PARTITION_FIELDS),
    "segment_fares": StructType(_fields(
        ("option_id", _STRING), ("pricing_no", _INT), ("slice_no", _INT), ("segment_no", _INT),
        ("fare_no", _INT), ("free_bag_pieces", _INT), ("free_bag_kilos", _INT),
    ) + _PARTITION_FIELDS),
    "taxes": StructType(_fields(
        ("option_id", _STRING), ("pricing_no", _INT), ("tax_no", _INT), ("tax_id", _STRING),
        ("tax_code", _STRING), ("charge_type", _STRING), ("amount", MONEY),
        ("currency", _STRING), ("country", _STRING),
    ) + _PARTITION_FIELDS),
    "slices": StructType(_fields(
        ("option_id", _STRING), ("slice_no", _INT), ("origin", _STRING),
        ("destination", _STRING), ("duration_min", _INT), ("stops", _INT),
    ) + _PARTITION_FIELDS),
    "segments": StructType(_fields(
        ("option_id", _STRING), ("slice_no", _INT), ("segment_no", _INT),
        ("provider_segment_id", _STRING), ("carrier", _STRING), ("flight_number", _STRING),
        ("cabin", _STRING), ("booking_code", _STRING), ("seats_left", _INT),
        ("duration_min", _INT), ("connection_min", _INT), ("married_segment_group", _STRING),
    ) + _PARTITION_FIELDS),
    "legs": StructType(_fields(
        ("option_id", _STRING), ("slice_no", _INT), ("segment_no", _INT), ("leg_no", _INT),
        ("origin", _STRING), ("destination", _STRING), ("departs_at", TimestampType()),
        ("departs_local", TimestampNTZType()), ("arrives_at", TimestampType()),
        ("arrives_local", TimestampNTZType()), ("aircraft", _STRING), ("duration_min", _INT),
        ("mileage", _INT), ("operating_disclosure", _STRING), ("connection_min", _INT),
    ) + _PARTITION_FIELDS),
}

FACT_KEYS: dict[str, tuple[str, ...]] = {
    "searches": ("search_id",),
    "trip_options": ("option_id",),
    "pricings": ("option_id", "pricing_no"),
    "fares": ("option_id", "pricing_no", "fare_no"),
    "segment_fares": ("option_id", "pricing_no", "slice_no", "segment_no"),
    "taxes": ("option_id", "pricing_no", "tax_no"),
    "slices": ("option_id", "slice_no"),
    "segments": ("option_id", "slice_no", "segment_no"),
    "legs": ("option_id", "slice_no", "segment_no", "leg_no"),
}

_NAMED_CODE = _fields(("code", _STRING), ("name", _STRING), ("updated_at", TimestampType()))

# Dimensions are small, keyed by `code`, unpartitioned; `updated_at` decides which name is latest.
DIMENSION_SCHEMAS: dict[str, StructType] = {
    "airports": StructType(_fields(
        ("code", _STRING), ("name", _STRING), ("city_code", _STRING), ("city", _STRING),
        ("country", _STRING), ("tz", _STRING), ("lat", DoubleType()), ("lon", DoubleType()),
        ("updated_at", TimestampType()),
    )),
    "cities": StructType(_NAMED_CODE),
    "carriers": StructType(_NAMED_CODE),
    "aircraft": StructType(_NAMED_CODE),
    "tax_codes": StructType(_NAMED_CODE),
}

TABLE_SCHEMAS: dict[str, StructType] = {**FACT_SCHEMAS, **DIMENSION_SCHEMAS}


def conform(frame: DataFrame, table: str) -> DataFrame:
    """The table's columns in schema order and type, so every provider writes the same files (null where a value
    does not fit its column: under Spark 4's ANSI mode a plain cast would stop the run).

    On EMR's Spark 3.5 (ANSI off) a decimal that does not fit is null too, but a long narrowed to an int wraps:
    counts are narrowed by offers.whole_int before they get here.
    """
    return frame.select(
        [try_cast(F.col(field.name), field.dataType).alias(field.name) for field in TABLE_SCHEMAS[table]]
    )


def hadoop_path(spark: SparkSession, path: str):
    """The Hadoop FileSystem and Path for `path`, so listings and swaps work on local folders and s3a:// alike."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(path)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def matching_paths(spark: SparkSession, glob: str) -> list[str]:
    """The files or folders a Hadoop glob matches (none where nothing does: Spark refuses to read such a path)."""
    filesystem, pattern = hadoop_path(spark, glob)
    return [status.getPath().toString() for status in filesystem.globStatus(pattern) or []]


def landing_hours_glob(lake_root: str, table: str, landing_hours: list[str]) -> str:
    """A Hadoop glob of a fact table's partition folders of these landing hours, under every collection date."""
    return curated_partition_path(lake_root, table, landing_hour="{" + ",".join(landing_hours) + "}")


def read_table(spark: SparkSession, lake_root: str, table: str, landing_hours: list[str] | None = None) -> DataFrame:
    """One curated table read with its declared schema (partition columns come from the folders); of a fact table,
    only the partitions of `landing_hours` when given.

    Spark lists every file under the paths it is given before it filters a partition: reading a fact table whole to
    keep one landing hour would list every hour the lake ever landed (thousands after months, on S3 a request each),
    and a run reads its hours' tables dozens of times. The hours' folders are listed once, by date, instead.
    """
    path = curated_table_path(lake_root, table)
    reader = spark.read.schema(TABLE_SCHEMAS[table])
    if landing_hours is None or table not in FACT_SCHEMAS:
        return reader.parquet(path)
    folders = matching_paths(spark, landing_hours_glob(lake_root, table, landing_hours))
    if not folders:
        # None of these hours has rows in this table.
        return spark.createDataFrame([], TABLE_SCHEMAS[table])
    return reader.option("basePath", path).parquet(*folders)


def write_observed(frame: DataFrame, name: str, write, *metrics: Column) -> dict[str, int]:
    """Run `write(frame)`; return its row count (`rows`) and `metrics`, gathered during the write."""
    observation = Observation(name)
    write(frame.observe(observation, F.count(F.lit(1)).alias("rows"), *metrics))
    return observation.get


def write_counted(frame: DataFrame, name: str, write) -> int:
    """Run `write(frame)` and return the rows it wrote, counted without a second pass."""
    return write_observed(frame, name, write)["rows"]
