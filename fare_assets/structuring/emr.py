"""Where the Spark jobs run: a local Spark session, or EMR through Dagster Pipes (a transient cluster per job, or
steps added to a running cluster).

Both runners run the same job of `spark_jobs.SPARK_JOBS` (structuring, the quality rules, the
warehouse export); on EMR it runs inside `emr_entry.py`, which reports the result back as a Pipes
custom message, so the assets and checks see the same result either way.
"""
import hashlib
import io
import json
import time
import zipfile
from abc import abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from dagster import AssetExecutionContext, ConfigurableResource, Failure, OpExecutionContext, open_pipes_session
from dagster_aws.pipes import PipesEMRClient, PipesS3ContextInjector, PipesS3MessageReader
from dagster_aws.s3 import S3Resource
from dagster_pyspark import PySparkResource

from fare_assets.run_limits import LOCAL_RUN_MAX_SECONDS, max_runtime_tags
from fare_assets.settings import env_or_default
from fare_assets.storing.lake import EMR_LOGS_PREFIX, PIPES_CONTEXT_PREFIX, PIPES_MESSAGES_PREFIX, job_code_key
from fare_assets.structuring import emr_entry
from fare_assets.structuring.spark_jobs import run_spark_job

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The cluster's Python: Amazon Linux 2023 (EMR 7) ships 3.9, older than this project's code allows.
CLUSTER_PYTHON = "python3.11"
# Packages the step needs besides Spark, pinned to what runs locally; fare_assets itself ships as a zip.
CLUSTER_PACKAGES = ("boto3", "dagster-pipes", "airportsdata")
# The first release whose S3 connector (S3A) serves the lake's s3a:// URLs; earlier ones reject s3a://.
DEFAULT_RELEASE_LABEL = "emr-7.10.0"
# Its Spark (3.5.5-amzn-1), older than this project's: the tests also run the jobs on it (make builds .venv-emr).
CLUSTER_SPARK_VERSION = "3.5.5"
DEFAULT_INSTANCE_TYPE = "m5.xlarge"
# One primary node and two core nodes.
DEFAULT_INSTANCE_COUNT = 3
# The roles `aws emr create-default-roles` creates.
DEFAULT_SERVICE_ROLE = "EMR_DefaultRole"
DEFAULT_JOB_FLOW_ROLE = "EMR_EC2_DefaultRole"
# A day of polls 30 s apart: longer than any job should take, short of forever.
CLUSTER_WAITER_CONFIG = {"Delay": 30, "MaxAttempts": 2880}
# A run waiting on EMR gets that day and two hours more before run monitoring fails it (fare_assets.run_limits).
EMR_RUN_MAX_SECONDS = CLUSTER_WAITER_CONFIG["Delay"] * CLUSTER_WAITER_CONFIG["MaxAttempts"] + 2 * 3600
# A cluster in these states accepts steps, in these it is ending or has ended; a step in these has ended.
CLUSTER_STATES_TAKING_STEPS = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
CLUSTER_END_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
STEP_END_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
# A fixed timestamp keeps the zip's bytes, and so its key, the same for the same code.
ZIP_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class JobCode:
    """S3 URIs of the uploaded step: the package zip, the entry script and the bootstrap script."""

    package_zip: str
    entry_script: str
    bootstrap_script: str


def package_zip_bytes() -> bytes:
    """The fare_assets package as a zip for spark-submit --py-files (sources only, stable bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_ROOT.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            entry = zipfile.ZipInfo(path.relative_to(PACKAGE_ROOT.parent).as_posix(), ZIP_ENTRY_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def cluster_requirements() -> list[str]:
    """The step's packages besides Spark, pinned to the versions installed here."""
    return [f"{name}=={version(name)}" for name in CLUSTER_PACKAGES]


def bootstrap_script() -> str:
    """The bootstrap action every node runs: the cluster Python and the step's pinned packages."""
    return ("#!/bin/bash\nset -euo pipefail\n"
            f"sudo dnf install -y {CLUSTER_PYTHON} {CLUSTER_PYTHON}-pip\n"
            f"sudo {CLUSTER_PYTHON} -m pip install {' '.join(cluster_requirements())}\n")


