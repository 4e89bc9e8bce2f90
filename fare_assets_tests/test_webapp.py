import datetime as dt
import html
import os
import re
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from fare_assets.local_dates import airport_timezone, earliest_today, today_at
from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing import warehouse
from fare_assets.storing.postgres import READONLY_ROLE
from fare_assets.services import free_port
from webapp import create_app, queries
from webapp.alerts import written_amount
from webapp.db import get_db
from webapp.formatting import arrival_local
from webapp.insight import price_insight
from webapp.validation import Trip, TripError, parse_trip

TODAY = dt.datetime.now(dt.timezone.utc).date()
DEPART = TODAY + dt.timedelta(days=40)
RETURN = DEPART + dt.timedelta(days=7)
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
EARLIER = NOW - dt.timedelta(hours=1)


def fare_row(option_id: str, total: str, *, search_id: str = "s-new", collected_at: dt.datetime = NOW,
             origin: str = "SFO", destination: str = "JFK", depart: dt.date = DEPART, back: dt.date = RETURN,
             national: bool = True, carriers: str = "UA", stops: tuple[int, int] = (0, 1),
             durations: tuple[int, int] = (330, 420), adults: int = 1, cabin: str = "COACH",
             provider: str = "qpx", currency: str = "USD") -> tuple:
    """One warehouse row in LOAD_COLUMNS order."""
    values = {
        "option_id": option_id, "search_id": search_id, "provider": provider, "collected_at": collected_at,
        "origin": origin, "destination": destination, "depart_date": depart, "return_date": back,
        "days_ahead": (depart - collected_at.date()).days, "nights": (back - depart).days,
        "adults": adults, "children": 0, "cabin": cabin, "total_amount": Decimal(total), "currency": currency,
        "carriers": carriers, "stops_out": stops[0], "stops_back": stops[1],
        "duration_out_min": durations[0], "duration_back_min": durations[1],
        "depart_out_local": dt.datetime.combine(depart, dt.time(8, 5)),
        "depart_back_local": dt.datetime.combine(back, dt.time(17, 30)),
    }
    return (*[values[name] for name in warehouse.COLUMN_NAMES], national)


def without_party(option_row: tuple) -> tuple:
    """`option_row` (LOAD_COLUMNS) of a search that recorded no party or cabin (another producer's)."""
    return tuple(None if name in ("adults", "children", "cabin") else value
                 for name, value in zip(warehouse.LOAD_COLUMNS, option_row))


def empty_answer(option_row: tuple) -> tuple:
    """The search of `option_row` (LOAD_COLUMNS) as an answer without options (EMPTY_ANSWER_COLUMNS order)."""
    values = dict(zip(warehouse.LOAD_COLUMNS, option_row))
    return tuple(values[name] for name, _ in warehouse.EMPTY_ANSWER_COLUMNS)


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
    # SFO 08:05 + 7h35 is 15:40 Pacific, 18:40 in New York; JFK 17:30 + 10h10 is 03:40 Eastern, 00:40 Pacific.
    assert cheapest["outbound"] == {"departs_local": f"{DEPART}T08:05:00", "arrives_local": f"{DEPART}T18:40:00",
                                    "stops": 1, "duration_min": 455}
    assert cheapest["return"] == {"departs_local": f"{RETURN}T17:30:00",
                                  "arrives_local": f"{RETURN + dt.timedelta(days=1)}T00:40:00",
                                  "stops": 2, "duration_min": 610}
    assert body["trip"]["origin"] == "SFO" and body["trip"]["destination_name"].startswith("John F Kennedy")
    assert body["other_trips"] == []

    response = client.get("/fares", query_string=trip_query())
    text = page_text(response)
    assert response.status_code == 200
    positions = [text.index(total) for total in ("249.99 USD", "310.50 USD", "1,020.00 USD")]
    assert positions == sorted(positions)
    options_table = text[text.index('<table class="options">'):text.index("</table>")]
    assert "150.00" not in options_table and "99.00" not in options_table and "88.00" not in options_table
    assert "AA, BA" in text and "1 stop · 7h 35m" in text and "nonstop · 5h 30m" in text
    assert "Cheapest 3 of 3 options collected" in text and NOW.strftime("%Y-%m-%d %H:%M UTC") in text


@pytest.mark.parametrize("departs, minutes, arrives", [
    # Clocks go forward in the night of 13-14 March 2027 and back on 6-7 November: flight time is elapsed time.
    (dt.datetime(2027, 3, 13, 23, 0), 330, dt.datetime(2027, 3, 14, 8, 30)),
    (dt.datetime(2027, 11, 6, 23, 30), 330, dt.datetime(2027, 11, 7, 7, 0)),
    (dt.datetime(2027, 1, 10, 8, 5), 330, dt.datetime(2027, 1, 10, 16, 35)),
])
def test_arrival_is_the_flight_time_after_departure_across_a_clock_change(departs, minutes, arrives):
    assert arrival_local(departs, minutes, "SFO", "JFK") == arrives


def test_passenger_filter_picks_that_partys_latest_search(client, load):
    load([
        fare_row("solo", "300.00", search_id="s-solo", collected_at=EARLIER),
        fare_row("pair", "600.00", search_id="s-pair", adults=2),
    ])
    latest = client.get("/api/fares", query_string=trip_query()).get_json()["options"]
    solo = client.get("/api/fares", query_string=trip_query(adults="1")).get_json()["options"]
    assert [(o["option_id"], o["adults"]) for o in latest] == [("pair", 2)]
    assert [(o["option_id"], o["total"]) for o in solo] == [("solo", "300.00")]


def test_a_trip_collected_on_two_providers_shows_both_in_one_collection(client, load):
    # Two sweeps, each searching the trip on QPX and on Duffel at the sweep's moment; Duffel's newest options are
    # split over both fare tables, and a pair's search of the same sweep is another party.
    load([fare_row("qpx-old", "300.00", search_id="q1", collected_at=EARLIER),
          fare_row("duffel-old", "280.00", search_id="d1", collected_at=EARLIER, provider="duffel"),
          fare_row("qpx-new", "310.00", search_id="q2"),
          fare_row("duffel-new", "295.00", search_id="d2", provider="duffel"),
          fare_row("duffel-new-via-yyz", "305.00", search_id="d2", provider="duffel", national=False),
          fare_row("pair-new", "590.00", search_id="a2", adults=2)])

    latest = client.get("/api/fares", query_string=trip_query()).get_json()["options"]
    assert [(o["option_id"], o["provider"]) for o in latest] == [
        ("duffel-new", "duffel"), ("duffel-new-via-yyz", "duffel"), ("qpx-new", "qpx")]
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["280.00", "295.00"]

    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "Cheapest 3 of 3 options collected" in text and "totals for 1 adult" in text
    assert text.count('class="dot"') == 2
    options_table = text[text.index('<table class="options">'):text.index("</table>")]
    assert options_table.count("Duffel") == 2 and options_table.count("QPX Express") == 1
    assert "590.00" not in options_table


def test_a_collection_a_provider_missed_is_left_out_of_the_chart_and_the_insight(client, load):
    # Duffel, the cheaper, quoted the trip two hours ago and now, but its call failed in the sweep an hour ago (it
    # quoted that sweep in EUR only, which does not count as missing); QPX alone quoted it at 400.00 then.
    two_hours_ago = NOW - dt.timedelta(hours=2)
    load([fare_row("qpx-first", "300.00", search_id="q1", collected_at=two_hours_ago),
          fare_row("duffel-first", "280.00", search_id="d1", collected_at=two_hours_ago, provider="duffel"),
          fare_row("qpx-missed", "400.00", search_id="q2", collected_at=EARLIER),
          fare_row("qpx-new", "310.00", search_id="q3"),
          fare_row("duffel-new", "290.00", search_id="d3", provider="duffel")])

    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["280.00", "290.00"]
    assert history["collections_missing_a_provider"] == 1
    text = page_text(client.get("/fares", query_string=trip_query()))
    assert text.count('class="dot"') == 2
    assert "1 that missed a provider (its call failed, or its answer could not be read) is not drawn" in text
    # The insight judges today's 290.00 against 280.00 alone: the 400.00 would have made it look cheap.
    insight = client.get("/api/advice", query_string=trip_query()).get_json()["insight"]
    assert insight["compared_with"]["own_collections"] == 1
    # Duffel's euro quote of the missed sweep makes it present there: the sweep is drawn.
    load([fare_row("duffel-missed-eur", "250.00", search_id="d2", collected_at=EARLIER, provider="duffel",
                   currency="EUR")])
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["280.00", "400.00", "290.00"]
    assert history["collections_missing_a_provider"] == 0


