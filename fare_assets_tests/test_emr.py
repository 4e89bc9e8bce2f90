"""Structuring on EMR through Dagster Pipes, against moto: the cluster request, the shipped code, the counts."""
import gzip
import io
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.waiter
import pytest
from dagster import MaterializeResult, asset, materialize, open_pipes_session
from dagster_aws.pipes import PipesS3ContextInjector
from dagster_aws.s3 import S3Resource
from dagster_pipes import PipesContext, PipesMappingParamsLoader
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.emr.models import emr_backends

from fare_assets.resources import S3LakeResource, local_resources
from fare_assets.structuring import emr_entry
from fare_assets.structuring.assets import CURATED_TABLES, structured_fare_tables
from fare_assets.structuring.emr import EmrSparkRunner, LocalSparkRunner, PrefixedS3MessageReader, package_zip_bytes
from fare_assets.structuring.job import structure_raw
from fare_assets_tests.test_structuring import QPX_FIXTURES, _envelope, _response, _write_raw

REGION = "us-east-1"
BUCKET = "fares-emr-test"
ARRIVAL = datetime(2026, 11, 28, 4, 7, 0, tzinfo=timezone.utc)
PARTITION = "2026-11-28-04:00"
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


def test_the_entry_script_reports_through_pipes_what_structure_raw_returns(aws, spark, tmp_path):
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
            extras={emr_entry.LAKE_ROOT_EXTRA: str(tmp_path / "entry_lake"), emr_entry.RAW_PATHS_EXTRA: raw_paths},
        ) as session:
            received["entry_counts"] = emr_entry.structure_with_pipes(
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


class FakeCluster:
    """Does what EMR would: runs the step (emr_entry) once the cluster exists, then ends the cluster.

    The cluster's s3a:// filesystem is stood in for by a copy of the raw objects in a local folder,
    read by the real job in the test's Spark session.
    """

    def __init__(self, spark, s3, local_lake: Path):
        self.spark, self.s3, self.local_lake = spark, s3, local_lake
        self.emr = boto3.client("emr", region_name=REGION)
        self.structured: dict = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def structure_from_copy(self, spark, raw_paths: list[str], lake_root: str) -> dict[str, int]:
        """structure_raw as the step calls it, its s3a:// objects read from a local copy; records what it got."""
        self.structured.update(raw_paths=raw_paths, lake_root=lake_root)
        local_paths = []
        for path in raw_paths:
            key = path.removeprefix(f"s3a://{BUCKET}/")
            local_path = self.local_lake / key
            local_path.parent.mkdir(parents=True, exist_ok=True)
            local_path.write_bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            local_paths.append(str(local_path))
        self.structured["counts"] = structure_raw(spark, local_paths, str(self.local_lake))
        return self.structured["counts"]

    def _write_step_logs(self, cluster_id: str):
        """The step's stdout and stderr where EMR puts them (LogUri), which the Pipes client forwards."""
        log_uri = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["LogUri"]
        log_prefix = log_uri.removeprefix(f"s3://{BUCKET}/")
        for step in self.emr.list_steps(ClusterId=cluster_id)["Steps"]:
            for stream in ("stdout", "stderr"):
                self.s3.put_object(Bucket=BUCKET, Key=f"{log_prefix}{cluster_id}/steps/{step['Id']}/{stream}.gz",
                                   Body=gzip.compress(f"{step['Name']}: {stream}\n".encode()))

    def _run(self):
        """Wait for the cluster, run the step with the Pipes env vars EMR would export, then end the cluster."""
        cluster_id = None
        try:
            deadline = time.monotonic() + 60
            while not (clusters := self.emr.list_clusters()["Clusters"]):
                assert time.monotonic() < deadline, "no cluster was started"
                time.sleep(0.05)
            cluster_id = clusters[0]["Id"]
            configurations = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Configurations"]
            spark_env = next(item for item in configurations if item["Classification"] == "spark-env")
            pipes_env = spark_env["Configurations"][0]["Properties"]
            emr_entry.structure_with_pipes(self.spark, PipesMappingParamsLoader(pipes_env))
            self._write_step_logs(cluster_id)
        except BaseException as error:
            self.error = error
        finally:
            if cluster_id:
                cluster = emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id]
                for step in cluster.steps:
                    step.state = "COMPLETED" if self.error is None else "FAILED"
                cluster.terminate()


def test_structured_fare_tables_on_emr_reports_the_job_counts(aws, spark, tmp_path, monkeypatch):
    for number, envelopes in enumerate(_raw_lines()):
        local = _write_raw(tmp_path / "landing", ARRIVAL.replace(minute=number), envelopes, extra_lines=(BROKEN_LINE,))
        key = Path(local).relative_to(tmp_path / "landing").as_posix()
        aws.put_object(Bucket=BUCKET, Key=key, Body=Path(local).read_bytes())
    cluster = FakeCluster(spark, aws, tmp_path / "cluster_lake")
    monkeypatch.setattr(emr_entry, "structure_raw", cluster.structure_from_copy)
    # EMR's waiters poll every 30 s, sized for real clusters; the fake one ends within seconds.
    original_wait = botocore.waiter.Waiter.wait
    monkeypatch.setattr(botocore.waiter.Waiter, "wait",
                        lambda waiter, **kwargs: original_wait(waiter, WaiterConfig={"Delay": 0.2, "MaxAttempts": 3000}, **kwargs))
    monkeypatch.setenv("FARES_EMR_INSTANCE_TYPE", "m5.2xlarge")
    monkeypatch.setenv("FARES_EMR_INSTANCE_COUNT", "5")
    s3_resource = S3Resource(region_name=REGION)
    runner = EmrSparkRunner.from_env(BUCKET, s3_resource).model_copy(update={"message_poll_seconds": 0.2})

    cluster.thread.start()
    result = materialize([structured_fare_tables], partition_key=PARTITION, resources={
        "lake": S3LakeResource(bucket=BUCKET, s3=s3_resource), "spark_runner": runner})
    cluster.thread.join(timeout=30)
    assert cluster.error is None

    emr = boto3.client("emr", region_name=REGION)
    (summary,) = emr.list_clusters()["Clusters"]
    described = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
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
    assert cluster.structured["lake_root"] == f"s3a://{BUCKET}"
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix="raw/fares/")["Contents"]
    assert cluster.structured["raw_paths"] == [f"s3a://{BUCKET}/{item['Key']}" for item in listed]
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="pipes/messages/")["KeyCount"] > 0

    counts = cluster.structured["counts"]
    assert counts["raw_records"] == len(QPX_FIXTURES) + 3
    assert result.success
    rows = {event.asset_key.path[-1]: event.materialization.metadata["rows"].value
            for event in result.get_asset_materialization_events()}
    assert rows == {table: counts[table] for table in CURATED_TABLES}
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(check.passed for check in checks)


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
