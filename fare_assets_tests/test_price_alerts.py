"""Price alerts end to end: saved through the web app, notified once by the Dagster sensor via a real webhook."""
import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from dagster import SkipReason, build_sensor_context

from fare_assets.price_alerts import price_alert_sensor
from fare_assets.resources import WarehouseResource
from fare_assets.storing import warehouse
from fare_assets_tests.test_collector import ALERT_ENV, SmtpSink, serving, url_of, webhook
from fare_assets_tests.test_webapp import (DEPART, EARLIER, NOW, RETURN, empty_answer, fare_row, history_rows, readonly,
                                           trip_query)
from webapp import create_app


@pytest.fixture
def load_quietly(warehouse_dsn, monkeypatch):
    """Loads fare rows into the warehouse, with every alert channel off until a test configures one."""
    for name in ALERT_ENV:
        monkeypatch.delenv(f"FARES_ALERT_{name}", raising=False)

    def load(rows: list[tuple]) -> None:
        with psycopg.connect(warehouse_dsn) as conn:
            warehouse.ensure_schema(conn)
            warehouse.load_fares(conn, rows)
    return load


@pytest.fixture
def alert_db(warehouse_dsn, monkeypatch, load_quietly):
    """A warehouse whose SFO-JFK trip's cheapest fare is now 240.00 USD, and a client to save alerts."""
    monkeypatch.setenv("FARES_WEB_PUBLIC_URL", "https://fares.example")
    load_quietly(history_rows(["310.00", "240.00"]))
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    # The third names no currency and takes the trip's (USD): 240.00 is not below 230.00.
    for threshold, currency in (("250", "USD"), ("200", "USD"), ("230", None)):
        assert client.post("/api/alerts", json={**trip_query(), "threshold": threshold,
                                                "currency": currency}).status_code == 201
    # An alert for a trip nobody collected is never due; the answer says nothing collects it yet.
    uncollected = client.post("/api/alerts", json={**trip_query(origin="BOS", destination="LAX"), "threshold": "9999"})
    assert uncollected.status_code == 201 and uncollected.get_json()["collected"] is False
    return warehouse_dsn


def tick(dsn: str):
    # Closed after the tick, so the context's ephemeral Dagster instance is not left to the garbage collector.
    with build_sensor_context(resources={"warehouse_db": WarehouseResource(dsn=dsn)}) as context:
        return price_alert_sensor(context)


def notified(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT threshold, currency, notified_total FROM price_alerts"
                            " WHERE notified_at IS NOT NULL ORDER BY id").fetchall()


def test_alert_below_threshold_is_sent_once_by_webhook(alert_db, monkeypatch):
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        result = tick(alert_db)
        assert isinstance(result, SkipReason) and "sent 1 price alert" in result.skip_message
        assert len(receiver.payloads) == 1
        payload = receiver.payloads[0]
        assert payload["kind"] == "price_below_threshold" and payload["total"] == "240.00"
        assert payload["threshold"] == "250.00" and payload["currency"] == "USD"
        # Saved without a party, the alert watches the one the trip's page shows: a single adult in economy.
        assert payload["url"] == (f"https://fares.example/fares?origin=SFO&destination=JFK&depart={DEPART}"
                                  f"&return={RETURN}&adults=1&children=0&cabin=COACH")
        assert "for 1 adult in economy is now 240.00 USD, below your alert at 250.00 USD" in payload["text"]
        assert notified(alert_db) == [(Decimal("250.000"), "USD", Decimal("240.000"))]

        assert "no price alert is below" in tick(alert_db).skip_message
        assert len(receiver.payloads) == 1


def test_failed_webhook_retries_next_tick_and_no_channel_sends_nothing(alert_db, monkeypatch):
    assert "no alert channel configured" in tick(alert_db).skip_message
    assert notified(alert_db) == []
    with webhook(status=500) as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        with pytest.raises(RuntimeError, match="HTTP 500"):
            tick(alert_db)
        assert notified(alert_db) == [] and len(receiver.payloads) == 1


