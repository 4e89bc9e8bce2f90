"""Storing (serving side): the warehouse tables the fare page reads, loaded per landing hour or backfilled range."""
from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, BackfillPolicy,
                     MaterializeResult, multi_asset)
from dagster_pyspark import PySparkResource

from fare_assets.partitions import landing_hours, landing_hours_of_run
from fare_assets.resources import LakeResource, WarehouseResource
from fare_assets.storing import warehouse
from fare_assets.structuring.assets import FACT_TABLES
from fare_assets.structuring.serving import fare_rows


# The page needs one indexed row per trip option; PostgreSQL serves it, Parquet keeps the history.
@multi_asset(
    specs=[
        AssetSpec("national_fares", group_name="storing", deps=list(FACT_TABLES),
                  description="Trip options whose airports are all in one country (PostgreSQL)."),
        AssetSpec("international_fares", group_name="storing", deps=list(FACT_TABLES),
                  description="Trip options that cross a border (PostgreSQL)."),
    ],
    check_specs=[AssetCheckSpec("every_option_loaded", asset="national_fares",
                                description="Every projected trip option of the run's hours is in one of the two tables.")],
    partitions_def=landing_hours,
    backfill_policy=BackfillPolicy.single_run(),
)
def warehouse_fares(context: AssetExecutionContext, pyspark: PySparkResource, lake: LakeResource,
                    warehouse_db: WarehouseResource):
    projected = fare_rows(pyspark.spark_session, lake.root, landing_hours_of_run(context)).select(*warehouse.LOAD_COLUMNS).toArrow()
    with warehouse_db.connect() as conn:
        merged = warehouse.load_fares(conn, warehouse.rows_from_arrow(projected))
        present = warehouse.options_present(conn, projected.column("option_id").to_pylist())
        totals = warehouse.table_counts(conn)
    for table in warehouse.FARE_TABLES:
        yield MaterializeResult(asset_key=table, metadata={"rows_merged": merged[table], "rows_total": totals[table]})
    yield AssetCheckResult(check_name="every_option_loaded", asset_key="national_fares",
                           passed=present == projected.num_rows,
                           metadata={"projected": projected.num_rows, "present": present})
