"""The structuring job: raw envelope JSON lines of one or more landing hours → curated 3NF Parquet tables.

The same code runs in the local session and on EMR, both through `spark_jobs.SPARK_JOBS` (on EMR from
`emr_entry.py`); `python -m fare_assets.structuring.job --lake LAKE HOUR_FOLDER…` runs it by hand (README).
"""
import argparse
import json
from collections import Counter
from functools import reduce
from pathlib import PurePosixPath

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fare_assets.storing.lake import (RAW_PREFIX, curated_table_path, is_partial_object, quarantine_path,
                                      quarantine_root)
from fare_assets.structuring.airports import airport_reference
from fare_assets.structuring.envelope import (
    RAW_LINE,
    envelope_problem,
    quarantine_record,
    read_envelopes,
    typed_envelopes,
)
from fare_assets.structuring.providers import PROVIDERS
from fare_assets.structuring.providers.offers import succeeded
from fare_assets.structuring.spark import SPARK_CONF
from fare_assets.structuring.tables import (
    DIMENSION_SCHEMAS,
    FACT_SCHEMAS,
    PARTITION_COLUMNS,
    conform,
    hadoop_path,
    landing_hours_glob,
    read_table,
    write_counted,
    write_observed,
)

_STAGING_SUFFIX = ".staging"


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


def _redeliveries(envelopes: DataFrame) -> DataFrame:
    """The `record_id` of every copy of a search in a landing hour but the one kept (Firehose delivers at least once).

    A copy in another landing hour (a spool re-send) is that hour's, as when the hour runs alone: an hour's content
    never depends on which other hours share its run.
    """
    # A rerun of a sweep at a pinned moment (a backfill after an outage) repeats its search ids, so a copy can be
    # a failed call and another the answer: an answer is kept first. Then the first delivered, and among copies in
    # one object the record's hash, so every rerun of the hour keeps the same one.
    answered = succeeded() & F.col("response").isNotNull()
    kept_first = Window.partitionBy("landing_hour", "search_id").orderBy(
        F.col("answered").desc(), "raw_key", "collected_at", "record_hash")
    # Only the keys are shuffled: the envelopes, response text included, stay where they were read.
    return (
        envelopes.select("record_id", "search_id", "landing_hour", "raw_key", "collected_at",
                         answered.alias("answered"),
                         F.xxhash64("status", "elapsed_ms", "response", "error", "body").alias("record_hash"))
        .withColumn("copy_no", F.row_number().over(kept_first))
        .where(F.col("copy_no") > 1)
        .select("record_id")
    )


def _census(envelopes: DataFrame) -> tuple[dict[str | None, int], list[str]]:
    """Records per provider among sound envelopes (rejected ones under None) and the landing hours present.

    One pass over the cache. A file outside the raw layout has no landing hour, so no partition its quarantine
    record could live in that a later run would not overwrite: the run stops, naming such files, before writing.
    """
    sound_provider = F.when(F.col("reason").isNull(), F.col("provider")).alias("provider")
    records: Counter[str | None] = Counter()
    hours = set()
    for row in envelopes.groupBy(sound_provider, "landing_hour").count().collect():
        records[row["provider"]] += row["count"]
        hours.add(row["landing_hour"])
    if None in hours:
        outside = [row["raw_key"] for row in
                   envelopes.where(F.col("landing_hour").isNull()).select("raw_key").distinct().limit(5).collect()]
        raise ValueError(f"raw files outside the {RAW_PREFIX}YYYY/MM/DD/HH/ layout, such as {', '.join(outside)}: "
                         "move them under the hour folder they landed in; nothing was written")
    return records, sorted(hours)


def _skipped_by_spark(name: str) -> bool:
    """Whether Spark's file sources skip a file of this name, even when it is named (HadoopFSUtils's listing rule
    and PartitioningAwareFileIndex's isDataPath, which also skips the `_metadata` names the first keeps)."""
    return name.startswith(".") or (name.startswith("_") and "=" not in name) or name.endswith("._COPYING_")


def _command_line_files(spark: SparkSession, paths: list[str]) -> list[str]:
    """The files of the command line's paths (hour folders, files or globs of either), a folder's listed at every
    depth as the assets list an hour: the local lake's objects still being written left out, no other file hidden."""
    files = []
    for path in paths:
        filesystem, pattern = hadoop_path(spark, path)
        matches = filesystem.globStatus(pattern) or []
        if not matches:
            raise FileNotFoundError(f"no raw file or folder at {path}")
        for status in matches:
            if not status.isDirectory():
                files.append(status.getPath().toString())
                continue
            listing = filesystem.listFiles(status.getPath(), True)
            while listing.hasNext():
                file = listing.next().getPath().toString()
                if not is_partial_object(file):
                    files.append(file)
    return files