def test_a_tick_while_another_evaluation_is_sending_sends_nothing(alert_db, monkeypatch):
    # An evaluation that outlived its timeout still holds the sending lock: this tick would send its alerts again.
    with webhook() as receiver, psycopg.connect(alert_db, autocommit=True) as sending:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        sending.execute("SELECT pg_advisory_lock(hashtext('fares price alerts'))")
        assert "still sending" in tick(alert_db).skip_message and receiver.payloads == []
        sending.execute("SELECT pg_advisory_unlock(hashtext('fares price alerts'))")
        assert "sent 1 price alert" in tick(alert_db).skip_message


def test_an_alert_without_a_party_watches_the_one_its_page_shows(warehouse_dsn, monkeypatch, load_quietly):
    # The trip's newest fares are a pair's; an hour later a single adult's cheaper total is collected.
    load_quietly([fare_row("pair", "480.00", search_id="p1", collected_at=EARLIER - dt.timedelta(minutes=30),
                           adults=2)])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    response = client.post("/api/alerts", json={**trip_query(), "threshold": "300"})
    assert response.status_code == 201 and response.get_json()["collected"] is True
    assert {key: response.get_json()["trip"][key] for key in ("adults", "children", "cabin")} == {
        "adults": 2, "children": 0, "cabin": "COACH"}
    load_quietly([fare_row("single", "240.00", search_id="s1", collected_at=EARLIER)])
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "no price alert is below" in tick(warehouse_dsn).skip_message
        load_quietly([fare_row("pair-cheaper", "290.00", search_id="p2", adults=2)])
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    [payload] = receiver.payloads
    assert (payload["adults"], payload["total"]) == (2, "290.00") and "for 2 adults in economy" in payload["text"]


def test_the_page_says_an_alert_on_a_trip_nobody_collected_cannot_be_met_yet(warehouse_dsn, load_quietly):
    load_quietly(history_rows(["310.00"]))
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    notices = {}
    for origin in ("SFO", "BOS"):
        saved = client.post("/alerts", data={**trip_query(origin=origin), "threshold": "250"})
        assert saved.status_code == 303
        notices[origin] = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Alert saved" in notices["SFO"] and "No fare of this trip has been collected yet" not in notices["SFO"]
    assert "No fare of this trip has been collected yet" in notices["BOS"]


def test_an_alert_saved_before_its_trip_was_collected_watches_the_party_first_collected(warehouse_dsn, monkeypatch,
                                                                                        load_quietly):
    load_quietly([])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    saved = client.post("/api/alerts", json={**trip_query(), "threshold": "300"}).get_json()
    assert (saved["collected"], saved["trip"]["adults"], saved["currency"]) == (False, None, None)
    load_quietly([fare_row("pair", "480.00", search_id="p1", collected_at=EARLIER, adults=2, currency="EUR")])
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "no price alert is below" in tick(warehouse_dsn).skip_message
        # A single adult's total, collected since, is not the pair's the alert now watches.
        load_quietly([fare_row("single", "240.00", search_id="s1", adults=1, currency="EUR")])
        assert "no price alert is below" in tick(warehouse_dsn).skip_message and receiver.payloads == []
        # The trip is quoted in EUR: the alert, which named no currency, watches EUR fares (a USD default never met).
        load_quietly([fare_row("pair-cheaper", "280.00", search_id="p2", adults=2, currency="EUR")])
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    [payload] = receiver.payloads
    assert (payload["adults"], payload["total"], payload["currency"]) == (2, "280.00", "EUR")
    with psycopg.connect(warehouse_dsn) as conn:
        assert conn.execute("SELECT adults, children, cabin, currency FROM price_alerts").fetchall() == [
            (2, 0, "COACH", "EUR")]


def test_an_alert_sent_twice_is_saved_once(alert_db):
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(alert_db)}).test_client()
    first, again = (client.post("/api/alerts", json={**trip_query(), "threshold": "250.00", "currency": "USD"})
                    for _ in range(2))
    # The fixture saved it first: both answers name that alert, as already open.
    assert first.status_code == again.status_code == 200 and first.get_json()["id"] == again.get_json()["id"]
    # Another threshold is another alert.
    other = client.post("/api/alerts", json={**trip_query(), "threshold": "251"})
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    with psycopg.connect(alert_db) as conn:
        assert conn.execute("SELECT count(*) FROM price_alerts WHERE threshold = 250").fetchone() == (1,)


