"""`make pipeline` / `make run`: materialize the whole asset graph over a simulated history.

Runs the same jobs the schedule and the sensor launch, in process, recorded in the Dagster
instance (so the UI shows them), then prints rows per table and the model's score.
"""
import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pyarrow.dataset as ds
from dagster import DagsterInstance

from fare_assets import services
from fare_assets.partitions import range_run_tags
from fare_assets.settings import load_settings
from fare_assets.storing import warehouse
from fare_assets.storing.lake import curated_table_path
from fare_assets.structuring.assets import CURATED_TABLES
from fare_assets.synthesizing.model_files import ADVISOR, FARE_MODEL, published_metrics


# Dagster's console logger defaults to DEBUG (every engine event); the summary is what matters here.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class PipelineReport:
    """What a pipeline run did: failed steps or checks, rows per table, the model's scores."""

    failures: list[str] = field(default_factory=list)
    landing_hours: list[str] = field(default_factory=list)
    curated_rows: dict[str, int] = field(default_factory=dict)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    model_metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = [f"landing hours structured: {', '.join(self.landing_hours) or 'none'}", "curated Parquet rows:"]
        lines += [f"  {table:<14} {rows:>10,}" for table, rows in self.curated_rows.items()]
        lines.append("warehouse rows:")
        lines += [f"  {table:<20} {rows:>10,}" for table, rows in self.warehouse_rows.items()]
        lines.append("advisor and fare model:")
        lines += [f"  {name:<36} {value}" for name, value in self.model_metrics.items()]
        lines.append("FAILED: " + "; ".join(self.failures) if self.failures else "every asset materialized, every check passed")
        return "\n".join(lines)


def _record(report: PipelineReport, name: str, result) -> None:
    if not result.success:
        report.failures.append(f"{name}: run {result.run_id} failed")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            report.failures.append(f"{name}: check {evaluation.check_name} on "
                                   f"{evaluation.asset_key.to_user_string()} failed")


def run_pipeline(defs, instance: DagsterInstance, history_days: float, every_hours: float,
                 history_until: str = "") -> PipelineReport:
    """Collect a history, structure every landing hour it filled, load the warehouse, train the models, fill the serving tables."""
    report = PipelineReport()
    collect_config = {"history_days": history_days, "every_hours": every_hours, "history_until": history_until,
                      "history_after": _collected_until(defs)}
    collected = defs.resolve_job_def("collect_fares").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {"raw_fare_quotes": {"config": collect_config}}, **CONSOLE_INFO},
    )
    _record(report, "collect_fares", collected)
    if not report.ok:
        return report
    lake = defs.resources["lake"]
    # The same hours the sensor would request, taken from what the collection wrote.
    collection = collected.asset_materializations_for_node("raw_fare_quotes")[0]
    report.landing_hours = list(collection.metadata["landing_hours"].value)
    if report.landing_hours:
        first, last = report.landing_hours[0], report.landing_hours[-1]
        # One single-run backfill over the whole history, as the UI would launch it.
        _record(report, f"structure_landing_hour[{first}..{last}]",
                defs.resolve_job_def("structure_landing_hour").execute_in_process(
                    instance=instance, tags=range_run_tags(first, last), run_config=CONSOLE_INFO,
                    raise_on_error=False))
        if not report.ok:
            return report
    _record(report, "synthesize", defs.resolve_job_def("synthesize").execute_in_process(
        instance=instance, run_config=CONSOLE_INFO, raise_on_error=False))
    # In process no sensor runs: refresh the page's serving tables as serving_tables_sensor would.
    if report.ok:
        _record(report, "serve_trips", defs.resolve_job_def("serve_trips").execute_in_process(
            instance=instance, run_config=CONSOLE_INFO, raise_on_error=False))
    report.curated_rows = curated_row_counts(lake.root, list(CURATED_TABLES))
    with defs.resources["warehouse_db"].connect() as conn:
        report.warehouse_rows = warehouse.table_counts(conn, (*warehouse.FARE_TABLES, *warehouse.SERVING_TABLES))
    report.model_metrics = published_metrics(lake, (ADVISOR, FARE_MODEL))
    return report


def _collected_until(defs) -> str:
    """When the warehouse last holds every watched entry's fares: a second `make run` replays the history after it
    alone (an entry added to the watchlist since, never collected, gets the whole history)."""
    routes = defs.resources["fare_source"].watchlist().routes
    with defs.resources["warehouse_db"].connect() as conn:
        until = warehouse.collected_until(conn, [(route.provider, route.origin, route.destination, route.adults,
                                                  route.children, route.cabin) for route in routes])
    return until.isoformat() if until else ""


def curated_row_counts(lake_root: str, tables: list[str]) -> dict[str, int]:
    """Rows per curated Parquet table, read from the files' metadata."""
    counts = {}
    for table in tables:
        path = curated_table_path(lake_root, table)
        counts[table] = ds.dataset(path, format="parquet", partitioning="hive").count_rows() if os.path.isdir(path) else 0
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Materialize the fare platform's asset graph.")
    parser.add_argument("--serve", action="store_true", help="then serve the Dagster UI and the fare page")
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings.env != "local":
        # It starts the local services, replays history on the simulator's clock (a real provider would answer
        # today's fares for every replayed day) and counts rows in a lake folder.
        print(f"error: `make run` and `make pipeline` run the local set, not FARES_ENV={settings.env}: deploy the code "
              "location (workspace.yaml) to a Dagster instance instead; see README, Two environments", file=sys.stderr)
        return 2
    try:
        services.check_prerequisites()
    except services.MissingPrerequisite as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    serving = services.serving_already(settings)
    if serving:
        # Runs in process skip the instance's queue and its pools: this run's structuring would rewrite the lake's
        # partitions under the served daemon's runs.
        print(f"error: {serving}: another `make run` is serving this project; stop it (Ctrl-C) before `make run` or "
              "`make pipeline`, or set FARES_DAGSTER_PORT if that UI is another project's", file=sys.stderr)
        return 2
    try:
        with services.Supervisor() as supervisor:
            supervisor.start_postgres()
            supervisor.start_market()
            if args.serve:
                # The pipeline runs in a process of its own (which finds the services running and leaves them so):
                # its Spark driver's JVM would otherwise stay beside the served processes, idle, for as long as they
                # run. Its summary is printed either way, and the platform is served either way.
                subprocess.run([sys.executable, "-m", "fare_assets.pipeline"], check=False)
                supervisor.serve()
                return 0
            from fare_assets.definitions import defs, register_pools

            instance = DagsterInstance.get()
            register_pools(instance)
            report = run_pipeline(defs, instance, settings.history_days, settings.history_every_hours)
            print(report.summary())
            return 0 if report.ok else 1
    except services.ServiceFailed as failed:
        print(f"error: {failed}; stopped everything", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
