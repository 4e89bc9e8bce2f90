"""Fare page latency under load: the page and /api/fares vs a trivial route, at 1M and 10M warehouse rows.

For each size, PostgreSQL itself generates the rows (INSERT ... SELECT generate_series) into the real
fare table of an embedded cluster in a temporary folder, then the warehouse's own DDL builds its
indexes, and the show stage's refresh (fare_assets.show.refresh, what the trip_serving_tables asset
runs) fills the serving tables (advice, predicted fares, stored trip pages) with a trained advisor and
fare model. Every trip has the same history (50 collections of 20 options) at both sizes; only the
number of trips grows, as a fare service's would. The app is served as in production by
`python -m webapp` (gunicorn, one gthread worker per core) in its own process. The load comes from
`wrk` (C, one thread, 16 keep-alive connections; a Lua script cycles through the trips' URLs), so the
client takes little of the server's CPU.

Each size measures, in the same run and server, the trivial route (/static/favicon.svg), /api/fares
and the full fare page (options, history, date grid with predicted cells, insight, advice, chart) over
every trip in random order. The fare page and /api/fares are each measured twice: as a traveller asks
for them (the page and answer the show stage stored for the trip's newest collection, webapp/pages.py)
and with a party given (`adults=1`), which renders them on every request: the cost a view had before
trip_pages, and that of any trip nobody watches. The sides take turns in five rounds; it prints p50
and p99 of the median round, the worst round's p99, requests per second over all rounds and the
ratios to the trivial route.
"""
import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
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
# gunicorn's defaults for `python -m webapp`: one worker per core, 8 threads (connections) each.
SERVER_WORKERS = os.cpu_count() or 1
SERVER_THREADS = 8
# Each side is measured in this many slices of its time, taken in turn with the other sides'.
ROUNDS = 5
# Each connection takes the URLs in turn (from its own offset) and reports p50/p99 at the end.
WRK_SCRIPT = """
local paths = {}
local turn = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  turn = math.random(#paths)
end
function request()
  turn = turn % #paths + 1
  return wrk.format("GET", paths[turn])
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "non_200": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

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
            for index in warehouse.FARE_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {table}_{index}")
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
        conn.execute("SET maintenance_work_mem = '512MB'")
        warehouse.create_fare_partitions(conn, (now - COLLECTIONS_PER_TRIP * dt.timedelta(hours=12)).date(), now.date())
        conn.execute(GENERATE_SQL, {
            "now": now, "collections": COLLECTIONS_PER_TRIP, "options": OPTIONS_PER_COLLECTION,
            "trips": routes * trips_per_route, "trips_per_route": trips_per_route, "first_depart": first_depart,
            "routes": [code for route in ROUTES[:routes] for code in route]})
        for table in warehouse.FARE_TABLES:
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(warehouse.FARE_KEY)})")
        warehouse.ensure_schema(conn)
        warehouse.summarise_every_answer(conn)
        # Stamped as the load stamps the routes it changed, so the stored page's check finds its route's stamp.
        conn.execute(warehouse.stamp_routes_sql("national_fares"))
        conn.execute("VACUUM ANALYZE national_fares")
        conn.execute("VACUUM ANALYZE international_fares")
        conn.execute("VACUUM ANALYZE answer_summaries")
        return conn.execute("SELECT count(*) FROM national_fares").fetchone()[0]


def fill_serving_tables(dsn: str, lake: str, now: dt.datetime) -> dict:
    """Run the show stage's refresh as the pipeline would after a load; returns its counts."""
    from fare_assets.resources import LakeResource
    from fare_assets.show.refresh import published_models, refresh_serving_tables

    with psycopg.connect(dsn) as conn:
        counts, failed = refresh_serving_tables(conn, *published_models(LakeResource(root=lake)), now)
    if failed:
        raise SystemExit(f"the refresh's models failed: {failed}")
    return counts


def train_models(lake: str) -> None:
    """A fitted advisor and fare model in `lake`, so the page does its full work (advice, predicted cells)."""
    from fare_assets.synthesizing.advisor import BuyWaitAdvisor
    from fare_assets.resources import LakeResource
    from fare_assets.synthesizing.fare_model import FareModel
    from fare_assets.synthesizing.features import observation_features
    from fare_assets.synthesizing.model_files import save_version
    from fare_assets_tests.test_synthesizing import fare_observations

    observations = fare_observations(60, seed=3)
    features = observation_features(observations)
    save_version(LakeResource(root=lake), "buy_wait_advisor", "bench", BuyWaitAdvisor().fit(features, features), {})
    save_version(LakeResource(root=lake), "fare_model", "bench", FareModel().fit(observations), {})


