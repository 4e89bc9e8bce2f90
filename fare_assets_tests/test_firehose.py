"""The Firehose delivery stream against moto: key layout, batching limits, retries, the spool, oversize records."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing.lake import landing_hour_of_key
from fare_assets.streaming.aws_setup import PLACEHOLDER_ROLE_ARN, setup
from fare_assets.streaming.firehose import (MAX_BATCH_BYTES, MAX_RECORD_BYTES, Backoff, FirehoseDeliveryStream,
                                            FirehoseTarget, plan_batches)
from fare_assets.resources import s3_lake_resource
from fare_assets.services import free_port

STREAM, BUCKET = "fares-raw", "fares-lake"
FIREHOSE_OBJECT = re.compile(rf"^raw/fares/(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/{STREAM}-1-"
                             r"\1-\2-\3-\4-\d{2}-\d{2}-[0-9a-f-]{36}$")
DIRECT_OBJECT = re.compile(rf"^raw/fares/(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/{STREAM}-direct-1-"
                           r"\1-\2-\3-\4-\d{2}-\d{2}-[0-9a-f-]{36}$")


def fare_record(number: int, padding: int = 0) -> bytes:
    """A raw record shaped like an envelope; `padding` stands in for a large provider response."""
    return json.dumps({"v": 1, "search_id": str(uuid.uuid4()), "n": number, "status": 200,
                       "response": {"pad": "x" * padding}}).encode() + b"\n"


class FakeClock:
    """Monotonic time that only moves when the stream pauses, so backoff never really waits."""

    def __init__(self):
        self.now = 1000.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def service_unavailable(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ServiceUnavailableException", "Message": "Slow down."},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)


@pytest.fixture
def aws_env(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "FARES_S3_BUCKET", "FARES_FIREHOSE_STREAM"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_env):
    """moto in-process, with the bucket and delivery stream made by aws_setup; yields (firehose, s3)."""
    with mock_aws():
        setup(FirehoseTarget(), PLACEHOLDER_ROLE_ARN)
        yield boto3.client("firehose"), boto3.client("s3")


def make_stream(aws, spool_dir, clock: FakeClock, **options) -> FirehoseDeliveryStream:
    firehose, s3 = aws
    return FirehoseDeliveryStream(firehose, s3, STREAM, BUCKET, spool_dir, sleep=clock.sleep,
                                  clock=clock.monotonic, rng=random.Random(1), **options)


def landed(s3) -> dict[str, bytes]:
    """Every raw object in the bucket: {key: body}."""
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="raw/")
            for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def landed_records(s3) -> Counter:
    return Counter(line + b"\n" for body in landed(s3).values() for line in body.splitlines())


def count_calls(monkeypatch, firehose) -> list[list[bytes]]:
    """Wrap the real PutRecordBatch; returns the list every call's records are appended to."""
    calls, real = [], firehose.put_record_batch

    def counted(**request):
        calls.append([entry["Data"] for entry in request["Records"]])
        return real(**request)

    monkeypatch.setattr(firehose, "put_record_batch", counted)
    return calls


