"""The write-ahead spool: framing, locking, and recovery after a killed process (local delivery stream)."""
import fcntl
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

from fare_assets.settings import PROJECT_ROOT
from fare_assets.streaming.delivery import LocalDeliveryStream
from fare_assets.streaming.spool import (CLAIM_RETRY_SECONDS, WriteAheadSpool, decode_frames, encode_frames,
                                         zero_filled)

RECORDS = [b'{"search_id":"a"}\n', b'{"search_id":"b","pad":"' + b"x" * 5000 + b'"}\n', b"\n"]


def test_frames_round_trip_and_a_torn_tail_is_skipped():
    framed = encode_frames(RECORDS)
    assert decode_frames(framed) == (RECORDS, 0)
    assert decode_frames(framed[:-3]) == (RECORDS[:2], len(encode_frames(RECORDS[2:])) - 3)
    corrupted = framed[:20] + bytes([framed[20] ^ 1]) + framed[21:]
    assert decode_frames(corrupted)[0] == []
    # A power loss's zero fill is no record, and like a frame cut short it was never acknowledged; a damaged frame with
    # more behind it may hide acknowledged ones.
    assert decode_frames(framed + b"\0" * 64) == (RECORDS, 64)
    assert zero_filled(b"\0" * 64) and not zero_filled(encode_frames(RECORDS[1:2])[:-3])


def test_a_segment_damaged_in_the_middle_is_kept_whole_beside_the_spool(tmp_path, caplog):
    spool = WriteAheadSpool(tmp_path)
    segment = spool.open_segment()
    segment.append(RECORDS)
    segment.release()
    [path] = tmp_path.glob("*.spool")
    data = path.read_bytes()
    second = len(encode_frames(RECORDS[:1]))
    # One bit of the second record's length: it reads as a frame cut short, with the third record behind it.
    damaged = data[:second] + bytes([data[second] ^ 1]) + data[second + 1:]
    path.write_bytes(damaged)
    [(claimed, records)] = list(spool.claim_waiting())
    assert records == RECORDS[:1]
    claimed.discard()
    assert [kept.name for kept in tmp_path.iterdir()] == [path.name + ".corrupt"]
    assert (tmp_path / (path.name + ".corrupt")).read_bytes() == damaged
    assert "unreadable bytes after its first 1 records" in caplog.text


def test_a_segment_is_claimed_only_once_nobody_holds_it(tmp_path):
    holder, other = WriteAheadSpool(tmp_path), WriteAheadSpool(tmp_path)
    segment = holder.open_segment()
    segment.append(RECORDS[:2])
    assert list(other.claim_waiting()) == [] and other.waiting_records() == 0
    segment.release()
    claimed = list(other.claim_waiting())
    assert [records for _, records in claimed] == [RECORDS[:2]]
    assert list(holder.claim_waiting()) == []
    claimed[0][0].discard()
    assert holder.waiting_records() == 0 and list(tmp_path.iterdir()) == []


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from fare_assets.streaming.spool import WriteAheadSpool

# A file size limit makes the kernel write part of a write and fail the rest (EFBIG), as a full disk does.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
segment = WriteAheadSpool(Path(sys.argv[1])).open_segment()
segment.append([b"kept\\n"])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
try:
    segment.append([b"x" * 10000 + b"\\n"])
except OSError as error:
    print("refused", error.errno, flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
segment.append([b"after\\n"])
segment.release()
"""


def test_an_append_the_disk_cuts_short_fails_and_leaves_the_segment_readable(tmp_path):
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True,
                         check=True)
    assert run.stdout.split()[0] == b"refused"
    # The refused record is not in the segment, and the record appended after it is not hidden behind a torn frame.
    (claimed,) = WriteAheadSpool(tmp_path).claim_waiting()
    assert claimed[1] == [b"kept\n", b"after\n"]
    claimed[0].release()


KILLED_SWEEP = """
import sys
from pathlib import Path
from fare_assets.streaming.delivery import LocalDeliveryStream

stream = LocalDeliveryStream(Path(sys.argv[1]))
for record in open(sys.argv[2], "rb"):
    stream.put_record_batch([record])
print("accepted", flush=True)
sys.stdin.read()
"""


def test_local_records_accepted_by_a_killed_process_are_written_by_the_next_flush(tmp_path):
    records = [b'{"search_id":"%d"}\n' % number for number in range(25)]
    (tmp_path / "records").write_bytes(b"".join(records))
    sweep = subprocess.Popen([sys.executable, "-c", KILLED_SWEEP, str(tmp_path / "lake"), str(tmp_path / "records")],
                             cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert sweep.stdout.readline() == b"accepted\n"
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    assert not (tmp_path / "lake" / "raw").exists()
    successor = LocalDeliveryStream(tmp_path / "lake")
    successor.put_record_batch([b'{"search_id":"new"}\n'])
    successor.flush()
    lines = Counter(line for key in successor.objects_written
                    for line in (tmp_path / "lake" / key).read_bytes().splitlines(keepends=True))
    assert lines == Counter(records + [b'{"search_id":"new"}\n'])
    assert successor.spool.waiting_records() == 0 and list(successor.spool.folder.iterdir()) == []


def test_counting_the_spool_never_makes_a_re_send_skip_a_segment(tmp_path):
    spool = WriteAheadSpool(tmp_path)
    spool.write([b"a", b"b"])
    held = spool.open_segment()
    held.append([b"in flight"])
    (waiting,) = [path for path in tmp_path.iterdir() if path != held.path]
    # A count probing the waiting segment's lock at the moment a re-send claims it.
    probe = os.open(waiting, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(CLAIM_RETRY_SECONDS / 5, os.close, [probe]).start()
    claimed = list(spool.claim_waiting())
    assert [(segment.path, records) for segment, records in claimed] == [(waiting, [b"a", b"b"])]
    # Counting takes no lock a claim would meet: the claimed segment is not counted, the held one never is.
    assert spool.waiting_records() == 0
    claimed[0][0].release()
    assert spool.waiting_records() == 2
    assert [records for _, records in spool.claim_waiting()] == [[b"a", b"b"]]
    held.release()
