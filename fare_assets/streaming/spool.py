"""A write-ahead spool: records reach the disk (fsync) before a delivery stream acknowledges them.

The spool is a folder of segment files. A delivery stream appends the records it accepts to a
segment it holds under an exclusive `flock`, and deletes the segment once every record in it is
delivered. A segment nobody holds a lock on is waiting to be re-sent: it was left by a delivery
that failed past its retry bound, or by a process that died (the kernel drops a dead process's
locks). Delivery is at-least-once: a re-sent segment may repeat records that already arrived, and
downstream drops the duplicates by search_id.

Each record is framed as <length><crc32><bytes>, so a record half-written when the process died
(never acknowledged) is recognised and skipped instead of corrupting its neighbours.
"""
import fcntl
import logging
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

from fare_assets.storing.lake import write_whole

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".spool"
CORRUPT_SUFFIX = ".corrupt"
FRAME_HEADER = struct.Struct(">II")
# A count (waiting_records) probes each segment's lock for an instant; a claim that meets a probe tries once more
# this much later, so counting never makes a re-send skip a segment. A segment a live delivery holds costs a
# claim pass this much longer.
CLAIM_RETRY_SECONDS = 0.01


def encode_frames(records: list[bytes]) -> bytes:
    """Records framed for a segment file."""
    return b"".join(FRAME_HEADER.pack(len(record), zlib.crc32(record)) + record for record in records)


def decode_frames(data: bytes) -> tuple[list[bytes], int]:
    """The complete records at the start of `data`, and how many bytes of a torn tail follow them."""
    records, offset = [], 0
    while offset + FRAME_HEADER.size <= len(data):
        length, checksum = FRAME_HEADER.unpack_from(data, offset)
        start = offset + FRAME_HEADER.size
        record = data[start:start + length]
        # No record is empty: a zero length is a filesystem's zero fill after a power loss, not a frame.
        if not length or len(record) < length or zlib.crc32(record) != checksum:
            break
        records.append(record)
        offset = start + length
    return records, len(data) - offset


def zero_filled(tail: bytes) -> bool:
    """Whether the undecodable `tail` of a segment is the zeros a filesystem fills unsynced blocks with after a power
    loss: nothing in it was acknowledged. Any other tail is a frame a crash cut short (never acknowledged either) or
    damage with acknowledged records behind it, which its bytes cannot tell apart."""
    return not tail.strip(b"\0")


class SpoolSegment:
    """One append-only segment file, locked by its holder until it is discarded or released."""

    def __init__(self, path: Path, descriptor: int):
        self.path = path
        self._descriptor: int | None = descriptor

    def append(self, records: list[bytes]) -> None:
        """Write records and fsync: once this returns they survive a crash; if it raises, the segment is as it was."""
        pending = memoryview(encode_frames(records))
        size = os.fstat(self._descriptor).st_size
        try:
            # A full disk can write part of the frames and fail only on the next write.
            while pending:
                pending = pending[os.write(self._descriptor, pending):]
            os.fsync(self._descriptor)
        except OSError:
            # A torn frame would end the segment for its reader, hiding every record appended after it.
            os.ftruncate(self._descriptor, size)
            raise

    def discard(self) -> None:
        """Every record was delivered: delete the segment."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Unlock and keep the file: its records wait for the next re-send."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


class WriteAheadSpool:
    """The folder of segments; hands out new segments and claims the ones no live holder locks."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def open_segment(self) -> SpoolSegment:
        """A new, empty, locked segment."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
        # Created under a hidden name and renamed once locked, so no other process can claim it unlocked.
        hidden = self.folder / f".{name}.new"
        descriptor = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.rename(hidden, self.folder / name)
        self._sync_folder()
        return SpoolSegment(self.folder / name, descriptor)

    def write(self, records: list[bytes]) -> None:
        """Put records in the spool for the next re-send (durable when this returns)."""
        segment = self.open_segment()
        segment.append(records)
        segment.release()

    def claim_waiting(self) -> Iterator[tuple[SpoolSegment, list[bytes]]]:
        """Lock, read and yield each waiting segment, oldest first; the caller discards or releases it."""
        for path in sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}")):
            claimed = self._claim(path)
            if claimed is not None:
                yield claimed

    def waiting_records(self) -> int:
        """How many records wait in segments no live delivery holds (a look: each lock is probed, not claimed)."""
        waiting = 0
        for path in sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}")):
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                # Unlocked before reading: a re-send claiming the segment meanwhile would otherwise skip it.
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                with open(descriptor, "rb", closefd=False) as handle:
                    waiting += len(decode_frames(handle.read())[0])
            finally:
                os.close(descriptor)
        return waiting

    def _claim(self, path: Path) -> tuple[SpoolSegment, list[bytes]] | None:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(CLAIM_RETRY_SECONDS)
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another claimer may have delivered and deleted the file between our open and our lock.
            if os.fstat(descriptor).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)
            with open(descriptor, "rb", closefd=False) as handle:
                data = handle.read()
                records, torn = decode_frames(data)
        except (BlockingIOError, FileNotFoundError):
            os.close(descriptor)
            return None
        if torn and zero_filled(data[len(data) - torn:]):
            log.warning("%s ends in %d zero bytes a power loss left (never acknowledged)", path.name, torn)
        elif torn:
            # A record a crash cut short, or damage hiding acknowledged records behind it: discarding the segment once
            # its readable records are delivered would delete them, so a copy is kept first, outside the spool's glob.
            try:
                kept = self._keep_copy(path, data)
            except OSError as error:
                log.error("%s has %d unreadable bytes after its first %d records and no copy could be kept (%s): it "
                          "waits in the spool", path.name, torn, len(records), error)
                os.close(descriptor)
                return None
            log.warning("%s has %d unreadable bytes after its first %d records (a record cut off by a crash, or "
                        "damage): the whole segment is kept as %s", path.name, torn, len(records), kept.name)
        return SpoolSegment(path, descriptor), records

    def _keep_copy(self, path: Path, data: bytes) -> Path:
        """`data` durably in <segment>.corrupt beside the spool."""
        kept = path.with_name(path.name + CORRUPT_SUFFIX)
        write_whole(kept, [data])
        self._sync_folder()
        return kept

    def _sync_folder(self) -> None:
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
