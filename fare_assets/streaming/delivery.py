"""Delivery streams: the local stand-in for Kinesis Firehose writes the same S3 key layout."""
import datetime as dt
import os
import threading
import time
import uuid
from pathlib import Path

from fare_assets.storing.lake import raw_object_key

# Firehose's own defaults for an S3 destination: 5 MiB or 300 s, whichever comes first.
DEFAULT_BUFFER_BYTES = 5 * 1024 * 1024
DEFAULT_BUFFER_SECONDS = 300


class LocalDeliveryStream:
    """Buffers records by size and age like Firehose, then writes one object atomically."""

    def __init__(self, lake_root: Path, stream_name: str = "fares-local",
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, buffer_seconds: float = DEFAULT_BUFFER_SECONDS):
        self.lake_root = Path(lake_root)
        self.stream_name = stream_name
        self.buffer_bytes = buffer_bytes
        self.buffer_seconds = buffer_seconds
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._opened_at = time.monotonic()
        self._lock = threading.Lock()
        self.objects_written: list[str] = []
        self.records_delivered = 0

    def put_record_batch(self, records: list[bytes]) -> None:
        """Accept records (each ending in a newline); flush when the buffer is full or old."""
        with self._lock:
            if not self._buffer:
                self._opened_at = time.monotonic()
            self._buffer.extend(records)
            self._buffered += sum(len(record) for record in records)
            if self._buffered >= self.buffer_bytes or time.monotonic() - self._opened_at >= self.buffer_seconds:
                self._write_locked()

    def flush(self) -> None:
        """Write whatever is buffered (end of a sweep)."""
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        if not self._buffer:
            return
        key = raw_object_key(self.stream_name, dt.datetime.now(dt.timezone.utc), str(uuid.uuid4()))
        target = self.lake_root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Temp file + rename in the same folder: a reader never sees half an object.
        temporary = target.parent / f".{target.name}.tmp"
        with open(temporary, "wb") as handle:
            handle.writelines(self._buffer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        self.objects_written.append(key)
        self.records_delivered += len(self._buffer)
        self._buffer, self._buffered = [], 0