def upload_job_code(s3_client, bucket: str) -> JobCode:
    """Upload the package zip, the entry script and the bootstrap script under the code's digest (lake.job_code_key),
    once."""
    files = {
        "fare_assets.zip": package_zip_bytes(),
        "emr_entry.py": Path(emr_entry.__file__).read_bytes(),
        "bootstrap.sh": bootstrap_script().encode(),
    }
    # Keyed by content: a run never picks up code another deployment uploaded meanwhile.
    digest = hashlib.sha256(b"".join(files[name] for name in sorted(files))).hexdigest()[:16]
    folder = job_code_key(digest)
    uploaded = {item["Key"]: item["ETag"].strip('"')
                for item in s3_client.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])}
    for name, body in files.items():
        # What an earlier run uploaded is reused if its bytes are still these (a single put's ETag is their MD5): the
        # bootstrap runs as root on every node, so a file changed in the bucket since is put back, not run.
        if uploaded.get(job_code_key(digest, name)) != hashlib.md5(body, usedforsecurity=False).hexdigest():
            s3_client.put_object(Bucket=bucket, Key=job_code_key(digest, name), Body=body)
    return JobCode(*(f"s3://{bucket}/{job_code_key(digest, name)}"
                     for name in ("fare_assets.zip", "emr_entry.py", "bootstrap.sh")))


class PrefixedS3MessageReader(PipesS3MessageReader):
    """Pipes messages under one prefix of the bucket, so a lifecycle rule can expire them."""

    def __init__(self, *, key_prefix: str, **kwargs):
        super().__init__(**kwargs)
        self.key_prefix = key_prefix.rstrip("/")

    @contextmanager
    def get_params(self):
        with super().get_params() as params:
            yield {**params, "key_prefix": f"{self.key_prefix}/{params['key_prefix']}"}


RunContext = AssetExecutionContext | OpExecutionContext


class PatientPipesEMRClient(PipesEMRClient):
    """PipesEMRClient that waits for the cluster as long as a job may take.

    Its botocore waiters give up after 30 minutes (60 polls 30 s apart): a backfill's step can outlast that, and
    the run would fail while the cluster worked on unobserved.
    """

    def _wait_for_completion(self, context: RunContext, response: dict) -> dict:
        cluster_id = response["JobFlowId"]
        try:
            # The end only: a one-step cluster may be shutting down by the first poll, which "cluster_running",
            # the client's first wait, counts as a failure.
            self.client.get_waiter("cluster_terminated").wait(ClusterId=cluster_id, WaiterConfig=CLUSTER_WAITER_CONFIG)
        except WaiterError as error:
            status = self.client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
            if status["State"] not in CLUSTER_END_STATES:
                # Nobody waits for its result any more: it would only cost money, and race a retry of the run.
                self.client.terminate_job_flows(JobFlowIds=[cluster_id])
                raise Failure(f"EMR cluster {cluster_id} was still {status['State']} after a day: terminated it") from error
            reason = status.get("StateChangeReason", {})
            raise Failure(f"EMR cluster {cluster_id} ended {status['State']}: "
                          f"{reason.get('Message') or reason.get('Code') or error}") from error
        return self.client.describe_cluster(ClusterId=cluster_id)


class SparkRunner(ConfigurableResource):
    """Runs a job of `spark_jobs.SPARK_JOBS` by name and returns its result."""

    @abstractmethod
    def run_job(self, context: RunContext, job: str, **arguments) -> dict:
        """Run `job` with `arguments` (JSON values) for the run of `context`; what the job returns."""


class LocalSparkRunner(SparkRunner):
    """The job in this process's Spark session."""

    pyspark: PySparkResource

    def run_job(self, context: RunContext, job: str, **arguments) -> dict:
        # Through JSON both ways, as on EMR, so a job that works here cannot fail there on what it takes or returns.
        result = run_spark_job(self.pyspark.spark_session, job, json.loads(json.dumps(arguments)))
        return json.loads(json.dumps(result))


