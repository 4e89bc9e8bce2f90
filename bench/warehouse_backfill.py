"""Warehouse backfill: `load_fares` with the fare tables keyed (collected_at, option_id) against keyed option_id first.

Both sides, in the same run and on the same generated rows, load a history in one transaction (a backfill or a
rebuild from raw), then two later loads of 100,000 rows on top of it; the side before the reorder also has its
index on collected_at. With option_id first, a load's rows land all over the key's B-tree; with collected_at first,
after the history, at its right edge. The ratio is the backfill's
time keyed option_id first over its time keyed as the warehouse is.
"""
import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import report  # noqa: E402
from bench.warehouse_load import generated_rows, searches_of  # noqa: E402
from fare_assets.services import free_port  # noqa: E402
from fare_assets.storing import warehouse  # noqa: E402
from fare_assets.storing.postgres import EmbeddedPostgres  # noqa: E402

LATER_LOAD_ROWS = 100_000
# The later loads are collected after the whole history, as a live load is.
LATER_BY = dt.timedelta(days=90)
COLLECTED_AT, DEPART, RETURN = (warehouse.COLUMN_NAMES.index(name) for name in ("collected_at", "depart_date", "return_date"))


def later(row: tuple) -> tuple:
    shifted = list(row)
    for position in (COLLECTED_AT, DEPART, RETURN):
        shifted[position] += LATER_BY
    return tuple(shifted)


def timed_loads(dsn: str, key: list[str], history: list[tuple], loads: list[list[tuple]]) -> list[float]:
    """Seconds of the history load and of each later load into fresh fare tables keyed by `key` (the layout before
    the reorder also had an index on collected_at, which the reordered key serves)."""
    with psycopg.connect(dsn) as conn:
        warehouse.ensure_schema(conn)
        for table in warehouse.FARE_TABLES:
            conn.execute(f"TRUNCATE {table}")
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY ({', '.join(key)})")
            conn.execute(f"DROP INDEX IF EXISTS {table}_collected_idx")
            if key != warehouse.FARE_KEY:
                conn.execute(f"CREATE INDEX {table}_collected_idx ON {table} (collected_at)")
        conn.commit()
        # Loads rekey the tables to the warehouse's key: the side keyed option_id first keeps its key here.
        rekey, warehouse._rekey_fare_tables = warehouse._rekey_fare_tables, lambda conn: None
        try:
            seconds = []
            for rows in [history, *loads]:
                started = time.perf_counter()
                warehouse.load_fares(conn, rows, searches_of(rows))
                seconds.append(time.perf_counter() - started)
                conn.commit()
        finally:
            warehouse._rekey_fare_tables = rekey
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    history = generated_rows(args.history, seed=1)
    loads = [[later(row) for row in generated_rows(LATER_LOAD_ROWS, seed=seed)] for seed in (2, 3)]
    sides = {"collected_at first (the warehouse)": warehouse.FARE_KEY,
             "option_id first + collected_at index (before)": ["option_id", "collected_at"]}
    results = {}
    with tempfile.TemporaryDirectory(prefix="fares-bench-") as folder:
        cluster = EmbeddedPostgres(Path(folder) / "cluster", free_port())
        cluster.start()
        try:
            for name, key in sides.items():
                results[name] = timed_loads(cluster.dsn(), key, history, loads)
        finally:
            cluster.destroy()
    rows = [{"key": name, "history_rows": len(history), "history_s": seconds[0],
             "later_100k_s": " / ".join(f"{value:.2f}" for value in seconds[1:])} for name, seconds in results.items()]
    first, before = results.values()
    report("warehouse_backfill", rows, "backfill time keyed option_id first / keyed collected_at first",
           before[0] / first[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
