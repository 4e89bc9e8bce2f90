"""Simulator raw logs for the structuring benches: JSON-lines objects of a given size in the lake's key layout.

Rendering a QPX response costs milliseconds, so a pool of RESPONSE_POOL responses from the fare market
simulator (the watchlist's searches over several days, 5 to 14 options each) is rendered once and each
response is wrapped in many envelopes. Every envelope gets its own collection second, hence its own
search_id: the structuring job's deduplication keeps them all. Each landing hour holds RECORDS_PER_HOUR
records in objects of about OBJECT_BYTES, keyed as Firehose keys them. A set is cached under BENCH_DATA_DIR
(default: a folder in the system temp dir) by size and reused by later runs and the other benches.
"""
import datetime as dt
import os
import random
import shutil
import tempfile
import uuid
from pathlib import Path

from fare_assets.market.pricing import Market, Query
from fare_assets.market.qpx import make_request_id, render_response
from fare_assets.settings import load_settings
from fare_assets.storing.lake import raw_object_key
from fare_assets.streaming.envelope import encode, envelope
from fare_assets.streaming.watchlist import load_watchlist

DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", Path(tempfile.gettempdir()) / "fares-bench-raw-logs"))
RESPONSE_POOL = 300
OBJECT_BYTES = 5_000_000
# At most one record per second of its landing hour, so collection times (and search ids) never repeat.
RECORDS_PER_HOUR = 1_500
STREAM = "fares-bench"
FIRST_LANDING_HOUR = dt.datetime(2026, 11, 1, 0, tzinfo=dt.timezone.utc)
FIRST_SEARCH_DAY = dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc)
_COMPLETE = "complete"


def market_searches(count: int, first_day: dt.datetime = FIRST_SEARCH_DAY) -> list[tuple[dict, dict, dt.datetime]]:
    """`count` (query, QPX response, market time) triples: the watchlist's searches on successive days."""
    market, watchlist, rng = Market(), load_watchlist(load_settings().watchlist), random.Random(7)
    searches: list[tuple[dict, dict, dt.datetime]] = []
    day = 0
    while len(searches) < count:
        at = first_day + dt.timedelta(days=day)
        for trip in watchlist.trips_at(at)[:count - len(searches)]:
            query = Query(trip.origin, trip.destination, trip.depart_date, trip.return_date,
                          trip.adults, trip.children, trip.cabin)
            response = render_response(query, market.search(query, at, rng.randint(5, 14)),
                                       make_request_id(trip.as_dict(), at.isoformat()))
            searches.append((trip.as_dict(), response, at))
        day += 1
    return searches


def _write_objects(folder: Path, megabytes: int) -> list[Path]:
    """Envelopes totalling `megabytes` MB, written as objects under their landing hours' folders."""
    pool = [(query, response) for query, response, _ in market_searches(RESPONSE_POOL)]
    objects: list[Path] = []
    lines: list[bytes] = []
    written = pending = 0

    def file_object(landing_hour: dt.datetime) -> None:
        nonlocal pending
        arrival = landing_hour + dt.timedelta(minutes=len(objects) % 60)
        path = folder / raw_object_key(STREAM, arrival, str(uuid.uuid5(uuid.NAMESPACE_OID, str(len(objects)))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(lines))
        objects.append(path)
        lines.clear()
        pending = 0

    record_no = 0
    while written < megabytes * 1e6:
        landing_hour = FIRST_LANDING_HOUR + dt.timedelta(hours=record_no // RECORDS_PER_HOUR)
        collected_at = landing_hour + dt.timedelta(seconds=record_no % RECORDS_PER_HOUR)
        query, response = pool[record_no % len(pool)]
        line = encode(envelope("qpx", query, collected_at, 200, 300, response=response))
        lines.append(line)
        written += len(line)
        pending += len(line)
        record_no += 1
        last_of_hour = record_no % RECORDS_PER_HOUR == 0
        if pending >= OBJECT_BYTES or last_of_hour or written >= megabytes * 1e6:
            file_object(landing_hour)
    return objects


def raw_log_files(megabytes: int) -> list[str]:
    """Paths of a cached set of simulator raw objects totalling `megabytes` MB, in landing-hour order."""
    folder = DATA_DIR / f"{megabytes}mb"
    if not (folder / _COMPLETE).exists():
        shutil.rmtree(folder, ignore_errors=True)
        objects = _write_objects(folder, megabytes)
        (folder / _COMPLETE).write_text("\n".join(map(str, objects)))
    return (folder / _COMPLETE).read_text().split("\n")


def total_megabytes(paths: list[str]) -> float:
    return sum(os.path.getsize(path) for path in paths) / 1e6
