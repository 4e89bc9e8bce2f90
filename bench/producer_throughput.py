"""Producer throughput: records per second through the Firehose delivery stream vs the local one.

Both sides take the same BENCH_RECORDS raw records (default 5,000 envelopes of 20-60 KB, built from
the fare market simulator's QPX responses), put one record per call from four threads as a sweep
does, then flush. The Firehose side goes through boto3 over HTTP to a moto server on this machine
(PutRecordBatch, write-ahead spool with an fsync per put), so it measures the producer's own cost
plus moto's, not AWS's latency; the local side writes the lake folder (same spool). The bench
prints records per second for each and the ratio.
"""
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.server import ThreadedMotoServer  # noqa: E402

from bench.harness import best_of, report  # noqa: E402
from bench.raw_logs import market_searches  # noqa: E402
from fare_assets.services import free_port  # noqa: E402
from fare_assets.streaming.aws_setup import PLACEHOLDER_ROLE_ARN, setup  # noqa: E402
from fare_assets.streaming.delivery import LocalDeliveryStream  # noqa: E402
from fare_assets.streaming.envelope import encode, envelope  # noqa: E402
from fare_assets.streaming.firehose import FirehoseDeliveryStream, FirehoseTarget  # noqa: E402

RECORDS = int(os.environ.get("BENCH_RECORDS", "5000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
PRODUCER_THREADS = 4
FIRST_COLLECTION = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc)


def market_records(count: int) -> list[bytes]:
    """`count` raw records: the watchlist's searches on successive days, 5 to 14 options each."""
    return [encode(envelope("qpx", query, at, 200, 300, response=response))
            for query, response, at in market_searches(count, FIRST_COLLECTION)]


def deliver(stream, records: list[bytes]) -> None:
    """Put one record per call from several threads, as a sweep does, then flush."""
    with ThreadPoolExecutor(max_workers=PRODUCER_THREADS) as pool:
        list(pool.map(lambda record: stream.put_record_batch([record]), records))
    stream.flush()


def main() -> None:
    port = free_port()
    # Dummy credentials and an explicit endpoint: this bench only ever talks to its own moto server.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      FARES_S3_BUCKET="fares-bench", FARES_FIREHOSE_STREAM="fares-bench")
    records = market_records(RECORDS)
    megabytes = sum(map(len, records)) / 1e6
    record_kb = f"{min(map(len, records)) // 1000}-{max(map(len, records)) // 1000}"
    # The moto server logs every request; the table is the output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="fares-producer-bench-"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        setup(FirehoseTarget.from_env(), PLACEHOLDER_ROLE_ARN)
        streams = []

        def through_firehose():
            streams.append(FirehoseDeliveryStream.from_env(work / f"spool-{len(streams)}"))
            deliver(streams[-1], records)

        def through_local():
            streams.append(LocalDeliveryStream(work / f"lake-{len(streams)}"))
            deliver(streams[-1], records)
            shutil.rmtree(streams[-1].lake_root)

        firehose_seconds = best_of(through_firehose, repeat=REPEAT)
        local_seconds = best_of(through_local, repeat=REPEAT)
        for stream in streams:
            if stream.records_delivered != len(records):
                raise SystemExit(f"{type(stream).__name__} delivered {stream.records_delivered} of {len(records)} records")
        rows = [
            {"side": side, "records": len(records), "record_kb": record_kb, "megabytes": megabytes, "seconds": seconds,
             "records_per_s": len(records) / seconds, "mb_per_s": megabytes / seconds}
            for side, seconds in (("firehose stream -> moto server (HTTP)", firehose_seconds),
                                  ("local stream -> lake folder", local_seconds))
        ]
        report("producer_throughput", rows, "local records/s over firehose records/s", firehose_seconds / local_seconds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