def test_a_provider_missing_from_the_newest_collection_is_named_with_its_last_quote(client, load):
    # Duffel quoted the trip an hour ago but its call failed in the newest sweep; Amadeus quoted it two days ago
    # (outside the window), and an hour ago in EUR (missing all the same); a pair's Duffel search is another party.
    load([fare_row("qpx-old", "300.00", search_id="q1", collected_at=EARLIER),
          fare_row("duffel-old", "280.00", search_id="d1", collected_at=EARLIER, provider="duffel"),
          fare_row("duffel-old-dear", "330.00", search_id="d1", collected_at=EARLIER, provider="duffel"),
          fare_row("amadeus-stale", "250.00", search_id="m1", collected_at=NOW - dt.timedelta(days=2),
                   provider="amadeus"),
          fare_row("amadeus-eur", "240.00", search_id="m2", collected_at=EARLIER, provider="amadeus", currency="EUR"),
          fare_row("pair-duffel", "560.00", search_id="d3", collected_at=EARLIER, provider="duffel", adults=2),
          fare_row("qpx-new", "310.00", search_id="q2")])

    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert [option["option_id"] for option in body["options"]] == ["qpx-new"]
    assert body["other_currency_quotes"] == []
    assert body["absent_providers"] == [
        {"provider": "amadeus", "collected_at": EARLIER.isoformat(), "cheapest": "240.00", "currency": "EUR"},
        {"provider": "duffel", "collected_at": EARLIER.isoformat(), "cheapest": "280.00", "currency": "USD"}]
    text = page_text(client.get("/fares", query_string=trip_query()))
    note = text[text.index('class="absent-providers"'):]
    assert "Duffel, which quoted from 280.00 USD" in note[:note.index("</p>")]
    # Once Duffel answers again, and Amadeus in euros, nobody is missing.
    load([fare_row("duffel-new", "290.00", search_id="d4", provider="duffel"),
          fare_row("amadeus-new", "245.00", search_id="m3", provider="amadeus", currency="EUR")])
    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert body["absent_providers"] == []
    # The collection's first currency alphabetically is now the page's; the dollar quotes are named beside it.
    assert [option["option_id"] for option in body["options"]] == ["amadeus-new"]
    assert [(quote["provider"], quote["cheapest"]) for quote in body["other_currency_quotes"]] == [
        ("duffel", "290.00"), ("qpx", "310.00")]


def test_a_provider_that_answered_with_no_option_is_not_missing_from_the_page(client, load, warehouse_dsn):
    # Duffel, the cheaper, quoted the trip an hour ago; in the newest sweep it answered but had nothing to sell, so
    # QPX's 310.00 is the market's cheapest: no provider to name, and the collection is a point of the chart.
    rows = [fare_row("qpx-old", "300.00", search_id="q1", collected_at=EARLIER),
            fare_row("duffel-old", "280.00", search_id="d1", collected_at=EARLIER, provider="duffel"),
            fare_row("qpx-new", "310.00", search_id="q2")]
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, rows, {}, searches=[("d2", NOW)], empty_answers=[
            empty_answer(fare_row("unused", "1", search_id="d2", provider="duffel"))])

    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert [option["option_id"] for option in body["options"]] == ["qpx-new"]
    assert body["absent_providers"] == []
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["280.00", "310.00"]
    assert history["collections_missing_a_provider"] == 0
    assert "Not in this collection:" not in page_text(client.get("/fares", query_string=trip_query()))
    # Half an hour later Duffel's call fails: having had nothing to sell when last heard from, it hides no fare.
    load([fare_row("qpx-later", "320.00", search_id="q3", collected_at=NOW + dt.timedelta(minutes=30))])
    assert client.get("/api/fares", query_string=trip_query()).get_json()["absent_providers"] == []
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["280.00", "310.00", "320.00"]
    # Once it quotes again, a failed call counts as missing again.
    load([fare_row("duffel-back", "290.00", search_id="d4", provider="duffel", collected_at=NOW + dt.timedelta(hours=1)),
          fare_row("qpx-last", "330.00", search_id="q4", collected_at=NOW + dt.timedelta(hours=2))])
    assert [(row["provider"], row["cheapest"]) for row in client.get(
        "/api/fares", query_string=trip_query()).get_json()["absent_providers"]] == [("duffel", "290.00")]


def test_a_newest_collection_with_nothing_on_sale_shows_no_older_fare_as_now(client, warehouse_dsn):
    # An hour ago QPX and Duffel quoted the trip and the dates a day later; in the newest sweep both had nothing to sell
    # for the trip and, two days later, QPX nothing either; the dates a day later still sell at 330.00.
    later, two_later = DEPART + dt.timedelta(days=1), DEPART + dt.timedelta(days=2)
    # The same sweep quoted the dates in business, which the page (economy first) links. Another producer's searches
    # of SFO-SEA recorded no party: its newest had nothing to sell either.
    rows = [fare_row("qpx-old", "150.00", search_id="q1", collected_at=EARLIER),
            fare_row("duffel-old", "140.00", search_id="d1", collected_at=EARLIER, provider="duffel"),
            fare_row("business-new", "900.00", search_id="b2", cabin="BUSINESS"),
            fare_row("later-new", "330.00", search_id="l2", depart=later),
            fare_row("two-later-old", "120.00", search_id="t1", depart=two_later, collected_at=EARLIER),
            without_party(fare_row("sea-old", "90.00", search_id="s1", destination="SEA", collected_at=EARLIER))]
    sold_out = [empty_answer(fare_row("unused", "1", search_id=search, provider=provider, depart=depart))
                for search, provider, depart in (("q2", "qpx", DEPART), ("d2", "duffel", DEPART),
                                                 ("t2", "qpx", two_later))]
    sold_out.append(empty_answer(without_party(fare_row("unused", "1", search_id="s2", destination="SEA"))))
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, rows, {}, empty_answers=sold_out)

    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert (body["options"], body["nothing_on_sale"], body["absent_providers"]) == ([], True, [])
    assert dt.datetime.fromisoformat(body["collected_at"]) == NOW
    assert [(trip["depart"], trip["cabin"]) for trip in body["other_trips"]] == [(str(DEPART), "BUSINESS"),
                                                                                 (str(later), "COACH")]
    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "No fares on sale for this trip" in text and "no provider had a fare on sale for 1 adult" in text
    fares_shown = text[text.index('<section class="empty">'):text.index('id="date-grid"')]
    assert "150.00" not in fares_shown and "140.00" not in fares_shown and "not watched yet" not in text
    assert re.search(r"Also collected for these dates:\s*<a [^>]*>1 adult, business</a>\s*from 900.00 USD", text)
    # The chart still shows what the trip cost while it was on sale, in its last quote's currency.
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [(point["cheapest"], point["currency"]) for point in history["points"]] == [("140.00", "USD")]
    assert 'lowest 140.00 USD at' in text
    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    assert advice["action"] == "no_fares" and "no provider had a fare on sale" in advice["reason"]
    cells = {(cell["depart"], cell["return"]): cell
             for cell in client.get("/api/date-grid", query_string=trip_query()).get_json()["cells"]}
    assert [cells[(str(depart), str(RETURN))]["source"] for depart in (DEPART, later, two_later)] == [
        "nothing_on_sale", "collected", "nothing_on_sale"]
    assert cells[(str(later), str(RETURN))]["total"] == "330.00"
    # The route's cheapest now is the one fare on sale, not the older, cheaper ones; SFO-SEA has none.
    [route] = client.get("/api/routes").get_json()["national"]
    assert (route["cheapest"]["total"], route["cheapest"]["depart"]) == ("330.00", str(later))

    # Both quote again, then QPX has nothing while Duffel's call fails: Duffel may still sell, and is named.
    hour = NOW + dt.timedelta(hours=1)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, [fare_row("qpx-back", "310.00", search_id="q3", collected_at=hour),
                                        fare_row("duffel-back", "290.00", search_id="d3", collected_at=hour,
                                                 provider="duffel")], {})
        assert [option["option_id"] for option in client.get("/api/fares", query_string=trip_query()).get_json()[
            "options"]] == ["duffel-back", "qpx-back"]
        warehouse.load_warehouse(conn, [], {}, empty_answers=[empty_answer(fare_row(
            "unused", "1", search_id="q4", collected_at=hour + dt.timedelta(minutes=30)))])
    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert body["options"] == [] and body["nothing_on_sale"] is True
    assert [(row["provider"], row["cheapest"]) for row in body["absent_providers"]] == [("duffel", "290.00")]
    assert "it may still have fares on sale" in page_text(client.get("/fares", query_string=trip_query()))