def test_plan_batches_respects_count_and_size_limits():
    small = [b"x" * 99 + b"\n"] * 1201
    assert [len(batch) for batch in plan_batches(small)] == [500, 500, 201]
    large = [bytes([65 + number]) * 1_000_000 for number in range(9)]
    batches = plan_batches(large)
    assert [len(batch) for batch in batches] == [4, 4, 1]
    assert all(sum(map(len, batch)) <= MAX_BATCH_BYTES for batch in batches)
    assert [record for batch in batches for record in batch] == large


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    backoff, rng = Backoff(base_seconds=0.2, cap_seconds=5.0), random.Random(3)
    for retry, ceiling in [(0, 0.2), (1, 0.4), (3, 1.6), (5, 5.0), (400, 5.0)]:
        delays = [backoff.delay(retry, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


def test_records_land_in_firehose_key_layout_in_calls_of_at_most_500(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    calls = count_calls(monkeypatch, firehose)
    stream = make_stream(aws, tmp_path / "spool", FakeClock())
    records = [fare_record(number) for number in range(1201)]
    # The collector puts one record per call from several threads.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda record: stream.put_record_batch([record]), records))
    stream.flush()
    assert [len(call) for call in calls] == [500, 500, 201]
    objects = landed(s3)
    assert len(objects) == 3 and all(FIREHOSE_OBJECT.match(key) for key in objects), list(objects)
    assert landed_records(s3) == Counter(records)
    assert stream.records_delivered == 1201 and stream.objects_written == []
    assert {landing_hour_of_key(key) for key in objects} <= stream.landing_hours
    assert stream.spool.waiting_records() == 0 and not list((tmp_path / "spool").iterdir())


def test_records_totalling_more_than_4_mib_are_split_by_size(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    calls = count_calls(monkeypatch, firehose)
    stream = make_stream(aws, tmp_path / "spool", FakeClock())
    records = [fare_record(number, padding=900 * 1024) for number in range(10)]
    stream.put_record_batch(records)
    stream.flush()
    assert [len(call) for call in calls] == [4, 4, 2]
    assert all(sum(map(len, call)) <= MAX_BATCH_BYTES for call in calls)
    assert landed_records(s3) == Counter(records)


def test_partial_failures_resend_only_the_failed_entries(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    real, calls = firehose.put_record_batch, []

    def partly_failing(**request):
        entries = request["Records"]
        calls.append([entry["Data"] for entry in entries])
        # The first two calls lose every third entry, the way Firehose reports it: in order, with an ErrorCode.
        failing = set(range(0, len(entries), 3)) if len(calls) <= 2 else set()
        accepted = iter(real(DeliveryStreamName=request["DeliveryStreamName"],
                             Records=[entry for index, entry in enumerate(entries) if index not in failing])
                        ["RequestResponses"])
        responses = [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
                     if index in failing else next(accepted) for index in range(len(entries))]
        return {"FailedPutCount": len(failing), "Encrypted": False, "RequestResponses": responses}

    monkeypatch.setattr(firehose, "put_record_batch", partly_failing)
    clock = FakeClock()
    stream = make_stream(aws, tmp_path / "spool", clock)
    records = [fare_record(number) for number in range(30)]
    stream.put_record_batch(records)
    stream.flush()
    assert calls[1] == records[0::3] and calls[2] == calls[1][0::3]
    assert len(calls) == 3 and len(clock.pauses) == 2 and clock.pauses[1] > clock.pauses[0]
    assert landed_records(s3) == Counter(records)
    assert stream.records_delivered == 30 and stream.spool.waiting_records() == 0


def test_throttling_is_retried_with_backoff(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    real, attempts = firehose.put_record_batch, []

    def throttled_twice(**request):
        attempts.append(len(request["Records"]))
        if len(attempts) <= 2:
            raise service_unavailable("PutRecordBatch")
        return real(**request)

    monkeypatch.setattr(firehose, "put_record_batch", throttled_twice)
    clock = FakeClock()
    stream = make_stream(aws, tmp_path / "spool", clock)
    records = [fare_record(number) for number in range(7)]
    stream.put_record_batch(records)
    stream.flush()
    assert attempts == [7, 7, 7] and len(clock.pauses) == 2
    assert landed_records(s3) == Counter(records)


def outage_of(monkeypatch, client, method: str, endpoint: str) -> dict:
    """Make `client.method` unreachable while the returned switch's "on" is true."""
    real, outage = getattr(client, method), {"on": True}

    def unreachable_during_outage(**request):
        if outage["on"]:
            raise EndpointConnectionError(endpoint_url=endpoint)
        return real(**request)

    monkeypatch.setattr(client, method, unreachable_during_outage)
    return outage


def test_records_firehose_does_not_take_within_the_bound_land_straight_in_the_bucket(aws, tmp_path, monkeypatch):
    # A collection in a per-run container would lose a spool left behind: S3 takes what Firehose did not.
    firehose, s3 = aws
    outage_of(monkeypatch, firehose, "put_record_batch", "https://firehose.us-east-1.amazonaws.com")
    clock = FakeClock()
    stream = make_stream(aws, tmp_path / "spool", clock, retry_seconds=20)
    records = [fare_record(number) for number in range(40)]
    for record in records:
        stream.put_record_batch([record])
    stream.flush()
    (key,) = landed(s3)
    assert f"/{STREAM}-direct-1-" in key and landed_records(s3) == Counter(records)
    assert stream.records_delivered == stream.records_past_firehose == 40 and stream.spool.waiting_records() == 0
    assert stream.objects_written == [key] and stream.landing_hours == {landing_hour_of_key(key)}
    assert len(clock.pauses) > 3 and sum(clock.pauses) <= 20


def test_an_outage_of_firehose_and_s3_longer_than_the_bound_leaves_records_in_the_spool(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    outages = [outage_of(monkeypatch, firehose, "put_record_batch", "https://firehose.us-east-1.amazonaws.com"),
               outage_of(monkeypatch, s3, "put_object", "https://s3.amazonaws.com")]
    clock = FakeClock()
    stream = make_stream(aws, tmp_path / "spool", clock, retry_seconds=20)
    records = [fare_record(number) for number in range(40)]
    for record in records:
        stream.put_record_batch([record])
    stream.flush()
    assert stream.records_delivered == stream.records_past_firehose == 0 and landed(s3) == {}
    assert stream.spool.waiting_records() == 40
    # Twice the bound at most: once for Firehose, once for S3.
    assert len(clock.pauses) > 6 and 20 < sum(clock.pauses) <= 40
    for outage in outages:
        outage["on"] = False
    stream.flush()
    assert landed_records(s3) == Counter(records) and not any("-direct-" in key for key in landed(s3))
    assert stream.records_delivered == 40 and stream.spool.waiting_records() == 0


def test_a_flush_of_many_waiting_segments_while_firehose_and_s3_are_down_ends_within_twice_the_bound(
        aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    outage_of(monkeypatch, firehose, "put_record_batch", "https://firehose.us-east-1.amazonaws.com")
    outage_of(monkeypatch, s3, "put_object", "https://s3.amazonaws.com")
    clock = FakeClock()
    stream = make_stream(aws, tmp_path / "spool", clock, retry_seconds=20)
    for number in range(5):
        stream.spool.write([fare_record(number)])
    stream.flush()
    assert stream.spool.waiting_records() == 5 and stream.records_past_firehose == 0
    assert sum(clock.pauses) <= 40


def test_an_oversize_record_s3_refuses_waits_in_the_spool_and_is_not_counted_past_firehose(aws, tmp_path,
                                                                                           monkeypatch):
    firehose, s3 = aws
    real, refusals = s3.put_object, []

    def refuse_the_first(**request):
        if not refusals:
            refusals.append(request["Key"])
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
        return real(**request)

    monkeypatch.setattr(s3, "put_object", refuse_the_first)
    stream = make_stream(aws, tmp_path / "spool", FakeClock())
    oversize, small = b'{"big": "' + b"x" * MAX_RECORD_BYTES + b'"}\n', fare_record(1)
    stream.put_record_batch([oversize, small])
    stream.flush()
    assert stream.records_past_firehose == 0 and stream.records_delivered == 1
    assert stream.spool.waiting_records() == 1 and len(refusals) == 1
    stream.flush()
    assert landed_records(s3) == Counter([oversize, small]) and stream.spool.waiting_records() == 0


def test_a_missing_stream_is_not_retried_and_its_records_land_straight_in_the_bucket(aws, tmp_path):
    firehose, s3 = aws
    clock = FakeClock()
    misnamed = FirehoseDeliveryStream(firehose, s3, "no-such-stream", BUCKET, tmp_path / "spool",
                                      sleep=clock.sleep, clock=clock.monotonic)
    records = [fare_record(number) for number in range(5)]
    misnamed.put_record_batch(records)
    misnamed.flush()
    assert clock.pauses == [] and misnamed.spool.waiting_records() == 0
    assert misnamed.records_past_firehose == 5 and landed_records(s3) == Counter(records)


def test_a_missing_stream_and_bucket_are_not_retried_and_the_spool_keeps_the_records(aws, tmp_path):
    firehose, s3 = aws
    clock = FakeClock()
    misnamed = FirehoseDeliveryStream(firehose, s3, "no-such-stream", "no-such-bucket", tmp_path / "spool",
                                      sleep=clock.sleep, clock=clock.monotonic)
    records = [fare_record(number) for number in range(5)]
    misnamed.put_record_batch(records)
    misnamed.flush()
    assert clock.pauses == [] and misnamed.spool.waiting_records() == 5 and misnamed.records_past_firehose == 0
    make_stream(aws, tmp_path / "spool", clock).flush()
    assert landed_records(s3) == Counter(records)


KILLED_PRODUCER = """
import os, sys
from pathlib import Path
from fare_assets.streaming.firehose import FirehoseDeliveryStream

# No AWS client: the process is killed before its buffer is ever sent.
stream = FirehoseDeliveryStream(None, None, "fares-raw", "fares-lake", Path(sys.argv[1]))
for record in open(sys.argv[2], "rb"):
    stream.put_record_batch([record])
print("accepted", flush=True)
sys.stdin.read()
"""


def test_records_accepted_by_a_killed_process_are_sent_by_the_next_one(aws, tmp_path):
    firehose, s3 = aws
    records = [fare_record(number, padding=2000) for number in range(60)]
    (tmp_path / "records").write_bytes(b"".join(records))
    producer = subprocess.Popen([sys.executable, "-c", KILLED_PRODUCER, str(tmp_path / "spool"), str(tmp_path / "records")],
                                cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert producer.stdout.readline() == b"accepted\n"
    os.kill(producer.pid, signal.SIGKILL)
    producer.wait()
    assert producer.returncode == -signal.SIGKILL
    successor = make_stream(aws, tmp_path / "spool", FakeClock())
    assert successor.spool.waiting_records() == 60
    successor.flush()
    assert landed_records(s3) == Counter(records)
    assert successor.records_delivered == 60 and successor.spool.waiting_records() == 0


def test_an_oversize_record_lands_whole_as_its_own_object_in_the_layout(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    real, uploads = s3.put_object, []

    def slow_down_once(**request):
        uploads.append(request["Key"])
        if len(uploads) == 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
        return real(**request)

    monkeypatch.setattr(s3, "put_object", slow_down_once)
    stream = make_stream(aws, tmp_path / "spool", FakeClock())
    oversize = fare_record(0, padding=1200 * 1024)
    small = [fare_record(number) for number in range(1, 4)]
    assert len(oversize) > MAX_RECORD_BYTES
    stream.put_record_batch([small[0], oversize, *small[1:]])
    stream.flush()
    objects = landed(s3)
    direct = [key for key in objects if DIRECT_OBJECT.match(key)]
    assert direct == stream.objects_written and len(direct) == 1 and uploads == [direct[0], direct[0]]
    assert objects[direct[0]] == oversize and json.loads(objects[direct[0]])["response"]["pad"] == "x" * 1200 * 1024
    assert landed_records(s3) == Counter([oversize, *small])
    assert stream.records_delivered == 4 and landing_hour_of_key(direct[0]) in stream.landing_hours


def test_aws_setup_is_idempotent_and_converges(aws_env):
    with mock_aws():
        first = setup(FirehoseTarget(), PLACEHOLDER_ROLE_ARN)
        again = setup(FirehoseTarget(), PLACEHOLDER_ROLE_ARN)
        firehose, s3 = boto3.client("firehose"), boto3.client("s3")
        described = firehose.describe_delivery_stream(DeliveryStreamName=STREAM)["DeliveryStreamDescription"]
        assert (first["bucket_created"], first["delivery_stream_state"]) == (True, "created")
        assert (again["bucket_created"], again["delivery_stream_state"]) == (False, "unchanged")
        assert (first["expiry_rules"], again["expiry_rules"]) == ("updated", "unchanged")
        rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
        assert {(rule["Filter"]["Prefix"], rule["Expiration"]["Days"]) for rule in rules.values()} == {
            ("exports/", 2), ("pipes/", 7), ("emr-logs/", 30)}
        # A rule of the bucket's owner stays; a changed rule of ours is put back.
        owner_rule = {"ID": "owner-archive", "Filter": {"Prefix": "raw/"}, "Status": "Enabled",
                      "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}]}
        changed = {**rules["fares-expire-exports"], "Expiration": {"Days": 30}}
        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={
            "Rules": [owner_rule, changed, rules["fares-expire-pipes"], rules["fares-expire-emr-logs"]]})
        assert setup(FirehoseTarget(), PLACEHOLDER_ROLE_ARN)["expiry_rules"] == "updated"
        rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
        assert set(rules) == {"owner-archive", "fares-expire-exports", "fares-expire-pipes", "fares-expire-emr-logs"}
        assert rules["fares-expire-exports"]["Expiration"] == {"Days": 2}
        assert described["VersionId"] == "1" and [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
        destination = described["Destinations"][0]["ExtendedS3DestinationDescription"]
        assert destination["Prefix"] == "raw/fares/" and destination["ErrorOutputPrefix"] == "raw-errors/"
        assert destination["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
        other_role = "arn:aws:iam::123456789012:role/other"
        assert setup(FirehoseTarget(), other_role)["delivery_stream_state"] == "updated"
        described = firehose.describe_delivery_stream(DeliveryStreamName=STREAM)["DeliveryStreamDescription"]
        assert described["Destinations"][0]["ExtendedS3DestinationDescription"]["RoleARN"] == other_role
        assert first["role_policy"]["Statement"][0]["Resource"] == [
            f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/raw/fares/*", f"arn:aws:s3:::{BUCKET}/raw-errors/*"]


def test_delivery_across_a_real_http_boundary_to_a_moto_server(aws_env, tmp_path, monkeypatch):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("FARES_S3_BUCKET", "fares-lake-http")
        monkeypatch.setenv("FARES_FIREHOSE_STREAM", "fares-raw-http")
        runs = [subprocess.run([sys.executable, "-m", "fare_assets.streaming.aws_setup"], cwd=PROJECT_ROOT,
                               env=os.environ.copy(), capture_output=True, check=True) for _ in range(2)]
        reports = [json.loads(run.stdout) for run in runs]
        assert [report["delivery_stream_state"] for report in reports] == ["created", "unchanged"]
        assert "testing" not in runs[0].stdout.decode() + runs[0].stderr.decode()
        stream = FirehoseDeliveryStream.from_env(tmp_path / "spool")
        records = [fare_record(number, padding=20_000) for number in range(120)] + [fare_record(999, padding=1100 * 1024)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda record: stream.put_record_batch([record]), records))
        stream.flush()
        s3 = boto3.client("s3")
        bodies = {key: s3.get_object(Bucket="fares-lake-http", Key=key)["Body"].read()
                  for key in (item["Key"] for item in s3.list_objects_v2(Bucket="fares-lake-http")["Contents"])}
        assert all(re.match(r"^raw/fares/\d{4}/\d{2}/\d{2}/\d{2}/fares-raw-http-(direct-)?1-", key) for key in bodies)
        assert Counter(line + b"\n" for body in bodies.values() for line in body.splitlines()) == Counter(records)
        assert stream.records_delivered == 121 and len(stream.objects_written) == 1
    finally:
        server.stop()



def test_the_stream_and_the_lake_take_the_profiles_region_when_no_variable_names_one(aws_env, tmp_path, monkeypatch):
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    lake = s3_lake_resource()
    assert FirehoseTarget.from_env().region == lake.s3.region_name == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    assert FirehoseTarget.from_env().region == s3_lake_resource().s3.region_name == "ap-southeast-2"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert FirehoseTarget.from_env().region == "us-east-1"


def test_the_spool_sits_where_fares_spool_dir_says_so_the_next_runs_container_resends_it(aws, tmp_path, monkeypatch):
    firehose, s3 = aws
    monkeypatch.setenv("FARES_HOME", str(tmp_path / "container-1"))
    monkeypatch.delenv("FARES_SPOOL_DIR", raising=False)
    assert s3_lake_resource().delivery_stream().spool.folder == tmp_path / "container-1" / "spool" / STREAM
    # A volume every run's container mounts: records a killed run left waiting are re-sent by the next run's.
    monkeypatch.setenv("FARES_SPOOL_DIR", str(tmp_path / "mounted"))
    records = [fare_record(1), fare_record(2)]
    s3_lake_resource().delivery_stream().spool.write(records)
    monkeypatch.setenv("FARES_HOME", str(tmp_path / "container-2"))
    next_run = s3_lake_resource().delivery_stream()
    assert next_run.spool.folder == tmp_path / "mounted" / STREAM and next_run.spool.waiting_records() == 2
    next_run.flush()
    assert landed_records(s3) == Counter(records) and next_run.spool.waiting_records() == 0
