"""Fare page latency under load: the page and /api/fares vs a trivial route, at 1M and 10M warehouse rows.

For each size, PostgreSQL itself generates the rows (INSERT ... SELECT generate_series) into the real
fare table of an embedded cluster in a temporary folder, then the warehouse's own DDL builds its
indexes. Every trip has the same history (50 collections of 20 options) at both sizes; only the number
of trips grows, as a fare service's would. The app (with a trained advisor and fare model) is served by
`python -m webapp` (waitress, 16 threads) in its own process, and 16 client threads with keep-alive
sessions, in this process, ask for random trips. Each
size measures, in the same run and server, the trivial route (/static/favicon.svg), /api/fares and
the full fare page (options, history, date grid, insight, advice, chart), and prints p50/p99 and
requests per second, and the ratios.
"""
import argparse
import contextlib
import itertools
import datetime as dt
import random
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import report  # noqa: E402
from fare_assets.services import free_port  # noqa: E402
from fare_assets.storing import warehouse  # noqa: E402
from fare_assets.storing.postgres import READONLY_ROLE, EmbeddedPostgres  # noqa: E402
from fare_assets.settings import PROJECT_ROOT  # noqa: E402

AIRPORTS = ["SFO", "JFK", "LAX", "ORD", "ATL", "DFW", "DEN", "SEA", "BOS", "MIA", "LAS", "PHX"]
ROUTES = [(origin, destination) for origin in AIRPORTS for destination in AIRPORTS if origin != destination]
DEPARTURES_PER_ROUTE = 100
NIGHTS = (3, 7)
COLLECTIONS_PER_TRIP = 50
OPTIONS_PER_COLLECTION = 20
CLIENTS = 16
# Trips viewed once at warm-up, then measured as repeat views (the advice and predictions are reused).
REPEAT_TRIPS = 200
SERVER_THREADS = 16

# One row per (trip, collection, option); trip t is route t / 200, departure (t % 200) / 2, nights t % 2.
GENERATE_SQL = """
INSERT INTO national_fares
SELECT format('o-%%s-%%s-%%s', t, c, o), format('s-%%s-%%s', t, c), 'qpx',
       %(now)s::timestamptz - (%(collections)s - 1 - c) * interval '12 hours',
       (%(routes)s::text[])[t / %(trips_per_route)s * 2 + 1], (%(routes)s::text[])[t / %(trips_per_route)s * 2 + 2],
       %(first_depart)s::date + (t %% %(trips_per_route)s) / 2,
       %(first_depart)s::date + (t %% %(trips_per_route)s) / 2 + (ARRAY[3, 7])[t %% 2 + 1],
       (%(first_depart)s::date + (t %% %(trips_per_route)s) / 2) - (%(now)s::timestamptz - (%(collections)s - 1 - c) * interval '12 hours')::date,
       (ARRAY[3, 7])[t %% 2 + 1], 1, 0, 'COACH',
       150 + (t * 7 + c * 13 + o * 31) %% 400 + o * 12.5, 'USD',
       (ARRAY['UA', 'AA', 'DL', 'B6', 'AS', 'UA,AA', 'DL,AS'])[(t + o) %% 7 + 1],
       o %% 3, (o + 1) %% 3, 300 + 90 * (o %% 3), 320 + 90 * ((o + 1) %% 3),
       (%(first_depart)s::date + (t %% %(trips_per_route)s) / 2) + make_interval(hours => 6 + o %% 14),
       (%(first_depart)s::date + (t %% %(trips_per_route)s) / 2 + (ARRAY[3, 7])[t %% 2 + 1]) + make_interval(hours => 8 + o %% 12)
FROM generate_series(0, %(trips)s - 1) AS t, generate_series(0, %(collections)s - 1) AS c,
     generate_series(0, %(options)s - 1) AS o"""


