"""The PostgreSQL warehouse: national_fares, international_fares and their dimensions, loaded idempotently."""
import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from fare_assets.storing.postgres import READONLY_ROLE

T = TypeVar("T")

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
# A search the load's landing hours hold (answered or quarantined), as the loader receives it.
SEARCH_COLUMNS = [("search_id", "text"), ("collected_at", "timestamptz")]
# A provider's answer that held no option for the trip: it looked and found nothing to sell, which the fare tables
# (one row per option) cannot hold, and which is not a failed call (see observations_query).
EMPTY_ANSWER_COLUMNS = [("search_id", "text"), ("provider", "text"), ("collected_at", "timestamptz"),
                        ("origin", "text"), ("destination", "text"), ("depart_date", "date"), ("return_date", "date"),
                        ("adults", "int4"), ("children", "int4"), ("cabin", "text")]

_NAMED_CODE = [("code", "text"), ("name", "text"), ("updated_at", "timestamptz")]
# The curated dimensions as the page and ad hoc queries see them, keyed by `code`; the columns
# mirror fare_assets.structuring.tables.DIMENSION_SCHEMAS (declared here so the web app never imports Spark).
DIMENSION_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "airports": [("code", "text"), ("name", "text"), ("city_code", "text"), ("city", "text"),
                 ("country", "text"), ("tz", "text"), ("lat", "float8"), ("lon", "float8"),
                 ("updated_at", "timestamptz")],
    "cities": _NAMED_CODE,
    "carriers": _NAMED_CODE,
    "aircraft": _NAMED_CODE,
    "tax_codes": _NAMED_CODE,
}
DIMENSION_TABLES = tuple(DIMENSION_COLUMNS)
WAREHOUSE_TABLES = (*FARE_TABLES, *DIMENSION_TABLES)

_REQUIRED_FARE_COLUMNS = ("search_id", "collected_at", "origin", "destination", "depart_date", "total_amount",
                          "currency")


# Index name suffix -> columns of each fare table's secondary indexes (each partition gets its own).
FARE_INDEXES = {
    # The page asks for the newest search of one trip and its options, and a route's upcoming trips.
    "trip_idx": "origin, destination, depart_date, return_date, collected_at DESC",
    # The route list reads only trips not yet departed: without this it scans the whole history.
    "upcoming_idx": "depart_date",
}
# The key leads with the collection time. Collections only move forward, so a load's rows sort after the
# history and the key's B-tree grows at its right edge instead of splitting pages all over (bench/warehouse_backfill.py:
# a 3-million-row backfill 1.8x faster than keyed option_id first). It also serves max(collected_at), from which the
# retention horizon counts back, with one index entry per partition.
FARE_KEY = ["collected_at", "option_id"]
# Warehouses created before the key was reordered also have this index on collected_at, which the key now serves.
_SUPERSEDED_FARE_INDEX = "collected_idx"
# Creating or dropping a partition waits for readers at most this long per attempt, so the page's queries,
# which queue behind the waiting lock, stall no longer; it tries this many times.
PARTITION_LOCK_WAIT = "2s"
PARTITION_LOCK_ATTEMPTS = 150


def _fare_table_ddl(table: str) -> str:
    columns = ",\n  ".join(
        f"{name} {'numeric(18,3)' if kind == 'numeric' else kind}"
        + (" NOT NULL" if name in _REQUIRED_FARE_COLUMNS else "")
        for name, kind in FARE_COLUMNS
    )
    # Monthly partitions by collection time: retention drops a month as one file instead of deleting rows one
    # by one (no bloat, no vacuum), and a partitioned table's key must hold its partition column.
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
  {columns},
  PRIMARY KEY ({', '.join(FARE_KEY)}),
  CHECK (total_amount > 0)
) PARTITION BY RANGE (collected_at)"""


def _rows(conn: psycopg.Connection, query: str, params=None) -> list[tuple]:
    """Rows as tuples whatever row factory the caller's connection uses."""
    return conn.cursor(row_factory=tuple_row).execute(query, params).fetchall()


def _fare_indexes_ddl(table: str) -> str:
    return "".join(f"CREATE INDEX IF NOT EXISTS {table}_{suffix} ON {table} ({indexed});\n"
                   for suffix, indexed in FARE_INDEXES.items())


def _partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y%m}"


def _month_of_partition(table: str, partition: str) -> dt.date:
    return dt.datetime.strptime(partition.removeprefix(f"{table}_p"), "%Y%m").date()


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _locking_fare_table(conn: psycopg.Connection, statement: sql.Composable) -> None:
    """Run DDL that locks a fare table against readers, never queueing the page's queries behind it for long.

    A waiting ACCESS EXCLUSIVE lock makes every later reader wait too; so each attempt gives up after
    PARTITION_LOCK_WAIT (a savepoint undoes it) and tries again while a long reader (the serving refresh) finishes.
    """
    for _ in range(PARTITION_LOCK_ATTEMPTS):
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_WAIT}'")
                conn.execute(statement)
                conn.execute("SET LOCAL lock_timeout = 0")
            return
        except psycopg.errors.LockNotAvailable:
            time.sleep(1)
    raise psycopg.errors.LockNotAvailable(
        f"a fare table stayed locked by readers through {PARTITION_LOCK_ATTEMPTS} attempts to change it")


def _create_partition(conn: psycopg.Connection, table: str, month: dt.date) -> None:
    """The partition of `table` holding collections of one UTC month (a no-op when it exists).

    Created beside its parent, then attached: ATTACH PARTITION takes a lock the page's reads pass (SHARE UPDATE
    EXCLUSIVE), where CREATE TABLE … PARTITION OF locks the parent against them until the whole load commits.
    """
    name = _partition_name(table, month)
    if name in fare_partitions(conn, table):
        return
    # The parent's NOT NULL and CHECK constraints, which ATTACH requires; it adds the key and indexes itself.
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
        sql.Identifier(name), sql.Identifier(table)))
    attach = sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
    _locking_fare_table(conn, attach.format(
        sql.Identifier(table), sql.Identifier(name),
        sql.Literal(f"{month:%Y-%m-%d} 00:00+00"), sql.Literal(f"{_next_month(month):%Y-%m-%d} 00:00+00")))


def create_fare_partitions(conn: psycopg.Connection, first: dt.date, last: dt.date) -> None:
    """Partitions of both fare tables for every collection month from `first` to `last` (for bulk loads by SQL)."""
    month = first.replace(day=1)
    while month <= last:
        for table in FARE_TABLES:
            _create_partition(conn, table, month)
        month = _next_month(month)


