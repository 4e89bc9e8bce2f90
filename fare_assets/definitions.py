"""The Dagster code location: assets, checks, jobs, schedules and sensors of the five stages."""
from dagster import DagsterInstance, Definitions, define_asset_job

from fare_assets.price_alerts import price_alert_sensor
from fare_assets.resources import resources_for_env
from fare_assets.run_alerts import failed_run_alert
from fare_assets.show.assets import SERVING_TABLES_POOL, serve_job, serving_tables_sensor, trip_serving_tables
from fare_assets.storing.assets import warehouse_fares
from fare_assets.storing.sensors import landing_sensor_factory
from fare_assets.streaming.assets import (COLLECTION_POOL, backfill_job, collect_job, collect_schedule,
                                          raw_fare_quotes)
from fare_assets.structuring.assets import CURATED_LAKE_POOL, structured_fare_tables
from fare_assets.structuring.checks import quality_checks
from fare_assets.structuring.emr import structuring_max_runtime_tags
from fare_assets.synthesizing.assets import buy_wait_advisor, fare_model, retrain_schedule, synthesize_job

# Partitioned by landing hour through its assets; the sensor runs one hour, a backfill a range in one run.
structure_job = define_asset_job(
    "structure_landing_hour", selection=[structured_fare_tables, warehouse_fares],
    description="Structure landing hours of raw records into Parquet and load the warehouse.",
    tags=structuring_max_runtime_tags(),
)


POOLS = (COLLECTION_POOL, CURATED_LAKE_POOL, SERVING_TABLES_POOL)


def register_pools(instance: DagsterInstance) -> None:
    """Give each pool the instance's limit now: the run queue only limits a pool from the pass after it first sees it.

    Without this, a backfill queued while the first structuring run of a fresh instance is in progress starts at once.
    Only pools the instance lacks: on PostgreSQL storage, Dagster's insert-then-update of a known pool fails its own
    transaction (UniqueViolation, then "current transaction is aborted"), which stopped every second `make run`.
    """
    known = instance.event_log_storage.get_concurrency_keys()
    for pool in POOLS:
        if pool not in known:
            instance.event_log_storage.initialize_concurrency_limit_to_default(pool)


def build_defs(resources: dict) -> Definitions:
    """The code location over one resource set (tests pass their own)."""
    return Definitions(
        assets=[raw_fare_quotes, structured_fare_tables, warehouse_fares, buy_wait_advisor, fare_model,
                trip_serving_tables],
        asset_checks=quality_checks,
        jobs=[collect_job, backfill_job, structure_job, synthesize_job, serve_job],
        schedules=[collect_schedule, retrain_schedule],
        sensors=[landing_sensor_factory(structure_job), failed_run_alert, price_alert_sensor, serving_tables_sensor],
        resources=resources,
    )


defs = build_defs(resources_for_env())