def test_a_warehouse_older_than_the_page_answers_unavailable_until_a_load_adds_what_it_reads(client, load,
                                                                                            warehouse_dsn,
                                                                                            monkeypatch):
    load(history_rows(["300.00"]))
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("DROP TABLE empty_answers")
    response = client.get("/api/fares", query_string=trip_query())
    assert response.status_code == 503 and "try again" in response.get_json()["error"]
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
    assert client.get("/api/fares", query_string=trip_query()).status_code == 200
    # With every table in place, a query naming one that does not exist is a bug (raised: a 500), not a warehouse to
    # wait for.
    monkeypatch.setattr(queries, "fares_for_trip", lambda conn, *_: conn.execute("SELECT * FROM no_such_table"))
    with pytest.raises(psycopg.errors.UndefinedTable):
        client.get("/api/fares", query_string=trip_query())


def test_a_missing_provider_is_named_by_a_quote_newer_than_its_last_answer_without_options(client, warehouse_dsn):
    # Duffel quoted 250.00 USD, then had nothing, then quoted 260.00 EUR; its call fails in the newest sweep.
    hours = [NOW - dt.timedelta(hours=hours) for hours in (3, 2, 1)]
    rows = [fare_row("d-usd", "250.00", search_id="d1", provider="duffel", collected_at=hours[0]),
            fare_row("d-eur", "260.00", search_id="d3", provider="duffel", currency="EUR", collected_at=hours[2]),
            fare_row("q-new", "300.00", search_id="q4")]
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, rows, {}, empty_answers=[
            empty_answer(fare_row("unused", "1", search_id="d2", provider="duffel", collected_at=hours[1]))])
    absent = client.get("/api/fares", query_string=trip_query()).get_json()["absent_providers"]
    assert [(row["provider"], row["cheapest"], row["currency"]) for row in absent] == [("duffel", "260.00", "EUR")]


def test_a_quote_in_another_currency_at_the_same_moment_is_named_beside_the_options(client, load):
    # QPX has quoted the trip in USD for a while; Duffel, whose account quotes in EUR, joins in the newest sweep.
    load([fare_row("qpx-old", "300.00", search_id="q1", collected_at=EARLIER),
          fare_row("qpx-new", "310.00", search_id="q2"),
          fare_row("qpx-new-dear", "390.00", search_id="q2"),
          fare_row("duffel-eur", "280.00", search_id="d2", provider="duffel", currency="EUR")])

    body = client.get("/api/fares", query_string=trip_query()).get_json()
    assert [option["option_id"] for option in body["options"]] == ["duffel-eur"]
    assert [(quote["provider"], quote["cheapest"], quote["currency"]) for quote in body["other_currency_quotes"]] == [
        ("qpx", "310.00", "USD")]
    assert body["absent_providers"] == []
    text = page_text(client.get("/fares", query_string=trip_query()))
    note = text[text.index('class="other-currencies"'):]
    assert "QPX Express from 310.00 USD" in note[:note.index("</p>")]


def test_one_sweep_in_two_cabins_and_two_currencies_shows_the_same_collection_every_time(client, load):
    # One sweep collected the dates in business and in economy, economy quoted by QPX in USD and by Duffel in EUR;
    # so did the sweep an hour earlier. Ties at one moment go to economy and to the first currency (EUR).
    load([fare_row("business", "1900.00", search_id="z-business", cabin="BUSINESS"),
          fare_row("coach-usd", "210.00", search_id="a-usd"),
          fare_row("coach-usd-earlier", "200.00", search_id="a-usd-earlier", collected_at=EARLIER),
          fare_row("coach-eur", "280.00", search_id="b-eur", provider="duffel", currency="EUR"),
          fare_row("coach-eur-earlier", "270.00", search_id="b-eur-earlier", collected_at=EARLIER,
                   provider="duffel", currency="EUR"),
          fare_row("nearby-usd", "150.00", search_id="n-usd", depart=DEPART + dt.timedelta(days=1))])

    latest = client.get("/api/fares", query_string=trip_query()).get_json()["options"]
    assert [(o["option_id"], o["cabin"], o["currency"]) for o in latest] == [("coach-eur", "COACH", "EUR")]
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [(point["cheapest"], point["currency"]) for point in history["points"]] == [
        ("270.00", "EUR"), ("280.00", "EUR")]
    # The grid keeps to the page's currency: the nearby date quoted only in dollars is not ranked against euros.
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    assert [(cell["depart"], cell["total"], cell["currency"]) for cell in grid["cells"]
            if cell["source"] == "collected"] == [(str(DEPART), "280.00", "EUR")]
    coach = client.get("/api/fares", query_string=trip_query(cabin="COACH")).get_json()["options"]
    assert {option["currency"] for option in coach} == {"EUR"}
    business = client.get("/api/fares", query_string=trip_query(cabin="BUSINESS")).get_json()["options"]
    assert [option["option_id"] for option in business] == ["business"]


def test_the_grid_of_a_trip_never_collected_shows_one_party_only(client, load):
    # Only a family of three was collected on nearby dates; the trip asked for has no fares of its own.
    nearby = DEPART + dt.timedelta(days=1)
    family = fare_row("family", "900.00", depart=nearby, back=nearby + dt.timedelta(days=7), adults=2)
    load([family])
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    assert [cell for cell in grid["cells"] if cell["source"] == "collected"] == []
    asked = client.get("/api/date-grid", query_string=trip_query(adults="2")).get_json()
    assert [(cell["depart"], cell["total"]) for cell in asked["cells"] if cell["source"] == "collected"] == [
        (str(nearby), "900.00")]


def test_the_grid_of_a_trip_never_collected_ranks_one_currency(client, load):
    # Nearby dates quoted in dollars now and in euros an hour ago; the trip asked for has no fares of its own. The
    # grid takes its newest neighbour's currency, so the cheaper-looking 200 euros is not starred against dollars.
    dates = [DEPART + dt.timedelta(days=days) for days in (1, 2)]
    load([fare_row("usd", "300.00", search_id="usd", depart=dates[0], back=dates[0] + dt.timedelta(days=7)),
          fare_row("eur", "200.00", search_id="eur", depart=dates[1], back=dates[1] + dt.timedelta(days=7),
                   collected_at=EARLIER, provider="duffel", currency="EUR")])
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    assert [(cell["depart"], cell["total"], cell["currency"]) for cell in grid["cells"]
            if cell["source"] == "collected"] == [(str(dates[0]), "300.00", "USD")]
    page = client.get("/fares", query_string=trip_query())
    assert page.status_code == 200 and 'class="cell collected cheapest"' in page.get_data(as_text=True)


def test_a_trip_watched_in_two_cabins_never_mixes_them(client, load):
    # The same dates and party watched in economy (collected twice, last an hour ago) and in business (now); each
    # latest collection has an option via Canada, stored in the other fare table.
    load(history_rows(["300.00", "280.00"], prefix="coach", last=EARLIER)
         + [fare_row("coach-via-yyz", "270.00", search_id=f"coach-{DEPART}-{RETURN}-1", collected_at=EARLIER,
                     national=False),
            fare_row("business-via-yyz", "2500.00", search_id=f"business-{DEPART}-{RETURN}-0", national=False,
                     cabin="BUSINESS")]
         + history_rows(["1900.00"], prefix="business", cabin="BUSINESS")
         + history_rows(["265.00"], prefix="coach-nearby", depart=DEPART + dt.timedelta(days=1), last=EARLIER)
         + history_rows(["1700.00"], prefix="business-nearby", depart=DEPART + dt.timedelta(days=1),
                        cabin="BUSINESS"))

    latest = client.get("/api/fares", query_string=trip_query()).get_json()["options"]
    assert {(option["cabin"], option["total"]) for option in latest} == {
        ("BUSINESS", "1900.00"), ("BUSINESS", "2000.00"), ("BUSINESS", "2500.00")}
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert history["cabin"] == "BUSINESS" and [point["cheapest"] for point in history["points"]] == ["1900.00"]
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    nearby = {cell["total"] for cell in grid["cells"] if cell["depart"] == str(DEPART + dt.timedelta(days=1))}
    assert nearby == {"1700.00", None}

    for cabin in ("COACH", "economy"):
        history = client.get("/api/history", query_string=trip_query(cabin=cabin)).get_json()
        assert history["cabin"] == "COACH" and history["trip"]["cabin"] == "COACH"
        assert [point["cheapest"] for point in history["points"]] == ["300.00", "270.00"]
    grid = client.get("/api/date-grid", query_string=trip_query(cabin="COACH")).get_json()
    totals = {cell["total"] for cell in grid["cells"] if cell["source"] == "collected"}
    assert totals == {"270.00", "265.00"}

    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "totals for 1 adult, business cabin" in text and text.count('class="dot"') == 1
    also = text[text.index('class="parties"'):text.index("</p>", text.index('class="parties"'))]
    # One link per other party and cabin, priced from both fare tables.
    assert also.count("</a>") == 1 and "1 adult, economy</a>" in also and "from 270.00 USD" in also
    assert "business" not in also
    assert "adults=1&children=0&cabin=COACH" in also
    # The alert form watches the cabin shown; the grid's links open that cabin's pages.
    alert_form = text[text.index('id="price-alert"'):]
    assert '<input type="hidden" name="cabin" value="BUSINESS">' in alert_form
    assert f"cabin=BUSINESS&depart={DEPART + dt.timedelta(days=1)}" in text
    coach_page = page_text(client.get("/fares", query_string=trip_query(cabin="COACH")))
    assert "totals for 1 adult, economy cabin" in coach_page and coach_page.count('class="dot"') == 2
    assert '<option value="COACH" selected>Economy</option>' in coach_page
    assert 'class="parties"' in coach_page and "1 adult, business</a>" in coach_page
    # A problem elsewhere in the form keeps the cabin asked for by name.
    invalid = page_text(client.get("/fares", query_string=trip_query(cabin="premium economy", adults="0")))
    assert '<option value="PREMIUM_COACH" selected>Premium economy</option>' in invalid