def _serialize_schema_changes(conn: psycopg.Connection) -> None:
    """Wait for any other load's schema or partition changes to commit, holding the turn until this transaction ends.

    Concurrent runs (one per landing hour) would otherwise race to create or drop the same partition
    and fail with a catalog unique violation that reads like a bad row.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('fares warehouse schema'))")


def fare_partitions(conn: psycopg.Connection, table: str) -> list[str]:
    """The monthly partitions of a fare table (named `<table>_pYYYYMM`), oldest first; others are not ours."""
    rows = _rows(conn, "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = inhrelid"
                       " WHERE inhparent = %s::regclass ORDER BY child.relname", (table,))
    return [name for name, in rows if re.fullmatch(rf"{table}_p\d{{6}}", name)]


def _create_partitions_for(conn: psycopg.Connection, table: str, source: str) -> None:
    """The partitions of `table` for every collection month the rows of `source` hold, where missing.

    Creating a partition locks its parent against readers: months already there are left alone.
    """
    existing = set(fare_partitions(conn, table))
    months = _rows(conn, f"SELECT DISTINCT date_trunc('month', collected_at AT TIME ZONE 'UTC')::date FROM {source}")
    for month, in months:
        if _partition_name(table, month) not in existing:
            _create_partition(conn, table, month)


def _partition_unpartitioned(conn: psycopg.Connection, table: str) -> None:
    """Move a fare table created before partitioning (a plain table) into the partitioned layout, rows and all."""
    if _rows(conn, "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)) != [("r",)]:
        return
    old = f"{table}_unpartitioned"
    conn.execute(f"ALTER TABLE {table} RENAME TO {old}")
    # Index and constraint names are per schema: free them for the partitioned table.
    conn.execute(f"ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {table}_pkey")
    for suffix in FARE_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {table}_{suffix}")
    conn.execute(_fare_table_ddl(table))
    _create_partitions_for(conn, table, old)
    conn.execute(f"INSERT INTO {table} ({', '.join(COLUMN_NAMES)}) SELECT {', '.join(COLUMN_NAMES)} FROM {old}")
    conn.execute(f"DROP TABLE {old}")


def _fare_key(conn: psycopg.Connection, table: str) -> tuple[str | None, list[str]]:
    """The name of a fare table's primary key constraint and its columns in key order (None and [] without one)."""
    rows = _rows(conn, "SELECT conname, attname FROM pg_constraint, unnest(conkey) WITH ORDINALITY AS key(attnum, position)"
                       " JOIN pg_attribute ON attrelid = %s::regclass AND pg_attribute.attnum = key.attnum"
                       " WHERE conrelid = %s::regclass AND contype = 'p' ORDER BY position", (table, table))
    return (rows[0][0] if rows else None), [column for _, column in rows]


def _rekey_fare_tables(conn: psycopg.Connection) -> None:
    """Give fare tables created with option_id first in their key the current key, and drop the index it supersedes.

    A one-time rebuild of the key's index on every partition, with the table locked against readers meanwhile: so
    loads do it (in their turn), never readers, which only need some key to be there.
    """
    for table in FARE_TABLES:
        constraint, columns = _fare_key(conn, table)
        if columns == FARE_KEY:
            continue
        drop = (sql.SQL("DROP CONSTRAINT {}, ").format(sql.Identifier(constraint)) if constraint else sql.SQL(""))
        _locking_fare_table(conn, sql.SQL("ALTER TABLE {table} {drop}ADD PRIMARY KEY ({columns})").format(
            table=sql.Identifier(table), drop=drop, columns=sql.SQL(", ").join(map(sql.Identifier, FARE_KEY))))
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(f"{table}_{_SUPERSEDED_FARE_INDEX}")))


# A few rows a day: not partitioned; retention deletes its rows with the fare months it drops. Keyed as the fare
# tables (a search is one answer), indexed by trip for the page's and the observations' reads.
EMPTY_ANSWERS_DDL = f"""
CREATE TABLE IF NOT EXISTS empty_answers (
  {", ".join(f"{name} {kind} NOT NULL" if name in ("search_id", "collected_at") else f"{name} {kind}"
             for name, kind in EMPTY_ANSWER_COLUMNS)},
  PRIMARY KEY (collected_at, search_id)
);
CREATE INDEX IF NOT EXISTS empty_answers_trip_idx ON empty_answers ({FARE_INDEXES["trip_idx"]})"""

# Each answer (search) that quoted options, per currency: its cheapest total and its options' shape, which is what the
# page's chart and the advisor's observations read of a collection. Reading the option rows instead, a trip watched
# over a 63-day horizon at 48 sweeps a day is some 60,000 rows per chart (bench/trip_history_depth.py); this is one
# per provider and sweep. Written by each load from the fare rows of the searches it touched, so it holds exactly
# what the fare tables do; retention deletes its rows with the fare months it drops.
ANSWER_SUMMARY_COLUMNS = [*EMPTY_ANSWER_COLUMNS, ("currency", "text"), ("cheapest_total", "numeric(18,3)"),
                          ("option_count", "int4"), ("carriers", "text"), ("nonstop_count", "int4"),
                          ("national", "bool")]
_ANSWER_KEY = ["collected_at", "search_id", "currency"]
ANSWER_SUMMARIES_DDL = f"""
CREATE TABLE IF NOT EXISTS answer_summaries (
  {", ".join(f"{name} {kind} NOT NULL" if name in _ANSWER_KEY else f"{name} {kind}"
             for name, kind in ANSWER_SUMMARY_COLUMNS)},
  PRIMARY KEY ({", ".join(_ANSWER_KEY)})
);
CREATE INDEX IF NOT EXISTS answer_summaries_trip_idx ON answer_summaries ({FARE_INDEXES["trip_idx"]})"""
# `{searches}` joins the options to the searches to summarise, or is empty for all of them. Grouped by the key alone:
# a search's rows share their provider, trip and party (one record's), and should two disagree the summary takes the
# least rather than two rows for one key. Carriers are kept once each, sorted: the observations count the distinct
# carriers of a moment's answers.
_SUMMARISED_ANSWERS = f"""
SELECT {", ".join(name if name in _ANSWER_KEY else f"min({name})" for name, _ in EMPTY_ANSWER_COLUMNS)}, currency,
       min(total_amount), count(*),
       (SELECT string_agg(DISTINCT carrier, ',' ORDER BY carrier)
        FROM unnest(string_to_array(string_agg(carriers, ','), ',')) AS carrier),
       count(*) FILTER (WHERE stops_out = 0 AND coalesce(stops_back, 0) = 0), bool_and(national)
FROM (SELECT *, true AS national FROM national_fares UNION ALL SELECT *, false FROM international_fares) AS options
{{searches}}
GROUP BY {", ".join(_ANSWER_KEY)}"""


def _dimension_table_ddl(table: str) -> str:
    columns = ",\n  ".join(f"{name} {kind}" + (" PRIMARY KEY" if name == "code" else "")
                           for name, kind in DIMENSION_COLUMNS[table])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n)"