def _landing_hour_globs(lake_root: str, landing_hours: list[str]) -> list[str]:
    """Hadoop globs of every quarantine and fact-table partition folder of these landing hours."""
    return [quarantine_path(lake_root, "{" + ",".join(landing_hours) + "}")] + [
        landing_hours_glob(lake_root, table, landing_hours) for table in FACT_SCHEMAS]


def _clear_landing_hours(spark: SparkSession, lake_root: str, landing_hours: list[str]) -> None:
    """Delete the quarantine and fact-table partitions of these landing hours before they are rewritten.

    Dynamic partition overwrite replaces only the partitions a write produces: a partition the rerun
    leaves empty (nothing quarantined any more, a collection date's records gone) would keep stale rows.
    """
    if not landing_hours:
        return
    for glob in _landing_hour_globs(lake_root, landing_hours):
        filesystem, pattern = hadoop_path(spark, glob)
        for status in filesystem.globStatus(pattern):
            filesystem.delete(status.getPath(), True)


def _with_airport_reference(spark: SparkSession, airports: DataFrame) -> DataFrame:
    """Provider airports with country, city, time zone and position from `airportsdata`."""
    reference = airport_reference(spark).select(
        "code", F.col("name").alias("reference_name"), "city", "country", "tz", "lat", "lon"
    )
    enriched = airports.join(F.broadcast(reference), "code", "left").withColumn(
        "name", F.coalesce("name", "reference_name")
    )
    return conform(enriched, "airports")


def _upsert_dimension(spark: SparkSession, lake_root: str, table: str, fresh: DataFrame) -> int:
    """Merge fresh rows into a dimension (latest non-null name per code wins); return its size.

    Spark cannot overwrite a path it is reading, so the merge is written beside the table and
    swapped in. A swap interrupted between delete and rename is finished on the next run.
    """
    path = curated_table_path(lake_root, table)
    filesystem, table_path = hadoop_path(spark, path)
    _, staging_path = hadoop_path(spark, path + _STAGING_SUFFIX)
    if not filesystem.exists(table_path) and filesystem.exists(staging_path):
        filesystem.rename(staging_path, table_path)
    candidates = fresh
    if filesystem.exists(table_path):
        candidates = candidates.unionByName(read_table(spark, lake_root, table))
    latest = Window.partitionBy("code").orderBy(
        F.col("name").isNull(), F.col("updated_at").desc_nulls_last(), F.col("name").desc()
    )
    merged = (
        candidates.where(F.col("code").isNotNull())
        .withColumn("rank", F.row_number().over(latest))
        .where(F.col("rank") == 1)
        .drop("rank")
    )
    rows = write_counted(
        merged.coalesce(1), table, lambda frame: frame.write.mode("overwrite").parquet(path + _STAGING_SUFFIX)
    )
    filesystem.delete(table_path, True)
    filesystem.rename(staging_path, table_path)
    return rows


def _write_facts(lake_root: str, provider_tables: list[dict[str, DataFrame]]) -> dict[str, int]:
    """Overwrite each fact table's partitions of these landing hours; return rows written per table."""
    counts = {}
    for table in FACT_SCHEMAS:
        # Only searches carry option_count: the sum lets a check compare it with trip_options.
        metrics = [F.sum("option_count").alias("options_announced")] if table == "searches" else []
        observed = write_observed(
            _union([tables[table] for tables in provider_tables]), table,
            lambda frame, table=table: frame.write.mode("overwrite")
            .partitionBy(*PARTITION_COLUMNS)
            .parquet(curated_table_path(lake_root, table)),
            *metrics,
        )
        counts[table] = observed["rows"]
        if metrics:
            counts["options_announced"] = observed["options_announced"] or 0
    return counts