class EmrSparkRunner(SparkRunner):
    """The job on EMR through Dagster Pipes: a transient cluster per job (terminated when its step ends), or a step
    added to a running cluster (`cluster_id`)."""

    bucket: str
    s3: S3Resource
    # A running cluster to add each job's step to (created with bootstrap.sh, as the transient ones are): one
    # cluster start in all instead of one per job. None: a transient cluster per job.
    cluster_id: str | None = None
    release_label: str = DEFAULT_RELEASE_LABEL
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = DEFAULT_INSTANCE_COUNT
    # None: s3://<bucket>/emr-logs/ (lake.EMR_LOGS_PREFIX).
    log_uri: str | None = None
    service_role: str = DEFAULT_SERVICE_ROLE
    job_flow_role: str = DEFAULT_JOB_FLOW_ROLE
    message_poll_seconds: float = 10.0
    step_poll_seconds: float = 30.0

    @classmethod
    def from_env(cls, bucket: str, s3: S3Resource) -> "EmrSparkRunner":
        """Cluster settings from FARES_EMR_* variables, the defaults otherwise."""
        return cls(
            bucket=bucket, s3=s3,
            cluster_id=env_or_default("FARES_EMR_CLUSTER_ID", "") or None,
            release_label=env_or_default("FARES_EMR_RELEASE_LABEL", DEFAULT_RELEASE_LABEL),
            instance_type=env_or_default("FARES_EMR_INSTANCE_TYPE", DEFAULT_INSTANCE_TYPE),
            instance_count=int(env_or_default("FARES_EMR_INSTANCE_COUNT", str(DEFAULT_INSTANCE_COUNT))),
            log_uri=env_or_default("FARES_EMR_LOG_URI", "") or None,
            service_role=env_or_default("FARES_EMR_SERVICE_ROLE", DEFAULT_SERVICE_ROLE),
            job_flow_role=env_or_default("FARES_EMR_JOB_FLOW_ROLE", DEFAULT_JOB_FLOW_ROLE),
        )

    @staticmethod
    def spark_submit_step(code: JobCode, name: str, action_on_failure: str, conf: dict[str, str] | None = None) -> dict:
        """A `spark-submit` step of the job code, with extra Spark settings `conf`."""
        # Python is chosen by --conf, not by a spark-env/spark-defaults classification: on a transient cluster
        # the Pipes client adds its env vars to those and drops them when one already exists.
        settings = {"spark.pyspark.python": CLUSTER_PYTHON, **(conf or {})}
        return {
            "Name": name,
            "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": ["spark-submit", "--deploy-mode", "cluster",
                         *[arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")],
                         "--py-files", code.package_zip, code.entry_script],
            },
        }

    @staticmethod
    def run_name(context: RunContext, job: str) -> str:
        """The name of a job's cluster or step: the job and the run, which tell steps apart on a shared cluster."""
        return f"fares-{job.replace('_', '-')}-{context.run.run_id[:8]}"

    def run_job_flow_params(self, context: RunContext, code: JobCode, job: str) -> dict:
        """The RunJobFlow request: one Spark step; the cluster ends with it, failed or not."""
        name = self.run_name(context, job)
        return {
            "Name": name,
            "ReleaseLabel": self.release_label,
            "Applications": [{"Name": "Spark"}],
            "LogUri": self.log_uri or f"s3://{self.bucket}/{EMR_LOGS_PREFIX}",
            "ServiceRole": self.service_role,
            "JobFlowRole": self.job_flow_role,
            "VisibleToAllUsers": True,
            "Instances": {
                "MasterInstanceType": self.instance_type,
                "SlaveInstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "KeepJobFlowAliveWhenNoSteps": False,
                "TerminationProtected": False,
            },
            "BootstrapActions": [
                {"Name": "step python packages", "ScriptBootstrapAction": {"Path": code.bootstrap_script}},
            ],
            "Steps": [self.spark_submit_step(code, name, "TERMINATE_CLUSTER")],
        }

    def run_job(self, context: RunContext, job: str, **arguments) -> dict:
        s3_client = self.s3.get_client()
        code = upload_job_code(s3_client, self.bucket)
        emr = boto3.client("emr", region_name=s3_client.meta.region_name)
        message_reader = PrefixedS3MessageReader(
            bucket=self.bucket, client=s3_client, key_prefix=PIPES_MESSAGES_PREFIX, interval=self.message_poll_seconds,
            # The driver's output arrives as Pipes messages, so no container logs are searched.
            include_stdio_in_messages=True,
        )
        # The context (every argument, such as a backfill's raw paths) is an S3 object: no size limit, unlike env vars.
        context_injector = PipesS3ContextInjector(bucket=self.bucket, client=s3_client, key_prefix=PIPES_CONTEXT_PREFIX)
        extras = {emr_entry.JOB_EXTRA: job, emr_entry.ARGUMENTS_EXTRA: arguments}
        if self.cluster_id:
            reported, metadata = self._run_on_cluster(context, emr, code, job, message_reader, context_injector, extras)
        else:
            client = PatientPipesEMRClient(client=emr, message_reader=message_reader,
                                           context_injector=context_injector)
            invocation = client.run(context=context, run_job_flow_params=self.run_job_flow_params(context, code, job),
                                    extras=extras)
            reported, metadata = invocation.get_custom_messages(), invocation.metadata
        if not reported:
            raise Failure(f"the EMR step of {job} ended without reporting its result", metadata=metadata)
        return reported[-1]

    def _run_on_cluster(self, context: RunContext, emr, code: JobCode, job: str, message_reader, context_injector,
                        extras: dict) -> tuple[list, dict]:
        """The job as a step added to the running cluster `cluster_id`: the Pipes messages it reported, and where."""
        state = emr.describe_cluster(ClusterId=self.cluster_id)["Cluster"]["Status"]["State"]
        if state not in CLUSTER_STATES_TAKING_STEPS:
            raise Failure(f"EMR cluster {self.cluster_id} (FARES_EMR_CLUSTER_ID) is {state}: it takes no new steps")
        with open_pipes_session(context=context, message_reader=message_reader, context_injector=context_injector,
                                extras=extras) as session:
            # The cluster's configuration predates this run: the Pipes parameters reach the driver as its environment.
            conf = {f"spark.yarn.appMasterEnv.{name}": value for name, value in session.get_bootstrap_env_vars().items()}
            # A failed job must not end a cluster other jobs share.
            step = self.spark_submit_step(code, self.run_name(context, job), "CONTINUE", conf)
            (step_id,) = emr.add_job_flow_steps(JobFlowId=self.cluster_id, Steps=[step])["StepIds"]
            context.log.info(f"EMR step {step_id} ({job}) added to cluster {self.cluster_id}")
            try:
                status = self._wait_for_step(emr, step_id)
            except BaseException:
                # Interrupted, or the polling failed: a step nobody waits for would only hold the shared cluster.
                self._cancel_step(context, emr, step_id)
                raise
        if status["State"] != "COMPLETED":
            details = status.get("FailureDetails", {})
            why = "; ".join(str(details[key]) for key in ("Reason", "Message", "LogFile") if details.get(key))
            raise Failure(f"EMR step {step_id} ({job}) on cluster {self.cluster_id} ended {status['State']}"
                          + (f": {why}" if why else ""))
        return session.get_custom_messages(), {"EMR cluster": self.cluster_id, "EMR step": step_id}

    def _cancel_step(self, context: RunContext, emr, step_id: str) -> None:
        """Cancel a step. Not cancelled (it ended meanwhile, or EMR cannot be reached) is only logged: the error
        that stopped the wait is the one the run reports."""
        context.log.warning(f"cancelling EMR step {step_id} on cluster {self.cluster_id}")
        try:
            answer = emr.cancel_steps(ClusterId=self.cluster_id, StepIds=[step_id])
        except (ClientError, BotoCoreError) as error:
            refusals = [str(error)]
        else:
            # EMR answers a step it cannot cancel with status FAILED and a reason, not with an error.
            refusals = [info.get("Reason") for info in answer.get("CancelStepsInfoList", [])
                        if info.get("Status") == "FAILED"]
        for why in refusals:
            context.log.warning(f"EMR step {step_id} was not cancelled: {why}")

    def _wait_for_step(self, emr, step_id: str) -> dict:
        """Poll the step until it ends (a job has no time limit but the run's); its final status."""
        while True:
            status = emr.describe_step(ClusterId=self.cluster_id, StepId=step_id)["Step"]["Status"]
            if status["State"] in STEP_END_STATES:
                return status
            time.sleep(self.step_poll_seconds)


