"""Delivery to Kinesis Firehose (FARES_ENV=aws) with no record ever lost.

`FirehoseDeliveryStream` has LocalDeliveryStream's interface. Every record it accepts is first
appended to a write-ahead spool on local disk (fsync, see `spool.py`), then buffered and sent
with PutRecordBatch in calls of at most 500 records and 4 MiB. Entries Firehose rejects
(`FailedPutCount`, per-record `ErrorCode`) and throttling or server errors are retried, only the
failed entries, with exponential backoff and jitter until a time bound (`retry_seconds`). What
Firehose has still not taken then is written straight to the landing prefix as one object (below),
with the same retries until a second bound, `retry_seconds` after the first (so a flush ends within
twice the bound whatever the spool holds): a collection running in a per-run container
would otherwise leave it in a spool that ends with the container. Only what S3 refuses too stays in
the spool and is re-sent at the start of the next `flush()`; so do the records of a process killed
mid-sweep, re-sent by the next process on the same spool folder. Delivery is at-least-once;
downstream drops duplicates by search_id.

Oversize records: Firehose refuses records over 1,000 KiB, and a raw response must arrive whole.
Such a record is written by this producer, whole, straight to the landing prefix as a one-line
object in the same key layout, `raw/fares/YYYY/MM/DD/HH/<stream>-direct-1-<ts>-<uuid>` in the
lake bucket (S3 PutObject, same retries and spool); the records Firehose refused go the same way,
several to an object. The sensor and the structuring job read it
like any Firehose object, so nothing downstream changes. Producers need s3:PutObject on the
landing prefix for it (see `aws_setup.py`).
"""
import datetime as dt
import functools
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from fare_assets.settings import env_or_default
from fare_assets.storing.lake import LANDING_HOUR_FORMAT, landing_hour_of_key, raw_object_key
from fare_assets.streaming.delivery import require_newline_delimited
from fare_assets.streaming.spool import SpoolSegment, WriteAheadSpool

log = logging.getLogger(__name__)

# Firehose's PutRecordBatch quotas (not adjustable) and its record size limit, before base64.
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024
# Firehose buffers again on its side (5 MiB / 300 s), so the producer only holds records briefly.
DEFAULT_BUFFER_SECONDS = 10.0
DEFAULT_RETRY_SECONDS = 30.0
DEFAULT_STREAM = "fares-raw"
DEFAULT_BUCKET = "fares-lake"
DEFAULT_REGION = "us-east-1"
RETRYABLE_ERROR_CODES = frozenset({
    "ServiceUnavailableException", "ThrottlingException", "Throttling", "LimitExceededException",
    "InternalFailure", "InternalError", "InternalServerError", "SlowDown", "RequestTimeout",
})


@dataclass(frozen=True)
class FirehoseTarget:
    """Where records go: the delivery stream, the lake bucket behind it, and the region."""

    stream_name: str = DEFAULT_STREAM
    bucket: str = DEFAULT_BUCKET
    region: str = DEFAULT_REGION

    @classmethod
    def from_env(cls) -> "FirehoseTarget":
        """FARES_FIREHOSE_STREAM, FARES_S3_BUCKET and boto3's region (AWS_DEFAULT_REGION, else the profile's), or the
        defaults."""
        return cls(env_or_default("FARES_FIREHOSE_STREAM", DEFAULT_STREAM),
                   env_or_default("FARES_S3_BUCKET", DEFAULT_BUCKET),
                   boto3.session.Session().region_name or DEFAULT_REGION)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: retry n pauses between half and all of min(cap, base * 2**n)."""

    base_seconds: float = 0.2
    cap_seconds: float = 5.0

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(retry, 32))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def plan_batches(records: list[bytes]) -> list[list[bytes]]:
    """Records, in order, cut into PutRecordBatch calls within the count and size limits."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        if current and (len(current) == MAX_BATCH_RECORDS or size + len(record) > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(record)
        size += len(record)
    if current:
        batches.append(current)
    return batches