# Travellers' price alerts, written by the fare page and read (and marked notified) by the
# price-alert sensor. It is the one table the web role may write, so a compromised page can add
# alerts but never change a fare.
PRICE_ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS price_alerts (
  id bigserial PRIMARY KEY,
  origin text NOT NULL,
  destination text NOT NULL,
  depart_date date NOT NULL,
  return_date date NOT NULL,
  adults int4,
  children int4,
  cabin text,
  threshold numeric(18,3) NOT NULL CHECK (threshold > 0),
  currency text,
  created_at timestamptz NOT NULL DEFAULT now(),
  notified_at timestamptz,
  notified_total numeric(18,3),
  notified_channels text[] NOT NULL DEFAULT '{}'
);
-- The price-alert sensor reads the open alerts every few minutes: never the notified ones piling up over months.
CREATE INDEX IF NOT EXISTS price_alerts_open_idx ON price_alerts (depart_date) WHERE notified_at IS NULL"""
# What a traveller's alert says, the columns the web role may write (the rest, when and how it was notified, are the
# sensor's: a page that could insert them could save an alert already spent).
ALERT_INPUT_COLUMNS = [("origin", "text"), ("destination", "text"), ("depart_date", "date"), ("return_date", "date"),
                       ("adults", "int4"), ("children", "int4"), ("cabin", "text"), ("threshold", "numeric"),
                       ("currency", "text")]
# Columns added after their table was first released, which ensure_schema adds to warehouses created before:
# an alert's cabin (2026-12-05), so an alert watches the cabin its page showed; NULL (older alerts) is any cabin;
# the channels that took an alert while another failed (2026-12-05), so its retry does not send them again;
# the route stamp a stored page was rendered from (2026-12-05), so any load that changes its route's fares outdates it.
ADDED_COLUMNS = {"price_alerts": [("cabin", "text"), ("notified_channels", "text[] NOT NULL DEFAULT '{}'")],
                 "trip_pages": [("route_loaded_at", "timestamptz")]}
# Columns released NOT NULL that may be null since: an alert's currency (2026-12-07), unknown until its trip is first
# quoted (a default would leave an alert in USD silent for good on a trip quoted in EUR).
NULLABLE_SINCE_RELEASE = {"price_alerts": ["currency"]}

# When a load last inserted, changed or deleted fares of each route (either table; a retention drop stamps every
# route). A stored page keeps the stamp it was rendered from, so a new collection, a late part of a sweep, a
# collection of a neighbouring date in its grid and an hour re-structured in place (same option ids, new totals)
# all outdate it. Every write to the fare tables goes through the load; a reload that changes nothing stamps
# nothing. An update cannot move a row to another route: the key's option id hashes the search id, which hashes
# the query's route.
ROUTE_LOADS_DDL = """CREATE TABLE IF NOT EXISTS route_loads (
  origin text NOT NULL,
  destination text NOT NULL,
  loaded_at timestamptz NOT NULL,
  PRIMARY KEY (origin, destination)
)"""


def stamp_routes_sql(relation: str) -> str:
    """An INSERT that stamps now every route (origin, destination) `relation` holds."""
    # clock_timestamp(), not the transaction's now(): a stamp differs from every earlier one even if two loads
    # began in the same microsecond.
    return ("INSERT INTO route_loads (origin, destination, loaded_at) SELECT origin, destination, clock_timestamp()"
            f" FROM (SELECT DISTINCT origin, destination FROM {relation}) AS routes"
            " ON CONFLICT (origin, destination) DO UPDATE SET loaded_at = EXCLUDED.loaded_at")


def _stamping_routes(conn: psycopg.Connection, change: str) -> int:
    """Run a statement that writes fare rows and returns their origin and destination; stamp those routes."""
    [(rows,)] = _rows(conn, f"WITH changed AS ({change}), stamped AS ({stamp_routes_sql('changed')})"
                            " SELECT count(*) FROM changed")
    return rows


# The page's serving tables, written by the show stage (fare_assets/show) after each load and each
# retrain, so a page view reads advice and predicted fares instead of running a model, and each
# watched trip's rendered page instead of rendering it. Keyed by what
# the page looks up: one watched trip (advice) or one date-grid cell of a route and party (predictions).
# `collected_at`/`predicted_for` and `model_version` say what each row was computed from, so a
# reader can tell stale advice; `computed_at` is when that content was first written.
TRIP_KEY_COLUMNS = [("origin", "text"), ("destination", "text"), ("depart_date", "date"), ("return_date", "date"),
                    ("adults", "int4"), ("children", "int4"), ("cabin", "text")]
SERVING_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "trip_advice": [*TRIP_KEY_COLUMNS, ("collected_at", "timestamptz"), ("action", "text"),
                    ("drop_probability", "float8"), ("confidence", "float8"), ("expected_saving", "float8"),
                    ("currency", "text"), ("reason", "text"), ("model_version", "text"),
                    ("computed_at", "timestamptz")],
    "predicted_fares": [*TRIP_KEY_COLUMNS, ("predicted_amount", "numeric"), ("predicted_for", "timestamptz"),
                        ("model_version", "text"), ("computed_at", "timestamptz")],
    # The trip's fare page and /api/fares answer as rendered for `rendered_on`, showing the trip's
    # collection `collected_at`, from the fares its route had at `route_loaded_at` (route_loads).
    "trip_pages": [*TRIP_KEY_COLUMNS[:4], ("collected_at", "timestamptz"), ("rendered_on", "date"),
                   ("html", "text"), ("fares_json", "text"), ("computed_at", "timestamptz"),
                   ("route_loaded_at", "timestamptz")],
}
SERVING_KEYS = {
    # The page asks for one trip's advice: an exact primary-key probe.
    "trip_advice": ["origin", "destination", "depart_date", "return_date", "adults", "children", "cabin"],
    # The page asks for a route and party's cells within a depart range: a primary-key range scan.
    "predicted_fares": ["origin", "destination", "adults", "children", "cabin", "depart_date", "return_date"],
    # A page view without a party asks for one trip's page: an exact primary-key probe.
    "trip_pages": ["origin", "destination", "depart_date", "return_date"],
}
SERVING_TABLES = tuple(SERVING_COLUMNS)


# Every stored page view decompresses its page (~30 kB): lz4 does it several times faster than the default
# pglz (PostgreSQL 14+ built with lz4, as Debian's and the managed services' are).
LZ4_COLUMNS = {"html", "fares_json"}


def _serving_table_ddl(table: str) -> str:
    required = {*SERVING_KEYS[table], "model_version", "computed_at"}
    columns = ",\n  ".join(f"{name} {'numeric(18,2)' if kind == 'numeric' else kind}"
                           + (" COMPRESSION lz4" if name in LZ4_COLUMNS else "")
                           + (" NOT NULL" if name in required else "")
                           for name, kind in SERVING_COLUMNS[table])
    return (f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns},\n"
            f"  PRIMARY KEY ({', '.join(SERVING_KEYS[table])})\n)")


_READABLE_TABLES = (*WAREHOUSE_TABLES, "empty_answers", "answer_summaries", "route_loads", *SERVING_TABLES)


def web_role_exists(conn: psycopg.Connection) -> bool:
    """Whether the cluster has the fare page's role (the embedded one creates it; a real server's operator does)."""
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READONLY_ROLE,)).fetchone() is not None


def _grant_to_web_role(conn: psycopg.Connection) -> None:
    """Let the web role read every warehouse table and add price alerts, when the cluster has that role."""
    if web_role_exists(conn):
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {READONLY_ROLE}")
        conn.execute(f"GRANT SELECT ON {', '.join(_READABLE_TABLES)} TO {READONLY_ROLE}")
        # INSERT of what a traveller says, and SELECT: the page can neither edit nor delete an alert, nor mark one
        # notified, nor touch fares. The table-wide INSERT of warehouses before 2026-12-07 is taken back.
        conn.execute(f"GRANT SELECT ON price_alerts TO {READONLY_ROLE}")
        conn.execute(f"REVOKE INSERT ON price_alerts FROM {READONLY_ROLE}")
        conn.execute(f"GRANT INSERT ({', '.join(name for name, _ in ALERT_INPUT_COLUMNS)}) ON price_alerts"
                     f" TO {READONLY_ROLE}")
        conn.execute(f"GRANT USAGE ON SEQUENCE price_alerts_id_seq TO {READONLY_ROLE}")


def _count_columns(conn: psycopg.Connection, columns: list[tuple[str, str]], exists: str, also: str = "") -> int:
    """How many of the (table, column) pairs the catalog has (`exists` "EXISTS") or lacks ("NOT EXISTS"), as a live
    column meeting `also` (a condition on pg_attribute)."""
    [(count,)] = _rows(conn, f"SELECT count(*) FROM unnest(%s::text[], %s::text[]) AS wanted(relname, attname)"
                             f" WHERE {exists} (SELECT 1 FROM pg_attribute"
                             f" WHERE attrelid = ('public.' || quote_ident(wanted.relname))::regclass"
                             f" AND attname = wanted.attname AND NOT attisdropped{also})",
                       ([table for table, _ in columns], [name for _, name in columns]))
    return count


def schema_is_current(conn: psycopg.Connection) -> bool:
    """Every table and fare index is there (fare tables partitioned), and the web role, if any, has its grants."""
    expected = {**dict.fromkeys(FARE_TABLES, "p"),
                **{f"{table}_{suffix}": "I" for table in FARE_TABLES for suffix in FARE_INDEXES},
                **dict.fromkeys((*DIMENSION_TABLES, "empty_answers", "answer_summaries", "price_alerts", "route_loads",
                                 *SERVING_TABLES), "r"),
                "empty_answers_trip_idx": "i", "answer_summaries_trip_idx": "i", "price_alerts_open_idx": "i"}
    found = dict(_rows(conn, "SELECT relname, relkind FROM pg_class"
                             " WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)", (list(expected),)))
    if found != expected:
        return False
    added = [(table, name) for table, columns in ADDED_COLUMNS.items() for name, _ in columns]
    relaxed = [(table, name) for table, names in NULLABLE_SINCE_RELEASE.items() for name in names]
    if _count_columns(conn, added, "NOT EXISTS") or _count_columns(conn, relaxed, "EXISTS", " AND attnotnull"):
        return False
    if not web_role_exists(conn):
        return True
    [(granted,)] = _rows(conn, "SELECT bool_and(has_table_privilege(%s, name, 'SELECT'))"
                               " AND has_column_privilege(%s, 'price_alerts', 'threshold', 'INSERT')"
                               " AND NOT has_column_privilege(%s, 'price_alerts', 'notified_at', 'INSERT')"
                               " FROM unnest(%s::text[]) AS name",
                         (READONLY_ROLE, READONLY_ROLE, READONLY_ROLE, list(_READABLE_TABLES)))
    return granted


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create what the warehouse lacks: tables, indexes, the web role's grants; move unpartitioned fare tables.

    When all is in place it only reads the catalog: readers and the serving refresh call it too, and must
    neither wait for a load's turn nor lock the fare tables.
    """
    with conn.transaction():
        if schema_is_current(conn):
            return
        _serialize_schema_changes(conn)
        for table in FARE_TABLES:
            _partition_unpartitioned(conn, table)
            conn.execute(_fare_table_ddl(table))
            conn.execute(_fare_indexes_ddl(table))
        for table in DIMENSION_TABLES:
            conn.execute(_dimension_table_ddl(table))
        conn.execute(EMPTY_ANSWERS_DDL)
        [(summaries_were_kept,)] = _rows(conn, "SELECT to_regclass('public.answer_summaries') IS NOT NULL")
        conn.execute(ANSWER_SUMMARIES_DDL)
        if not summaries_were_kept:
            # A warehouse loaded before the summaries (2026-12-07) gains them once.
            summarise_every_answer(conn)
        conn.execute(PRICE_ALERTS_DDL)
        [(stamps_were_kept,)] = _rows(conn, "SELECT to_regclass('public.route_loads') IS NOT NULL")
        conn.execute(ROUTE_LOADS_DDL)
        for table in SERVING_TABLES:
            conn.execute(_serving_table_ddl(table))
        for table, columns in ADDED_COLUMNS.items():
            for name, kind in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
        for table, names in NULLABLE_SINCE_RELEASE.items():
            for name in names:
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN {name} DROP NOT NULL")
        if not stamps_were_kept:
            # Pages stored before route stamps (unstamped, as a route no load has stamped yet) would pass the page's
            # check however stale: stamping their routes now leaves them unserved until the next refresh.
            conn.execute(stamp_routes_sql("trip_pages"))
        _grant_to_web_role(conn)


