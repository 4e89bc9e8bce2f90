"""A trip's price history at the end of a long watch: read from the option rows vs from the answer summaries.

The page's chart and insight read each collection's cheapest fare of the trip (webapp.queries.trip_history). At the
live schedule's 48 sweeps a day over a 63-day watch horizon a trip gathers about 3,000 collections: read from the fare
tables (the page until 2026-12-07), that is some 60,000 option rows per page render; read from answer_summaries, one
row per provider and sweep. PostgreSQL generates BENCH_TRIPS trips (default 20) of BENCH_COLLECTIONS half-hourly
collections (default 3,024) of 20 options into an embedded cluster, the summaries are written from them as an upgraded
warehouse gains them (warehouse.summarise_every_answer), and each side reads every trip's history in turn, checking
both give the same points. It also renders the trip's page live (with a party, as for a trip the show stage has not
stored) to print its time and size. It prints the median milliseconds per history and the ratio rows/summaries.
"""
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import report, timings  # noqa: E402
from fare_assets.services import free_port  # noqa: E402
from fare_assets.storing import warehouse  # noqa: E402
from fare_assets.storing.postgres import EmbeddedPostgres  # noqa: E402
from webapp import create_app, queries  # noqa: E402
from webapp.validation import Trip  # noqa: E402

TRIPS = int(os.environ.get("BENCH_TRIPS", "20"))
COLLECTIONS = int(os.environ.get("BENCH_COLLECTIONS", "3024"))
OPTIONS = 20
REPEAT = 5

# One row per (trip, collection, option); trip t departs on day t after the first departure, for a week.
GENERATE_SQL = """
INSERT INTO national_fares
SELECT format('o-%%s-%%s-%%s', t, c, o), format('s-%%s-%%s', t, c), 'qpx',
       %(now)s::timestamptz - (%(collections)s - 1 - c) * interval '30 minutes', 'SFO', 'JFK',
       %(first_depart)s::date + t, %(first_depart)s::date + t + 7, 30, 7, 1, 0, 'COACH',
       150 + (t * 7 + c * 13 + o * 31) %% 400 + o * 12.5, 'USD', 'UA', o %% 3, (o + 1) %% 3, 300, 320,
       %(first_depart)s::date + t + make_interval(hours => 6 + o %% 14),
       %(first_depart)s::date + t + 7 + make_interval(hours => 8)
FROM generate_series(0, %(trips)s - 1) AS t, generate_series(0, %(collections)s - 1) AS c,
     generate_series(0, %(options)s - 1) AS o"""


def history_from_option_rows(conn: psycopg.Connection, trip: Trip) -> list[dict]:
    """trip_history as the page read it until 2026-12-07: every option row of the trip."""
    query = sql.SQL(queries._TRIP_HISTORY).format(rows=queries._answer_rows(queries._TRIP_ROWS))
    return conn.execute(query, queries._trip_params(trip, "USD")).fetchall()


def main() -> int:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    first_depart = now.date() + dt.timedelta(days=2)
    trips = [Trip("SFO", "JFK", first_depart + dt.timedelta(days=t), first_depart + dt.timedelta(days=t + 7), 1, 0,
                  "COACH") for t in range(TRIPS)]
    with tempfile.TemporaryDirectory(prefix="trip-history-bench-") as folder:
        cluster = EmbeddedPostgres(Path(folder) / "cluster", free_port())
        cluster.start()
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True, row_factory=dict_row) as conn:
                warehouse.ensure_schema(conn)
                warehouse.create_fare_partitions(conn, (now - COLLECTIONS * dt.timedelta(minutes=30)).date(),
                                                 now.date())
                conn.execute(GENERATE_SQL, {"now": now, "collections": COLLECTIONS, "options": OPTIONS,
                                            "trips": TRIPS, "first_depart": first_depart})
                started = time.perf_counter()
                warehouse.summarise_every_answer(conn)
                summarised = time.perf_counter() - started
                conn.execute("VACUUM ANALYZE national_fares")
                conn.execute("VACUUM ANALYZE answer_summaries")
                for trip in trips:
                    from_rows = history_from_option_rows(conn, trip)
                    if from_rows != queries.trip_history(conn, trip, "USD") or len(from_rows) != COLLECTIONS:
                        raise AssertionError(f"the two reads differ for {trip}")
                sides = {"option rows (before 2026-12-07)": history_from_option_rows,
                         "answer summaries": lambda conn, trip: queries.trip_history(conn, trip, "USD")}
                per_history = {label: [] for label in sides}
                for _ in range(REPEAT):
                    for label, read in sides.items():
                        per_history[label] += timings(lambda: [read(conn, trip) for trip in trips], 1)
                summary_rows = conn.execute("SELECT count(*) AS n FROM answer_summaries").fetchone()["n"]
            app = create_app({"TESTING": True, "DATABASE_DSN": cluster.dsn()})
            page = app.test_client()
            url = (f"/fares?origin=SFO&destination=JFK&depart={trips[0].depart_date}&return={trips[0].return_date}"
                   "&adults=1")
            page.get(url)
            page_seconds = statistics.median(timings(lambda: page.get(url), REPEAT))
            page_bytes = len(page.get(url).data)
        finally:
            cluster.destroy()
    rows = [{"read": label, "collections": COLLECTIONS, "rows_per_trip": COLLECTIONS * OPTIONS if "option" in label
             else summary_rows // TRIPS, "ms_per_history": statistics.median(seconds) / TRIPS * 1000}
            for label, seconds in per_history.items()]
    print(f"summaries of {TRIPS * COLLECTIONS * OPTIONS:,} option rows written in {summarised:.1f} s; "
          f"the trip's page rendered live in {page_seconds * 1000:.0f} ms, {page_bytes / 1000:.0f} kB")
    medians = [row["ms_per_history"] for row in rows]
    report("trip_history_depth", rows, "option rows / summaries", medians[0] / medians[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
