"""The shipped dagster.yaml's pools: runs that collect, swap the curated lake or the serving tables start one at a time,
whichever job they belong to. Decided by Dagster's own run queue on a real instance; nothing is launched."""
import yaml
from dagster import DagsterRunStatus
from dagster._core.execution.api import create_execution_plan
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.snap import snapshot_from_execution_plan
from dagster._core.test_utils import instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from fare_assets.definitions import POOLS, build_defs, register_pools
from fare_assets.resources import local_resources
from fare_assets.settings import PROJECT_ROOT

HOUR = {"dagster/partition": "2026-12-05-08:00"}
LOCATION = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="fare_assets.definitions"))


def submit(instance, job, status=DagsterRunStatus.QUEUED, tags=None):
    """A run of `job` in `status`, with the execution plan the queue reads its pools from (as the UI submits it)."""
    tags = tags or {}
    plan = snapshot_from_execution_plan(create_execution_plan(job, tags=tags), job.get_job_snapshot_id())
    return instance.create_run(
        job_name=job.name, run_id=None, run_config={}, resolved_op_selection=None, step_keys_to_execute=None,
        status=status, tags=tags, root_run_id=None, parent_run_id=None, job_snapshot=job.get_job_snapshot(),
        execution_plan_snapshot=plan, parent_job_snapshot=None,
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(LOCATION, "__repository__"), job.name),
        job_code_origin=None, asset_selection=None, asset_check_selection=None, op_selection=None,
        asset_graph=job.asset_layer.asset_graph)


def dequeued(instance) -> list[str]:
    """The queued runs the run queue would start now, by run id (its decision, taken without launching them)."""
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    return [run.run_id for run in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)]


def test_runs_of_one_pool_start_one_at_a_time_whatever_their_job():
    shipped = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
                 "concurrency": shipped["concurrency"]}
    defs = build_defs(local_resources())
    with instance_for_test(overrides=overrides) as instance:
        register_pools(instance)
        assert {info.concurrency_key: info.slot_count for info in
                instance.event_log_storage.get_concurrency_infos(set(POOLS)).values()} == dict.fromkeys(POOLS, 1)
        structuring = submit(instance, defs.resolve_job_def("structure_landing_hour"), DagsterRunStatus.STARTED, HOUR)
        # A backfill launched from the asset graph: the implicit asset job, not structure_landing_hour.
        graph = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(defs.get_assets_def("searches").keys))
        backfill = submit(instance, graph, tags=HOUR)
        serve, serve_again = (submit(instance, defs.resolve_job_def("serve_trips")) for _ in range(2))
        collect = submit(instance, defs.resolve_job_def("collect_fares"))
        # The same asset as a backfill_fares replay, so in the same pool.
        collect_again = submit(instance, defs.resolve_job_def("collect_fares"))
        assert backfill.run_op_concurrency.all_pools == {"curated-lake"}

        # The backfill waits for the structuring run; of two refreshes, one starts; of two collections (each with
        # its own rate limiters), one.
        assert dequeued(instance) == [serve.run_id, collect.run_id]
        instance.report_run_failed(structuring)
        assert dequeued(instance) == [backfill.run_id, serve.run_id, collect.run_id]
        assert serve_again.run_id not in dequeued(instance) and collect_again.run_id not in dequeued(instance)


def test_a_second_make_run_registers_the_pools_again_on_postgresql_storage(warehouse_dsn):
    # As dagster.yaml stores the instance: on PostgreSQL, registering a known pool again failed its transaction.
    shipped = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    overrides = {"storage": {"postgres": {"postgres_url": warehouse_dsn}}, "concurrency": shipped["concurrency"]}
    with instance_for_test(overrides=overrides) as instance:
        register_pools(instance)
        register_pools(instance)
        assert {info.concurrency_key: info.slot_count for info in
                instance.event_log_storage.get_concurrency_infos(set(POOLS)).values()} == dict.fromkeys(POOLS, 1)