def summarise_every_answer(conn: psycopg.Connection) -> None:
    """Rewrite answer_summaries from every fare row, for fare rows written other than by a load (a bulk insert, a run
    of code older than the summaries): in one transaction, in the loads' turn; readers of the summaries wait."""
    with conn.transaction():
        _serialize_schema_changes(conn)
        conn.execute("TRUNCATE answer_summaries")
        conn.execute("INSERT INTO answer_summaries " + _SUMMARISED_ANSWERS.format(searches=""))
        # The loads' deletions and the page's reads are planned on these figures.
        conn.execute("ANALYZE answer_summaries")


def _copy_into(conn: psycopg.Connection, table: str, columns: list[tuple[str, str]], rows: Iterable[tuple]) -> None:
    names = ", ".join(name for name, _ in columns)
    with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row(row)


def _upsert_sql(table: str, source: str, keys: list[str], names: list[str], ignored: tuple[str, ...] = ()) -> str:
    """INSERT ... ON CONFLICT that rewrites a row only when a value differs (a reload writes nothing).

    A difference only in `ignored` columns rewrites nothing.
    """
    column_list = ", ".join(names)
    key = ", ".join(keys)
    values = [name for name in names if name not in keys]
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in values)
    compared = [name for name in values if name not in ignored]
    current = ", ".join(f"{table}.{name}" for name in compared)
    incoming = ", ".join(f"EXCLUDED.{name}" for name in compared)
    return (f"INSERT INTO {table} ({column_list}) SELECT DISTINCT ON ({key}) {column_list} FROM {source}"
            f" ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE ({current}) IS DISTINCT FROM ({incoming})")


