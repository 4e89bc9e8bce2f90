"""Delivery streams: the local stand-in for Kinesis Firehose writes the same S3 key layout.

Accepted records are also appended to a write-ahead spool (`spool.py`, default `<lake>/.spool/<stream>`)
until their object is written, so a process killed mid-sweep loses nothing: the next flush on the
same lake writes the records it left behind (at-least-once; downstream drops duplicates by search_id).
"""
import datetime as dt
import threading
import time
import uuid
from pathlib import Path

from fare_assets.storing.lake import landing_hour_of_key, raw_object_key, spool_folder, write_whole
from fare_assets.streaming.spool import SpoolSegment, WriteAheadSpool

# Firehose's own defaults for an S3 destination: 5 MiB or 300 s, whichever comes first.
DEFAULT_BUFFER_BYTES = 5 * 1024 * 1024
DEFAULT_BUFFER_SECONDS = 300


def require_newline_delimited(records: list[bytes]) -> None:
    """Refuse records that do not end in a newline: an object is their concatenation, read line by line, and a
    record run into the next would be read as one line, the second one lost."""
    if not all(record.endswith(b"\n") for record in records):
        raise ValueError("every record must end with a newline: a delivery stream concatenates records")


class LocalDeliveryStream:
    """Buffers records by size and age like Firehose, then writes one object atomically."""

    # FirehoseDeliveryStream's count of records it wrote past a refusing Firehose: this stream writes every object.
    records_past_firehose = 0

    def __init__(self, lake_root: Path, stream_name: str = "fares-local",
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, buffer_seconds: float = DEFAULT_BUFFER_SECONDS):
        self.lake_root = Path(lake_root)
        self.stream_name = stream_name
        self.buffer_bytes = buffer_bytes
        self.buffer_seconds = buffer_seconds
        self.spool = WriteAheadSpool(Path(spool_folder(str(self.lake_root), stream_name)))
        self._segment: SpoolSegment | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._opened_at = time.monotonic()
        self._first_arrival: dt.datetime | None = None
        self._lock = threading.Lock()
        self.objects_written: list[str] = []
        self.records_delivered = 0

    @property
    def landing_hours(self) -> set[str]:
        """The landing hours ("YYYY-MM-DD-HH") of the objects this stream wrote."""
        return {landing_hour_of_key(key) for key in self.objects_written}

    def put_record_batch(self, records: list[bytes]) -> None:
        """Accept records (each ending in a newline), durable on return; flush when the buffer is full or old."""
        if not records:
            return
        require_newline_delimited(records)
        with self._lock:
            if self._segment is None:
                self._segment, self._opened_at = self.spool.open_segment(), time.monotonic()
                self._first_arrival = dt.datetime.now(dt.timezone.utc)
            self._segment.append(records)
            self._buffer.extend(records)
            self._buffered += sum(len(record) for record in records)
            if self._buffered >= self.buffer_bytes or time.monotonic() - self._opened_at >= self.buffer_seconds:
                self._write_locked()

    def flush(self) -> None:
        """Write what an earlier process left in the spool, then whatever is buffered (end of a sweep)."""
        with self._lock:
            for segment, records in self.spool.claim_waiting():
                try:
                    if records:
                        # Re-sent records arrive now, as they would at Firehose.
                        self._write_object(records, dt.datetime.now(dt.timezone.utc))
                    segment.discard()
                finally:
                    segment.release()
            self._write_locked()

    def _write_locked(self) -> None:
        if not self._buffer:
            return
        self._write_object(self._buffer, self._first_arrival)
        self._segment.discard()
        self._segment, self._buffer, self._buffered = None, [], 0

    def _write_object(self, records: list[bytes], first_arrival: dt.datetime) -> None:
        # Named, as Firehose names an object, by its oldest record's arrival: a buffer opened at 10:58 and written at
        # 11:03 lands in hour 10, after that hour's objects were listed (the sensor's lookback is for such objects).
        key = raw_object_key(self.stream_name, first_arrival, str(uuid.uuid4()))
        target = self.lake_root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        write_whole(target, records)
        self.objects_written.append(key)
        self.records_delivered += len(records)