def build_warehouse(dsn: str, routes: int, now: dt.datetime, first_depart: dt.date) -> int:
    """Generate the fare rows, then build the warehouse's indexes; returns the row count."""
    trips_per_route = DEPARTURES_PER_ROUTE * len(NIGHTS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        warehouse.ensure_schema(conn)
        # Indexes are built after the load, as a bulk load would; ensure_schema recreates exactly them.
        for table in warehouse.FARE_TABLES:
            for index in ("trip_idx", "upcoming_idx", "collected_idx"):
                conn.execute(f"DROP INDEX IF EXISTS {table}_{index}")
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(GENERATE_SQL, {
            "now": now, "collections": COLLECTIONS_PER_TRIP, "options": OPTIONS_PER_COLLECTION,
            "trips": routes * trips_per_route, "trips_per_route": trips_per_route, "first_depart": first_depart,
            "routes": [code for route in ROUTES[:routes] for code in route]})
        for table in warehouse.FARE_TABLES:
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (option_id)")
        warehouse.ensure_schema(conn)
        conn.execute("VACUUM ANALYZE national_fares")
        conn.execute("VACUUM ANALYZE international_fares")
        return conn.execute("SELECT count(*) FROM national_fares").fetchone()[0]


def train_models(lake: str) -> None:
    """A fitted advisor and fare model in `lake`, so the page does its full work (advice, predicted cells)."""
    from fare_assets.synthesizing.advisor import BuyWaitAdvisor
    from fare_assets.synthesizing.assets import save_version
    from fare_assets.synthesizing.fare_model import FareModel
    from fare_assets.synthesizing.features import observation_features
    from fare_assets_tests.test_synthesizing import fare_observations

    observations = fare_observations(60, seed=3)
    features = observation_features(observations)
    save_version(lake, "buy_wait_advisor", "bench", BuyWaitAdvisor().fit(features, features), {})
    save_version(lake, "fare_model", "bench", FareModel().fit(observations), {})


def drive(base_url: str, paths: list[str], seconds: float, once: bool = False) -> dict:
    """`CLIENTS` threads with keep-alive sessions take `paths` in turn, cycling for `seconds` (or each once)."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    turns = itertools.count()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        session = requests.Session()
        mine, bad = [], []
        while time.perf_counter() < stop_at:
            turn = next(turns)
            if once and turn >= len(paths):
                break
            path = paths[turn % len(paths)]
            started = time.perf_counter()
            response = session.get(base_url + path)
            mine.append(time.perf_counter() - started)
            if response.status_code != 200:
                bad.append(response.status_code)
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "non_200": len(failures), "p50_ms": cuts[49] * 1000,
            "p99_ms": cuts[98] * 1000, "req_per_s": len(latencies) / elapsed}


def trip_paths(prefix: str, routes: int, first_depart: dt.date, seed: int) -> list[str]:
    """Every collected trip once, as query URLs, in random order."""
    paths = [f"{prefix}?origin={origin}&destination={destination}&depart={depart}&return={depart + dt.timedelta(days=nights)}"
             for origin, destination in ROUTES[:routes]
             for depart in (first_depart + dt.timedelta(days=day) for day in range(DEPARTURES_PER_ROUTE))
             for nights in NIGHTS]
    random.Random(seed).shuffle(paths)
    return paths


@contextlib.contextmanager
def web_server(dsn: str, lake: str):
    """`python -m webapp` as in production, in its own process; yields its URL."""
    port = free_port()
    env = {**os.environ, "FARES_WEB_PORT": str(port), "FARES_WEB_DSN": dsn, "FARES_LAKE": lake,
           "FARES_WEB_THREADS": str(SERVER_THREADS)}
    server = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def measure(size_label: str, routes: int, seconds: float, lake: str) -> list[dict]:
    """Build a cluster holding `routes` routes of trips, serve the app, and drive the three routes."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    first_depart = now.date() + dt.timedelta(days=5)
    with tempfile.TemporaryDirectory(prefix="fare-page-bench-") as folder:
        cluster = EmbeddedPostgres(Path(folder) / "cluster", free_port())
        cluster.start()
        try:
            started = time.perf_counter()
            rows = build_warehouse(cluster.dsn(), routes, now, first_depart)
            print(f"{size_label}: {rows:,} rows generated and indexed in {time.perf_counter() - started:.0f} s",
                  flush=True)
            results = []
            with web_server(cluster.dsn(user=READONLY_ROLE), lake) as url:
                pages = trip_paths("/fares", routes, first_depart, seed=2)
                # First views run the advisor and the fare model; the trips seen at warm-up are repeat views.
                repeat_pages, first_pages = pages[:REPEAT_TRIPS], pages[REPEAT_TRIPS:]
                sides = [("trivial /static/favicon.svg", ["/static/favicon.svg"]),
                         ("/api/fares", trip_paths("/api/fares", routes, first_depart, seed=1)),
                         ("fare page, repeat views", repeat_pages),
                         ("fare page, first views", first_pages)]
                for paths in (["/static/favicon.svg"] * 50, sides[1][1][:50], repeat_pages):
                    drive(url, paths, 600, once=True)
                for label, paths in sides:
                    results.append({"rows": rows, "route": label, **drive(url, paths, seconds)})
            return results
        finally:
            cluster.destroy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="measuring time per route and size")
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated: 1M (5 routes) and/or 10M (50 routes)")
    args = parser.parse_args(argv)
    routes_for = {"1M": 5, "10M": 50}
    with tempfile.TemporaryDirectory(prefix="fare-page-models-") as lake:
        train_models(lake)
        rows = [row for size in args.sizes.split(",") for row in measure(size, routes_for[size], args.seconds, lake)]
    trivial = {row["rows"]: row["req_per_s"] for row in rows if row["route"].startswith("trivial")}
    for row in rows:
        row["throughput_vs_trivial"] = row["req_per_s"] / trivial[row["rows"]]
    page_p99 = {row["rows"]: row["p99_ms"] for row in rows if row["route"] == "fare page, repeat views"}
    sizes = sorted(page_p99)
    growth = page_p99[sizes[-1]] / page_p99[sizes[0]]
    report("fare_page_load", rows, f"fare page p99 at {sizes[-1]:,} rows / at {sizes[0]:,} rows", growth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