@pytest.mark.parametrize("failing_budget, tried", [(30.0, 3), (0.0, 1)])
def test_a_channel_is_tried_for_every_due_alert_until_its_failures_have_cost_the_ticks_budget(
        alert_db, monkeypatch, failing_budget, tried):
    import webapp.alerts

    # Three alerts are due and the webhook refuses each at once: that costs nothing, so each is tried (a refused
    # message holds back no other). Once failures have cost the budget, the rest wait for the next tick.
    monkeypatch.setattr(webapp.alerts, "FAILING_SECONDS_PER_CHANNEL_AND_TICK", failing_budget)
    with psycopg.connect(alert_db) as conn:
        conn.execute("UPDATE price_alerts SET threshold = 245 WHERE threshold <> 250 AND origin = 'SFO'")
    with webhook(status=500) as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        with pytest.raises(RuntimeError, match="HTTP 500") as failure:
            tick(alert_db)
        assert len(receiver.payloads) == tried
        assert str(failure.value).count("not tried: failing for") == 3 - tried
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "sent 3 price alert" in tick(alert_db).skip_message


def test_an_alert_in_a_currency_watches_the_party_quoted_in_it(warehouse_dsn, monkeypatch, load_quietly):
    # One sweep quoted a single adult in euros (the page's first) and a pair in dollars.
    load_quietly([fare_row("single-eur", "200.00", search_id="d1", provider="duffel", currency="EUR"),
                  fare_row("pair-usd", "480.00", search_id="q1", adults=2)])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    response = client.post("/api/alerts", json={**trip_query(), "threshold": "500", "currency": "USD"})
    assert response.status_code == 201 and response.get_json()["trip"]["adults"] == 2
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    assert [(payload["adults"], payload["total"]) for payload in receiver.payloads] == [(2, "480.00")]