def test_a_search_without_a_cabin_is_shown_as_unknown_and_apart_from_every_cabin(client, load, warehouse_dsn):
    # Another producer's newest search did not record its cabin; the collector's economy and business searches of
    # an hour ago, and a neighbouring date's economy one, are other cabins' fares, as is the fare model's economy
    # prediction for a date two days later.
    nearby = DEPART + dt.timedelta(days=1)
    load([fare_row("no-cabin", "300.00", cabin=None),
          fare_row("coach", "250.00", search_id="s-coach", collected_at=EARLIER),
          fare_row("business", "900.00", search_id="s-business", collected_at=EARLIER, cabin="BUSINESS"),
          fare_row("coach-nearby", "150.00", search_id="s-nearby", depart=nearby)])
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("INSERT INTO predicted_fares VALUES ('SFO', 'JFK', %s, %s, 1, 0, 'COACH', 111.00, %s, 'v1', %s)",
                     (DEPART + dt.timedelta(days=2), RETURN, NOW, NOW))
    response = client.get("/fares", query_string=trip_query())
    text = page_text(response)
    assert response.status_code == 200 and "totals for 1 adult, unknown cabin" in text
    assert text.count('class="dot"') == 1
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["300.00"]
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    assert [(cell["depart"], cell["total"]) for cell in grid["cells"] if cell["source"] == "collected"] == [
        (str(DEPART), "300.00")]
    # Economy's predictions are not its fares: its other dates stay empty, and the page says why.
    assert {cell["source"] for cell in grid["cells"]} == {"collected", "unknown"}
    assert "did not record their party or cabin, which the fare model predicts for" in text
    # Asked for economy, the page's history is the economy collection's, and its grid has the prediction.
    coach = client.get("/api/history", query_string=trip_query(cabin="COACH")).get_json()
    assert [point["cheapest"] for point in coach["points"]] == ["250.00"]
    coach_grid = client.get("/api/date-grid", query_string=trip_query(cabin="COACH")).get_json()
    assert [cell["total"] for cell in coach_grid["cells"] if cell["source"] == "predicted"] == ["111.00"]


def test_a_search_without_its_party_reads_unknown_party_and_advice_keeps_its_currency_code(client, load,
                                                                                          warehouse_dsn):
    later, back = DEPART + dt.timedelta(days=10), RETURN + dt.timedelta(days=10)
    load([fare_row("no-party", "300.00", adults=None, cabin=None, depart=later, back=back),
          fare_row("eur", "280.00", search_id="s-eur", currency="EUR")])
    unrecorded = page_text(client.get("/fares", query_string=trip_query(depart=later, back=back)))
    assert "totals for unknown party, unknown cabin" in unrecorded and "None adult" not in unrecorded
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("INSERT INTO trip_advice VALUES ('SFO', 'JFK', %s, %s, 1, 0, 'COACH', %s, 'wait', 0.7, 0.7, 35.0,"
                     " 'EUR', 'waiting is expected to save about 35 EUR', 'v1', %s)", (DEPART, RETURN, NOW, NOW))
    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "Waiting is expected to save about 35 EUR." in text


def test_routes_split_national_and_international(client, load):
    later_depart = DEPART + dt.timedelta(days=3)
    load([
        fare_row("sfo-a", "420.00", search_id="a1", collected_at=EARLIER),
        # An older sweep also found an option through Montreal: international, but the route stays national and
        # the trip's cheapest now is its newest collection's.
        fare_row("sfo-via-yul", "200.00", search_id="a0", collected_at=EARLIER - dt.timedelta(hours=1),
                 national=False),
        fare_row("sfo-b", "380.00", search_id="b1", depart=later_depart, back=later_depart + dt.timedelta(days=3)),
        fare_row("sfo-b-dear", "700.00", search_id="b1", depart=later_depart, back=later_depart + dt.timedelta(days=3)),
        fare_row("lhr", "812.40", search_id="c1", origin="LHR", national=False),
        # A route whose only trip has departed is not listed.
        fare_row("gone", "50.00", search_id="d1", origin="BOS", destination="LAX",
                 depart=TODAY - dt.timedelta(days=2), back=TODAY + dt.timedelta(days=1)),
        # Nor one whose trips were last collected two days ago: their fares are no longer "now".
        fare_row("stale", "60.00", search_id="e1", origin="SEA", collected_at=NOW - dt.timedelta(days=2)),
    ])

    body = client.get("/api/routes").get_json()
    assert [(r["origin"], r["destination"]) for r in body["national"]] == [("SFO", "JFK")]
    assert [(r["origin"], r["destination"]) for r in body["international"]] == [("LHR", "JFK")]
    national = body["national"][0]
    assert national["cheapest"]["total"] == "380.00" and national["cheapest"]["depart"] == str(later_depart)
    assert national["upcoming_trips"] == 2
    assert dt.datetime.fromisoformat(national["freshest_collected_at"]) == NOW
    # NOW is fixed when the module is imported, possibly minutes before this test runs in a full suite.
    since_now = (dt.datetime.now(dt.timezone.utc) - NOW).total_seconds()
    assert since_now - 5 <= national["data_age_seconds"] <= since_now + 5
    assert body["international"][0]["cheapest"]["total"] == "812.40"

    text = page_text(client.get("/routes"))
    national_html, international_html = text.split('id="international"')
    assert "SFO → JFK" in national_html and "380.00 USD" in national_html and "LHR" not in national_html
    assert "LHR → JFK" in international_html and "812.40 USD" in international_html
    assert "BOS" not in text and "SEA" not in text
    # Each cheapest fare says whose total it is and when it was quoted.
    assert re.search(r"1 adult, economy, collected <time datetime=\"[^\"]+\">", national_html)


def test_a_route_lists_its_trips_departing_today_at_its_origin(warehouse_dsn, load):
    # At 01:00 UTC on DEPART it is still the evening before in San Francisco (the airports dimension's zone) and in
    # Boston, which the dimension lacks: its trip is judged in UTC and has left.
    now = dt.datetime.combine(DEPART, dt.time(1), tzinfo=dt.timezone.utc)
    day_before = DEPART - dt.timedelta(days=1)
    collected = now - dt.timedelta(hours=2)
    load([fare_row("sfo", "300.00", search_id="a1", depart=day_before, collected_at=collected),
          fare_row("bos", "200.00", search_id="b1", origin="BOS", depart=day_before, collected_at=collected)])
    with psycopg.connect(warehouse_dsn, row_factory=dict_row) as conn:
        warehouse.load_warehouse(conn, [], {"airports": [
            ("SFO", "San Francisco International", "SFO", "San Francisco", "US", "America/Los_Angeles", 37.6, -122.4,
             NOW)]})
        summaries = queries.route_summaries(conn, now)
        assert [(row["origin"], row["depart_date"]) for row in summaries["national"]] == [("SFO", day_before)]
        later = queries.route_summaries(conn, now + dt.timedelta(hours=8))
        assert later["national"] == []


