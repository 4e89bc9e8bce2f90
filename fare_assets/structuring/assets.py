"""Structuring: the raw records of one landing hour (or a backfilled range) become rows of the 3NF Parquet tables."""
from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, BackfillPolicy, Failure,
                     MaterializeResult, multi_asset)

from fare_assets.partitions import landing_hours, landing_hours_of_run
from fare_assets.resources import LakeStorage
from fare_assets.storing.lake import quarantine_root, raw_hour_prefix
from fare_assets.streaming.notify import quarantined_records_alert, send_from_run
from fare_assets.structuring.emr import SparkRunner
from fare_assets.structuring.tables import FACT_SCHEMAS, TABLE_SCHEMAS

# What each table of tables.py holds, as the Dagster UI describes it (one for every table: a table added there without
# one stops the definitions loading).
_DESCRIPTIONS = {
    "searches": "One row per provider call (failed calls included), keyed by search_id.",
    "trip_options": "One row per priced itinerary a search returned.",
    "pricings": "Per passenger type pricing of a trip option.",
    "fares": "Fare components (carrier, city pair, basis code) of a pricing.",
    "segment_fares": "Which fare component and free baggage allowance apply to each segment of a pricing.",
    "taxes": "Taxes of a pricing; the same code may repeat, tax_no keeps them apart.",
    "slices": "Directions of a trip option (out, back).",
    "segments": "Flights of a slice.",
    "legs": "Legs of a segment, with UTC and local times.",
    # Dimensions are upserted by every run (latest name wins), not partitioned.
    "airports": "Airports seen in responses, with country, city, time zone and position from airportsdata.",
    "cities": "Cities (metropolitan codes) of those airports.",
    "carriers": "Airlines by IATA code.",
    "aircraft": "Aircraft types by code.",
    "tax_codes": "Tax codes and their names.",
}
FACT_TABLES = {table: _DESCRIPTIONS[table] for table in FACT_SCHEMAS}
CURATED_TABLES = {table: _DESCRIPTIONS[table] for table in TABLE_SCHEMAS}
# The Dagster pool of every step that writes or reads the curated lake: each run swaps the dimension tables in
# place, so the instance (dagster.yaml: run granularity, limit 1) runs one such run at a time, whichever job it is
# (the sensor's structure_landing_hour, or a backfill launched from the asset graph).
CURATED_LAKE_POOL = "curated-lake"


# Parquet in 3NF is what Spark, the warehouse and ad hoc engines read; raw stays the source of truth.
@multi_asset(
    specs=[AssetSpec(table, group_name="structuring", description=text, deps=["raw_fare_quotes"])
           for table, text in CURATED_TABLES.items()],
    check_specs=[
        # Partitioned like the tables: a landing hour's result stays its own, not replaced by the next hour's.
        AssetCheckSpec("every_raw_record_accounted_for", asset="searches", partitions_def=landing_hours,
                       description="Raw records = searches + quarantined + dropped duplicates."),
        AssetCheckSpec("options_match_searches", asset="trip_options", partitions_def=landing_hours,
                       description="Options written = the sum of option_count over searches."),
    ],
    partitions_def=landing_hours,
    # A backfill of many hours is one Spark job, not one per hour.
    backfill_policy=BackfillPolicy.single_run(),
    pool=CURATED_LAKE_POOL,
)
def structured_fare_tables(context: AssetExecutionContext, spark_runner: SparkRunner, lake: LakeStorage):
    hours = landing_hours_of_run(context)
    paths = [path for hour in hours for path in lake.raw_files(raw_hour_prefix(hour))]
    if not paths:
        raise Failure(f"no raw objects landed in {hours[0]}..{hours[-1]} under {lake.root}")
    counts = spark_runner.run_job(context, "structure", raw_paths=paths, lake_root=lake.root)
    context.log.info(f"structured {len(paths)} objects of {hours[0]}..{hours[-1]}: {counts}")
    if counts["quarantined"]:
        # The run succeeds (every record is accounted for), so only an alert tells someone that fares are missing.
        folder = quarantine_root(lake.root)
        context.log.warning(f"{counts['quarantined']} records quarantined, each with its reason, under {folder}")
        send_from_run(context.log, quarantined_records_alert(context.job_name, context.run.run_id,
                                                             counts["quarantined"], hours, folder))
    for table in CURATED_TABLES:
        yield MaterializeResult(asset_key=table, metadata={"rows": counts[table], "raw_objects": len(paths)})
    accounted = counts["searches"] + counts["quarantined"] + counts["duplicates"]
    checks = [
        AssetCheckResult(check_name="every_raw_record_accounted_for", asset_key="searches",
                         passed=accounted == counts["raw_records"],
                         metadata={"raw_records": counts["raw_records"], "accounted": accounted,
                                   "quarantined": counts["quarantined"]}),
        AssetCheckResult(check_name="options_match_searches", asset_key="trip_options",
                         passed=counts["trip_options"] == counts["options_announced"],
                         metadata={"trip_options": counts["trip_options"],
                                   "options_announced": counts["options_announced"]}),
    ]
    yield from checks
    failed = [check.check_name for check in checks if not check.passed]
    if failed:
        # The job lost rows between what it planned and what it wrote: the load would spread them, and the failed
        # run tells someone (failed_run_alert).
        raise Failure(description=f"{', '.join(failed)} failed for {hours[0]}..{hours[-1]}: {counts}")