@dataclass
class FareLoad:
    """What one load did: rows changed per table, and the fare rows it staged, kept out, and finds in place."""
    changed: dict[str, int]
    staged: int = 0
    past_retention: int = 0
    # Staged rows found in their own fare table; and rows deleted from the other one, their market having changed.
    present: int = 0
    reclassified: int = 0
    # Rows deleted per table because their search, structured again, no longer yields them.
    withdrawn: dict[str, int] = field(default_factory=dict)
    # Empty answers inserted or changed, or deleted because their search, structured again, was not one.
    empty_answers_changed: int = 0
    # Answer summaries inserted, changed or deleted: those of the searches the load touched, summarised again.
    answer_summaries_changed: int = 0
    dropped_partitions: list[str] = field(default_factory=list)
    # Why retention dropped nothing this time although months are past it (the next load tries again).
    retention_deferred: str | None = None


def _utc_midnight(day: dt.date) -> dt.datetime:
    """The start of `day` in UTC, where collection months begin."""
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def _first_kept_month(conn: psycopg.Connection, retention_days: int) -> dt.date | None:
    """The oldest collection month the warehouse keeps: the month of the newest collection minus the retention.

    The horizon counts back from the newest collection, not from today, so replaying old raw data (or a lake
    that stopped collecting) keeps its history instead of dropping it all.
    """
    if not retention_days:
        return None
    # A collection dated in the future (a bad clock) must not move the horizon: it counts from now at the latest.
    [(newest,)] = _rows(conn, "SELECT least(max(collected_at), now() + interval '1 day') FROM (" + " UNION ALL ".join(
        f"SELECT max(collected_at) AS collected_at FROM {table}" for table in (*FARE_TABLES, "fare_staging")
    ) + ") AS newest")
    if newest is None:
        return None
    # A month is kept while any of it is within the horizon, so the warehouse holds at least `retention_days`.
    return (newest.astimezone(dt.timezone.utc) - dt.timedelta(days=retention_days)).date().replace(day=1)


def _drop_partitions_before(conn: psycopg.Connection, first_kept: dt.date) -> list[str]:
    dropped = [partition for table in FARE_TABLES for partition in fare_partitions(conn, table)
               if _month_of_partition(table, partition) < first_kept]
    for partition in dropped:
        _locking_fare_table(conn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition)))
    return dropped


def _key_of(alias: str, key: list[str] = FARE_KEY) -> str:
    """The key's columns (the fare key's by default) of the row `alias` names, comma-separated."""
    return ", ".join(f"{alias}.{name}" for name in key)


def _collected_within(searches: str) -> str:
    """A condition on collected_at: within the collection times of the staged `searches` (a temp table's name)."""
    return (f"collected_at BETWEEN (SELECT min(collected_at) FROM {searches})"
            f" AND (SELECT max(collected_at) FROM {searches})")


def _withdraw_unstaged(conn: psycopg.Connection, searches: Iterable[tuple]) -> dict[str, int]:
    """Delete the fare rows of `searches` (SEARCH_COLUMNS) that staging lacks; how many, per fare table.

    Structuring a landing hour again replaces its curated rows: an option the rerun no longer yields (a stricter
    rule quarantined its record, or the provider's parser reads fewer options) must leave the page too.
    """
    conn.execute("CREATE TEMP TABLE search_staging (search_id text, collected_at timestamptz) ON COMMIT DROP")
    _copy_into(conn, "search_staging", SEARCH_COLUMNS, searches)
    conn.execute("ANALYZE search_staging")
    # The fare tables' statistics lag a large load, and the planner then guesses: the searches' time range keeps
    # it probing their collection times in the key instead of scanning the whole history, and EXCEPT compares the
    # rows found with staging as two sets (a nested anti join would scan staging once per row found).
    in_range = _collected_within("search_staging")
    withdrawn = {}
    for table in FARE_TABLES:
        gone = (f"SELECT {_key_of('found')} FROM {table} AS found JOIN search_staging AS searched"
                " ON (found.collected_at, found.search_id) = (searched.collected_at, searched.search_id)"
                f" WHERE found.{in_range} EXCEPT SELECT {', '.join(FARE_KEY)} FROM fare_staging")
        withdrawn[table] = _stamping_routes(conn, f"DELETE FROM {table} AS placed USING ({gone}) AS gone"
                                                  f" WHERE placed.{in_range}"
                                                  f" AND ({_key_of('placed')}) = ({_key_of('gone')})"
                                                  " RETURNING placed.origin, placed.destination")
    return withdrawn


def _merge_empty_answers(conn: psycopg.Connection, answers: Iterable[tuple], first_kept: dt.date | None) -> int:
    """Make the staged searches' empty answers `answers` (EMPTY_ANSWER_COLUMNS), those of the months retention keeps;
    rows inserted, changed or deleted."""
    conn.execute("CREATE TEMP TABLE empty_answer_staging (LIKE empty_answers) ON COMMIT DROP")
    _copy_into(conn, "empty_answer_staging", EMPTY_ANSWER_COLUMNS, answers)
    key = ["collected_at", "search_id"]
    # A search structured again into options, or into quarantine, found something or was not read: not empty.
    deleted = _stamping_routes(conn, "DELETE FROM empty_answers AS placed USING search_staging AS searched"
                                     " WHERE (placed.collected_at, placed.search_id)"
                                     " = (searched.collected_at, searched.search_id)"
                                     " AND NOT EXISTS (SELECT 1 FROM empty_answer_staging AS staged"
                                     " WHERE (staged.collected_at, staged.search_id)"
                                     " = (placed.collected_at, placed.search_id))"
                                     " RETURNING placed.origin, placed.destination")
    # Those of a month retention drops are not merged (they would only be deleted again), after the comparison above,
    # so a reload past retention deletes nothing its fares keep while a drop is deferred.
    if first_kept is not None:
        conn.execute("DELETE FROM empty_answer_staging WHERE collected_at < %s",
                     (_utc_midnight(first_kept),))
    # Rewritten when a rerun reads its party or cabin otherwise; its route is the search id's, which cannot change.
    merged = _stamping_routes(conn, _upsert_sql("empty_answers", "empty_answer_staging", key,
                                                [name for name, _ in EMPTY_ANSWER_COLUMNS])
                              + " RETURNING origin, destination")
    return deleted + merged