def test_a_route_ranks_its_trips_in_the_currency_of_its_newest_collection(client, load):
    later_depart = DEPART + dt.timedelta(days=3)
    load([
        fare_row("usd", "300.00", search_id="a1", collected_at=EARLIER),
        fare_row("eur", "350.00", search_id="b1", currency="EUR", depart=later_depart,
                 back=later_depart + dt.timedelta(days=3)),
    ])
    [route] = client.get("/api/routes").get_json()["national"]
    assert (route["cheapest"]["total"], route["cheapest"]["currency"]) == ("350.00", "EUR")
    assert route["upcoming_trips"] == 2
    assert "350.00 EUR" in page_text(client.get("/routes"))


INVALID_TRIPS = [
    ({"origin": "S1"}, "origin", "3-letter IATA airport code"),
    ({"origin": "London"}, "origin", "London has several airports: BQH (London Biggin Hill Airport, GB), LCY"),
    ({"origin": "Atlantis City"}, "origin", "or a city name, got 'Atlantis City'"),
    ({"depart": str(TODAY + dt.timedelta(days=400))}, "depart", "more than 365 days ahead"),
    ({"depart": "2026-02-30"}, "depart", "YYYY-MM-DD"),
    ({"adults": "500"}, "adults", "whole number from 1 to 9"),
    ({"children": "9"}, "children", "at most 9 passengers (adults + children)"),
    ({"destination": "QQQ"}, "destination", "QQQ is not a known IATA airport code"),
    ({"destination": "sfo"}, "destination", "must differ from origin"),
    # Two days back: the day before today in UTC is still today at SFO until 08:00 UTC (07:00 in summer).
    ({"depart": str(TODAY - dt.timedelta(days=2))}, "depart", "is in the past (today is"),
    ({"depart": "01/12/2026"}, "depart", "YYYY-MM-DD"),
    ({"return": str(DEPART - dt.timedelta(days=1))}, "return", "is before the departure date"),
    ({"destination": ""}, "destination", "destination is required"),
    ({"adults": "0"}, "adults", "whole number from 1 to 9"),
    # More digits than int() reads (4,300): still the field's problem, not a server error.
    ({"adults": "9" * 5000}, "adults", "whole number from 1 to 9"),
    ({"adults": "5", "children": "5"}, "children", "at most 9 passengers"),
    ({"cabin": "cattle"}, "cabin", "cabin must be one of COACH, PREMIUM_COACH, BUSINESS, FIRST, got 'cattle'"),
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
        parse_trip({"origin": "sfo"})
    assert set(caught.value.problems) == {"destination", "depart", "return"}
    assert parse_trip(trip_query(origin=" lax ", destination="Jfk")) == Trip("LAX", "JFK", DEPART, RETURN)
    # A city with one airport (before a comma too), or a suggestion's text, stands for its code.
    assert parse_trip(trip_query(origin="san francisco", destination="JFK – John F Kennedy")) == Trip(
        "SFO", "JFK", DEPART, RETURN)
    assert parse_trip(trip_query(origin="San Francisco, CA", destination="JFK (New York)")).origin == "SFO"
    # A place's name is not the code of its first three letters (NEW is New Orleans' Lakefront, DEL is Delhi).
    for place in ("New York City", "Del Mar", "San Antonio TX"):
        with pytest.raises(TripError) as caught:
            parse_trip(trip_query(origin=place))
        assert caught.value.problems == {"origin": "origin must be a 3-letter IATA airport code such as SFO, or a "
                                                   f"city name, got {place!r}"}
    with pytest.raises(TripError) as caught:
        parse_trip(trip_query(destination="Los Angeles, CA"))
    # Each named with its country, the likeliest meant first: Los Angeles, Chile's airport is among them.
    assert ("has several airports: LAX (Los Angeles International Airport, US), LSQ (Maria Dolores Airport, CL), "
            "WHP (Whiteman Airport, US); pick one") in caught.value.problems["destination"]


def test_a_departure_is_past_by_the_date_at_its_origin():
    # 01:00 UTC on 7 December is 17:00 on the 6th in San Francisco and 10:00 on the 7th in Tokyo.
    now = dt.datetime(2026, 12, 7, 1, tzinfo=dt.timezone.utc)
    query = {"destination": "JFK", "depart": "2026-12-06", "return": "2026-12-09"}
    assert parse_trip({**query, "origin": "SFO"}, now).depart_date == dt.date(2026, 12, 6)
    with pytest.raises(TripError) as caught:
        parse_trip({**query, "origin": "NRT"}, now)
    assert caught.value.problems == {"depart": "departure date 2026-12-06 is in the past (today is 2026-12-07 at NRT)"}
    assert (today_at("SFO", now), today_at("NRT", now), today_at("QQQ", now)) == (
        dt.date(2026, 12, 6), dt.date(2026, 12, 7), dt.date(2026, 12, 7))
    # The form's first date is the earliest anywhere (UTC-12): 13:00 on the 6th.
    assert earliest_today(now) == dt.date(2026, 12, 6)


def test_the_search_forms_first_date_is_no_later_than_today_anywhere(client, load):
    load([fare_row("a", "275.00")])
    before = earliest_today()
    search = page_text(client.get("/"))
    assert any(f'name="depart" value="" min="{day}"' in search for day in (before, earliest_today()))
    # A trip's page (stored or live) takes its first date from its own day at the origin, two days back.
    page = page_text(client.get("/fares", query_string=trip_query()))
    assert f'min="{today_at("SFO") - dt.timedelta(days=2)}"' in page


def test_unknown_trip_is_an_empty_state_suggesting_collected_dates(client, load):
    load([fare_row("a", "275.00"), fare_row("b", "310.00")])
    asked = trip_query(depart=DEPART + dt.timedelta(days=1), back=RETURN + dt.timedelta(days=1))

    response = client.get("/api/fares", query_string=asked)
    body = response.get_json()
    assert response.status_code == 200 and body["options"] == [] and body["collected_at"] is None
    assert [(t["depart"], t["return"], t["total"]) for t in body["other_trips"]] == [
        (str(DEPART), str(RETURN), "275.00")]
    assert body["other_trips"][0]["url"] == (f"/api/fares?origin=SFO&destination=JFK&depart={DEPART}&return={RETURN}"
                                             "&adults=1&children=0&cabin=COACH")

    response = client.get("/fares", query_string=asked)
    text = page_text(response)
    assert response.status_code == 200 and "No fares collected for this trip" in text
    assert f"depart={DEPART}&return={RETURN}" in text and "275.00 USD" in text

    text = page_text(client.get("/fares", query_string=trip_query(origin="BOS", destination="LAX")))
    assert "This route is not watched yet" in text
    # A route collected, but not in the last day, is watched: it just has no trip to suggest now.
    load([fare_row("sea", "200.00", search_id="e1", destination="SEA", collected_at=NOW - dt.timedelta(days=2))])
    text = page_text(client.get("/fares", query_string=trip_query(destination="SEA", depart=DEPART + dt.timedelta(days=1))))
    assert "No other trip of this route was collected in the last day" in text and "not watched yet" not in text


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


@pytest.mark.parametrize("path", ["/fares", "/api/fares", "/api/advice"])
def test_a_page_or_answer_the_client_holds_is_revalidated_to_a_304_until_the_fares_change(client, load, path):
    load([fare_row("qpx-1", "300.00")])
    first = client.get(path, query_string=trip_query())
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache" and first.headers["ETag"]
    again = client.get(path, query_string=trip_query(), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["X-Frame-Options"] == "DENY"
    load([fare_row("qpx-2", "280.00", search_id="s-newer", collected_at=NOW + dt.timedelta(seconds=1))])
    changed = client.get(path, query_string=trip_query(), headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    assert changed.get_data() != first.get_data()


def test_health_and_errors_are_never_revalidated(client):
    assert client.get("/healthz").headers["Cache-Control"] == "no-store"
    assert "ETag" not in client.get("/healthz").headers and "ETag" not in client.get("/nowhere").headers


def test_pages_load_nothing_from_other_origins(client):
    text = client.get("/").get_data(as_text=True)
    # Two local scripts (airport suggestions, ages), nothing inline, nothing from another origin.
    assert text.count("<script") == 2 and '<script src="/static/suggest.js" defer></script>' in text
    assert '<script src="/static/age.js" defer></script>' in text
    assert "style=" not in text and "http://" not in text and "https://" not in text
    assert 'href="/static/style.css"' in text
    assert client.get("/static/suggest.js").status_code == 200 and client.get("/static/age.js").status_code == 200


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
    # A password with % not URL-encoded stops the app at start-up, naming the variable, never the password.
    monkeypatch.setenv("FARES_WEB_DSN", "postgresql://reader:s3cr%t@db.example:5432/fares")
    with pytest.raises(ValueError, match="FARES_WEB_DSN is not a PostgreSQL connection string") as raised:
        create_app()
    assert "s3cr" not in str(raised.value) and raised.value.__cause__ is None


def child_processes(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the parent id is the second field after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_python_m_webapp_serves_with_gunicorn(warehouse_dsn, load):
    port = free_port()
    env = {**os.environ, "FARES_WEB_PORT": str(port), "FARES_WEB_DSN": readonly(warehouse_dsn),
           "FARES_WEB_WORKERS": "2", "FARES_WEB_THREADS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == f"Fare page: http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200 and response.headers["X-Frame-Options"] == "DENY"
                    assert response.headers["Server"].startswith("gunicorn")
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # FARES_WEB_WORKERS: the arbiter forks that many workers (each has answered or is booting by now).
        deadline = time.monotonic() + 15
        while len(child_processes(server.pid)) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(child_processes(server.pid)) == 2
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory) -> str:
    """A lake holding a trained advisor and fare model, published as save_version does."""
    from fare_assets.synthesizing.advisor import BuyWaitAdvisor
    from fare_assets.resources import LakeResource
    from fare_assets.synthesizing.fare_model import FareModel
    from fare_assets.synthesizing.features import observation_features
    from fare_assets.synthesizing.model_files import save_version
    from fare_assets_tests.test_synthesizing import fare_observations

    lake = str(tmp_path_factory.mktemp("lake"))
    observations = fare_observations(60, seed=3)
    features = observation_features(observations)
    save_version(LakeResource(root=lake), "buy_wait_advisor", "v1", BuyWaitAdvisor().fit(features, features), {})
    save_version(LakeResource(root=lake), "fare_model", "v1", FareModel().fit(observations), {})
    return lake


def history_rows(totals: list[str], depart: dt.date = DEPART, back: dt.date = RETURN, prefix: str = "h",
                 cabin: str = "COACH", last: dt.datetime = NOW) -> list[tuple]:
    """One collection a day for the trip, the last one at `last`, each with two options (the cheapest given)."""
    rows = []
    for index, total in enumerate(totals):
        collected = last - dt.timedelta(days=len(totals) - 1 - index)
        search = f"{prefix}-{depart}-{back}-{index}"
        rows.append(fare_row(f"{search}-a", total, search_id=search, collected_at=collected, depart=depart, back=back,
                             carriers="UA,AA"[: 2 + 3 * (index % 2)], cabin=cabin))
        rows.append(fare_row(f"{search}-b", str(Decimal(total) + 100), search_id=search, collected_at=collected,
                             depart=depart, back=back, stops=(0, 0), cabin=cabin))
    return rows


def models_client(warehouse_dsn: str):
    return create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()


def refresh_serving(warehouse_dsn: str, lake: str) -> dict:
    """Fill the serving tables from the warehouse and the lake's models, as the trip_serving_tables asset does."""
    from fare_assets.resources import LakeResource
    from fare_assets.show.refresh import published_models, refresh_serving_tables

    with psycopg.connect(warehouse_dsn) as conn:
        counts, failed = refresh_serving_tables(conn, *published_models(LakeResource(root=lake)),
                                                dt.datetime.now(dt.timezone.utc))
    assert failed == {}
    return counts


def test_a_warehouse_upgraded_before_its_answer_summaries_charts_from_the_option_rows(warehouse_dsn, load, client):
    load(history_rows(["310.00", "240.00"]))
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute("DROP TABLE answer_summaries")
    # The page's role cannot create the table: until a load does, the history is read from the option rows.
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["310.00", "240.00"]
    page = client.get("/fares", query_string={**trip_query(), "adults": "1"})
    assert page.status_code == 200 and "2 collections of this trip" in page_text(page)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        assert conn.execute("SELECT count(*) FROM answer_summaries").fetchone()[0] == 2
    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["310.00", "240.00"]


def test_trip_history_insight_advice_and_grid(warehouse_dsn, load, trained_models):
    # Today's 240.00 is the lowest of six collections and below the one collected nearby date.
    load(history_rows(["310.00", "330.00", "295.00", "350.00", "300.00", "240.00"])
         + history_rows(["280.00"], depart=DEPART + dt.timedelta(days=1), back=RETURN + dt.timedelta(days=1)))
    refresh_serving(warehouse_dsn, trained_models)
    client = models_client(warehouse_dsn)

    history = client.get("/api/history", query_string=trip_query()).get_json()
    assert [point["cheapest"] for point in history["points"]] == ["310.00", "330.00", "295.00", "350.00", "300.00",
                                                                  "240.00"]
    assert dt.datetime.fromisoformat(history["points"][-1]["collected_at"]) == NOW

    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    cells = {(cell["depart"], cell["return"]): cell for cell in grid["cells"]}
    # 7 departures x 7 returns, all of them after their departure (the trip is 7 nights long).
    assert len(cells) == 49 and grid["fare_model_available"] is True
    assert cells[(str(DEPART), str(RETURN))]["total"] == "240.00"
    nearby = cells[(str(DEPART + dt.timedelta(days=1)), str(RETURN + dt.timedelta(days=1)))]
    assert nearby["source"] == "collected" and nearby["total"] == "280.00"
    predicted = [cell for cell in cells.values() if cell["source"] == "predicted"]
    assert len(predicted) == 47 and all(Decimal(cell["total"]) > 0 for cell in predicted)

    verdict = client.get("/api/advice", query_string=trip_query()).get_json()
    assert verdict["insight"]["level"] == "low" and verdict["insight"]["percentile"] == 0
    assert verdict["insight"]["compared_with"] == {"own_collections": 5, "similar_trips": 1}
    advice = verdict["advice"]
    assert advice["action"] in ("buy", "wait") and 0.5 <= advice["confidence"] <= 1
    assert advice["currency"] == "USD" and advice["expected_saving"] is not None
    assert dt.datetime.fromisoformat(advice["based_on_collection"]) == NOW
    assert advice["up_to_date"] is True and advice["model_version"] == "v1"

    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "Low price" in text and "cheaper than 100% of 6 fares" in text
    # Every figure the page draws names its currency; the search form asks for the party shown, not any party.
    assert re.search(r"typical range [0-9.,]+–[0-9.,]+ USD\)", text)
    assert "Cheapest total in USD per departure" in text and "Cheapest fare over time (USD)" in text
    assert re.search(r'name="adults" value="1"', text) and re.search(r'<option value="COACH" selected>', text)
    assert ("Buy now" in text or "Wait" in text) and f"Chance this advice pays off: {advice['confidence']:.0%}" in text
    assert text.count('class="dot"') == 6 and "<polyline" in text
    assert text.count("cell collected") == 2 and text.count("cell predicted") == 47
    assert "advisor v1" in text and "Not yet updated" not in text


def test_advice_is_not_given_on_a_collection_a_provider_is_missing_from(warehouse_dsn, load, trained_models):
    # Duffel quoted every daily collection but the newest: its call failed, so the newest cheapest (QPX's 380.00)
    # may be dearer than the market. The advice stays that of yesterday's collection, every provider in it.
    totals = ["310.00", "330.00", "295.00", "350.00", "300.00", "380.00"]
    duffel = [fare_row(f"duffel-{index}", "260.00", search_id=f"duffel-{index}", provider="duffel",
                       collected_at=NOW - dt.timedelta(days=len(totals) - 1 - index))
              for index in range(len(totals) - 1)]
    load(history_rows(totals) + duffel)
    refresh_serving(warehouse_dsn, trained_models)
    client = models_client(warehouse_dsn)

    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    assert advice["action"] in ("buy", "wait")
    assert dt.datetime.fromisoformat(advice["based_on_collection"]) == NOW - dt.timedelta(days=1)
    assert advice["up_to_date"] is False
    text = page_text(client.get("/fares", query_string=trip_query()))
    assert "Not given on the newest collection, which misses a provider" in text
    assert "Not in this collection:" in text and "Duffel, which quoted from 260.00 USD" in text


@pytest.mark.parametrize("duffel_total, duffel_currency, headline", [
    ("260.00", "USD", "Not judged"),
    ("450.00", "USD", "High price"),
    # A quote in another currency cannot be compared: it may have been the cheaper.
    ("450.00", "EUR", "Not judged"),
])
def test_the_insight_is_withheld_when_a_provider_missing_from_the_newest_collection_may_have_undercut_it(
        client, load, duffel_total, duffel_currency, headline):
    # QPX and Duffel quoted the trip every hour; Duffel's call failed in the newest sweep, where QPX quoted 380.00.
    # A Duffel that was quoting 260.00 may have undercut it there; one quoting 450.00 cannot have lowered it.
    rows = [fare_row("qpx-now", "380.00", search_id="q-now")]
    for hours in range(1, 6):
        at = NOW - dt.timedelta(hours=hours)
        rows += [fare_row(f"qpx-{hours}", "300.00", search_id=f"q-{hours}", collected_at=at),
                 fare_row(f"duffel-{hours}", duffel_total, search_id=f"d-{hours}", collected_at=at, provider="duffel",
                          currency=duffel_currency)]
    load(rows)

    insight = client.get("/api/advice", query_string=trip_query()).get_json()["insight"]
    assert insight["compared_with"]["own_collections"] == 5
    assert insight["level"] == ("incomplete" if headline == "Not judged" else "high")
    text = page_text(client.get("/fares", query_string=trip_query()))
    assert headline in text
    assert ("Not judged: Duffel is missing from this collection" in text) == (headline == "Not judged")


def test_on_the_departure_day_the_insight_judges_the_cheapest_flight_still_to_leave(client, load):
    # A trip departing today at its origin, collected hourly at 250.00: its newest collection's 200.00 flight left an
    # hour ago, its 260.00 one leaves in an hour. Judged, the 200.00 would read as low though nobody can buy it.
    zone = airport_timezone("SFO")
    local_now = NOW.astimezone(zone).replace(tzinfo=None)
    today, back = local_now.date(), local_now.date() + dt.timedelta(days=7)
    departs_out = warehouse.COLUMN_NAMES.index("depart_out_local")

    def departing(row: tuple, at: dt.datetime) -> tuple:
        return (*row[:departs_out], at, *row[departs_out + 1:])

    rows = [fare_row(f"earlier-{hours}", "250.00", search_id=f"q-{hours}", collected_at=NOW - dt.timedelta(hours=hours),
                     depart=today, back=back) for hours in range(1, 6)]
    left = departing(fare_row("left", "200.00", search_id="q-now", depart=today, back=back),
                     local_now - dt.timedelta(hours=1))
    leaving = departing(fare_row("leaving", "260.00", search_id="q-now", depart=today, back=back),
                        local_now + dt.timedelta(hours=1))
    load([*rows, left, leaving])
    query = trip_query(depart=today, back=back)

    insight = client.get("/api/advice", query_string=query).get_json()["insight"]
    assert insight["level"] == "high" and insight["compared_with"]["own_collections"] == 5
    assert insight["text"].endswith("It judges the cheapest flight still to leave: cheaper ones have already left.")
    # A newer collection whose every flight has left is not judged.
    load([departing(fare_row("left-again", "210.00", search_id="q-newer", collected_at=NOW + dt.timedelta(seconds=1),
                             depart=today, back=back), local_now - dt.timedelta(hours=1))])
    insight = client.get("/api/advice", query_string=query).get_json()["insight"]
    assert insight["level"] == "departed" and insight["percentile"] is None
    assert "Not judged" in page_text(client.get("/fares", query_string=query))
    # More options than the page shows, all those shown gone: the cheapest still to leave is found among the rest.
    newest = NOW + dt.timedelta(seconds=2)
    gone = [departing(fare_row(f"gone-{number}", f"{200 + number}.00", search_id="q-newest", collected_at=newest,
                               depart=today, back=back), local_now - dt.timedelta(hours=1))
            for number in range(queries.OPTIONS_SHOWN)]
    load([*gone, departing(fare_row("last", "400.00", search_id="q-newest", collected_at=newest, depart=today,
                                    back=back), local_now + dt.timedelta(hours=2))])
    insight = client.get("/api/advice", query_string=query).get_json()["insight"]
    assert insight["level"] == "high" and "dearer than 100%" in insight["text"]


@pytest.mark.parametrize("current, reference, level, text", [
    # Fares repriced once a day, collected every 30 minutes: a fare equal to its history is typical, not low.
    ("300", ["300"] * 5, "typical", "typical for this trip: of 5 fares seen for it and for nearby dates, 100% the same "
                                    "(typical range 300.00–300.00 EUR)"),
    ("300", ["200", "300", "300", "300", "400"], "typical", "of 5 fares seen for it and for nearby dates, 20% cheaper, "
                                                            "60% the same, 20% dearer"),
    ("400", ["300"] * 4 + ["500"], "high", "high for this trip: dearer than 80% of 5 fares"),
    ("250", ["300"] * 5, "low", "low for this trip: cheaper than 100% of 5 fares"),
    ("350", ["300"] * 5, "high", "high for this trip: dearer than 100% of 5 fares"),
])
def test_the_price_insight_says_the_share_that_makes_its_level_and_calls_a_repeated_fare_typical(current, reference,
                                                                                                 level, text):
    insight = price_insight(Decimal(current), "EUR", [Decimal(price) for price in reference], [])
    assert insight["level"] == level and text in insight["text"]


def test_chart_ticks_never_repeat_a_label():
    from webapp.chart import price_chart

    def labels(prices: list[str]) -> list[str]:
        chart = price_chart([(NOW + index * dt.timedelta(hours=1), Decimal(price))
                             for index, price in enumerate(prices)])
        return [tick["label"] for tick in chart["ticks"]]

    # A fare moving by less than a unit read "100, 100, 101" on three gridlines.
    assert labels(["100.20", "100.50", "100.80"]) == ["100.20", "100.50", "100.80"]
    assert labels(["100", "250", "400"]) == ["100", "250", "400"]
    assert labels(["250.37", "250.37"]) == ["250"]


def test_every_grid_cell_showing_the_cheapest_whole_amount_is_marked(app):
    from webapp.fragments import grid_rows

    returns = [RETURN + dt.timedelta(days=offset) for offset in range(3)]
    cells = {(DEPART, back): {"total_amount": Decimal(total), "predicted_amount": None, "collected_at": NOW}
             for back, total in zip(returns, ("249.50", "250.40", "251.00"))}
    grid = {"by_pair": cells, "cheapest": Decimal("249.50"), "departs": [DEPART], "returns": returns}
    with app.test_request_context("/fares"):
        body = str(grid_rows(Trip("SFO", "JFK", DEPART, RETURN, 1, 0, "COACH"), grid))
    # 249.50 and 250.40 both read "250": both are the cheapest the traveller sees; 251.00 is not.
    marked = re.findall(r'<td class="cell collected[^"]*cheapest"[^>]*><a[^>]*>([0-9,]+)<', body)
    assert marked == ["250", "250"] and body.count("cell collected") == 3


def test_a_long_history_is_charted_at_the_plots_resolution_keeping_its_extremes_and_latest():
    from webapp.chart import DOT_SPACING, LEFT, RIGHT, WIDTH, price_chart

    # 63 days of half-hourly sweeps: a fare that wanders daily, one dip to 180.00 and a last collection mid-band.
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    prices = [Decimal(300 + (index * 37) % 90) for index in range(3024)]
    prices[1500], prices[-1] = Decimal("180.00"), Decimal("333.00")
    chart = price_chart([(start + index * dt.timedelta(minutes=30), price) for index, price in enumerate(prices)])
    line = [tuple(map(float, point.split(","))) for point in chart["line"].split()]
    plot_width = WIDTH - LEFT - RIGHT
    assert chart["collections"] == 3024
    assert len(line) <= 2 * (plot_width + 1) + 1 and len(chart["dots"]) <= 2 * (plot_width // DOT_SPACING + 1) + 1
    # The line reaches the lowest and highest fares and ends on the latest, as do the dots.
    assert max(y for _, y in line) == chart["lowest"]["y"] and min(y for _, y in line) == chart["highest"]["y"]
    assert chart["lowest"]["price"] == 180.0 and chart["lowest"] in chart["dots"] and chart["highest"] in chart["dots"]
    assert line[-1] == (chart["latest"]["x"], chart["latest"]["y"]) and chart["dots"][-1] is chart["latest"]
    assert chart["latest"]["price"] == 333.0
    # A history that fits keeps every collection.
    short = price_chart([(start + index * dt.timedelta(days=1), price) for index, price in enumerate(prices[:40])])
    assert len(short["dots"]) == len(short["line"].split()) == short["collections"] == 40


def test_without_serving_rows_fares_show_and_say_advice_is_unavailable(warehouse_dsn, load):
    # No refresh has run (no model published yet, or a trip the pipeline has not advised on).
    load(history_rows(["310.00", "240.00"]))
    client = models_client(warehouse_dsn)

    verdict = client.get("/api/advice", query_string=trip_query()).get_json()
    assert verdict["advice"]["action"] == "unavailable" and "shown without advice" in verdict["advice"]["reason"]
    assert verdict["insight"]["level"] == "unknown"
    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    assert grid["fare_model_available"] is False
    assert sorted({cell["source"] for cell in grid["cells"]}) == ["collected", "unknown"]

    response = client.get("/fares", query_string=trip_query())
    text = page_text(response)
    assert response.status_code == 200 and "240.00 USD" in text
    assert "No advice right now" in text and "fares are shown without advice" in text
    assert "The fare model is not available" in text and "advice-basis" not in text


def test_grid_starts_today_and_unknown_trips_get_empty_answers(client, load):
    # Today as the page sees it now at the origin (SFO), not when the module was imported: a run may cross midnight.
    today = today_at("SFO")
    soon = today + dt.timedelta(days=1)
    grid = client.get("/api/date-grid", query_string=trip_query(depart=soon, back=soon + dt.timedelta(days=2))).get_json()
    departs = sorted({cell["depart"] for cell in grid["cells"]})
    assert departs[0] == str(today) and departs[-1] == str(soon + dt.timedelta(days=3))
    assert all(cell["return"] >= cell["depart"] for cell in grid["cells"])
    query = trip_query(origin="BOS", destination="LAX")
    assert client.get("/api/history", query_string=query).get_json()["points"] == []
    assert client.get("/api/advice", query_string=query).get_json()["advice"]["action"] == "no_fares"


@pytest.mark.parametrize("written, amount, currency", [
    ("1,250.00 USD", "1250.00", "USD"), ("350,50", "350.50", None), ("€ 1.250,00", "1250.00", "EUR"),
    ("1.250,00 €", "1250.00", "EUR"), ("$1,250", "1250", None), ("EUR 99", "99", "EUR"), ("1.250", "1250", None),
    ("1 250", "1250", None), ("1,2,3", None, None), ("0,001", None, None), ("350 dollars", None, None),
    ("1e5", None, None), ("USD 350 EUR", None, None),
    # Longer than any amount: refused before the pattern runs (its backtracking on "$" and 3,000 spaces took 84 s).
    ("$" + " " * 3000 + "x", None, None), ("1" + " " * 40, None, None),
])
def test_a_threshold_is_read_as_the_page_writes_amounts_or_a_traveller_might(written, amount, currency):
    assert written_amount(written) == ((Decimal(amount), currency) if amount else (None, None))


@pytest.mark.parametrize("headers, status", [
    ({"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Origin": "https://elsewhere.example"}, 403),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, 303),
    ({"Origin": "http://localhost"}, 303),
    # Typed in the address bar, or no browser at all (curl, a script).
    ({"Sec-Fetch-Site": "none"}, 303),
    ({}, 303),
])
def test_an_alert_posted_from_another_site_is_refused_and_saves_nothing(client, warehouse_dsn, headers, status):
    response = client.post("/alerts", data={**trip_query(), "threshold": "199.5", "currency": "USD"},
                           headers=headers)
    assert response.status_code == status
    with psycopg.connect(warehouse_dsn) as conn:
        saved = conn.execute("SELECT count(*) FROM price_alerts").fetchone()[0]
    assert saved == (0 if status == 403 else 1)
    if status == 403:
        assert "this site's own pages only" in page_text(response)
        json_post = client.post("/api/alerts", json={**trip_query(), "threshold": "250"}, headers=headers)
        assert json_post.status_code == 403 and "own pages only" in json_post.get_json()["error"]


def test_a_body_larger_than_any_alert_is_refused_unread(client):
    response = client.post("/api/alerts", data=b"{" + b" " * 20_000 + b"}", content_type="application/json")
    assert response.status_code == 413 and "error" in response.get_json()


def test_price_alerts_are_saved_by_the_web_role_only_as_inserts(app, client, load, warehouse_dsn):
    response = client.post("/api/alerts", json={**trip_query(), "threshold": "250", "currency": "usd"})
    body = response.get_json()
    assert response.status_code == 201 and body["threshold"] == "250.00" and body["currency"] == "USD"

    response = client.post("/api/alerts", json={**trip_query(depart="2020-01-01"), "threshold": "-3"})
    problems = response.get_json()["fields"]
    assert response.status_code == 400 and "is in the past" in problems["depart"]
    assert "from 0.01" in problems["threshold"]
    # A threshold that rounds to nothing at the cent is refused the same way, not stored as 0.00 (a database error).
    for tiny in ("0.004", "1e-05", "NaN", "-Infinity"):
        response = client.post("/api/alerts", json={**trip_query(), "threshold": tiny})
        assert response.status_code == 400 and "from 0.01" in response.get_json()["fields"]["threshold"], tiny
    assert client.post("/api/alerts", data="not json").status_code == 400
    # Written as the page writes amounts, with its currency beside it; a currency that contradicts the field is refused.
    body = client.post("/api/alerts", json={**trip_query(), "threshold": "1,250.00 usd"}).get_json()
    assert (body["threshold"], body["currency"]) == ("1250.00", "USD")
    response = client.post("/api/alerts", json={**trip_query(), "threshold": "350 EUR", "currency": "USD"})
    assert response.status_code == 400 and "written in EUR" in response.get_json()["fields"]["currency"]

    response = client.post("/alerts", data={**trip_query(), "threshold": "199.5", "currency": "USD"})
    assert response.status_code == 303 and "alert=created" in response.headers["Location"]
    response = client.post("/alerts", data={**trip_query(), "threshold": "cheap", "currency": "dollars"})
    assert response.status_code == 400 and "threshold must be an amount" in page_text(response)
    # Each refused field points a screen reader at its problem.
    text = response.get_data(as_text=True)
    for field in ("threshold", "currency"):
        assert re.search(rf'name="{field}"[^>]*aria-invalid="true" aria-describedby="alert-{field}-problem"', text)
        assert f'<li id="alert-{field}-problem">{field} must be' in text
    # That page is shown at /alerts: its date grid's links still lead to the trip page, not to /alerts.
    load(history_rows(["250.00"]) + history_rows(["260.00"], depart=DEPART + dt.timedelta(days=1),
                                                 back=RETURN + dt.timedelta(days=1)))
    response = client.post("/alerts", data={**trip_query(), "threshold": "cheap"})
    assert response.status_code == 400
    grid_links = re.findall(r'<td class="cell[^"]*"[^>]*><a href="([^"]+)"', response.get_data(as_text=True))
    assert len(grid_links) > 1 and all(link.startswith("/fares?origin=SFO&amp;destination=JFK&amp;adults=1")
                                       for link in grid_links)
    assert client.get(html.unescape(grid_links[0])).status_code == 200

    with psycopg.connect(warehouse_dsn) as conn:
        rows = conn.execute("SELECT origin, destination, depart_date, threshold, currency, notified_at"
                            " FROM price_alerts ORDER BY id").fetchall()
    assert rows == [("SFO", "JFK", DEPART, Decimal("250.000"), "USD", None),
                    ("SFO", "JFK", DEPART, Decimal("1250.000"), "USD", None),
                    ("SFO", "JFK", DEPART, Decimal("199.500"), "USD", None)]
    with app.app_context():
        conn = get_db()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE price_alerts SET threshold = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO national_fares (option_id) VALUES ('x')")
        # Nor an alert already spent.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO price_alerts (origin, destination, depart_date, return_date, threshold,"
                         " notified_at) VALUES ('SFO', 'JFK', %s, %s, 1, now())", (DEPART, RETURN))


def test_airport_suggestions_by_code_and_city(client):
    codes = [airport["code"] for airport in client.get("/api/airports?q=san fran").get_json()["airports"]]
    assert codes[0] == "SFO"
    assert client.get("/api/airports?q=JF").get_json()["airports"][0]["code"] == "JFK"
    assert client.get("/api/airports?q=").get_json() == {"airports": []}
    assert len(client.get("/api/airports?q=a").get_json()["airports"]) == 10
    # A city's airports named after it (or "international") before other fields, and those before fields no airline
    # flies to, each group alphabetical: RAF Northolt after Stansted and London, Ontario; the seaplane base last.
    def suggested(text: str) -> list[str]:
        answer = client.get("/api/airports", query_string={"q": text}).get_json()
        return [airport["code"] for airport in answer["airports"]]

    assert suggested("london")[:9] == ["BQH", "LCY", "LGW", "LHR", "LOZ", "LTN", "STN", "YXU", "NHT"]
    assert suggested("new york") == ["JFK", "SWF", "ISP", "LGA", "NYS"]
    assert suggested("par")[0] == "CDG" and "ORY" in suggested("par")


def test_openapi_document_describes_every_api_route(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    api_rules = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")}
    assert api_rules == {path for path in document["paths"] if path.startswith("/api/")}
    assert {"/api/fares", "/api/history", "/api/date-grid", "/api/advice", "/api/routes"} <= api_rules