def test_a_retry_sends_only_to_the_channel_that_failed(alert_db, monkeypatch):
    # The webhook takes the alert while the mail server is down; the next tick, with mail back, mails it only.
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        monkeypatch.setenv("FARES_ALERT_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("FARES_ALERT_SMTP_PORT", "9")
        monkeypatch.setenv("FARES_ALERT_SMTP_FROM", "fares@example.org")
        monkeypatch.setenv("FARES_ALERT_SMTP_TO", "traveller@example.org")
        with pytest.raises(RuntimeError, match="email"):
            tick(alert_db)
        assert notified(alert_db) == [] and len(receiver.payloads) == 1
        with serving(SmtpSink()) as sink:
            monkeypatch.setenv("FARES_ALERT_SMTP_PORT", str(sink.server_address[1]))
            assert "sent 1 price alert" in tick(alert_db).skip_message
        assert len(receiver.payloads) == 1 and len(sink.messages) == 1
        assert notified(alert_db) == [(Decimal("250.000"), "USD", Decimal("240.000"))]


def test_an_alert_compares_fares_in_its_own_currency(warehouse_dsn, monkeypatch, load_quietly):
    # One sweep quoted the trip by two providers in two currencies: 230 EUR and 245 USD. A 250 USD alert is due on the
    # USD fare, a 235 USD alert is not (230 is in euros); the message says the collection's time in UTC whatever the
    # database session's time zone.
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")
    load_quietly([fare_row("qpx-usd", "245.00", search_id="a1"),
                  fare_row("duffel-eur", "230.00", search_id="d1", provider="duffel", currency="EUR")])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    for threshold in ("250", "235"):
        assert client.post("/api/alerts", json={**trip_query(), "threshold": threshold,
                                                "currency": "USD"}).status_code == 201
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    [payload] = receiver.payloads
    assert (payload["total"], payload["currency"], payload["threshold"]) == ("245.00", "USD", "250.00")
    assert f"collected {NOW:%Y-%m-%d %H:%M} UTC" in payload["text"]


def test_an_alert_watches_its_cabin_only(warehouse_dsn, monkeypatch, load_quietly):
    # Economy fell to 240.00; business, collected since, costs 1,900.00.
    load_quietly(history_rows(["310.00", "240.00"], last=EARLIER)
                 + history_rows(["1900.00"], prefix="business", cabin="BUSINESS"))
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    for cabin in ("COACH", "BUSINESS"):
        response = client.post("/api/alerts", json={**trip_query(), "cabin": cabin, "threshold": "250"})
        assert response.status_code == 201 and response.get_json()["trip"]["cabin"] == cabin
    # Saved from the page, which shows business (the newest collection): the form carries that cabin.
    page = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert '<input type="hidden" name="cabin" value="BUSINESS">' in page
    assert client.post("/alerts", data={**trip_query(), "cabin": "BUSINESS", "threshold": "2000"}).status_code == 303

    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "sent 2 price alert" in tick(warehouse_dsn).skip_message
        sent = sorted((payload["cabin"], payload["total"], payload["threshold"]) for payload in receiver.payloads)
        assert sent == [("BUSINESS", "1900.00", "2000.00"), ("COACH", "240.00", "250.00")]
        coach = next(payload for payload in receiver.payloads if payload["cabin"] == "COACH")
        assert "in economy" in coach["text"] and coach["url"].endswith("&cabin=COACH")
    with psycopg.connect(warehouse_dsn) as conn:
        unsent = conn.execute("SELECT cabin, threshold FROM price_alerts WHERE notified_at IS NULL").fetchall()
    assert unsent == [("BUSINESS", Decimal("250.000"))]


def test_an_older_warehouse_gains_the_alert_cabin_column(warehouse_dsn):
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        conn.execute("ALTER TABLE price_alerts DROP COLUMN cabin")
        conn.execute("INSERT INTO price_alerts (origin, destination, depart_date, return_date, threshold, currency)"
                     " VALUES ('SFO', 'JFK', %s, %s, 250, 'USD')", (DEPART, RETURN))
        conn.commit()
        # The page cannot change the schema: until a load or the sensor does, saving an alert says try later.
        response = client.post("/api/alerts", json={**trip_query(), "threshold": "300"})
        assert response.status_code == 503 and "try again" in response.get_json()["error"]
        warehouse.ensure_schema(conn)
        conn.commit()
        assert conn.execute("SELECT origin, cabin FROM price_alerts").fetchall() == [("SFO", None)]
    assert client.post("/api/alerts", json={**trip_query(), "threshold": "300"}).status_code == 201


def test_an_older_warehouse_lets_an_alert_wait_for_its_trips_currency(warehouse_dsn):
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        conn.execute("ALTER TABLE price_alerts ALTER COLUMN currency SET NOT NULL")
        conn.commit()
        assert not warehouse.schema_is_current(conn)
        # A trip nobody quoted yet: its alert has no currency to take, which the released column could not hold.
        response = client.post("/api/alerts", json={**trip_query(origin="BOS"), "threshold": "300"})
        assert response.status_code == 503 and "try again" in response.get_json()["error"]
        warehouse.ensure_schema(conn)
        conn.commit()
        assert warehouse.schema_is_current(conn)
    response = client.post("/api/alerts", json={**trip_query(origin="BOS"), "threshold": "300"})
    assert response.status_code == 201 and response.get_json()["currency"] is None


def test_an_alert_stays_open_through_its_departure_day_at_the_origin(alert_db):
    from webapp.alerts import open_alerts

    # 05:00 UTC on the departure day is 21:00 (22:00 in summer) the evening before in San Francisco and midnight
    # (01:00) in Boston; at 09:00 UTC it is the departure day in both.
    first_morning = dt.datetime.combine(DEPART, dt.time(5), tzinfo=dt.timezone.utc)
    with psycopg.connect(alert_db) as conn:
        conn.execute("UPDATE price_alerts SET depart_date = %s", (DEPART - dt.timedelta(days=1),))
        assert [alert.trip.origin for alert in open_alerts(conn, first_morning)] == ["SFO"] * 3
        assert open_alerts(conn, first_morning + dt.timedelta(hours=4)) == []


def test_an_alert_takes_its_trips_currency_and_refuses_one_it_is_never_quoted_in(warehouse_dsn, load_quietly):
    load_quietly([fare_row("duffel-eur", "230.00", search_id="d1", provider="duffel", currency="EUR")])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    response = client.post("/api/alerts", json={**trip_query(), "threshold": "250"})
    assert response.status_code == 201 and response.get_json()["currency"] == "EUR"
    for currency in ("USD", "uss"):
        response = client.post("/api/alerts", json={**trip_query(), "threshold": "250", "currency": currency})
        assert response.status_code == 400
        assert response.get_json()["fields"] == {"currency": f"this trip's fares are quoted in EUR, never in "
                                                             f"{currency.upper()}: an alert in {currency.upper()} "
                                                             "would never be met"}
    # The page's form says so beside the form, keeping the trip.
    response = client.post("/alerts", data={**trip_query(), "threshold": "250", "currency": "USD"})
    assert response.status_code == 400 and "quoted in EUR, never in USD" in response.get_data(as_text=True)


def test_an_alert_is_not_spent_on_a_fare_more_than_a_day_old(warehouse_dsn, monkeypatch, load_quietly):
    # The provider has failed for two days: its last fare, 240.00, may be gone.
    load_quietly(history_rows(["310.00", "240.00"], last=NOW - dt.timedelta(days=2)))
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    assert client.post("/api/alerts", json={**trip_query(), "threshold": "250"}).status_code == 201
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "no price alert is below" in tick(warehouse_dsn).skip_message
        # A fresh collection at 245.00 meets it.
        load_quietly([fare_row("fresh", "245.00", search_id="fresh")])
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    assert [payload["total"] for payload in receiver.payloads] == ["245.00"]


def test_an_alert_is_not_met_by_a_fare_no_longer_on_sale(warehouse_dsn, monkeypatch, load_quietly):
    # 240.00 EUR was quoted an hour ago; the newest sweep found nothing on sale for the trip.
    load_quietly([fare_row("gone", "240.00", search_id="d1", provider="duffel", currency="EUR", collected_at=EARLIER)])
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_warehouse(conn, [], {}, empty_answers=[
            empty_answer(fare_row("unused", "1", search_id="d2", provider="duffel"))])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    saved = client.post("/api/alerts", json={**trip_query(), "threshold": "250"})
    # The trip is collected, and its currency is that of its last quote, not the default.
    assert saved.status_code == 201 and saved.get_json()["collected"] is True and saved.get_json()["currency"] == "EUR"
    with webhook() as receiver:
        monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
        assert "no price alert is below" in tick(warehouse_dsn).skip_message
        load_quietly([fare_row("back", "245.00", search_id="d3", provider="duffel", currency="EUR",
                               collected_at=NOW + dt.timedelta(minutes=30))])
        assert "sent 1 price alert" in tick(warehouse_dsn).skip_message
    assert [payload["total"] for payload in receiver.payloads] == ["245.00"]


def test_on_the_departure_day_an_alert_is_met_only_by_a_flight_still_to_leave(warehouse_dsn, monkeypatch,
                                                                               load_quietly):
    from psycopg.rows import dict_row

    from fare_assets.streaming.notify import alert_settings_from_env
    from webapp.alerts import cheapest_not_departed, notify_due_alerts, open_alerts

    # Noon in San Francisco on the departure day: the 08:05 flight at 200.00 has left, the 17:30 one at 260.00 not.
    noon = dt.datetime.combine(DEPART, dt.time(20), tzinfo=dt.timezone.utc)
    departs_out = warehouse.COLUMN_NAMES.index("depart_out_local")
    early = fare_row("early", "200.00", search_id="q1", collected_at=noon - dt.timedelta(minutes=30))
    late = list(fare_row("late", "260.00", search_id="q1", collected_at=noon - dt.timedelta(minutes=30)))
    late[departs_out] = dt.datetime.combine(DEPART, dt.time(17, 30))
    load_quietly([early, tuple(late)])
    client = create_app({"TESTING": True, "DATABASE_DSN": readonly(warehouse_dsn)}).test_client()
    assert client.post("/api/alerts", json={**trip_query(), "threshold": "300"}).status_code == 201
    with psycopg.connect(warehouse_dsn, row_factory=dict_row, autocommit=True) as conn:
        [alert] = open_alerts(conn, noon)
        cheapest_by_time = {hour: cheapest_not_departed(conn, alert, noon + dt.timedelta(hours=hour))
                            for hour in (-20, 0, 6)}
        assert {hour: cheapest and cheapest["total_amount"] for hour, cheapest in cheapest_by_time.items()} == {
            -20: Decimal("200.000"), 0: Decimal("260.000"), 6: None}
        with webhook() as receiver:
            monkeypatch.setenv("FARES_ALERT_WEBHOOK_URL", url_of(receiver))
            outcome = notify_due_alerts(conn, alert_settings_from_env(), "https://fares.example", noon)
    assert outcome == {"sent": [alert.alert_id], "failed": []}
    assert [payload["total"] for payload in receiver.payloads] == ["260.00"]
