"""The Spark jobs as EMR's default release runs them: spark-submit of its Spark (3.5) with only the step's packages,
the package zip on --py-files, each job named through Pipes over a moto server. Their results and tables must equal
those of this project's Spark on the same raw objects.

The Python beside it is .venv-emr, which `make test` builds (`python -m fare_assets.structuring.emr` names it).
"""
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import MaterializeResult, asset, materialize, open_pipes_session
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from moto.server import ThreadedMotoServer

from fare_assets.services import free_port
from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing.lake import curated_table_path, export_table_path
from fare_assets.structuring import emr_entry
from fare_assets.structuring.assets import CURATED_TABLES
from fare_assets.structuring.emr import CLUSTER_SPARK_VERSION, package_zip_bytes
from fare_assets.structuring.quality import QUALITY_RULES
from fare_assets.structuring.spark_jobs import run_spark_job
from fare_assets_tests.conftest import load_fixture
from fare_assets_tests.test_amadeus import _envelope as amadeus_envelope
from fare_assets_tests.test_duffel import _absurd as duffel_absurd
from fare_assets_tests.test_duffel import _envelope as duffel_envelope
from fare_assets_tests.test_structuring import (BROKEN_LINES, ENCODING_CASES_QUARANTINED, _all_responses, _envelope,
                                                _quarantined, _write_raw, write_encoding_cases)

CLUSTER_PYTHON = PROJECT_ROOT / ".venv-emr" / "bin" / "python"
BUCKET = "fares-cluster-spark"
REGION = "us-east-1"
ARRIVAL = datetime(2026, 11, 28, 4, 7, 0, tzinfo=timezone.utc)
LANDING_HOUR = "2026-11-28-04"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


@pytest.fixture(scope="module", autouse=True)
def cluster_python():
    """The Python of .venv-emr, which `make test` builds; without it the test cannot say anything about Spark 3.5."""
    if not CLUSTER_PYTHON.exists():
        pytest.fail(f"{CLUSTER_PYTHON} is missing: `make test` builds it (`make .venv-emr/.installed`)")


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto server both sides of the Pipes session reach over HTTP, with the bucket for its context and messages."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, **_client_credentials()).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _client_credentials() -> dict:
    return {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _raw_objects(folder: Path) -> list[str]:
    """Every provider's answers, the QPX quirks, a redelivery and every kind of broken line, in three raw objects
    (the third's bytes are not all UTF-8: the cluster's Spark has no is_valid_utf8)."""
    envelopes = [_envelope(response) for response in _all_responses().values()]
    offers = [duffel_envelope(load_fixture(f"duffel/duffel_0{number}.json")) for number in (1, 2)]
    # Values no int column holds: null on both Sparks, whether ANSI mode is on (4) or off (3.5).
    offers.append(duffel_envelope(duffel_absurd()))
    offers += [amadeus_envelope(load_fixture(f"amadeus/amadeus_0{number}.json")) for number in (1, 2)]
    return [_write_raw(folder, ARRIVAL, envelopes + offers, extra_lines=tuple(BROKEN_LINES)),
            _write_raw(folder, ARRIVAL.replace(minute=9), [envelopes[0], offers[0]]),
            write_encoding_cases(folder, ARRIVAL.replace(minute=12))]


def _on_cluster_spark(job: str, arguments: dict, endpoint: str, workdir: Path) -> dict:
    """Run `job` as the EMR step does (spark-submit of emr_entry.py) on the cluster's Spark; the result it reported."""
    package, entry = workdir / "fare_assets.zip", workdir / "emr_entry.py"
    package.write_bytes(package_zip_bytes())
    entry.write_bytes(Path(emr_entry.__file__).read_bytes())
    s3 = boto3.client("s3", endpoint_url=endpoint, **_client_credentials())
    reported = {}

    @asset(name=f"{job}_on_cluster_spark")
    def step(context):
        with open_pipes_session(
            context=context,
            message_reader=PipesS3MessageReader(bucket=BUCKET, client=s3, interval=0.2),
            context_injector=PipesS3ContextInjector(bucket=BUCKET, client=s3),
            extras={emr_entry.JOB_EXTRA: job, emr_entry.ARGUMENTS_EXTRA: arguments},
        ) as session:
            # Only what the step has on EMR: no PYTHONPATH or SPARK_HOME of this project's Spark.
            env = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "SPARK_HOME", "PYSPARK_DRIVER_PYTHON")}
            env.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint, PYSPARK_PYTHON=str(CLUSTER_PYTHON),
                       SPARK_LOCAL_IP="127.0.0.1", **session.get_bootstrap_env_vars())
            submitted = subprocess.run(
                [str(CLUSTER_PYTHON.parent / "spark-submit"), "--master", "local[2]",
                 "--py-files", str(package), str(entry)],
                env=env, cwd=workdir, capture_output=True, text=True, timeout=600)
            # Spark's INFO lines would bury the Python error.
            assert submitted.returncode == 0, "\n".join(line for line in submitted.stderr.splitlines()
                                                         if " INFO " not in line)[-6000:] + submitted.stdout[-4000:]
            reported["log"] = submitted.stderr
        reported["messages"] = session.get_custom_messages()
        return MaterializeResult()

    assert materialize([step]).success
    assert f"Running Spark version {CLUSTER_SPARK_VERSION}" in reported["log"]
    assert len(reported["messages"]) == 1
    return reported["messages"][0]


