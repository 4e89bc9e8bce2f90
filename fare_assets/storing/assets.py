"""Storing (serving side): the warehouse tables the fare page reads, loaded per landing hour or backfilled range."""
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pyarrow.dataset
from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, BackfillPolicy, Failure,
                     MaterializeResult, MetadataValue, multi_asset)

from fare_assets.partitions import landing_hours, landing_hours_of_run
from fare_assets.resources import LakeStorage, WarehouseResource
from fare_assets.settings import load_settings
from fare_assets.storing import warehouse
from fare_assets.storing.lake import export_table_path, warehouse_export_key
from fare_assets.structuring.assets import CURATED_LAKE_POOL, FACT_TABLES
from fare_assets.structuring.emr import SparkRunner
from fare_assets.structuring.serving import EMPTY_ANSWERS_EXPORT, FARES_EXPORT, SEARCHES_EXPORT

_NOTHING_VISIBLE = "The load is one transaction, so nothing of it is visible"


def _rejected_by(error: psycopg.Error) -> dict[str, str]:
    """The table, column and constraint PostgreSQL names for a rejected row (never the row's values)."""
    diag = error.diag
    named = (("table", diag.table_name), ("column", diag.column_name), ("constraint", diag.constraint_name))
    return {what: name for what, name in named if name}


@contextmanager
def load_errors_as_failures(address: str, attempts: int = 1):
    """Turn a PostgreSQL error during a load (of `attempts` tries) into a Failure that names the server by `address`
    alone.

    The DSN may hold a password, so neither it nor the driver's connection text reaches the message.
    """
    try:
        yield
    except psycopg.OperationalError as error:
        # Only a server that could not be reached was tried again; any other error ended the first attempt.
        tries = f" in {attempts} attempts" if attempts > 1 and warehouse.unreachable(error) else ""
        raise Failure(
            description=f"warehouse PostgreSQL {address} failed during the load{tries} "
                        f"({warehouse.error_summary(error)}). {_NOTHING_VISIBLE}; rerun once the server answers.",
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


def _exported_rows(folder: Path, table: str, columns: list[str]) -> Iterable[tuple]:
    """One table of a warehouse export as rows for COPY in `columns` order, one record batch at a time."""
    exported = pyarrow.dataset.dataset(export_table_path(str(folder), table), format="parquet")
    return warehouse.rows_from_arrow(exported.scanner(columns=columns))


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
    check_specs=[AssetCheckSpec("every_option_loaded", asset="national_fares", partitions_def=landing_hours,
                                description="Every projected trip option of the run's hours within retention is "
                                            "in its own table (national or international).")],
    partitions_def=landing_hours,
    backfill_policy=BackfillPolicy.single_run(),
    # It exports the curated tables it reads, dimensions included: not while another run swaps them.
    pool=CURATED_LAKE_POOL,
)
def warehouse_fares(context: AssetExecutionContext, spark_runner: SparkRunner, lake: LakeStorage,
                    warehouse_db: WarehouseResource):
    address = warehouse.warehouse_address(warehouse_db.dsn)
    settings = load_settings()
    retention_days = settings.warehouse_retention_days
    # Spark (local or EMR) projects into the lake and COPY reads the files one batch at a time, so a backfill of
    # months never has to fit in this process's memory, and this process needs no Spark that reaches the lake.
    export_key = warehouse_export_key(context.run.run_id)
    try:
        exported = spark_runner.run_job(context, "export_for_warehouse", lake_root=lake.root,
                                        landing_hours=landing_hours_of_run(context),
                                        export_root=lake.object_path(export_key))
        with lake.local_copy(export_key) as folder:
            def load_export():
                # The export's rows are read afresh by each attempt: a failed one may have consumed them.
                dimensions = {table: _exported_rows(folder, table, [name for name, _ in columns])
                              for table, columns in warehouse.DIMENSION_COLUMNS.items()}
                with warehouse_db.connect() as conn:
                    load = warehouse.load_warehouse(
                        conn, _exported_rows(folder, FARES_EXPORT, warehouse.LOAD_COLUMNS), dimensions, retention_days,
                        _exported_rows(folder, SEARCHES_EXPORT, [name for name, _ in warehouse.SEARCH_COLUMNS]),
                        _exported_rows(folder, EMPTY_ANSWERS_EXPORT,
                                       [name for name, _ in warehouse.EMPTY_ANSWER_COLUMNS]))
                    return (load, warehouse.estimated_rows(conn), warehouse.table_counts(conn, warehouse.DIMENSION_TABLES),
                            warehouse.web_role_exists(conn))

            # A warehouse restart or failover should not cost the hour its load: the sensor would not ask again.
            with load_errors_as_failures(address, settings.warehouse_load_attempts):
                load, estimated, dimension_counts, web_role = warehouse.retry_while_unreachable(
                    load_export, settings.warehouse_load_attempts, settings.warehouse_retry_seconds, context.log.warning)
    finally:
        try:
            lake.delete_prefix(export_key)
        # Left over, the export only costs space (on S3 it expires): the load's own outcome is what must surface.
        except Exception as error:
            context.log.warning(f"could not remove the warehouse export {export_key}: {error}")
    context.log.info(f"loaded {address}: rows inserted or changed {load.changed}")
    if any(load.withdrawn.values()):
        context.log.info(f"options of searches structured again that no longer yield them, deleted: {load.withdrawn}")
    if load.empty_answers_changed:
        context.log.info(f"answers without options inserted or withdrawn: {load.empty_answers_changed}")
    if load.reclassified:
        context.log.info(f"{load.reclassified} options changed market (national or international) and moved table")
    if load.dropped_partitions:
        context.log.info(f"retention ({retention_days} days) dropped {', '.join(load.dropped_partitions)}")
    if load.retention_deferred:
        context.log.warning(f"retention ({retention_days} days) dropped nothing this time, the next load tries again: "
                            f"{load.retention_deferred}")
    if not web_role:
        context.log.warning(f"{address} has no role {warehouse.READONLY_ROLE}, so nothing was granted to the fare page; "
                            f"create it once (CREATE ROLE {warehouse.READONLY_ROLE} LOGIN PASSWORD ...) and reload")
    dimension_rows = MetadataValue.json(dimension_counts)
    for table in warehouse.FARE_TABLES:
        yield MaterializeResult(asset_key=table, metadata={
            "rows_changed": load.changed[table], "rows_estimated": estimated[table], "warehouse": address,
            "rows_withdrawn": load.withdrawn[table],
            "dimension_rows": dimension_rows, "retention_days": retention_days,
            "partitions_dropped": MetadataValue.json(load.dropped_partitions)})
    expected = load.staged - load.past_retention
    loaded = load.staged == exported[FARES_EXPORT] and load.present == expected
    yield AssetCheckResult(check_name="every_option_loaded", asset_key="national_fares", passed=loaded,
                           metadata={"projected": exported[FARES_EXPORT], "staged": load.staged,
                                     "past_retention": load.past_retention, "present": load.present,
                                     "moved_between_tables": load.reclassified})
    if not loaded:
        # Recorded first, then the run fails, so failed_run_alert tells someone the page misses fares.
        raise Failure(description=f"every_option_loaded failed: {exported[FARES_EXPORT]} options projected, "
                                  f"{load.staged} staged, {load.present} of the {expected} within retention in place")
