import datetime as dt
import html
import os
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import psycopg
import pytest

from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing import warehouse
from fare_assets.storing.postgres import READONLY_ROLE
from fare_assets.services import free_port
from webapp import create_app
from webapp.db import get_db
from webapp.validation import Trip, TripError, parse_trip, today_utc

TODAY = today_utc()
DEPART = TODAY + dt.timedelta(days=40)
RETURN = DEPART + dt.timedelta(days=7)
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
EARLIER = NOW - dt.timedelta(hours=1)


def fare_row(option_id: str, total: str, *, search_id: str = "s-new", collected_at: dt.datetime = NOW,
             origin: str = "SFO", destination: str = "JFK", depart: dt.date = DEPART, back: dt.date = RETURN,
             national: bool = True, carriers: str = "UA", stops: tuple[int, int] = (0, 1),
             durations: tuple[int, int] = (330, 420), adults: int = 1) -> tuple:
    """One warehouse row in LOAD_COLUMNS order."""
    values = {
        "option_id": option_id, "search_id": search_id, "provider": "qpx", "collected_at": collected_at,
        "origin": origin, "destination": destination, "depart_date": depart, "return_date": back,
        "days_ahead": (depart - collected_at.date()).days, "nights": (back - depart).days,
        "adults": adults, "children": 0, "cabin": "COACH", "total_amount": Decimal(total), "currency": "USD",
        "carriers": carriers, "stops_out": stops[0], "stops_back": stops[1],
        "duration_out_min": durations[0], "duration_back_min": durations[1],
        "depart_out_local": dt.datetime.combine(depart, dt.time(8, 5)),
        "depart_back_local": dt.datetime.combine(back, dt.time(17, 30)),
    }
    return (*[values[name] for name in warehouse.COLUMN_NAMES], national)


def trip_query(origin="SFO", destination="JFK", depart=DEPART, back=RETURN, **extra) -> dict:
    return {"origin": origin, "destination": destination, "depart": str(depart), "return": str(back), **extra}


def readonly(dsn: str) -> str:
    return dsn.replace("//fares@", f"//{READONLY_ROLE}@")


@pytest.fixture
def load(warehouse_dsn):
    """Load rows into the test's warehouse as the superuser (the app itself cannot write)."""
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        yield lambda rows: warehouse.load_fares(conn, rows)


@pytest.fixture
def app(warehouse_dsn, load):
    return create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def unreachable_client():
    """A client whose database DSN points at a port nothing listens on."""
    dsn = f"postgresql://{READONLY_ROLE}@127.0.0.1:{free_port()}/fares"
    return create_app({"TESTING": True, "DATABASE_DSN": dsn}).test_client()


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_fares_show_only_the_latest_collection_cheapest_first(client, load):
    load([
        # An older collection of the same trip, cheaper than anything now: must not show.
        fare_row("old-1", "150.00", search_id="s-old", collected_at=EARLIER),
        fare_row("old-2", "400.00", search_id="s-old", collected_at=EARLIER),
        fare_row("new-mid", "310.50", carriers="UA", stops=(0, 0), durations=(330, 345)),
        fare_row("new-cheap", "249.99", carriers="AA,BA", stops=(1, 2), durations=(455, 610)),
        fare_row("new-dear", "1020.00", carriers="DL"),
        # Other dates and another route collected at the same time: not this trip.
        fare_row("other-dates", "99.00", search_id="s-other", back=RETURN + dt.timedelta(days=1)),
        fare_row("intl", "88.00", search_id="s-intl", origin="LHR", national=False),
    ])

    body = client.get("/api/fares", query_string=trip_query(origin="sfo", destination="jfk")).get_json()
    assert [option["option_id"] for option in body["options"]] == ["new-cheap", "new-mid", "new-dear"]
    assert [option["total"] for option in body["options"]] == ["249.99", "310.50", "1020.00"]
    assert body["options_in_collection"] == 3
    assert dt.datetime.fromisoformat(body["collected_at"]) == NOW
    cheapest = body["options"][0]
    assert cheapest["currency"] == "USD" and cheapest["carriers"] == ["AA", "BA"]
    assert cheapest["outbound"] == {"departs_local": f"{DEPART}T08:05:00", "stops": 1, "duration_min": 455}
    assert cheapest["return"] == {"departs_local": f"{RETURN}T17:30:00", "stops": 2, "duration_min": 610}
    assert body["trip"]["origin"] == "SFO" and body["trip"]["destination_name"].startswith("John F Kennedy")
    assert body["other_trips"] == []

    response = client.get("/fares", query_string=trip_query())
    text = page_text(response)
    assert response.status_code == 200
    positions = [text.index(total) for total in ("249.99 USD", "310.50 USD", "1,020.00 USD")]
    assert positions == sorted(positions)
    assert "150.00" not in text and "99.00" not in text and "88.00" not in text
    assert "AA, BA" in text and "1 stop · 7h 35m" in text and "nonstop · 5h 30m" in text
    assert "Cheapest 3 of 3 options collected" in text and NOW.strftime("%Y-%m-%d %H:%M UTC") in text