def _parsed_record(line: dict) -> dict:
    """A quarantine line with its record parsed where it is JSON: Spark 4 keeps a response object's text as it came,
    Spark 3.5 writes it out again without spaces; both are the same JSON."""
    try:
        record = json.loads(line["record"])
    except ValueError:
        return line
    if isinstance(record, dict) and isinstance(record.get("response"), str):
        try:
            record["response"] = json.loads(record["response"])
        except ValueError:
            pass
    return {**line, "record": record}


def _rows(folder: str) -> pd.DataFrame:
    """The Parquet rows under a folder (partition columns included) as text, in a stable order."""
    frame = pq.read_table(folder).to_pandas()
    columns = sorted(frame.columns)
    return frame[columns].astype(str).sort_values(columns).reset_index(drop=True)


def test_the_jobs_on_the_clusters_spark_equal_this_projects_spark(spark, tmp_path, s3_endpoint):
    version = subprocess.run([str(CLUSTER_PYTHON), "-c", "import pyspark; print(pyspark.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == CLUSTER_SPARK_VERSION != spark.version
    raw_paths = _raw_objects(tmp_path / "landing")
    lakes = {"cluster": tmp_path / "cluster_lake", "here": tmp_path / "lake"}
    exports = {side: str(lake / "exports" / "warehouse" / "compared") for side, lake in lakes.items()}
    results = {}
    for job, arguments in [("structure", {"raw_paths": raw_paths}),
                           ("quality", {"landing_hours": None, "rule_keys": [rule.key for rule in QUALITY_RULES]}),
                           ("export_for_warehouse", {"landing_hours": None})]:
        given = {side: {**arguments, "lake_root": str(lake)} for side, lake in lakes.items()}
        if job == "export_for_warehouse":
            for side in lakes:
                given[side]["export_root"] = exports[side]
        results[job] = {"cluster": _on_cluster_spark(job, given["cluster"], s3_endpoint, tmp_path),
                        "here": run_spark_job(spark, job, given["here"])}
        assert results[job]["cluster"] == results[job]["here"], job
    counts = results["structure"]["here"]
    # Besides the QPX responses: two Duffel fixtures, the absurd Duffel offer, two Amadeus fixtures and the encoding
    # cases' sound record.
    broken = len(BROKEN_LINES) + ENCODING_CASES_QUARANTINED.total()
    assert counts["searches"] == len(_all_responses()) + 6
    assert counts["quarantined"] == broken and counts["duplicates"] == 2
    assert {key: result["failing"] for key, result in results["quality"]["here"].items()} == {
        rule.key: 0 for rule in QUALITY_RULES}
    quarantined = {side: sorted(json.dumps(_parsed_record(line), sort_keys=True)
                                for line in _quarantined(lake, LANDING_HOUR))
                   for side, lake in lakes.items()}
    assert quarantined["cluster"] == quarantined["here"] and len(quarantined["here"]) == broken
    for table in CURATED_TABLES:
        pd.testing.assert_frame_equal(_rows(curated_table_path(str(lakes["cluster"]), table)),
                                      _rows(curated_table_path(str(lakes["here"]), table)), obj=table)
    exported = {side: _rows(export_table_path(root, "fares")) for side, root in exports.items()}
    pd.testing.assert_frame_equal(exported["cluster"], exported["here"])
    assert len(exported["here"]) == results["export_for_warehouse"]["here"]["fares"] == counts["trip_options"] > 0