def is_retryable(error: Exception) -> bool:
    """Throttling, server errors and network trouble pass; a bad request or missing stream does not."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.response.get("Error", {}).get("Code") in RETRYABLE_ERROR_CODES or status == 429 or status >= 500
    return isinstance(error, (BotoConnectionError, HTTPClientError))


def _utc_hour() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime(LANDING_HOUR_FORMAT)


class FirehoseDeliveryStream:
    """Sends records to a Firehose stream through a write-ahead spool; LocalDeliveryStream's interface."""

    def __init__(self, firehose_client, s3_client, stream_name: str, bucket: str, spool_dir: Path,
                 buffer_records: int = MAX_BATCH_RECORDS, buffer_bytes: int = MAX_BATCH_BYTES,
                 buffer_seconds: float = DEFAULT_BUFFER_SECONDS, retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 backoff: Backoff = Backoff(), sleep=time.sleep, clock=time.monotonic,
                 rng: random.Random | None = None):
        self.firehose = firehose_client
        self.s3 = s3_client
        self.stream_name = stream_name
        self.bucket = bucket
        self.spool = WriteAheadSpool(spool_dir)
        self.buffer_records = buffer_records
        self.buffer_bytes = buffer_bytes
        self.buffer_seconds = buffer_seconds
        self.retry_seconds = retry_seconds
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = threading.Condition()
        self._segment: SpoolSegment | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._opened_at = 0.0
        self._sending = 0
        self.objects_written: list[str] = []
        self.records_delivered = 0
        # Records Firehose did not take within the retry bound, written straight to the landing prefix instead.
        self.records_past_firehose = 0
        # UTC hours in which Firehose accepted records: it names objects by the arrival of their oldest record.
        self.landing_hours: set[str] = set()

    @classmethod
    def from_env(cls, spool_dir: Path) -> "FirehoseDeliveryStream":
        """A stream on FirehoseTarget.from_env(), retrying for FARES_FIREHOSE_RETRY_SECONDS."""
        target = FirehoseTarget.from_env()
        # This class is the only retry layer, so its time bound is the real one; it is checked between attempts, so
        # one attempt must not hang past it either (botocore's defaults wait 60 s to connect and 60 s per read).
        config = Config(region_name=target.region, retries={"mode": "standard", "total_max_attempts": 1},
                        connect_timeout=5, read_timeout=20)
        return cls(boto3.client("firehose", config=config), boto3.client("s3", config=config),
                   target.stream_name, target.bucket, spool_dir,
                   retry_seconds=float(env_or_default("FARES_FIREHOSE_RETRY_SECONDS", str(DEFAULT_RETRY_SECONDS))))

    def put_record_batch(self, records: list[bytes]) -> None:
        """Accept records (each ending in a newline): durable on return; sent once the buffer is full or old."""
        if not records:
            return
        require_newline_delimited(records)
        with self._state:
            if self._segment is None:
                self._segment, self._opened_at = self.spool.open_segment(), self._clock()
            self._segment.append(records)
            self._buffer.extend(records)
            self._buffered += sum(len(record) for record in records)
            if (len(self._buffer) < self.buffer_records and self._buffered < self.buffer_bytes
                    and self._clock() - self._opened_at < self.buffer_seconds):
                return
            segment, buffered = self._take_buffer_locked()
        self._send_segment(segment, buffered, self._clock() + self.retry_seconds)

    def flush(self) -> None:
        """Re-send the spool, then the buffer; return once every record is delivered or back in the spool."""
        deadline = self._clock() + self.retry_seconds
        self.resend_spool(deadline)
        with self._state:
            taken = self._take_buffer_locked() if self._buffer else None
        if taken:
            self._send_segment(*taken, deadline)
        with self._state:
            self._state.wait_for(lambda: self._sending == 0)

    def resend_spool(self, deadline: float | None = None) -> None:
        """Send the records waiting in the spool: left by failed deliveries or by a process that died."""
        deadline = self._clock() + self.retry_seconds if deadline is None else deadline
        for segment, records in self.spool.claim_waiting():
            with self._state:
                self._sending += 1
            self._send_segment(segment, records, deadline)

    def _take_buffer_locked(self) -> tuple[SpoolSegment, list[bytes]]:
        taken = (self._segment, self._buffer)
        self._segment, self._buffer, self._buffered = None, [], 0
        self._sending += 1
        return taken

    def _send_segment(self, segment: SpoolSegment, records: list[bytes], deadline: float) -> None:
        # On an unexpected error the segment is only released: it stays in the spool for the next flush.
        try:
            refused, undelivered = self._deliver(records, deadline)
            if refused:
                # One more bound for S3, counted from the flush's own: a flush of many waiting segments
                # while both services are down still ends within twice the bound.
                undelivered += self._put_past_firehose(refused, deadline + self.retry_seconds)
            if undelivered:
                self.spool.write(undelivered)
                log.warning("%d of %d records not delivered before the retry bound; kept in the spool %s",
                            len(undelivered), len(records), self.spool.folder)
            segment.discard()
        finally:
            segment.release()
            with self._state:
                self._sending -= 1
                self._state.notify_all()

    def _deliver(self, records: list[bytes], deadline: float) -> tuple[list[bytes], list[bytes]]:
        """Send records (oversize ones straight to S3); those Firehose, and those S3, had not taken at the deadline."""
        refused, undelivered = [], []
        for batch in plan_batches([record for record in records if len(record) <= MAX_RECORD_BYTES]):
            refused += self._with_retries(self._put_batch, batch, deadline)
        for record in records:
            if len(record) > MAX_RECORD_BYTES:
                undelivered += self._with_retries(functools.partial(self._put_direct, self._direct_key()), [record],
                                                  deadline)
        return refused, undelivered

    def _direct_key(self) -> str:
        # One key per object, kept across its retries: a retried upload overwrites, never duplicates.
        return raw_object_key(f"{self.stream_name}-direct", dt.datetime.now(dt.timezone.utc), str(uuid.uuid4()))

    def _put_past_firehose(self, records: list[bytes], deadline: float) -> list[bytes]:
        """Write what Firehose did not take straight to the landing prefix; return what S3 did not take either."""
        key = self._direct_key()
        left = self._with_retries(functools.partial(self._put_direct, key), records, deadline)
        if not left:
            with self._state:
                self.records_past_firehose += len(records)
            log.warning("Firehose did not take %d records before the retry bound; written straight to s3://%s/%s",
                        len(records), self.bucket, key)
        return left

    def _with_retries(self, send, pending: list[bytes], deadline: float) -> list[bytes]:
        """Call send(pending) -> still pending, backing off, until none is left or the next pause passes the deadline."""
        retry = 0
        while True:
            try:
                pending = send(pending)
            except (ClientError, BotoCoreError) as error:
                if not is_retryable(error):
                    log.error("%s; %d records go to the spool", error, len(pending))
                    return pending
                log.info("%s; retrying %d records", error, len(pending))
            if not pending:
                return []
            pause = self.backoff.delay(retry, self._rng)
            if self._clock() + pause > deadline:
                return pending
            self._sleep(pause)
            retry += 1

    def _put_batch(self, batch: list[bytes]) -> list[bytes]:
        """One PutRecordBatch call; returns the entries Firehose rejected."""
        hour_before = _utc_hour()
        response = self.firehose.put_record_batch(DeliveryStreamName=self.stream_name,
                                                  Records=[{"Data": record} for record in batch])
        failed = []
        if response.get("FailedPutCount"):
            failed = [record for record, entry in zip(batch, response["RequestResponses"], strict=True)
                      if entry.get("ErrorCode")]
        if len(failed) < len(batch):
            with self._state:
                self.records_delivered += len(batch) - len(failed)
                self.landing_hours.update({hour_before, _utc_hour()})
        return failed

    def _put_direct(self, key: str, pending: list[bytes]) -> list[bytes]:
        """Write records (each ending in a newline) as one object in the landing layout."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"".join(pending))
        with self._state:
            self.objects_written.append(key)
            self.records_delivered += len(pending)
            self.landing_hours.add(landing_hour_of_key(key))
        return []
