"""Create the AWS side of streaming, idempotently: the lake bucket (with its expiry rules) and the Firehose delivery stream.

Run `python -m fare_assets.streaming.aws_setup`. Names come from FARES_S3_BUCKET, FARES_FIREHOSE_STREAM,
FARES_FIREHOSE_ROLE_ARN (the role Firehose assumes to write the bucket) and the region (AWS_DEFAULT_REGION, else the profile's, else us-east-1);
boto3 honours AWS_ENDPOINT_URL itself, so the same run works against a moto server. It prints a
JSON report holding the policies the roles need. A second run changes nothing.
"""
import json
import sys
import time

import boto3
from botocore.exceptions import ClientError

from fare_assets.settings import env_or_default
from fare_assets.storing.lake import EMR_LOGS_PREFIX, EXPORTS_PREFIX, PIPES_PREFIX, RAW_ERRORS_PREFIX, RAW_PREFIX
from fare_assets.streaming.firehose import FirehoseTarget

# Firehose's own defaults for an S3 destination, written out so the stream never depends on them changing.
BUFFERING_HINTS = {"SizeInMBs": 5, "IntervalInSeconds": 300}
# moto's default account; on AWS set FARES_FIREHOSE_ROLE_ARN to a role holding `role_policy`.
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::123456789012:role/fares-firehose-delivery"
ACTIVE_TIMEOUT_SECONDS = 300
# Days to keep objects only one run reads: its warehouse export and its Pipes context and messages. A run
# removes its export itself; these rules clear what a run that died left behind. EMR's logs are read only to
# debug a failed step, and a transient cluster per job writes thousands of them a month. (RAW_ERRORS_PREFIX has no
# rule: it holds records Firehose could not deliver, which are data.)
EXPIRY_DAYS = {EXPORTS_PREFIX: 2, PIPES_PREFIX: 7, EMR_LOGS_PREFIX: 30}
_RULE_FIELDS = ("ID", "Filter", "Status", "Expiration")


def destination(bucket: str, role_arn: str) -> dict:
    """The stream's S3 destination: Firehose's key layout under RAW_PREFIX, failures under RAW_ERRORS_PREFIX."""
    return {"RoleARN": role_arn, "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": RAW_PREFIX,
            "ErrorOutputPrefix": RAW_ERRORS_PREFIX, "BufferingHints": BUFFERING_HINTS,
            "CompressionFormat": "UNCOMPRESSED"}


def policies(target: FirehoseTarget) -> dict:
    """The IAM documents: the role Firehose assumes, and what a producer needs (oversize records go to S3 directly)."""
    bucket_arn = f"arn:aws:s3:::{target.bucket}"
    return {
        "trust_policy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        "role_policy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
                       "s3:ListBucketMultipartUploads", "s3:PutObject"],
            # Only where the stream writes: the bucket also holds models/ (pickles the platform loads) and the EMR job's
            # code/, which a role that may write them could turn into code the platform runs.
            "Resource": [bucket_arn, f"{bucket_arn}/{RAW_PREFIX}*", f"{bucket_arn}/{RAW_ERRORS_PREFIX}*"]}]},
        "producer_policy": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"],
             "Resource": f"arn:aws:firehose:{target.region}:*:deliverystream/{target.stream_name}"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{bucket_arn}/{RAW_PREFIX}*"}]},
    }


def ensure_bucket(s3, bucket: str, region: str) -> bool:
    """Create the bucket unless this account already owns it; True when created."""
    arguments = {"Bucket": bucket}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    try:
        s3.create_bucket(**arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def expiry_rules() -> list[dict]:
    """The lifecycle rules of EXPIRY_DAYS, one per prefix."""
    return [{"ID": f"fares-expire-{prefix.rstrip('/')}", "Filter": {"Prefix": prefix}, "Status": "Enabled",
             "Expiration": {"Days": days}} for prefix, days in EXPIRY_DAYS.items()]


def ensure_expiry_rules(s3, bucket: str) -> str:
    """Put the expiry rules beside any other lifecycle rules of the bucket; "unchanged" or "updated"."""
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    wanted = expiry_rules()
    ours = {rule["ID"] for rule in wanted}
    current = [{field: rule.get(field) for field in _RULE_FIELDS} for rule in rules if rule.get("ID") in ours]
    if sorted(current, key=lambda rule: rule["ID"]) == sorted(wanted, key=lambda rule: rule["ID"]):
        return "unchanged"
    others = [rule for rule in rules if rule.get("ID") not in ours]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [*others, *wanted]})
    return "updated"


def ensure_delivery_stream(firehose, target: FirehoseTarget, role_arn: str) -> str:
    """Create the stream, or bring its S3 destination to the wanted one; returns created/updated/unchanged."""
    wanted = destination(target.bucket, role_arn)
    try:
        description = firehose.describe_delivery_stream(DeliveryStreamName=target.stream_name)["DeliveryStreamDescription"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        firehose.create_delivery_stream(DeliveryStreamName=target.stream_name, DeliveryStreamType="DirectPut",
                                        ExtendedS3DestinationConfiguration=wanted)
        wait_until_active(firehose, target.stream_name)
        return "created"
    current = description["Destinations"][0]
    described = current.get("ExtendedS3DestinationDescription") or current.get("S3DestinationDescription", {})
    if all(described.get(field) == value for field, value in wanted.items()):
        return "unchanged"
    firehose.update_destination(DeliveryStreamName=target.stream_name,
                                CurrentDeliveryStreamVersionId=description["VersionId"],
                                DestinationId=current["DestinationId"], ExtendedS3DestinationUpdate=wanted)
    wait_until_active(firehose, target.stream_name)
    return "updated"


def wait_until_active(firehose, stream_name: str) -> None:
    """A new stream takes about a minute on AWS before it accepts records."""
    deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
    while True:
        status = firehose.describe_delivery_stream(
            DeliveryStreamName=stream_name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
        if status == "ACTIVE":
            return
        if status.endswith("FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"delivery stream {stream_name} is {status}, not ACTIVE")
        time.sleep(5)


def setup(target: FirehoseTarget, role_arn: str) -> dict:
    """Make sure the bucket and the stream exist as wanted; a report of what was done and the policies."""
    s3 = boto3.client("s3", region_name=target.region)
    firehose = boto3.client("firehose", region_name=target.region)
    bucket_created = ensure_bucket(s3, target.bucket, target.region)
    expiry_state = ensure_expiry_rules(s3, target.bucket)
    stream_state = ensure_delivery_stream(firehose, target, role_arn)
    return {"bucket": target.bucket, "bucket_created": bucket_created, "expiry_rules": expiry_state,
            "delivery_stream": target.stream_name,
            "delivery_stream_state": stream_state, "prefix": RAW_PREFIX, "error_prefix": RAW_ERRORS_PREFIX,
            "role_arn": role_arn, **policies(target)}


def main() -> None:
    report = setup(FirehoseTarget.from_env(), env_or_default("FARES_FIREHOSE_ROLE_ARN", PLACEHOLDER_ROLE_ARN))
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
