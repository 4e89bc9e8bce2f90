"""FARES_ENV=aws on one machine: collector → Kinesis Firehose → S3 → landing sensor, and model versions in S3, against a moto server."""
import datetime as dt
import json
import subprocess
import sys

import boto3
import pytest
from dagster import DagsterInstance, build_sensor_context
from moto.server import ThreadedMotoServer

from fare_assets.definitions import build_defs
from fare_assets.resources import aws_resources
from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing.lake import RAW_PREFIX, landing_hour_of_key
from fare_assets.services import free_port
from fare_assets.synthesizing.fare_model import FareModel
from fare_assets.synthesizing.model_files import ModelUnavailable, load_published, published_metrics, save_version
from fare_assets_tests.test_collector import url_of, webhook
from fare_assets_tests.test_synthesizing import fare_observations

BUCKET, STREAM = "fares-lake-e2e", "fares-raw-e2e"
WATCHLIST = "trips:\n  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 12, every: 3}}\n"


@pytest.fixture
def aws_deployment(monkeypatch, tmp_path, market_url):
    """A moto server with the resources aws_setup creates, and the env a deployment would set."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text(WATCHLIST)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                        "FARES_ENV": "aws", "FARES_S3_BUCKET": BUCKET, "FARES_FIREHOSE_STREAM": STREAM,
                        "FARES_HOME": str(tmp_path / "home"), "FARES_WATCHLIST": str(watchlist),
                        "FARES_MARKET_URL": market_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    subprocess.run([sys.executable, "-m", "fare_assets.streaming.aws_setup"], cwd=PROJECT_ROOT, check=True,
                   capture_output=True)
    yield boto3.client("s3")
    server.stop()


def test_a_collection_lands_in_s3_through_firehose_and_the_sensor_requests_its_hour(aws_deployment, monkeypatch):
    s3 = aws_deployment
    # The sensor requests each hour at its first tick (the settle period is tested in test_sensors).
    monkeypatch.setenv("FARES_SENSOR_SETTLE_SECONDS", "0")
    defs = build_defs(aws_resources())
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("collect_fares").execute_in_process(
            instance=instance, run_config={"ops": {"raw_fare_quotes": {"config": {"history_days": 2, "every_hours": 24}}}})
        metadata = result.asset_materializations_for_node("raw_fare_quotes")[0].metadata
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=RAW_PREFIX)
                for item in page.get("Contents", [])]
        lines = [json.loads(line) for key in keys
                 for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]
        # Three daily sweeps of four departures: every call is one record in the bucket.
        assert metadata["calls"].value == metadata["records_delivered"].value == len(lines) == 12
        assert {line["search_id"] for line in lines} == {line["search_id"] for line in lines if line["status"] == 200}
        assert sorted(metadata["landing_hours"].value) == sorted({landing_hour_of_key(key) for key in keys})

        sensor = defs.get_sensor_def("raw_landing_sensor")
        with build_sensor_context(instance=instance, resources={"lake": defs.resources["lake"]},
                                  repository_def=defs.get_repository_def()) as context:
            tick = sensor.evaluate_tick(context)
    assert sorted(request.partition_key[:13] for request in tick.run_requests) == sorted(metadata["landing_hours"].value)


def collect_once(monkeypatch, stream: str, bucket: str = BUCKET) -> tuple[dict, list[str]]:
    """One sweep of the watchlist into `stream` and `bucket`: the asset's metadata values and the run's log."""
    monkeypatch.setenv("FARES_FIREHOSE_STREAM", stream)
    monkeypatch.setenv("FARES_S3_BUCKET", bucket)
    defs = build_defs(aws_resources())
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("collect_fares").execute_in_process(
            instance=instance, run_config={"ops": {"raw_fare_quotes": {"config": {"history_days": 0}}}})
        logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    metadata = result.asset_materializations_for_node("raw_fare_quotes")[0].metadata
    return {name: value.value for name, value in metadata.items()}, logged


def test_records_a_stream_refuses_land_straight_in_the_bucket_and_the_run_says_so(aws_deployment, monkeypatch):
    # A stream name nobody created: Firehose answers ResourceNotFound, which no retry mends.
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        metadata, logged = collect_once(monkeypatch, "fares-raw-misspelt")
    [alert] = receiver.payloads
    assert (alert["kind"], alert["records"], alert["stream"]) == ("firehose_bypassed", 4, "fares-raw-misspelt")
    assert metadata["calls"] == metadata["records_delivered"] == metadata["records_past_firehose"] == 4
    assert metadata["records_in_spool"] == 0
    # moto's server keeps its buckets across this module's tests: only this stream's objects count.
    keys = [item["Key"] for item in aws_deployment.list_objects_v2(Bucket=BUCKET, Prefix=RAW_PREFIX)["Contents"]
            if "/fares-raw-misspelt-" in item["Key"]]
    assert len(keys) == 1 and "/fares-raw-misspelt-direct-1-" in keys[0]
    assert metadata["landing_hours"] == [landing_hour_of_key(keys[0])]
    assert any(message.startswith("Firehose did not take 4 records within its retry bound") for message in logged)


def test_records_neither_stream_nor_bucket_takes_wait_in_the_spool_and_the_run_says_so(aws_deployment, monkeypatch):
    metadata, logged = collect_once(monkeypatch, "fares-raw-misspelt", "fares-lake-misspelt")
    assert metadata["calls"] == metadata["records_in_spool"] == 4
    assert metadata["records_delivered"] == metadata["records_past_firehose"] == 0
    assert any(message.startswith("4 records undelivered; they wait in the spool ") for message in logged)


def test_models_are_versioned_in_the_s3_lake_and_the_published_one_loads_back(aws_deployment):
    s3 = aws_deployment
    lake = aws_resources()["lake"]
    observations = fare_observations(20, seed=5)
    model = FareModel().fit(observations)
    folder = save_version(lake, "fare_model", "v1", model, {"mae": 12.5}, {"feature_importance": b"\x89PNG"})
    assert folder == f"s3a://{BUCKET}/models/fare_model/v1/"
    save_version(lake, "fare_model", "v2", model, {"mae": 99.0}, publish=False)
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"])
    assert keys == ["models/fare_model/latest.json",
                    *[f"models/fare_model/{version}/{name}" for version, names in
                      (("v1", ["feature_importance.png", "metrics.json", "model.pkl"]), ("v2", ["metrics.json", "model.pkl"]))
                      for name in names]]
    loaded, version = load_published(lake, "fare_model", FareModel.load)
    assert version == "v1"
    at = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    assert loaded.predict("SFO", "JFK", dt.date(2027, 1, 9), dt.date(2027, 1, 16), at) == \
        model.predict("SFO", "JFK", dt.date(2027, 1, 9), dt.date(2027, 1, 16), at)
    assert published_metrics(lake, ["fare_model", "buy_wait_advisor"]) == {"fare_model.mae": 12.5}
    with pytest.raises(ModelUnavailable, match=f"no buy_wait_advisor has been published yet \\(s3a://{BUCKET}/"):
        load_published(lake, "buy_wait_advisor", FareModel.load)
