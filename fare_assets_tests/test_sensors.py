import datetime as dt
import json
import logging
import uuid
from pathlib import Path

import boto3
import pytest
from dagster import (AssetKey, DagsterInstance, DagsterRunStatus, DefaultScheduleStatus, DefaultSensorStatus,
                     Definitions, SensorDefinition, build_schedule_context, build_sensor_context, instance_for_test,
                     materialize)
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.instance.config import dagster_instance_config
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin
from dagster_aws.s3 import S3Resource
from moto import mock_aws

from fare_assets.definitions import build_defs, structure_job
from fare_assets.partitions import partition_of_landing_hour
from fare_assets.resources import LakeResource, S3LakeResource, local_resources, s3_lake_resource
from fare_assets.run_limits import LOCAL_RUN_MAX_SECONDS
from fare_assets.settings import PROJECT_ROOT, load_settings
from fare_assets.storing.assets import warehouse_fares
from fare_assets.storing.lake import partial_object_path, raw_hour_prefix, raw_object_key
from fare_assets.storing.sensors import landing_sensor_factory
from fare_assets.streaming.assets import collect_schedule
from fare_assets.structuring.assets import structured_fare_tables
from fare_assets.structuring.emr import EMR_RUN_MAX_SECONDS, LocalSparkRunner, structuring_max_runtime_tags

BUCKET = "fares-lake-test"
NOW = dt.datetime(2026, 11, 28, 4, 30, tzinfo=dt.timezone.utc)
STREAM = "fares-stream"
# More than one ListObjectsV2 page (1,000 keys) of new objects in a single hour.
BURST = 1_050