def structure_raw(spark: SparkSession, raw_paths: list[str], lake_root: str) -> dict[str, int]:
    """Structure raw files into the curated tables, each under the landing hour its key names; return rows per table.

    Rerunning a set of files rewrites exactly the landing hours they belong to, partitions it no longer
    fills included (they are removed), so `raw_paths` must hold every object of each hour it touches (the
    assets pass whole hours' files; the command line lists the hour folders it is given). A backfill passes many
    hours' files at once: one job instead of one per hour.

    Besides one count per table it returns `raw_records`, `quarantined` and `duplicates` (dropped
    redeliveries), which account for every record: raw_records == searches + quarantined +
    duplicates; and `options_announced`, the sum of the searches' option_count.
    """
    if not raw_paths:
        raise ValueError("structure_raw needs at least one raw file")
    skipped = [path for path in raw_paths if _skipped_by_spark(PurePosixPath(path).name)]
    if skipped:
        raise ValueError(f"raw files named as Spark skips them (hidden or partial: '_…', '.…', '…._COPYING_'), "
                         f"such as {', '.join(skipped[:5])}: rename a whole object, delete a partial one (a "
                         f"delivery or copy that died: its records come again); nothing was written")
    # The id is drawn once, when the envelopes are cached, so it names one delivery in every later use.
    envelopes = (
        read_envelopes(spark, raw_paths)
        .withColumn("reason", envelope_problem(PROVIDERS))
        # The line's text is kept for the records quarantined here alone: the cache would hold sound lines twice.
        .withColumn(RAW_LINE, F.when(F.col("reason").isNotNull(), F.col(RAW_LINE)))
        .withColumn("record_id", F.monotonically_increasing_id())
        .persist()
    )
    cached = [envelopes]
    try:
        sound_records, landing_hours = _census(envelopes)
        counts = {"raw_records": sum(sound_records.values())}
        sound = typed_envelopes(envelopes.where(F.col("reason").isNull()))
        redeliveries = _redeliveries(sound).persist()
        cached.append(redeliveries)
        counts["duplicates"] = redeliveries.count()
        # Usually few or none once counted, so the planner broadcasts them instead of shuffling envelopes.
        unique = sound.join(redeliveries, "record_id", "left_anti")

        # Planning a provider's tables takes seconds, so providers absent from these files are skipped;
        # all are kept when none is present, so every table still gets a typed, empty frame to write.
        present = {name: provider for name, provider in PROVIDERS.items() if name in sound_records} or PROVIDERS
        rejected = [envelopes.where(F.col("reason").isNotNull())]
        provider_tables = []
        for name, provider in present.items():
            parsed = (
                provider.parse_responses(unique.where(F.col("provider") == name))
                .withColumn("reason", provider.response_problem())
                # Only quarantined records need the response text again, so the cache keeps it for them alone.
                .withColumn("response", F.when(F.col("reason").isNotNull(), F.col("response")))
                .persist()
            )
            cached.append(parsed)
            rejected.append(parsed.where(F.col("reason").isNotNull()))
            provider_tables.append(provider.build_tables(parsed.where(F.col("reason").isNull())))

        quarantine = _union(
            [frame.select("raw_key", "reason", quarantine_record().alias("record"), "landing_hour")
             for frame in rejected]
        )
        _clear_landing_hours(spark, lake_root, landing_hours)
        counts["quarantined"] = write_counted(
            quarantine.coalesce(1), "quarantine",
            lambda frame: frame.write.mode("overwrite").partitionBy("landing_hour").json(quarantine_root(lake_root)),
        )
        counts.update(_write_facts(lake_root, provider_tables))
        for table in DIMENSION_SCHEMAS:
            fresh = _union([tables[table] for tables in provider_tables])
            if table == "airports":
                fresh = _with_airport_reference(spark, fresh)
            counts[table] = _upsert_dimension(spark, lake_root, table, fresh)
        return counts
    finally:
        for frame in cached:
            frame.unpersist()


def main(argv: list[str] | None = None) -> dict[str, int]:
    """Command line: structure the given raw files into the lake at --lake."""
    parser = argparse.ArgumentParser(prog="python -m fare_assets.structuring.job", description=main.__doc__)
    parser.add_argument("--lake", required=True, help="lake root: a folder or an s3a:// URL")
    parser.add_argument("paths", nargs="+", help="hour folders raw/fares/YYYY/MM/DD/HH/ (or all of an hour's files: a run replaces the hours it touches)")
    args = parser.parse_args(argv)
    # Under spark-submit (local or EMR) no session exists yet; an embedding caller's session is
    # reused and left running for it.
    owns_session = SparkSession.getActiveSession() is None
    builder = SparkSession.builder.appName("fares-structuring")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        counts = structure_raw(spark, _command_line_files(spark, args.paths), args.lake)
    finally:
        if owns_session:
            spark.stop()
    print(json.dumps(counts, sort_keys=True))
    return counts


if __name__ == "__main__":
    main()