def test_passenger_filter_picks_that_partys_latest_search(client, load):
    load([
        fare_row("solo", "300.00", search_id="s-solo", collected_at=EARLIER),
        fare_row("pair", "600.00", search_id="s-pair", adults=2),
    ])
    latest = client.get("/api/fares", query_string=trip_query()).get_json()["options"]
    solo = client.get("/api/fares", query_string=trip_query(adults="1")).get_json()["options"]
    assert [(o["option_id"], o["adults"]) for o in latest] == [("pair", 2)]
    assert [(o["option_id"], o["total"]) for o in solo] == [("solo", "300.00")]


def test_routes_split_national_and_international(client, load):
    later_depart = DEPART + dt.timedelta(days=3)
    load([
        fare_row("sfo-a", "420.00", search_id="a1", collected_at=EARLIER),
        fare_row("sfo-b", "380.00", search_id="b1", depart=later_depart, back=later_depart + dt.timedelta(days=3)),
        fare_row("sfo-b-dear", "700.00", search_id="b1", depart=later_depart, back=later_depart + dt.timedelta(days=3)),
        fare_row("lhr", "812.40", search_id="c1", origin="LHR", national=False),
        # A route whose only trip has departed is not listed.
        fare_row("gone", "50.00", search_id="d1", origin="BOS", destination="LAX",
                 depart=TODAY - dt.timedelta(days=2), back=TODAY + dt.timedelta(days=1)),
    ])

    body = client.get("/api/routes").get_json()
    assert [(r["origin"], r["destination"]) for r in body["national"]] == [("SFO", "JFK")]
    assert [(r["origin"], r["destination"]) for r in body["international"]] == [("LHR", "JFK")]
    national = body["national"][0]
    assert national["cheapest"]["total"] == "380.00" and national["cheapest"]["depart"] == str(later_depart)
    assert national["upcoming_trips"] == 2
    assert dt.datetime.fromisoformat(national["freshest_collected_at"]) == NOW
    assert 0 <= national["data_age_seconds"] < 600
    assert body["international"][0]["cheapest"]["total"] == "812.40"

    text = page_text(client.get("/routes"))
    national_html, international_html = text.split('id="international"')
    assert "SFO → JFK" in national_html and "380.00 USD" in national_html and "LHR" not in national_html
    assert "LHR → JFK" in international_html and "812.40 USD" in international_html
    assert "BOS" not in text


INVALID_TRIPS = [
    ({"origin": "S1"}, "origin", "3-letter IATA airport code"),
    ({"destination": "QQQ"}, "destination", "QQQ is not a known IATA airport code"),
    ({"destination": "sfo"}, "destination", "must differ from origin"),
    ({"depart": str(TODAY - dt.timedelta(days=1))}, "depart", "is in the past"),
    ({"depart": "01/12/2026"}, "depart", "YYYY-MM-DD"),
    ({"return": str(DEPART - dt.timedelta(days=1))}, "return", "is before the departure date"),
    ({"destination": ""}, "destination", "destination is required"),
    ({"adults": "0"}, "adults", "whole number from 1 to 9"),
    ({"adults": "5", "children": "5"}, "children", "at most 9 passengers"),
]


@pytest.mark.parametrize("change, field, message", INVALID_TRIPS)
def test_invalid_trip_is_a_400_saying_what_to_fix(client, change, field, message):
    query = {**trip_query(), **change}

    response = client.get("/api/fares", query_string=query)
    assert response.status_code == 400
    assert message in response.get_json()["error"] and message in response.get_json()["fields"][field]

    response = client.get("/fares", query_string=query)
    text = page_text(response)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert message in text and 'aria-invalid="true"' in text and "Traceback" not in text