class LocalLake:
    """A lake folder in the key layout, and what its sensor-facing listing was asked for."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.resource = LakeResource(root=str(root))
        self.listed_prefixes: list[str] = []
        list_keys = LakeResource.list_keys

        def recording_list_keys(lake, prefix):
            self.listed_prefixes.append(prefix)
            return list_keys(lake, prefix)

        monkeypatch.setattr(LakeResource, "list_keys", recording_list_keys)

    def put(self, key: str) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"v": 1}\n')


class S3Lake:
    """A moto S3 bucket, and the Prefix of every ListObjectsV2 call made to it."""

    def __init__(self, monkeypatch):
        self.client = boto3.client("s3", region_name="us-east-1")
        self.client.create_bucket(Bucket=BUCKET)
        self.resource = S3LakeResource(bucket=BUCKET, s3=S3Resource(region_name="us-east-1"))
        self.listed_prefixes: list[str] = []
        get_client = S3Resource.get_client

        def recording_get_client(resource):
            client = get_client(resource)
            client.meta.events.register("provide-client-params.s3.ListObjectsV2",
                                        lambda params, **_: self.listed_prefixes.append(params["Prefix"]))
            return client

        monkeypatch.setattr(S3Resource, "get_client", recording_get_client)

    def put(self, key: str) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=b'{"v": 1}\n')


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path, monkeypatch):
    monkeypatch.setenv("FARES_SENSOR_LOOKBACK_HOURS", "2")
    # Request each changed hour at the tick that sees it: the tests of the settle period set their own.
    monkeypatch.setenv("FARES_SENSOR_SETTLE_SECONDS", "0")
    if request.param == "s3":
        request.getfixturevalue("aws")
        return S3Lake(monkeypatch)
    return LocalLake(tmp_path / "lake", monkeypatch)


def key_at(arrival: dt.datetime, uid: str | None = None) -> str:
    return raw_object_key(STREAM, arrival, uid or str(uuid.uuid4()))


def swept(at: dt.datetime, hours: dict | None = None) -> str:
    """A cursor whose last sweep of the whole window was at `at`."""
    return json.dumps({"hours": hours or {}, "swept_at": at.isoformat()})


def tick(lake, cursor: str | None, now: dt.datetime = NOW):
    """One sensor evaluation, as the daemon would run it, at the wall-clock time `now`."""
    sensor = landing_sensor_factory(structure_job, now=lambda: now)
    defs = Definitions(assets=[structured_fare_tables, warehouse_fares], jobs=[structure_job], sensors=[sensor],
                       resources={**local_resources(), "lake": lake.resource})
    with DagsterInstance.ephemeral() as instance, build_sensor_context(
            cursor=cursor, resources={"lake": lake.resource}, instance=instance,
            repository_def=defs.get_repository_def()) as context:
        return sensor.evaluate_tick(context)


def test_a_burst_beyond_one_listing_page_is_requested_once_and_late_same_second_objects_again(lake):
    second = NOW.replace(minute=10, second=5)
    for _ in range(BURST):
        lake.put(key_at(second))
    first = tick(lake, None)
    assert [(r.partition_key, r.run_key.split("/")[0]) for r in first.run_requests] == [
        ("2026-11-28-04:00", "2026-11-28-04")]
    assert json.loads(first.cursor)["hours"]["2026-11-28-04"]["objects"] == BURST
    if isinstance(lake, S3Lake):
        # The hour needed two ListObjectsV2 pages: the second one followed the continuation token.
        assert lake.listed_prefixes.count(raw_hour_prefix("2026-11-28-04")) == 2

    quiet = tick(lake, first.cursor)
    assert quiet.run_requests == [] and quiet.skip_message
    assert json.loads(quiet.cursor) == json.loads(first.cursor)

    # Same second, uuids sorting before every key already seen: a "greatest key" watermark would miss them.
    late = [key_at(second, f"00000000-0000-4000-8000-00000000000{n}") for n in range(3)]
    assert all(key < min(lake.resource.list_keys(raw_hour_prefix("2026-11-28-04"))) for key in late)
    for key in late:
        lake.put(key)
    third = tick(lake, quiet.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2026-11-28-04:00"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(third.cursor)["hours"]["2026-11-28-04"]["objects"] == BURST + 3


def test_only_the_lookback_hours_are_listed_and_each_changed_hour_is_requested_once(lake):
    for hours_ago, objects in ((5, 4), (2, 1), (1, 3), (0, 2)):
        for n in range(objects):
            lake.put(key_at(NOW - dt.timedelta(hours=hours_ago, minutes=n)))
    # The whole window was swept 10 minutes ago: this tick lists the lookback hours only.
    result = tick(lake, swept(NOW - dt.timedelta(minutes=10)))

    expected_hours = ["2026-11-28-02", "2026-11-28-03", "2026-11-28-04"]
    assert sorted(set(lake.listed_prefixes)) == [raw_hour_prefix(hour) for hour in expected_hours]
    assert sorted(r.partition_key for r in result.run_requests) == [f"{hour}:00" for hour in expected_hours]
    assert sorted(r.run_key.split("/")[0] for r in result.run_requests) == expected_hours
    cursor = json.loads(result.cursor)
    assert {hour: state["objects"] for hour, state in cursor["hours"].items()} == {
        "2026-11-28-02": 1, "2026-11-28-03": 3, "2026-11-28-04": 2}
    assert cursor["swept_at"] == (NOW - dt.timedelta(minutes=10)).isoformat()

    # Two hours later the sweep is due: it lists 26 hours back and finds the hour of 23:00, which no tick listed.
    lake.listed_prefixes.clear()
    later = tick(lake, result.cursor, NOW + dt.timedelta(hours=2))
    assert len(set(lake.listed_prefixes)) == 27
    assert [r.partition_key for r in later.run_requests] == ["2026-11-27-23:00"]
    assert sorted(json.loads(later.cursor)["hours"]) == ["2026-11-27-23", *expected_hours]

    # A day later 23:00 and 02-04 have left the sweep window, and the cursor.
    quiet = tick(lake, later.cursor, NOW + dt.timedelta(hours=28))
    assert quiet.run_requests == [] and json.loads(quiet.cursor)["hours"] == {}


def test_an_hour_that_fills_in_after_leaving_the_lookback_is_requested_by_the_hourly_sweep(lake):
    lake.put(key_at(NOW))
    first = tick(lake, None)
    assert [r.partition_key for r in first.run_requests] == ["2026-11-28-04:00"]
    # Firehose delivers an object named for 04:55 five hours late, after retrying S3.
    lake.put(key_at(NOW.replace(minute=55)))
    five_hours_on = NOW + dt.timedelta(hours=5)
    assert tick(lake, swept(five_hours_on - dt.timedelta(minutes=30), json.loads(first.cursor)["hours"]),
                five_hours_on).run_requests == []
    sweep = tick(lake, first.cursor, five_hours_on)
    assert [r.partition_key for r in sweep.run_requests] == ["2026-11-28-04:00"]
    assert sweep.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(sweep.cursor)["hours"]["2026-11-28-04"]["objects"] == 2


def test_an_hour_is_requested_once_its_sweep_has_settled_and_a_cursor_from_before_is_not_requested_again(
        lake, monkeypatch):
    monkeypatch.delenv("FARES_SENSOR_SETTLE_SECONDS")
    lake.put(key_at(NOW.replace(minute=0, second=10)))
    first = tick(lake, swept(NOW), NOW.replace(minute=1))
    assert first.run_requests == [] and first.skip_message == (
        "landing hours 2026-11-28-04 are settling: each is requested once no object has landed in it for 360 s")
    # Firehose delivers the sweep's second object four minutes later, past its 300 s buffer interval.
    lake.put(key_at(NOW.replace(minute=0, second=20)))
    second = tick(lake, first.cursor, NOW.replace(minute=5))
    assert second.run_requests == []
    assert tick(lake, second.cursor, NOW.replace(minute=10, second=59)).run_requests == []
    settled = tick(lake, second.cursor, NOW.replace(minute=11))
    assert [r.partition_key for r in settled.run_requests] == ["2026-11-28-04:00"]
    hour = json.loads(settled.cursor)["hours"]["2026-11-28-04"]
    assert hour["objects"] == 2 and hour["requested"] is True
    assert settled.run_requests[0].run_key == f"2026-11-28-04/{hour['digest']}"
    assert tick(lake, settled.cursor, NOW.replace(minute=20)).run_requests == []

    # A cursor written before the settle period requested every set it kept: an unchanged hour stays done.
    before = {"2026-11-28-04": {"objects": hour["objects"], "digest": hour["digest"]}}
    assert tick(lake, swept(NOW, before), NOW.replace(minute=30)).run_requests == []


def test_an_hour_the_sweep_finds_changed_as_it_leaves_the_window_is_still_requested(lake, monkeypatch):
    monkeypatch.setenv("FARES_SENSOR_SETTLE_SECONDS", "360")
    monkeypatch.setenv("FARES_SENSOR_SWEEP_HOURS", "3")
    oldest = NOW.replace(minute=0) - dt.timedelta(hours=3)
    lake.put(key_at(oldest + dt.timedelta(minutes=55)))
    # The sweep at 04:58 finds the late object in 01:00, the oldest hour of its window; at 05:04 01:00 has left it.
    found = tick(lake, None, NOW.replace(minute=58))
    assert found.run_requests == [] and "2026-11-28-01" in found.skip_message
    settled = tick(lake, found.cursor, NOW.replace(minute=58) + dt.timedelta(minutes=6))
    assert [r.partition_key for r in settled.run_requests] == ["2026-11-28-01:00"]
    assert json.loads(tick(lake, settled.cursor, NOW + dt.timedelta(hours=1)).cursor)["hours"] == {}


def test_an_hour_that_fills_without_pause_is_requested_once_after_it_closes(tmp_path, monkeypatch):
    # At Firehose's volume an object lands between every two ticks: requesting on each would re-read the hour
    # once per object. (On the folder lake only: 18 ticks against moto take 20 s, and listing is tested above.)
    monkeypatch.setenv("FARES_SENSOR_LOOKBACK_HOURS", "2")
    monkeypatch.delenv("FARES_SENSOR_SETTLE_SECONDS", raising=False)
    lake = LocalLake(tmp_path / "lake", monkeypatch)
    start = NOW.replace(minute=40)
    cursor, requested = swept(start), []
    for minutes in range(0, 36, 2):
        at = start + dt.timedelta(minutes=minutes)
        lake.put(key_at(at - dt.timedelta(seconds=30)))
        result = tick(lake, cursor, at)
        cursor = result.cursor
        requested += [(at.strftime("%H:%M"), request.partition_key) for request in result.run_requests]
    # The 04:59:30 object is seen at 05:00; six minutes on, hour 04 is requested, with its 11 objects; 05 fills on.
    assert requested == [("05:06", "2026-11-28-04:00")]
    assert json.loads(cursor)["hours"]["2026-11-28-04"]["objects"] == 11


@pytest.mark.parametrize("value", ["-1", "7200"])
def test_a_settle_period_outside_an_hour_is_refused(monkeypatch, value):
    monkeypatch.setenv("FARES_SENSOR_SETTLE_SECONDS", value)
    with pytest.raises(ValueError, match=f"FARES_SENSOR_SETTLE_SECONDS is {float(value)}; set from 0"):
        load_settings()


def test_a_cursor_of_the_earlier_names_format_requests_its_hours_again(lake):
    key = key_at(NOW)
    lake.put(key)
    result = tick(lake, json.dumps({"2026-11-28-04": [Path(key).name]}))
    assert [r.partition_key for r in result.run_requests] == ["2026-11-28-04:00"]
    assert json.loads(result.cursor)["hours"]["2026-11-28-04"]["objects"] == 1


def test_raw_files_are_paths_spark_reads(lake):
    keys = sorted(key_at(NOW - dt.timedelta(seconds=n)) for n in range(3))
    for key in keys:
        lake.put(key)
    prefix = raw_hour_prefix("2026-11-28-04")
    assert lake.resource.list_keys(prefix) == keys
    if isinstance(lake, S3Lake):
        assert lake.resource.raw_files(prefix) == [f"s3a://{BUCKET}/{key}" for key in keys]
    else:
        assert lake.resource.raw_files(prefix) == [str(lake.root / key) for key in keys]


def test_the_local_lake_does_not_list_the_delivery_streams_temp_files(tmp_path):
    key = key_at(NOW)
    target = tmp_path / key
    target.parent.mkdir(parents=True)
    target.write_text("{}\n")
    partial_object_path(target).write_text("{")
    # What a delivery killed before 2026-12-06 left: the stream's former name for an object being written.
    (target.parent / f".{target.name}-old.tmp").write_text("{")
    # An operator's hidden copy is listed: the structuring job names it instead of Spark skipping it.
    (target.parent / f".{target.name}-copy").write_text("{}\n")
    assert LakeResource(root=str(tmp_path)).list_keys(raw_hour_prefix("2026-11-28-04")) == [
        f"{key.rpartition('/')[0]}/.{target.name}-copy", key]


def test_the_s3_lake_bucket_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("FARES_S3_BUCKET", raising=False)
    assert s3_lake_resource().bucket == "fares-lake"
    monkeypatch.setenv("FARES_S3_BUCKET", "fares-landing-prod")
    assert s3_lake_resource().root == "s3a://fares-landing-prod"


def test_a_lake_folder_reads_as_a_local_copy_and_is_deleted_whole(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("FARES_HOME", str(tmp_path / "home"))
    folder_key = "exports/warehouse/run-1/"
    # One more than a DeleteObjects call takes.
    keys = [f"{folder_key}fares/part-{number:05}.parquet" for number in range(1_001)]
    for key in [*keys, "exports/warehouse/run-2/fares/part-00000.parquet"]:
        lake.put(key)

    with lake.resource.local_copy(folder_key) as folder:
        copied = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
        assert copied == [key.removeprefix(folder_key) for key in keys]
        assert (folder / "fares" / "part-00000.parquet").read_text() == '{"v": 1}\n'
    lake.resource.delete_prefix(folder_key)

    assert lake.resource.list_keys("exports/") == ["exports/warehouse/run-2/fares/part-00000.parquet"]
    # A download is removed with its context; the local lake's folder is read in place.
    assert not (tmp_path / "home").exists() or list((tmp_path / "home").iterdir()) == []


def test_every_schedule_and_sensor_runs_from_the_first_deployment():
    repository = build_defs(local_resources()).get_repository_def()
    automations = [*repository.schedule_defs, *repository.sensor_defs]
    assert {automation.name for automation in automations} >= {"collect_every_30_minutes", "retrain_daily",
                                                                "failed_run_alert"}
    assert {automation.name: automation.default_status for automation in automations} == {
        automation.name: DefaultSensorStatus.RUNNING if isinstance(automation, SensorDefinition)
        else DefaultScheduleStatus.RUNNING for automation in automations}


@pytest.mark.parametrize("job_name, run_config, event, status", [
    ("collect_fares", {}, DagsterEventType.RUN_ENQUEUED, DagsterRunStatus.QUEUED),
    ("backfill_fares", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}, DagsterEventType.RUN_START,
     DagsterRunStatus.STARTED),
    # raw_fare_quotes materialized from the asset graph.
    ("__ASSET_JOB", {}, DagsterEventType.RUN_START, DagsterRunStatus.STARTED),
])
def test_a_collection_slot_is_skipped_while_a_collection_is_queued_or_running(job_name, run_config, event, status):
    defs = build_defs(local_resources())
    with instance_for_test() as instance:
        assert len(collect_schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests) == 1
        # As the daemon would create it from the code location (a queued run must name where its job is).
        origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("fare_assets"), "__repository__")
        selection = frozenset({AssetKey("raw_fare_quotes")}) if job_name == "__ASSET_JOB" else None
        run = instance.create_run_for_job(defs.resolve_job_def(job_name), run_config=run_config,
                                          status=DagsterRunStatus.NOT_STARTED, asset_selection=selection,
                                          remote_job_origin=origin.get_job_origin(job_name))
        instance.report_dagster_event(DagsterEvent(event.value, job_name=job_name), run_id=run.run_id)
        assert instance.get_run_by_id(run.run_id).status == status
        tick = collect_schedule.evaluate_tick(build_schedule_context(instance=instance))
        assert tick.run_requests == [] and tick.skip_message == (
            f"{job_name} run {run.run_id} is still {status.value.lower()}: this slot's sweep is skipped rather than "
            "queued behind it")
        # Finished, or created and never launched, a run holds nothing back.
        instance.report_run_failed(run)
        instance.create_run_for_job(defs.resolve_job_def(job_name), run_config=run_config,
                                    status=DagsterRunStatus.NOT_STARTED)
        assert len(collect_schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests) == 1


def test_the_instance_purges_old_ticks_and_its_config_is_valid(monkeypatch):
    for name in ("FARES_DAGSTER_PG_URL", "FARES_DAGSTER_ARTIFACTS", "FARES_DAGSTER_COMPUTE_LOGS"):
        monkeypatch.setenv(name, "postgresql://fares@127.0.0.1:9/dagster" if name.endswith("URL") else "/tmp/x")
    config, _ = dagster_instance_config(str(PROJECT_ROOT))
    assert config["retention"] == {"schedule": {"purge_after_days": 90},
                                   "sensor": {"purge_after_days": {"skipped": 7, "failure": 90, "success": 90}}}


@pytest.mark.parametrize("runner, structuring_limit", [("local", LOCAL_RUN_MAX_SECONDS), ("emr", EMR_RUN_MAX_SECONDS)])
def test_a_run_whose_worker_died_is_failed_after_its_jobs_limit(monkeypatch, runner, structuring_limit):
    # The default launcher leaves such a run STARTED for ever, holding its pool: run monitoring fails it.
    for name in ("FARES_DAGSTER_PG_URL", "FARES_DAGSTER_ARTIFACTS", "FARES_DAGSTER_COMPUTE_LOGS"):
        monkeypatch.setenv(name, "postgresql://fares@127.0.0.1:9/dagster" if name.endswith("URL") else "/tmp/x")
    config, _ = dagster_instance_config(str(PROJECT_ROOT))
    assert config["run_monitoring"] == {"enabled": True, "max_resume_run_attempts": 0,
                                        "max_runtime_seconds": EMR_RUN_MAX_SECONDS}
    monkeypatch.setenv("FARES_SPARK_RUNNER", runner)
    assert structuring_max_runtime_tags() == {"dagster/max_runtime": str(structuring_limit)}
    defs = build_defs(local_resources())
    assert {name: defs.resolve_job_def(name).tags.get("dagster/max_runtime") for name in (
        "collect_fares", "backfill_fares", "synthesize", "serve_trips")} == dict.fromkeys(
        ("collect_fares", "backfill_fares", "synthesize", "serve_trips"), str(LOCAL_RUN_MAX_SECONDS))
    # A structuring run left STARTED (its worker died) is failed by the daemon's monitor once past its job's limit,
    # and not before: the tag is one the monitor reads.
    from dagster._daemon.monitoring import run_monitoring

    with instance_for_test() as instance:
        job = defs.resolve_job_def("structure_landing_hour")
        # The job's tags as a code location started with this runner defines them (at import).
        run = instance.create_run_for_job(job, tags=structuring_max_runtime_tags(), status=DagsterRunStatus.NOT_STARTED)
        instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name=job.name),
                                      run_id=run.run_id)
        started = instance.get_run_record_by_id(run.run_id)
        for elapsed, status in ((structuring_limit - 60, DagsterRunStatus.STARTED),
                                (structuring_limit + 60, DagsterRunStatus.FAILURE)):
            monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: started.start_time + elapsed)
            run_monitoring.check_run_timeout(instance, instance.get_run_record_by_id(run.run_id),
                                             logging.getLogger("run_monitoring"), EMR_RUN_MAX_SECONDS)
            assert instance.get_run_by_id(run.run_id).status == status


class OneRecordLostRunner(LocalSparkRunner):
    """Runs the structuring job in local Spark, then reports one quarantined record fewer than it kept."""

    def run_job(self, context, job: str, **arguments) -> dict:
        result = super().run_job(context, job, **arguments)
        return {**result, "quarantined": result["quarantined"] - 1}


def test_a_structuring_run_that_lost_rows_fails_after_recording_its_checks(tmp_path):
    # Searches + quarantined + duplicates fall one short of the raw records: the run fails, so the alert fires.
    raw = tmp_path / raw_object_key("fares", dt.datetime(2026, 11, 28, 4, 1, tzinfo=dt.timezone.utc), "u" * 36)
    raw.parent.mkdir(parents=True)
    raw.write_text("{}\n")
    runner = OneRecordLostRunner(pyspark=local_resources()["spark_runner"].pyspark)
    result = materialize([structured_fare_tables], partition_key=partition_of_landing_hour("2026-11-28-04"),
                         resources={"spark_runner": runner, "lake": LakeResource(root=str(tmp_path))},
                         raise_on_error=False)
    assert not result.success
    assert {check.check_name: check.passed for check in result.get_asset_check_evaluations()} == {
        "every_raw_record_accounted_for": False, "options_match_searches": True}
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "every_raw_record_accounted_for failed for 2026-11-28-04..2026-11-28-04")