def drive(base_url: str, paths: list[str], seconds: float) -> dict:
    """`wrk` with `CLIENTS` keep-alive connections on one thread, cycling through `paths` for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="fare-page-wrk-") as folder:
        script, listing = Path(folder) / "paths.lua", Path(folder) / "paths.txt"
        script.write_text(WRK_SCRIPT)
        listing.write_text("\n".join(paths) + "\n")
        done = subprocess.run(["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
                               base_url, "--", str(listing)], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {"requests": measured["requests"], "non_200": measured["non_200"] + measured["socket_errors"],
            "p50_ms": measured["p50_us"] / 1000, "p99_ms": measured["p99_us"] / 1000,
            "req_per_s": measured["requests"] / (measured["duration_us"] / 1e6)}


def combined(rounds: list[dict]) -> dict:
    """One side's rounds together: all requests over all time, and the median round's p50 and p99 beside the worst p99."""
    seconds = sum(measured["requests"] / measured["req_per_s"] for measured in rounds)
    return {"requests": sum(measured["requests"] for measured in rounds),
            "non_200": sum(measured["non_200"] for measured in rounds),
            "p50_ms": statistics.median(measured["p50_ms"] for measured in rounds),
            "p99_ms": statistics.median(measured["p99_ms"] for measured in rounds),
            "worst_p99_ms": max(measured["p99_ms"] for measured in rounds),
            "req_per_s": sum(measured["requests"] for measured in rounds) / seconds}


def trip_paths(prefix: str, routes: int, first_depart: dt.date, seed: int, extra: str = "") -> list[str]:
    """Every collected trip once, as query URLs (ending with `extra`), in random order."""
    paths = [f"{prefix}?origin={origin}&destination={destination}&depart={depart}"
             f"&return={depart + dt.timedelta(days=nights)}{extra}"
             for origin, destination in ROUTES[:routes]
             for depart in (first_depart + dt.timedelta(days=day) for day in range(DEPARTURES_PER_ROUTE))
             for nights in NIGHTS]
    random.Random(seed).shuffle(paths)
    return paths


@contextlib.contextmanager
def web_server(dsn: str):
    """`python -m webapp` as in production, in its own process; yields its URL."""
    port = free_port()
    env = {**os.environ, "FARES_WEB_PORT": str(port), "FARES_WEB_DSN": dsn,
           "FARES_WEB_WORKERS": str(SERVER_WORKERS), "FARES_WEB_THREADS": str(SERVER_THREADS)}
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
    """Build a cluster holding `routes` routes of trips, fill its serving tables, serve the app, drive the three routes."""
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
            started = time.perf_counter()
            serving = fill_serving_tables(cluster.dsn(), lake, now)
            print(f"{size_label}: serving tables refreshed in {time.perf_counter() - started:.0f} s: "
                  + ", ".join(f"{table} {counts['rows']:,} rows" for table, counts in serving.items()), flush=True)
            results = []
            with web_server(cluster.dsn(user=READONLY_ROLE)) as url:
                sides = [("trivial /static/favicon.svg", ["/static/favicon.svg"]),
                         ("/api/fares", trip_paths("/api/fares", routes, first_depart, seed=1)),
                         ("/api/fares rendered per request", trip_paths("/api/fares", routes, first_depart, seed=4,
                                                                        extra="&adults=1")),
                         ("fare page", trip_paths("/fares", routes, first_depart, seed=2)),
                         ("fare page rendered per view", trip_paths("/fares", routes, first_depart, seed=3,
                                                                    extra="&adults=1"))]
                # Warm-up: every worker's connections, templates and the tables' hot index pages.
                for _, paths in sides:
                    drive(url, paths, min(seconds, 5))
                # Round robin, so a burst of background load hits every side alike, not one of them.
                rounds = {label: [] for label, _ in sides}
                for _ in range(ROUNDS):
                    for label, paths in sides:
                        rounds[label].append(drive(url, paths, seconds / ROUNDS))
                results = [{"rows": rows, "route": label, **combined(rounds[label])} for label, _ in sides]
            return results
        finally:
            cluster.destroy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="measuring time per route and size (all rounds)")
    if not shutil.which("wrk"):
        parser.error("wrk is missing: run scripts/install-system-deps.sh (apt-get install -y wrk)")
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated: 1M (5 routes) and/or 10M (50 routes)")
    args = parser.parse_args(argv)
    routes_for = {"1M": 5, "10M": 50}
    with tempfile.TemporaryDirectory(prefix="fare-page-models-") as lake:
        train_models(lake)
        rows = [row for size in args.sizes.split(",") for row in measure(size, routes_for[size], args.seconds, lake)]
    trivial = {row["rows"]: row["req_per_s"] for row in rows if row["route"].startswith("trivial")}
    for row in rows:
        row["throughput_vs_trivial"] = row["req_per_s"] / trivial[row["rows"]]
    page_p99 = {row["rows"]: row["p99_ms"] for row in rows if row["route"] == "fare page"}
    sizes = sorted(page_p99)
    growth = page_p99[sizes[-1]] / page_p99[sizes[0]]
    report("fare_page_load", rows, f"fare page p99 at {sizes[-1]:,} rows / at {sizes[0]:,} rows", growth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
