"""Storing (serving side): the warehouse tables the fare page reads, loaded per landing hour or backfilled range."""
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pyarrow.dataset
from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, BackfillPolicy, Failure,
                     MaterializeResult, MetadataValue, multi_asset)
from dagster_pyspark import PySparkResource

from fare_assets.partitions import landing_hours, landing_hours_of_run
from fare_assets.resources import LakeResource, WarehouseResource
from fare_assets.settings import load_settings
from fare_assets.storing import warehouse
from fare_assets.structuring.assets import FACT_TABLES
from fare_assets.structuring.serving import fare_rows
from fare_assets.structuring.tables import read_table

_NOTHING_VISIBLE = "The load is one transaction, so nothing of it is visible"


def _rejected_by(error: psycopg.Error) -> dict[str, str]:
    """The table, column and constraint PostgreSQL names for a rejected row (never the row's values)."""
    diag = error.diag
    named = (("table", diag.table_name), ("column", diag.column_name), ("constraint", diag.constraint_name))
    return {what: name for what, name in named if name}


@contextmanager
def load_errors_as_failures(address: str):
    """Turn a PostgreSQL error during a load into a Failure that names the server by `address` alone.

    The DSN may hold a password, so neither it nor the driver's connection text reaches the message.
    """
    try:
        yield
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Failure(
            description=f"warehouse PostgreSQL {address} failed during the load ({reason}). {_NOTHING_VISIBLE}; "
                        "rerun once the server answers.",
            metadata={"warehouse": address, "error": type(error).__name__},
        ) from error
    except (psycopg.IntegrityError, psycopg.DataError) as error:
        # The same rows would fail every rerun: say which rule they break, so the data gets fixed.
        rejected_by = _rejected_by(error)
        named = f" ({', '.join(f'{what} {name}' for what, name in rejected_by.items())})" if rejected_by else ""
        raise Failure(
            description=f"warehouse PostgreSQL {address} rejected a row of the load: {error.diag.message_primary}"
                        f"{named}. {_NOTHING_VISIBLE}; a rerun loads the same rows, so fix or restructure the "
                        "curated rows of these landing hours first.",
            metadata={"warehouse": address, "error": type(error).__name__, **rejected_by},
        ) from error


# The page needs one indexed row per trip option; PostgreSQL serves it, Parquet keeps the history.
# The dimensions ride in the fares' transaction: they are a few hundred rows, and the page never
# sees a fare whose airport or carrier the warehouse does not know yet.
@multi_asset(
    specs=[
        AssetSpec("national_fares", group_name="storing", deps=list(FACT_TABLES),
                  description="Trip options whose airports are all in one country (PostgreSQL)."),
        AssetSpec("international_fares", group_name="storing", deps=list(FACT_TABLES),
                  description="Trip options that cross a border (PostgreSQL)."),
    ],
    check_specs=[AssetCheckSpec("every_option_loaded", asset="national_fares",
                                description="Every projected trip option of the run's hours within retention is "
                                            "in one of the two tables.")],
    partitions_def=landing_hours,
    backfill_policy=BackfillPolicy.single_run(),
)
def warehouse_fares(context: AssetExecutionContext, pyspark: PySparkResource, lake: LakeResource,
                    warehouse_db: WarehouseResource):
    spark = pyspark.spark_session
    dimensions = {
        table: read_table(spark, lake.root, table).select(*(name for name, _ in columns)).toArrow()
        for table, columns in warehouse.DIMENSION_COLUMNS.items()
    }
    address = warehouse.warehouse_address(warehouse_db.dsn)
    settings = load_settings()
    retention_days = settings.warehouse_retention_days
    # The projection goes through local Parquet and reaches COPY one batch at a time, so a backfill of months
    # never has to fit in this process's memory; under FARES_HOME, as the system's temporary folder is often tmpfs.
    settings.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fare-load-", dir=settings.home) as folder:
        projected_path = Path(folder) / "fares"
        fare_rows(spark, lake.root, landing_hours_of_run(context)).select(*warehouse.LOAD_COLUMNS).write.parquet(
            projected_path.as_uri())
        projected = pyarrow.dataset.dataset(projected_path, format="parquet")
        projected_rows = projected.count_rows()
        with load_errors_as_failures(address), warehouse_db.connect() as conn:
            load = warehouse.load_warehouse(
                conn, warehouse.rows_from_arrow(projected),
                {table: warehouse.rows_from_arrow(rows) for table, rows in dimensions.items()}, retention_days)
            totals = warehouse.table_counts(conn, warehouse.WAREHOUSE_TABLES)
            web_role = warehouse.web_role_exists(conn)
    context.log.info(f"loaded {address}: rows inserted or changed {load.changed}")
    if load.dropped_partitions:
        context.log.info(f"retention ({retention_days} days) dropped {', '.join(load.dropped_partitions)}")
    if not web_role:
        context.log.warning(f"{address} has no role {warehouse.READONLY_ROLE}, so nothing was granted to the fare page; "
                            f"create it once (CREATE ROLE {warehouse.READONLY_ROLE} LOGIN PASSWORD ...) and reload")
    dimension_rows = MetadataValue.json({table: totals[table] for table in warehouse.DIMENSION_TABLES})
    for table in warehouse.FARE_TABLES:
        yield MaterializeResult(asset_key=table, metadata={
            "rows_changed": load.changed[table], "rows_total": totals[table], "warehouse": address,
            "dimension_rows": dimension_rows, "retention_days": retention_days,
            "partitions_dropped": MetadataValue.json(load.dropped_partitions)})
    expected = load.staged - load.past_retention
    yield AssetCheckResult(check_name="every_option_loaded", asset_key="national_fares",
                           passed=load.staged == projected_rows and load.present == expected,
                           metadata={"projected": projected_rows, "staged": load.staged,
                                     "past_retention": load.past_retention, "present": load.present})