def _merge_answer_summaries(conn: psycopg.Connection) -> int:
    """Summarise again every search the load touched (the landing hours' and the staged rows'); rows inserted, changed
    or deleted."""
    conn.execute("CREATE TEMP TABLE touched_searches ON COMMIT DROP AS"
                 " SELECT collected_at, search_id FROM search_staging"
                 " UNION SELECT collected_at, search_id FROM fare_staging")
    conn.execute("ANALYZE touched_searches")
    conn.execute("CREATE TEMP TABLE answer_staging (LIKE answer_summaries) ON COMMIT DROP")
    # As in _withdraw_unstaged: the searches' time range keeps the planner to their collection times in the key.
    in_range = _collected_within("touched_searches")
    touched = f"JOIN touched_searches USING (collected_at, search_id) WHERE options.{in_range}"
    conn.execute("INSERT INTO answer_staging " + _SUMMARISED_ANSWERS.format(searches=touched))
    columns = ", ".join(_ANSWER_KEY)
    # EXCEPT compares the two sets whole: a NOT EXISTS planned on the summaries' stale statistics probed staging once
    # per summary (9 s for a reload of 10,000 searches).
    gone = (f"SELECT {columns} FROM answer_summaries JOIN touched_searches USING (collected_at, search_id)"
            f" WHERE answer_summaries.{in_range} EXCEPT SELECT {columns} FROM answer_staging")
    deleted = conn.execute(f"DELETE FROM answer_summaries AS placed USING ({gone}) AS gone WHERE placed.{in_range}"
                           f" AND ({_key_of('placed', _ANSWER_KEY)}) = ({_key_of('gone', _ANSWER_KEY)})"
                           ).rowcount
    merged = conn.execute(_upsert_sql("answer_summaries", "answer_staging", _ANSWER_KEY,
                                      [name for name, _ in ANSWER_SUMMARY_COLUMNS])).rowcount
    return deleted + merged


def _merge_fares(conn: psycopg.Connection, rows: Iterable[tuple], searches: Iterable[tuple],
                 retention_days: int) -> tuple[FareLoad, dt.date | None]:
    """Stage and merge fare rows; what the load did, and the oldest collection month retention keeps (or None)."""
    # A temporary table writes no WAL and has no indexes: staging costs little more than the COPY itself.
    conn.execute("CREATE TEMP TABLE fare_staging (LIKE national_fares, national boolean) ON COMMIT DROP")
    _copy_into(conn, "fare_staging", [*FARE_COLUMNS, ("national", "bool")], rows)
    [(staged,)] = _rows(conn, "SELECT count(*) FROM fare_staging")
    load = FareLoad(changed={}, staged=staged, withdrawn=_withdraw_unstaged(conn, searches))
    first_kept = _first_kept_month(conn, retention_days)
    if first_kept is not None:
        # Rows of a month retention drops are not loaded: they would only be deleted again.
        load.past_retention = conn.execute("DELETE FROM fare_staging WHERE collected_at < %s",
                                           (_utc_midnight(first_kept),)).rowcount
    placed_key = f"({_key_of('placed')}) = ({_key_of('staged')})"
    national_flags = list(zip(FARE_TABLES, ("true", "false")))
    for (table, national), other in zip(national_flags, reversed(FARE_TABLES)):
        # An option whose market changed (a reference update moved an airport's country) moves table: a copy
        # left in the other one would show the same fare twice.
        load.reclassified += _stamping_routes(conn, f"DELETE FROM {other} AS placed USING fare_staging AS staged"
                                                    f" WHERE staged.national = {national} AND {placed_key}"
                                                    " RETURNING placed.origin, placed.destination")
        source = f"fare_staging WHERE national = {national}"
        _create_partitions_for(conn, table, source)
        load.changed[table] = _stamping_routes(conn, _upsert_sql(table, source, FARE_KEY, COLUMN_NAMES)
                                               + " RETURNING origin, destination")
    [(load.present,)] = _rows(conn, "SELECT count(*) FROM fare_staging AS staged WHERE " + " OR ".join(
        f"(staged.national = {national} AND EXISTS (SELECT 1 FROM {table} AS placed WHERE {placed_key}))"
        for table, national in national_flags))
    return load, first_kept


def _upsert_dimension(conn: psycopg.Connection, table: str, rows: Iterable[tuple]) -> int:
    if table not in DIMENSION_COLUMNS:
        raise ValueError(f"{table!r} is not a warehouse dimension: {', '.join(DIMENSION_TABLES)}")
    staging = f"{table}_staging"
    conn.execute(f"CREATE TEMP TABLE {staging} (LIKE {table}) ON COMMIT DROP")
    _copy_into(conn, staging, DIMENSION_COLUMNS[table], rows)
    return conn.execute(_upsert_sql(table, staging, ["code"], [name for name, _ in DIMENSION_COLUMNS[table]])).rowcount


