"""The PostgreSQL warehouse: national_fares and international_fares, loaded idempotently."""
from collections.abc import Iterable

import psycopg

from fare_assets.storing.postgres import READONLY_ROLE

FARE_TABLES = ("national_fares", "international_fares")

# (column, PostgreSQL type) in the order the loader receives them.
FARE_COLUMNS = [
    ("option_id", "text"),
    ("search_id", "text"),
    ("provider", "text"),
    ("collected_at", "timestamptz"),
    ("origin", "text"),
    ("destination", "text"),
    ("depart_date", "date"),
    ("return_date", "date"),
    ("days_ahead", "int4"),
    ("nights", "int4"),
    ("adults", "int4"),
    ("children", "int4"),
    ("cabin", "text"),
    ("total_amount", "numeric"),
    ("currency", "text"),
    ("carriers", "text"),
    ("stops_out", "int4"),
    ("stops_back", "int4"),
    ("duration_out_min", "int4"),
    ("duration_back_min", "int4"),
    ("depart_out_local", "timestamp"),
    ("depart_back_local", "timestamp"),
]
COLUMN_NAMES = [name for name, _ in FARE_COLUMNS]
LOAD_COLUMNS = [*COLUMN_NAMES, "national"]


def _table_ddl(table: str) -> str:
    columns = ",\n  ".join(
        f"{name} {'numeric(18,3)' if kind == 'numeric' else kind}"
        + (" PRIMARY KEY" if name == "option_id" else "")
        + (" NOT NULL" if name in ("search_id", "collected_at", "origin", "destination",
                                   "depart_date", "total_amount", "currency") else "")
        for name, kind in FARE_COLUMNS
    )
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
  {columns},
  CHECK (total_amount > 0)
);
-- The page asks: latest fares for one trip, and the history of one route.
CREATE INDEX IF NOT EXISTS {table}_trip_idx
  ON {table} (origin, destination, depart_date, return_date, collected_at DESC);
CREATE INDEX IF NOT EXISTS {table}_collected_idx ON {table} (collected_at);
GRANT SELECT ON {table} TO {READONLY_ROLE};
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the fare tables, their indexes and the web role's read grant (idempotent)."""
    with conn.transaction():
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {READONLY_ROLE}")
        for table in FARE_TABLES:
            conn.execute(_table_ddl(table))


def load_fares(conn: psycopg.Connection, rows: Iterable[tuple]) -> dict[str, int]:
    """COPY rows into a staging table, then merge them into both tables in one transaction.

    `rows` are tuples in LOAD_COLUMNS order: the fare columns, then whether the trip is national.
    Reloading the same rows changes nothing (INSERT ... ON CONFLICT), and a failure leaves
    nothing half-loaded because staging and merge share one transaction.
    """
    ensure_schema(conn)
    column_list = ", ".join(COLUMN_NAMES)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in COLUMN_NAMES if name != "option_id")
    counts = {}
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE fare_staging (LIKE national_fares INCLUDING DEFAULTS, national boolean)"
            " ON COMMIT DROP"
        )
        with conn.cursor().copy(f"COPY fare_staging ({column_list}, national) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind for _, kind in FARE_COLUMNS] + ["bool"])
            for row in rows:
                copy.write_row(row)
        for table, national in (("national_fares", True), ("international_fares", False)):
            merged = conn.execute(
                f"INSERT INTO {table} ({column_list})"
                f" SELECT DISTINCT ON (option_id) {column_list} FROM fare_staging WHERE national = %s"
                f" ON CONFLICT (option_id) DO UPDATE SET {updates}",
                (national,),
            )
            counts[table] = merged.rowcount
    return counts


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per fare table."""
    ensure_schema(conn)
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in FARE_TABLES}


def rows_from_arrow(table) -> Iterable[tuple]:
    """Rows of a pyarrow table (columns in LOAD_COLUMNS order) as tuples for COPY."""
    for batch in table.to_batches():
        yield from zip(*(column.to_pylist() for column in batch.columns))


def options_present(conn: psycopg.Connection, option_ids: list[str]) -> int:
    """How many of these option ids are in either fare table."""
    query = " UNION ALL ".join(f"SELECT count(*) FROM {table} WHERE option_id = ANY(%(ids)s)" for table in FARE_TABLES)
    return sum(row[0] for row in conn.execute(query, {"ids": option_ids}).fetchall())


OBSERVATIONS_SQL = """
WITH options AS (
  SELECT *, true AS national FROM national_fares
  UNION ALL
  SELECT *, false AS national FROM international_fares
)
SELECT origin, destination, depart_date, return_date, adults, children, cabin, collected_at,
       min(total_amount)::float8 AS cheapest_total, min(currency) AS currency,
       count(*) AS option_count,
       (SELECT count(DISTINCT carrier) FROM unnest(string_to_array(string_agg(carriers, ','), ',')) AS carrier)
         AS carrier_count,
       avg(CASE WHEN stops_out = 0 AND coalesce(stops_back, 0) = 0 THEN 1.0 ELSE 0.0 END)::float8 AS nonstop_share,
       bool_and(national) AS national
FROM options
GROUP BY search_id, origin, destination, depart_date, return_date, adults, children, cabin, collected_at
ORDER BY origin, destination, depart_date, return_date, collected_at
"""


def observations(conn: psycopg.Connection):
    """One row per search: the cheapest total and the market's shape at that collection (pandas)."""
    import pandas as pd

    ensure_schema(conn)
    cursor = conn.execute(OBSERVATIONS_SQL)
    frame = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    for column in ("depart_date", "return_date"):
        frame[column] = pd.to_datetime(frame[column])
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    return frame
