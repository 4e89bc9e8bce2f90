"""Warehouse load: `load_fares` (binary COPY into staging, then INSERT ... ON CONFLICT) vs a plain binary COPY.

Both sides write the same generated trip options, in the same run, to an embedded PostgreSQL cluster
started in a temporary folder: the merge into empty fare tables, and a COPY into an empty UNLOGGED
table without indexes (the fastest way PostgreSQL takes rows). The ratio is merge rows/s over plain
COPY rows/s: what idempotence, two indexed tables partitioned by collection month, one transaction, the
withdrawal of options the rows' searches no longer yield (none here, but each search is looked up) and the answers'
summaries (answer_summaries, one row per search) cost. A COPY
straight into a logged table with the fare tables' indexes is measured too: the floor of any load into serving
tables the page reads meanwhile. So is a COPY into a logged table whose indexes are built afterwards: the floor for
a table nobody reads during the load (a first load or a rebuild could swap one in).
"""
import argparse
import datetime as dt
import random
import sys
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import best_of, report  # noqa: E402
from fare_assets.services import free_port  # noqa: E402
from fare_assets.storing import warehouse  # noqa: E402
from fare_assets.storing.postgres import EmbeddedPostgres  # noqa: E402

ROUTES = [("SFO", "JFK", True), ("LAX", "ORD", True), ("LHR", "JFK", False), ("CDG", "SFO", False),
          ("BOS", "SEA", True), ("FRA", "LAX", False)]
CARRIERS = ["UA", "AA", "DL", "B6", "BA", "AF", "LH", "AA,BA", "DL,AF", "UA,LH"]
# A search returns about this many options, as the simulator does.
OPTIONS_PER_SEARCH = 20


def generated_rows(count: int, seed: int = 7) -> list[tuple]:
    """`count` realistic trip options in warehouse.LOAD_COLUMNS order."""
    draw = random.Random(seed)
    first_collection = dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)
    rows = []
    for search_no in range(count // OPTIONS_PER_SEARCH + 1):
        origin, destination, national = draw.choice(ROUTES)
        collected_at = first_collection + dt.timedelta(minutes=30 * draw.randrange(4000))
        days_ahead, nights = draw.randrange(1, 120), draw.choice([3, 5, 7, 10, 14])
        depart_date = collected_at.date() + dt.timedelta(days=days_ahead)
        return_date = depart_date + dt.timedelta(days=nights)
        search_id = str(uuid.UUID(int=draw.getrandbits(128)))
        # A search is one party's (its options share it), as the structuring job writes them.
        adults, children = draw.choice([1, 1, 2]), draw.choice([0, 0, 1])
        for _ in range(OPTIONS_PER_SEARCH):
            stops_out, stops_back = draw.choice([0, 0, 1, 1, 2]), draw.choice([0, 1, 1, 2])
            out_departure = dt.datetime.combine(depart_date, dt.time(draw.randrange(6, 22), draw.choice([0, 15, 30, 45])))
            back_departure = dt.datetime.combine(return_date, dt.time(draw.randrange(6, 22), draw.choice([0, 15, 30, 45])))
            values = {
                "option_id": str(uuid.UUID(int=draw.getrandbits(128))), "search_id": search_id, "provider": "qpx",
                "collected_at": collected_at, "origin": origin, "destination": destination,
                "depart_date": depart_date, "return_date": return_date, "days_ahead": days_ahead, "nights": nights,
                "adults": adults, "children": children, "cabin": "COACH",
                "total_amount": Decimal(draw.randrange(9000, 250000)) / 100, "currency": "USD",
                "carriers": draw.choice(CARRIERS), "stops_out": stops_out, "stops_back": stops_back,
                "duration_out_min": 300 + 90 * stops_out + draw.randrange(60),
                "duration_back_min": 320 + 90 * stops_back + draw.randrange(60),
                "depart_out_local": out_departure, "depart_back_local": back_departure,
            }
            rows.append((*[values[name] for name in warehouse.COLUMN_NAMES], national))
            if len(rows) == count:
                return rows
    return rows


def searches_of(rows: list[tuple]) -> list[tuple]:
    """The searches the rows come from, as a load receives them with its fares (warehouse.SEARCH_COLUMNS)."""
    search, collected = (warehouse.COLUMN_NAMES.index(name) for name in ("search_id", "collected_at"))
    return sorted({(row[search], row[collected]) for row in rows})


def plain_copy(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """Binary COPY of the rows into an empty UNLOGGED table without indexes or constraints."""
    columns = ", ".join(f"{name} {kind}" for name, kind in warehouse.FARE_COLUMNS)
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS plain_fares")
        conn.execute(f"CREATE UNLOGGED TABLE plain_fares ({columns}, national boolean)")
        _copy_rows(conn, "plain_fares", rows)


def copy_into_indexed_table(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """Binary COPY straight into an empty logged table with the fare tables' key and indexes (no merge)."""
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS indexed_fares")
        conn.execute("CREATE TABLE indexed_fares (LIKE national_fares INCLUDING ALL, national boolean)")
        _copy_rows(conn, "indexed_fares", rows)


def copy_then_build_indexes(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """Binary COPY into an empty logged table without indexes, then the fare tables' key and indexes built on it."""
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS bulk_fares")
        conn.execute("CREATE TABLE bulk_fares (LIKE national_fares INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
                     " national boolean)")
        _copy_rows(conn, "bulk_fares", rows)
        conn.execute(f"ALTER TABLE bulk_fares ADD PRIMARY KEY ({', '.join(warehouse.FARE_KEY)})")
        for columns in warehouse.FARE_INDEXES.values():
            conn.execute(f"CREATE INDEX ON bulk_fares ({columns})")


def _copy_rows(conn: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(warehouse.LOAD_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind for _, kind in warehouse.FARE_COLUMNS] + ["bool"])
            for row in rows:
                copy.write_row(row)


def merge_into_empty_tables(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """`load_fares` into freshly emptied fare tables (their indexes stay)."""
    conn.execute(f"TRUNCATE {', '.join(warehouse.FARE_TABLES)}")
    conn.commit()
    warehouse.load_fares(conn, rows, searches_of(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rows = generated_rows(args.rows)
    with tempfile.TemporaryDirectory(prefix="fares-bench-") as folder:
        cluster = EmbeddedPostgres(Path(folder) / "cluster", free_port())
        cluster.start()
        try:
            with psycopg.connect(cluster.dsn()) as conn:
                warehouse.ensure_schema(conn)
                plain_seconds = best_of(lambda: plain_copy(conn, rows), args.repeat)
                indexed_seconds = best_of(lambda: copy_into_indexed_table(conn, rows), args.repeat)
                bulk_seconds = best_of(lambda: copy_then_build_indexes(conn, rows), args.repeat)
                merge_seconds = best_of(lambda: merge_into_empty_tables(conn, rows), args.repeat)
                # A rerun of the same rows: every row conflicts and is compared, none changes.
                reload_seconds = best_of(lambda: warehouse.load_fares(conn, rows, searches_of(rows)), args.repeat)
        finally:
            cluster.destroy()
    measured = [("plain binary COPY, UNLOGGED, no indexes", plain_seconds),
                ("plain binary COPY, logged, fare indexes", indexed_seconds),
                ("plain binary COPY, logged, indexes built after", bulk_seconds),
                ("load_fares into empty tables", merge_seconds),
                ("load_fares of the same rows again", reload_seconds)]
    report("warehouse_load",
           [{"load": name, "rows": len(rows), "seconds": seconds, "rows_per_s": len(rows) / seconds}
            for name, seconds in measured],
           "merge/plain rows per second", plain_seconds / merge_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