def error_summary(error: psycopg.Error) -> str:
    """The first line of a driver error (which never holds the DSN's password), else the error's type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# The longest wait between two load attempts, however many attempts are configured.
MAX_RETRY_WAIT_SECONDS = 600
# Errors that say the server could not be reached or went away (a restart, a failover): class 08 (connection
# exception) and the server shutting down or not yet accepting connections. A failed connect has no SQLSTATE.
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def unreachable(error: psycopg.Error) -> bool:
    """True when `error` says the server could not be reached, not that it refused the work (a lock or statement
    timeout, a full disk, a deadlock), which a retry would only repeat."""
    return isinstance(error, psycopg.OperationalError) and (
        error.sqlstate is None or error.sqlstate.startswith(_UNREACHABLE_STATES))


def retry_while_unreachable(load: Callable[[], T], attempts: int, wait_seconds: float, warn: Callable[[str], None],
                            sleep: Callable[[float], None] = time.sleep) -> T:
    """`load()`, run again while the server cannot be reached, waiting `wait_seconds`, then twice as long each time
    (at most MAX_RETRY_WAIT_SECONDS), for at most `attempts` runs; the last attempt's error is raised.

    The load's merge is one transaction, so an attempt cut off before its commit left nothing behind, and one cut
    off after it is repeated harmlessly (the rows are in place; it changes none of them).
    """
    delay = wait_seconds
    for attempt in range(1, attempts):
        try:
            return load()
        except psycopg.OperationalError as error:
            if not unreachable(error):
                raise
            warn(f"warehouse load attempt {attempt} of {attempts} failed ({error_summary(error)}); "
                 f"trying again in {delay:g} s")
            sleep(delay)
            delay = min(delay * 2, MAX_RETRY_WAIT_SECONDS)
    return load()


def load_warehouse(conn: psycopg.Connection, fares: Iterable[tuple], dimensions: Mapping[str, Iterable[tuple]],
                   retention_days: int = 0, searches: Iterable[tuple] = (),
                   empty_answers: Iterable[tuple] = ()) -> FareLoad:
    """Merge fares (LOAD_COLUMNS order) and dimensions (DIMENSION_COLUMNS order) in one transaction.

    `searches` (SEARCH_COLUMNS) are every search the fares' landing hours hold: their rows the fares lack are deleted,
    and so are their empty answers that `empty_answers` (EMPTY_ANSWER_COLUMNS, the searches' answers without options)
    lack.

    With `retention_days`, collection months wholly older than that before the newest collection are dropped,
    in a second transaction once the merge has committed.
    """
    ensure_schema(conn)
    # One transaction: a bad row or a lost connection leaves nothing half-loaded, and a rerun completes the load.
    with conn.transaction():
        # Loads take turns, as a whole: they create and drop partitions, and a lock taken on a fare table
        # before the turn (staging is created LIKE one) would deadlock with another load's partition change.
        _serialize_schema_changes(conn)
        _rekey_fare_tables(conn)
        load, first_kept = _merge_fares(conn, fares, searches, retention_days)
        load.empty_answers_changed = _merge_empty_answers(conn, empty_answers, first_kept)
        load.answer_summaries_changed = _merge_answer_summaries(conn)
        for table, rows in dimensions.items():
            load.changed[table] = _upsert_dimension(conn, table, rows)
    if first_kept is not None:
        # Dropping a partition locks its parent against the page's reads until commit: a transaction of its own.
        try:
            with conn.transaction():
                _serialize_schema_changes(conn)
                load.dropped_partitions = _drop_partitions_before(conn, first_kept)
                for table in ("empty_answers", "answer_summaries"):
                    conn.execute(f"DELETE FROM {table} WHERE collected_at < %s", (_utc_midnight(first_kept),))
                # A trip that departed before the oldest month kept has no fares left: its alerts are done with.
                conn.execute("DELETE FROM price_alerts WHERE depart_date < %s", (first_kept,))
                if load.dropped_partitions:
                    # Monthly at most: every stored page's history may have lost collections.
                    conn.execute("UPDATE route_loads SET loaded_at = clock_timestamp()")
        except psycopg.errors.LockNotAvailable as error:
            # The merge has committed: a reader that held a fare table throughout only postpones the drop.
            load.dropped_partitions, load.retention_deferred = [], str(error)
    return load


def load_serving_tables(conn: psycopg.Connection, tables: Mapping[str, Iterable[tuple]]) -> dict[str, dict[str, int]]:
    """Make each serving table hold exactly `tables[name]` (SERVING_COLUMNS order), in one transaction.

    Rows whose content is unchanged are not rewritten (their computed_at stays), so a rerun writes
    nothing; rows absent from the new set (departed or no longer watched trips) are deleted. Per
    table: rows inserted or changed, and rows deleted.
    """
    ensure_schema(conn)
    counts = {}
    # The page reads either the old or the new set of every table, never a mix.
    with conn.transaction():
        for table, rows in tables.items():
            columns = SERVING_COLUMNS[table]
            names = [name for name, _ in columns]
            staging = f"{table}_staging"
            # A compressed value moves between tables as it is: stage it with the table's compression.
            conn.execute(f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING COMPRESSION) ON COMMIT DROP")
            _copy_into(conn, staging, columns, rows)
            changed = conn.execute(_upsert_sql(table, staging, SERVING_KEYS[table], names,
                                               ignored=("computed_at",))).rowcount
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {staging}"
                f" WHERE ({', '.join(f'{staging}.{name}' for name in SERVING_KEYS[table])})"
                f" = ({', '.join(f'{table}.{name}' for name in SERVING_KEYS[table])}))").rowcount
            counts[table] = {"changed": changed, "deleted": deleted}
    return counts


def load_fares(conn: psycopg.Connection, rows: Iterable[tuple], searches: Iterable[tuple] = ()) -> dict[str, int]:
    """Merge fare rows (LOAD_COLUMNS order) of `searches` into both fare tables in one transaction; rows inserted or
    changed. The searches' rows and empty answers the load lacks are deleted (load_warehouse)."""
    return load_warehouse(conn, rows, {}, searches=searches).changed


def checked_dsn(dsn: str, variable: str = "FARES_WAREHOUSE_DSN") -> str:
    """`dsn` when PostgreSQL can read it; else an error that names the `variable` it came from but does not quote it
    (psycopg's would show the password)."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(f"{variable} is not a PostgreSQL connection string psycopg can read: URL-encode the special "
                         "characters of its password (%, spaces, @, /)") from None
    return dsn


def warehouse_address(dsn: str) -> str:
    """host:port/dbname of a DSN, without user or password, for messages and logs."""
    parts = conninfo_to_dict(checked_dsn(dsn))
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


# One watchlist entry's newest collection in one fare table: the key's index read backwards, stopping at the first
# row of the entry (its options of the newest sweep come first).
_ENTRY_NEWEST = """
  (SELECT collected_at FROM {table}
   WHERE provider = %s AND origin = %s AND destination = %s AND adults = %s AND children = %s AND cabin = %s
   ORDER BY collected_at DESC LIMIT 1)"""


def collected_until(conn: psycopg.Connection, entries: Iterable[tuple]) -> dt.datetime | None:
    """The oldest of the entries' newest collections (each entry a (provider, origin, destination, adults, children,
    cabin)), so every entry was collected up to it; None when one never was."""
    ensure_schema(conn)
    per_table = sql.SQL(" UNION ALL ").join(sql.SQL(_ENTRY_NEWEST).format(table=sql.Identifier(table))
                                           for table in FARE_TABLES)
    query = sql.SQL("SELECT max(collected_at) FROM ({}) AS newest").format(per_table)
    newest = []
    for entry in entries:
        [(moment,)] = _rows(conn, query, list(entry) * len(FARE_TABLES))
        if moment is None:
            return None
        newest.append(moment)
    return min(newest, default=None)


def table_counts(conn: psycopg.Connection, tables: Iterable[str] = FARE_TABLES) -> dict[str, int]:
    """Rows per warehouse table (the fare tables unless told)."""
    ensure_schema(conn)
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


def estimated_rows(conn: psycopg.Connection) -> dict[str, int]:
    """The planner's row count of each fare table, summed over its partitions (autovacuum's last ANALYZE; 0 before one).

    What a load reports after every hour: an exact count would read every partition retention keeps (gigabytes after
    months) and push the page's working set out of PostgreSQL's cache, where this reads the catalog.
    """
    ensure_schema(conn)
    # The leaves only: ANALYZE of a partitioned table gives the parent the whole tree's count too.
    return {table: _rows(conn, """SELECT coalesce(sum(greatest(reltuples, 0)), 0)::int8
                                   FROM pg_partition_tree(%s::regclass) AS tree JOIN pg_class ON pg_class.oid = relid
                                   WHERE isleaf""", (table,))[0][0]
            for table in FARE_TABLES}


def rows_from_arrow(table) -> Iterable[tuple]:
    """Rows of a pyarrow table, dataset or scanner as tuples for COPY, in its column order, one record batch at a time."""
    for batch in table.to_batches():
        yield from zip(*(column.to_pylist() for column in batch.columns))


# How far back a provider missing from a collection is looked for (the page's absent providers use the same day):
# one day covers the live schedule's sweeps and a daily replay's.
ABSENT_PROVIDER_WINDOW = dt.timedelta(days=1)


def expected_until_sql(trip: str) -> str:
    """Over rows of one provider's answer for a trip (`trip`, its key columns) at a moment in a currency: the moment up to
    which the provider is expected again, the day after a quote (inclusive) or its next answer in any currency
    (exclusive), whichever comes first. An answer without options (no currency) ends the expectation and sets none:
    the provider had nothing to sell, so its absence hides no cheaper fare."""
    # In seconds: a day added to a timestamptz is a calendar day in the session's time zone, 23 or 25 hours across a
    # clock change, where the page subtracts 24.
    return f"""CASE WHEN currency IS NOT NULL THEN
                 least(collected_at + interval '{int(ABSENT_PROVIDER_WINDOW.total_seconds())} seconds',
                       lead(collected_at) OVER (PARTITION BY {trip}, provider ORDER BY collected_at)
                         - interval '1 microsecond') END"""


def absent_until_sql(trip: str) -> str:
    """Over rows with their `expected_until`: the latest moment up to which some provider, absent since its quote of an
    earlier moment, was expected; a moment at or before it misses that provider."""
    return f"""max(expected_until) OVER (PARTITION BY {trip} ORDER BY collected_at
                                      RANGE BETWEEN UNBOUNDED PRECEDING AND interval '1 microsecond' PRECEDING)"""


def observations_query(departing_from: str) -> str:
    """The observations as SQL, for trips departing from the date `departing_from` stands for (a query parameter's
    placeholder or a literal)."""
    party = "adults IS NOT NULL AND children IS NOT NULL AND cabin IS NOT NULL"
    trip = "origin, destination, depart_date, return_date, adults, children, cabin"
    return f"""