def test_missing_fields_are_all_reported():
    with pytest.raises(TripError) as caught:
        parse_trip({"origin": "sfo"}, TODAY)
    assert set(caught.value.problems) == {"destination", "depart", "return"}
    assert parse_trip(trip_query(origin=" lax ", destination="Jfk"), TODAY) == Trip("LAX", "JFK", DEPART, RETURN)


def test_unknown_trip_is_an_empty_state_suggesting_collected_dates(client, load):
    load([fare_row("a", "275.00"), fare_row("b", "310.00")])
    asked = trip_query(depart=DEPART + dt.timedelta(days=1), back=RETURN + dt.timedelta(days=1))

    response = client.get("/api/fares", query_string=asked)
    body = response.get_json()
    assert response.status_code == 200 and body["options"] == [] and body["collected_at"] is None
    assert [(t["depart"], t["return"], t["total"]) for t in body["other_trips"]] == [
        (str(DEPART), str(RETURN), "275.00")]
    assert body["other_trips"][0]["url"] == f"/api/fares?origin=SFO&destination=JFK&depart={DEPART}&return={RETURN}&adults=1&children=0"

    response = client.get("/fares", query_string=asked)
    text = page_text(response)
    assert response.status_code == 200 and "No fares collected for this trip" in text
    assert f"depart={DEPART}&return={RETURN}" in text and "275.00 USD" in text

    text = page_text(client.get("/fares", query_string=trip_query(origin="BOS", destination="LAX")))
    assert "This route is not watched yet" in text


def test_healthz_reports_database_reachability(client, unreachable_client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok", "database": "ok"}

    response = unreachable_client.get("/healthz")
    assert response.status_code == 503 and response.get_json()["database"] == "unreachable"


def test_unreachable_database_is_a_clear_503(unreachable_client):
    response = unreachable_client.get("/api/fares", query_string=trip_query())
    assert response.status_code == 503 and "unreachable" in response.get_json()["error"]
    response = unreachable_client.get("/routes")
    assert response.status_code == 503 and "fare database is unreachable" in page_text(response)
    # Invalid input is reported before the database is needed.
    assert unreachable_client.get("/api/fares", query_string=trip_query(origin="QQQ")).status_code == 400


def test_errors_are_clean_pages_and_json(warehouse_dsn):
    app = create_app({"DATABASE_DSN": readonly(warehouse_dsn)})

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("internal detail")

    client = app.test_client()
    response = client.get("/api/boom")
    assert response.status_code == 500 and "internal detail" not in response.get_data(as_text=True)
    assert "internal error" in response.get_json()["error"]
    assert client.get("/api/nowhere").get_json()["error"].startswith("The requested URL was not found")
    response = client.get("/nowhere")
    assert response.status_code == 404 and "<h1>Not Found</h1>" in page_text(response)
    assert client.post("/api/routes").status_code == 405


@pytest.mark.parametrize("path", ["/", "/routes", "/api/routes", "/static/style.css", "/nowhere", "/healthz"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def test_pages_load_nothing_from_other_origins(client):
    text = client.get("/").get_data(as_text=True)
    assert "<script" not in text and "style=" not in text and "http://" not in text and "https://" not in text
    assert 'href="/static/style.css"' in text


def test_app_connects_with_the_read_only_role(app, load):
    load([fare_row("a", "275.00")])
    with app.app_context():
        conn = get_db()
        assert conn.execute("SELECT current_user AS name").fetchone()["name"] == READONLY_ROLE
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM national_fares")


def test_configuration_from_environment(monkeypatch):
    monkeypatch.delenv("FARES_WEB_DSN", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("FARES_PG_PORT", "6543")
    app = create_app()
    assert app.config["DATABASE_DSN"] == f"postgresql://{READONLY_ROLE}@127.0.0.1:6543/fares"
    assert app.debug is False
    monkeypatch.setenv("FARES_WEB_DSN", "postgresql://reader@db.example:5432/fares")
    assert create_app().config["DATABASE_DSN"] == "postgresql://reader@db.example:5432/fares"


def test_python_m_webapp_serves_with_waitress(warehouse_dsn, load):
    port = free_port()
    env = {**os.environ, "FARES_WEB_PORT": str(port), "FARES_WEB_DSN": readonly(warehouse_dsn)}
    server = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == f"Fare page: http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200 and response.headers["X-Frame-Options"] == "DENY"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=10)
