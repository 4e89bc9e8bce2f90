"""Show (serving side): the per-trip advice and predicted date-grid fares the fare page reads."""
import datetime as dt

import psycopg
from dagster import (AssetExecutionContext, AssetKey, AssetSpec, DefaultSensorStatus, Failure, MaterializeResult,
                     MultiAssetSensorEvaluationContext, RunRequest, SkipReason, define_asset_job, multi_asset,
                     multi_asset_sensor)

from fare_assets.resources import FareSourceResource, LakeStorage, WarehouseResource
from fare_assets.run_limits import max_runtime_tags
from fare_assets.show.refresh import published_model, refresh_serving_tables
from fare_assets.storing import warehouse
from fare_assets.streaming.watchlist import WatchlistError
from fare_assets.synthesizing.model_files import ADVISOR, FARE_MODEL, ModelNotPublished, ModelUnavailable

FARE_TABLE_DEPS = list(warehouse.FARE_TABLES)
# The serving table each published model computes.
MODEL_TABLES = {ADVISOR: "trip_advice", FARE_MODEL: "predicted_fares"}
SERVING_TABLES_POOL = "serving-tables"


# A page view must not run a model (the advisor's features cost ~80 ms of GIL per trip), so advice
# and predictions are computed here, for every upcoming watched trip at once, whenever fares or
# models change, and so is each watched trip's page; the page only reads them by primary key.
@multi_asset(
    specs=[
        # A model that cannot be read skips its table, not the others: new fares still reach the pages.
        AssetSpec("trip_advice", group_name="show", deps=[ADVISOR, *FARE_TABLE_DEPS], skippable=True,
                  description="Buy now or wait for every upcoming watched trip at its latest collection (PostgreSQL)."),
        AssetSpec("predicted_fares", group_name="show", deps=[FARE_MODEL, *FARE_TABLE_DEPS], skippable=True,
                  description="The fare model's cheapest fare for the uncollected ±3-day date-grid cells around "
                              "each upcoming watched trip (PostgreSQL)."),
        AssetSpec("trip_pages", group_name="show", deps=["trip_advice", "predicted_fares", *FARE_TABLE_DEPS],
                  description="The fare page of every upcoming watched trip, rendered for its latest collection, "
                              "so a view reads it instead of rendering it (PostgreSQL)."),
    ],
    # Each refresh replaces whole tables: a second one at once would only wait on the first's locks.
    pool=SERVING_TABLES_POOL,
)
def trip_serving_tables(context: AssetExecutionContext, lake: LakeStorage, warehouse_db: WarehouseResource,
                        fare_source: FareSourceResource):
    address = warehouse.warehouse_address(warehouse_db.dsn)
    try:
        watchlist = fare_source.watchlist()
    except WatchlistError as error:
        # The collection fails on the same file and says so; the pages still get the new fares meanwhile.
        context.log.warning(f"advice assumes collection until the day before departure: {error}")
        watchlist = None
    models, unavailable = {}, {}
    for name in MODEL_TABLES:
        try:
            models[name] = published_model(lake, name)
        except ModelNotPublished as error:
            # A young deployment (the advisor needs departed trips to learn from): failing every refresh until the
            # first model exists would bury real failures under alerts. Its table stays empty meanwhile.
            context.log.info(f"{MODEL_TABLES[name]} not refreshed: {error}")
        except ModelUnavailable as error:
            unavailable[name] = error
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with warehouse_db.connect() as conn:
            counts, failed = refresh_serving_tables(conn, models.get(ADVISOR), models.get(FARE_MODEL), now, watchlist)
    except psycopg.OperationalError as error:
        raise Failure(description=f"warehouse PostgreSQL {address} failed while refreshing the serving tables; "
                                  "the refresh is one transaction, so the previous rows stay.") from error
    context.log.info(f"serving tables in {address}: {counts}")
    for name, model in models.items():
        table = MODEL_TABLES[name]
        if table in failed:
            unavailable[name] = f"{name} {model.version} failed on the trips: {failed[table]}"
            continue
        yield MaterializeResult(asset_key=table, metadata={
            **counts[table], "model_version": model.version, "computed_at": now.isoformat(), "warehouse": address})
    yield MaterializeResult(asset_key="trip_pages", metadata={
        **counts["trip_pages"], "computed_at": now.isoformat(), "warehouse": address})
    if unavailable:
        # The skipped tables keep the previous run's rows, each naming its model version and collection time.
        raise Failure(description="; ".join(f"{MODEL_TABLES[name]} not refreshed: {error}"
                                            for name, error in unavailable.items()))


serve_job = define_asset_job("serve_trips", selection=[trip_serving_tables], tags=max_runtime_tags(),
                             description="Recompute the advice, predicted fares and trip pages the fare page serves.")

# New fares (each structured landing hour) and new models (the daily retrain) both change what the
# page should say. national_fares and international_fares are materialized by the same step.
SERVING_INPUTS = [AssetKey("national_fares"), AssetKey(ADVISOR), AssetKey(FARE_MODEL)]


@multi_asset_sensor(monitored_assets=SERVING_INPUTS, job=serve_job, minimum_interval_seconds=60,
                    default_status=DefaultSensorStatus.RUNNING, name="serving_tables_sensor",
                    description="Refreshes the serving tables after a warehouse load or a retrain.")
def serving_tables_sensor(context: MultiAssetSensorEvaluationContext):
    """One refresh run per batch of new fare or model materializations (several loads in a minute: one run)."""
    records = [record for record in context.latest_materialization_records_by_key().values() if record]
    if not records:
        return SkipReason("no new fares or models since the last refresh")
    context.advance_all_cursors()
    return RunRequest(run_key=f"after-{max(record.storage_id for record in records)}")