WITH per_provider AS (
  SELECT {trip}, collected_at, currency, provider,
         min(cheapest_total) AS cheapest, sum(option_count) AS option_count, string_agg(carriers, ',') AS carriers,
         sum(nonstop_count) AS nonstop_count, bool_and(national) AS national
  FROM answer_summaries WHERE depart_date >= {departing_from} AND {party}
  GROUP BY {trip}, collected_at, currency, provider
  UNION ALL
  SELECT {trip}, collected_at, NULL::text, provider, NULL::numeric, 0, NULL::text, 0, NULL::boolean
  FROM empty_answers WHERE depart_date >= {departing_from} AND {party}
)
SELECT {trip}, collected_at, cheapest_total, currency, option_count, carrier_count, nonstop_share, national
FROM (
  SELECT *, first_value(currency) OVER (PARTITION BY {trip} ORDER BY provider_absent, collected_at DESC, currency)
              AS trip_currency
  FROM (
    SELECT {trip}, collected_at, currency,
           min(cheapest)::float8 AS cheapest_total,
           sum(option_count)::int8 AS option_count,
           (SELECT count(DISTINCT carrier) FROM unnest(string_to_array(string_agg(carriers, ','), ',')) AS carrier)
             AS carrier_count,
           (sum(nonstop_count)::numeric / sum(option_count))::float8 AS nonstop_share,
           bool_and(national) AS national,
           coalesce(max(absent_until) >= collected_at, false) AS provider_absent
    FROM (
      SELECT *, {absent_until_sql(trip)} AS absent_until
      FROM (SELECT *, {expected_until_sql(trip)} AS expected_until FROM per_provider) AS expected
    ) AS absent
    -- An empty answer (no currency) is no price: it only kept its provider from being missed.
    WHERE currency IS NOT NULL
    GROUP BY {trip}, collected_at, currency
  ) AS per_currency
) AS per_trip
WHERE currency = trip_currency AND NOT provider_absent
"""


def departure_bounds(conn: psycopg.Connection, departing_from: dt.date = dt.date.min) -> tuple[dt.date | None, dt.date | None]:
    """The first and last departure dates of the fares departing from `departing_from` (None, None without any)."""
    departures = " UNION ALL ".join(f"SELECT depart_date FROM {table} WHERE depart_date >= %(from)s" for table in FARE_TABLES)
    [(first, last)] = _rows(conn, f"SELECT min(depart_date), max(depart_date) FROM ({departures}) AS departures",
                            {"from": departing_from})
    return first, last


OBSERVATIONS_SQL = ("SELECT * FROM (" + observations_query("%(departing_from)s") + ") AS observations\n"
                    "ORDER BY origin, destination, depart_date, return_date, collected_at\n")


# One observation per trip and collection moment, not per search: two providers' searches collected at the same
# instant are one look at the market (the cheapest of both), and the features' windows need one row per moment. A
# trip's observations are all in one currency, its newest collection's that no provider was missing from (the first
# in alphabetical order when the providers quoted that collection in two; a sweep the euro provider missed does not
# switch a trip to dollars), and moments quoted only in another are left out: a fare in EUR and
# one in USD cannot be ranked without exchange rates, and a series switching currency would read as price moves.
# A search without its party or cabin (the collector always records them; another producer might not) is nobody's
# watched trip: the features and the serving tables key a trip by them, so it is left out.
# A moment some provider is missing from (in every currency), though it quoted the trip in the day before, is left
# out too: its call failed, or its answer was quarantined. If that provider is usually the cheaper, the moment's
# cheapest reads as a rise and then a drop, which the advisor would learn as a market move and could be told to buy
# at. Filling the gap with the provider's previous quote would advise on a fare nobody confirmed; the page names the
# missing provider instead (webapp.queries.provider_quotes, the same day). A provider that answered with no option
# (empty_answers) is not missing: it looked and had nothing to sell, so the others' cheapest was the market's then,
# and a provider that stops selling a trip costs it no observations. A provider that stops answering a trip for good
# costs it a day of them.
def observations(conn: psycopg.Connection, departing_from: dt.date = dt.date.min):
    """One row per trip and collection moment (of trips departing from `departing_from`): the cheapest total and
    the market's shape."""
    import pandas as pd

    ensure_schema(conn)
    cursor = conn.execute(OBSERVATIONS_SQL, {"departing_from": departing_from})
    frame = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    for column in ("depart_date", "return_date"):
        frame[column] = pd.to_datetime(frame[column])
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    return frame