def _runner_mode() -> str:
    return env_or_default("FARES_SPARK_RUNNER", "local")


def structuring_max_runtime_tags() -> dict[str, str]:
    """Run-monitoring limit of a structuring run: a local run's, or on EMR the day its cluster may take and more."""
    return max_runtime_tags(EMR_RUN_MAX_SECONDS if _runner_mode() == "emr" else LOCAL_RUN_MAX_SECONDS)


def spark_runner_from_env(pyspark: PySparkResource, bucket: str, s3: S3Resource) -> SparkRunner:
    """FARES_SPARK_RUNNER: `local` (default) runs in `pyspark`'s session, `emr` on EMR (EmrSparkRunner.from_env)."""
    mode = _runner_mode()
    if mode == "local":
        return LocalSparkRunner(pyspark=pyspark)
    if mode == "emr":
        return EmrSparkRunner.from_env(bucket, s3)
    raise ValueError(f"FARES_SPARK_RUNNER={mode!r}: choose local or emr")


if __name__ == "__main__":
    # `python -m fare_assets.structuring.emr requirements`: what a Python needs to run the step as the default
    # release does (make's .venv-emr); `... bootstrap`: the bootstrap action a long-running cluster needs.
    import sys

    commands = {"requirements": lambda: " ".join([f"pyspark=={CLUSTER_SPARK_VERSION}", *cluster_requirements()]),
                "bootstrap": bootstrap_script}
    if sys.argv[1:] not in ([name] for name in commands):
        sys.exit(f"usage: python -m fare_assets.structuring.emr {{{'|'.join(commands)}}}")
    print(commands[sys.argv[1]]())
