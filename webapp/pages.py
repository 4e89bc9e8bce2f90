"""The trip page and its /api/fares answer: rendered per view, or per collection into trip_pages.

Rendering runs five queries and ~5 ms of Python, which on two cores caps the page far below a static
file's throughput. For a watched trip the page changes only when the trip is collected again, the
serving tables are refreshed or the day turns, so the show stage renders it then (render_trip_pages)
and a view without a party reads it back by primary key (queries.trip_page); /api/fares likewise.
The page holds nothing that depends on the request beyond the trip, or on the clock beyond the day:
ages are added by static/age.js. Stored pages are rendered with links from the site's root.
"""
import datetime as dt
from collections.abc import Iterable
from contextlib import contextmanager

import psycopg
from flask import Flask, render_template
from psycopg.rows import dict_row

from fare_assets.local_dates import today_at
from webapp import queries
from webapp.api import fares_document
from webapp.trip_view import trip_view
from webapp.validation import Trip, airport_name


def render_trip_page(trip: Trip, view: dict, today: dt.date, alert_problems: dict | None = None,
                     alert_form: dict | None = None, alert_created: bool = False) -> str:
    """The fare page of `trip` for `view` (what trip_view assembled) on `today` (at its origin), with the alert form's
    state."""
    # The search form may ask for a trip from anywhere, and no airport's date is two days behind another's (UTC-12 to
    # UTC+14): its first date depends on the page's day alone, so a stored page is the one a view would render.
    first_date = today - dt.timedelta(days=2)
    # The form asks for the party and cabin shown, as the date grid's links do: a traveller changing only the dates
    # would otherwise be shown whichever party was collected last.
    return render_template("fares.html", trip=trip, form=view["shown"].as_params(), problems={}, first_date=first_date,
                           origin_name=airport_name(trip.origin), destination_name=airport_name(trip.destination),
                           alert_problems=alert_problems or {}, alert_form=alert_form or {},
                           alert_created=alert_created, **view)


@contextmanager
def _rows_as_dicts(conn: psycopg.Connection):
    # The page's queries read rows as dicts; the pipeline's connection reads tuples.
    previous = conn.row_factory
    conn.row_factory = dict_row
    try:
        yield conn
    finally:
        conn.row_factory = previous


def render_trip_pages(app: Flask, conn: psycopg.Connection, trips: Iterable[Trip],
                      computed_at: dt.datetime) -> list[tuple]:
    """trip_pages rows (warehouse.SERVING_COLUMNS order) for the trips ever collected that depart after the date at
    their origin, as a view at `computed_at` shows them.

    Runs inside the caller's transaction, so it reads the serving rows written just before.
    """
    rows = []
    with app.test_request_context("/fares"), _rows_as_dicts(conn):
        # As for the web role (webapp/db.py): JIT would spend ~0.4 s compiling each date-grid query.
        conn.execute("SET LOCAL jit = off")
        for trip in trips:
            # Read before rendering: a load committing in between leaves the page an older stamp, so it is not
            # served (until the next refresh), never a stamp newer than the fares it shows.
            loaded_at = queries.route_loaded_at(conn, trip)
            today = today_at(trip.origin, computed_at)
            if trip.depart_date <= today:
                # Never served (queries._TRIP_PAGE): flights leave between refreshes on the departure day.
                continue
            view = trip_view(conn, trip, today)
            # A collection that found nothing on sale is stored too: its page says so.
            if view["collection"]:
                fares_json = app.json.response(fares_document(trip, view)).get_data(as_text=True)
                collected_at = view["collection"]["collected_at"]
                rows.append((trip.origin, trip.destination, trip.depart_date, trip.return_date, collected_at, today,
                             render_trip_page(trip, view, today), fares_json, computed_at, loaded_at))
    return rows
