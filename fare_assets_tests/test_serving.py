"""The show stage's serving tables: advice and predicted grid cells per watched trip, on a real PostgreSQL."""
import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from dagster import (AssetMaterialization, DagsterInstance, RunRequest, SkipReason, build_multi_asset_sensor_context,
                     materialize)

from fare_assets.definitions import build_defs
from fare_assets.resources import FareSourceResource, LakeResource, WarehouseResource, local_resources
from fare_assets.show.assets import SERVING_INPUTS, serving_tables_sensor, trip_serving_tables
from fare_assets.show.serving import grid_cells, last_call_days_ahead, latest_collections
from fare_assets.storing import warehouse
from fare_assets.storing.postgres import READONLY_ROLE
from webapp import queries
from fare_assets.local_dates import today_at
from fare_assets_tests.test_warehouse import route_stamps
from fare_assets_tests.test_webapp import (DEPART, NOW, RETURN, fare_row, history_rows, models_client,  # noqa: F401
                                           refresh_serving, trained_models, trip_query)

NEARBY = (DEPART + dt.timedelta(days=1), RETURN + dt.timedelta(days=1))
# The asked trip's cheapest fare at each of its six collections, the last at NOW.
TOTALS = ["310.00", "330.00", "295.00", "350.00", "300.00", "240.00"]


@pytest.fixture
def loaded(warehouse_dsn):
    """Two watched SFO-JFK trips a day apart: six collections of the asked one, one of its neighbour."""
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, history_rows(TOTALS) + history_rows(["280.00"], depart=NEARBY[0], back=NEARBY[1]))
    return warehouse_dsn


def watching(tmp_path: Path, from_days: int, nights: int = 7, origin: str = "SFO") -> FareSourceResource:
    """The fare source of a watchlist collecting `origin`-JFK round trips of `nights` until `from_days` before
    departure."""
    path = tmp_path / f"watchlist-{origin}-{from_days}-{nights}.yaml"
    path.write_text("trips:\n  - {origin: %s, destination: JFK, nights: [%d], depart_days_ahead: {from: %d, to: 60}}\n"
                    % (origin, nights, from_days))
    return FareSourceResource(base_url="http://127.0.0.1:9", watchlist_path=str(path))


def republished_advisor(trained_models: str, tmp_path: Path, **changes) -> Path:
    """A copy of the trained models' lake whose advisor is republished as v2 with `changes` to its attributes."""
    from fare_assets.synthesizing.advisor import BuyWaitAdvisor
    from fare_assets.synthesizing.model_files import save_version

    lake = tmp_path / "republished-lake"
    shutil.copytree(Path(trained_models) / "models", lake / "models")
    advisor = BuyWaitAdvisor.load(lake / "models" / "buy_wait_advisor" / "v1" / "model.pkl")
    for name, value in changes.items():
        setattr(advisor, name, value)
    save_version(LakeResource(root=str(lake)), "buy_wait_advisor", "v2", advisor, {})
    return lake


def serving_rows(dsn: str, table: str) -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY depart_date, return_date").fetchall()


def test_refresh_writes_one_advice_per_trip_and_the_uncollected_grid_cells(loaded, trained_models):
    counts = refresh_serving(loaded, trained_models)

    advice = serving_rows(loaded, "trip_advice")
    assert [(row["depart_date"], row["return_date"]) for row in advice] == [(DEPART, RETURN), NEARBY]
    asked, neighbour = advice
    assert asked["collected_at"] == NOW and asked["action"] in ("buy", "wait") and asked["model_version"] == "v1"
    assert 0.5 <= asked["confidence"] <= 1 and asked["currency"] == "USD"
    # One collection is below the advisor's three-collection minimum.
    assert neighbour["action"] == "not_enough_data" and neighbour["confidence"] is None

    predicted = serving_rows(loaded, "predicted_fares")
    cells = {(row["depart_date"], row["return_date"]) for row in predicted}
    # The union of both trips' 7 x 7 grids (a day apart both ways, so 6 x 6 shared: 49 + 49 - 36 = 62 pairs,
    # all returning after departure), less the two collected pairs.
    assert len(predicted) == 60 and (DEPART, RETURN) not in cells and NEARBY not in cells
    assert all(row["predicted_amount"] > 0 and row["model_version"] == "v1" for row in predicted)
    # Each cell is predicted as quoted at the newest collection among the trips whose grid holds it.
    assert {row["predicted_for"] for row in predicted} == {NOW}
    assert counts == {"trip_advice": {"rows": 2, "changed": 2, "deleted": 0},
                      "predicted_fares": {"rows": 60, "changed": 60, "deleted": 0},
                      "trip_pages": {"rows": 2, "changed": 2, "deleted": 0}}


def test_a_rerun_on_the_same_data_changes_nothing(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    first = serving_rows(loaded, "trip_advice")
    counts = refresh_serving(loaded, trained_models)
    assert counts["trip_advice"] == {"rows": 2, "changed": 0, "deleted": 0}
    assert counts["predicted_fares"] == {"rows": 60, "changed": 0, "deleted": 0}
    assert counts["trip_pages"] == {"rows": 2, "changed": 0, "deleted": 0}
    # Unchanged rows keep the time their content was first computed.
    assert serving_rows(loaded, "trip_advice") == first


def test_departed_trips_leave_and_a_new_collection_is_readvised(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    with psycopg.connect(loaded, autocommit=True) as conn:
        # The nearby trip's searches, structured again, yield nothing: its fares leave the warehouse.
        searches = conn.execute("SELECT DISTINCT search_id, collected_at FROM national_fares WHERE depart_date = %s",
                                (NEARBY[0],)).fetchall()
        warehouse.load_warehouse(conn, [], {}, searches=searches)
        later = NOW + dt.timedelta(hours=6)
        warehouse.load_fares(conn, history_rows(["230.00"], prefix="later", last=later))
    counts = refresh_serving(loaded, trained_models)
    advice = serving_rows(loaded, "trip_advice")
    assert [(row["depart_date"], row["collected_at"]) for row in advice] == [(DEPART, later)]
    assert counts["trip_advice"] == {"rows": 1, "changed": 1, "deleted": 1}


def test_the_refresh_reads_the_trips_departed_since_the_advisors_calendar_ends(loaded, trained_models, tmp_path,
                                                                               monkeypatch):
    from fare_assets.synthesizing.features import RouteCalendar

    trained_on = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    refilings = pd.DataFrame({"origin": ["SFO"], "destination": ["JFK"],
                              "day": [pd.Timestamp(trained_on) - pd.Timedelta(days=30)]})
    lake = republished_advisor(trained_models, tmp_path, route_calendar=RouteCalendar(refilings,
                                                                                       pd.Timestamp(trained_on)))
    # A trip that departed yesterday: the route's calendar reads its collections, the tables do not show it.
    departed = today_at("SFO") - dt.timedelta(days=1)
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, history_rows(["270.00", "260.00", "250.00"], depart=departed,
                                                back=departed + dt.timedelta(days=7), prefix="departed",
                                                last=NOW - dt.timedelta(days=2)))
    reads = []
    observations = warehouse.observations
    monkeypatch.setattr(warehouse, "observations", lambda conn, departing_from: reads.append(departing_from) or
                        observations(conn, departing_from))
    counts = refresh_serving(loaded, str(lake))
    assert reads == [trained_on - dt.timedelta(days=1)]
    assert [(row["depart_date"], row["return_date"]) for row in serving_rows(loaded, "trip_advice")] == [
        (DEPART, RETURN), NEARBY]
    assert {row["depart_date"] for row in serving_rows(loaded, "trip_pages")} == {DEPART, NEARBY[0]}
    assert counts["predicted_fares"]["rows"] == 60


@pytest.mark.parametrize("missing", ["adults", "cabin"])
def test_a_search_without_its_party_or_cabin_is_no_watched_trip_and_the_refresh_goes_on(loaded, trained_models,
                                                                                         missing):
    # Another producer's search may lack them; the serving tables key a trip by them.
    odd = DEPART + dt.timedelta(days=2)
    row = fare_row("odd-1", "199.00", search_id="odd", depart=odd, back=odd + dt.timedelta(days=7),
                   **{missing: None})
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, [row])
        assert conn.execute(f"SELECT count(*) FROM national_fares WHERE {missing} IS NULL").fetchone()[0] == 1
    counts = refresh_serving(loaded, trained_models)
    assert [(row["depart_date"], row["return_date"]) for row in serving_rows(loaded, "trip_advice")] == [
        (DEPART, RETURN), NEARBY]
    assert counts["trip_pages"]["rows"] == 2


def test_the_page_reads_precomputed_advice_and_says_when_it_is_stale(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    client = models_client(loaded)
    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    stored = serving_rows(loaded, "trip_advice")[0]
    assert advice["action"] == stored["action"] and advice["reason"] == stored["reason"]
    assert advice["confidence"] == pytest.approx(stored["confidence"]) and advice["up_to_date"] is True

    grid = client.get("/api/date-grid", query_string=trip_query()).get_json()
    predicted = {(cell["depart"], cell["return"]): cell for cell in grid["cells"] if cell["source"] == "predicted"}
    stored_cells = {(str(row["depart_date"]), str(row["return_date"])): row
                    for row in serving_rows(loaded, "predicted_fares")}
    assert len(predicted) == 47 and grid["fare_model_available"] is True
    assert all(Decimal(cell["total"]) == stored_cells[pair]["predicted_amount"] for pair, cell in predicted.items())

    # A newer collection than the advice's: the page shows the new fares and the older advice, marked.
    later = NOW + dt.timedelta(minutes=30)
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, history_rows(["250.00"], prefix="newer", last=later))
    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    assert advice["up_to_date"] is False and dt.datetime.fromisoformat(advice["based_on_collection"]) == NOW
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "250.00 USD" in text and "Not yet updated for the newest fares" in text


def test_advice_not_refreshed_through_a_day_of_newer_fares_is_withheld(warehouse_dsn, trained_models):
    # The advice was last refreshed two days ago (its model corrupt since, say); newer fares kept coming.
    earlier = NOW - dt.timedelta(days=2)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, history_rows(TOTALS, last=earlier))
    refresh_serving(warehouse_dsn, trained_models)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, history_rows(["250.00"], prefix="newer", last=NOW))
    client = models_client(warehouse_dsn)
    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    assert (advice["action"], advice["confidence"], advice["up_to_date"]) == ("unavailable", None, False)
    assert dt.datetime.fromisoformat(advice["based_on_collection"]) == earlier
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "No advice right now" in text and "more than 1 day before the newest" in text
    assert "250.00 USD" in text and "advice-basis" not in text


def test_advice_on_fares_more_than_a_day_old_is_withheld_as_stale(warehouse_dsn, trained_models):
    # The provider kept failing for two days: the last advice read a fare and days ahead that no longer hold.
    last = NOW - dt.timedelta(days=2)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, history_rows(TOTALS, last=last))
    refresh_serving(warehouse_dsn, trained_models)
    assert serving_rows(warehouse_dsn, "trip_advice")[0]["action"] in ("buy", "wait")
    client = models_client(warehouse_dsn)
    advice = client.get("/api/advice", query_string=trip_query()).get_json()["advice"]
    assert (advice["action"], advice["up_to_date"], advice["expected_saving"]) == ("stale", True, None)
    assert dt.datetime.fromisoformat(advice["based_on_collection"]) == last
    # Nor is the fare judged as today's.
    insight = client.get("/api/advice", query_string=trip_query()).get_json()["insight"]
    assert (insight["level"], insight["percentile"]) == ("stale", None)
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "No advice right now" in text and "collected more than 1 day ago" in text
    assert "Not judged: the newest fares were collected more than 1 day ago" in text
    assert "Today&#39;s cheapest fare is" not in text and "Today's cheapest fare is" not in text
    # The withheld advice names no collection it was for: the page shows none.
    assert "Not yet updated" not in text and "advice-basis" not in text


def test_a_stored_page_whose_fares_grow_too_old_for_advice_is_rendered_live(loaded, trained_models, monkeypatch):
    # Rendered while its fares were fresh, the page is not served once they are older than advice allows.
    refresh_serving(loaded, trained_models)
    mark_stored_page(loaded)
    client = models_client(loaded)
    assert "<!-- stored page -->" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    monkeypatch.setattr(queries, "ADVICE_FRESH_FOR", dt.timedelta(0))
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "<!-- stored page -->" not in text and "No advice right now" in text
    assert client.get("/api/fares", query_string=trip_query()).get_json()["trip"]["origin"] == "SFO"


def mark_stored_page(dsn: str, tag: bool = True, **changes) -> None:
    """Tag the stored SFO-JFK page (so a test can tell it was served) and change its columns."""
    assignments = ", ".join([*(["html = html || '<!-- stored page -->'"] if tag else []),
                             *(f"{name} = %({name})s" for name in changes)])
    with psycopg.connect(dsn) as conn:
        conn.execute(f"UPDATE trip_pages SET {assignments} WHERE depart_date = %(depart)s",
                     {**changes, "depart": DEPART})


def test_a_watched_trip_page_is_served_as_the_pipeline_stored_it(loaded, trained_models):
    client = models_client(loaded)
    before_refresh = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    refresh_serving(loaded, trained_models)
    stored = serving_rows(loaded, "trip_pages")[0]
    # Today as the app sees it, not NOW's day: a test run can cross midnight after NOW was taken at import.
    rendered_on = stored["rendered_on"]
    assert (stored["collected_at"], rendered_on) == (NOW, today_at("SFO"))
    with psycopg.connect(loaded) as conn:
        # Every view decompresses the page: lz4, not the default pglz, even though it went through staging.
        assert conn.execute("SELECT pg_column_compression(html) FROM trip_pages").fetchall() == [("lz4",), ("lz4",)]
    # The stored page is exactly what a view renders (here once it is from another day), advice and
    # predicted cells included.
    assert "240.00 USD" in stored["html"] and 'class="cell predicted' in stored["html"]
    assert "Not enough data yet" not in stored["html"] and stored["html"] != before_refresh
    assert client.get("/fares", query_string=trip_query()).get_data(as_text=True) == stored["html"]
    mark_stored_page(loaded, tag=False, rendered_on=rendered_on - dt.timedelta(days=1))
    assert client.get("/fares", query_string=trip_query()).get_data(as_text=True) == stored["html"]
    mark_stored_page(loaded, tag=False, rendered_on=rendered_on)

    # /api/fares likewise: stored, and equal to what a request renders.
    stored_json = client.get("/api/fares", query_string=trip_query())
    assert stored_json.get_data(as_text=True) == stored["fares_json"] and stored_json.mimetype == "application/json"
    assert stored_json.get_json()["options"][0]["total"] == "240.00"
    rendered_json = client.get("/api/fares", query_string={**trip_query(), "adults": 1}).get_json()
    assert rendered_json["options"] == stored_json.get_json()["options"]

    mark_stored_page(loaded)
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    # A party given, or the notice after saving an alert: rendered for the view.
    for extra in ({"adults": 1}, {"alert": "created"}):
        text = client.get("/fares", query_string={**trip_query(), **extra}).get_data(as_text=True)
        assert "stored page" not in text and "240.00 USD" in text
    assert "Alert saved" in text


def test_a_stored_page_from_another_day_or_before_a_newer_collection_is_not_served(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    client = models_client(loaded)
    today = today_at("SFO")
    mark_stored_page(loaded, rendered_on=today - dt.timedelta(days=1))
    assert "stored page" not in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    mark_stored_page(loaded, tag=False, rendered_on=today, fares_json='{"stored": true}')
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert client.get("/api/fares", query_string=trip_query()).get_json() == {"stored": True}

    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, [fare_row("next-a", "225.00", search_id="next",
                                             collected_at=NOW + dt.timedelta(minutes=30))])
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "stored page" not in text and "225.00 USD" in text
    assert client.get("/api/fares", query_string=trip_query()).get_json()["options"][0]["option_id"] == "next-a"


def test_on_the_departure_day_the_page_is_rendered_live(loaded, trained_models):
    # Flights leave between two refreshes: a stored page would go on judging the cheapest after it left.
    refresh_serving(loaded, trained_models)
    client = models_client(loaded)
    today = today_at("SFO")
    mark_stored_page(loaded, rendered_on=today)
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    mark_stored_page(loaded, depart_date=today)
    text = client.get("/fares", query_string=trip_query(depart=today)).get_data(as_text=True)
    assert "<!-- stored page -->" not in text and "SFO" in text


def stamped_routes(dsn: str) -> dict[tuple[str, str], dt.datetime]:
    with psycopg.connect(dsn) as conn:
        return route_stamps(conn)


def test_a_collection_reloaded_in_place_or_a_neighbouring_dates_outdates_the_stored_page(loaded, trained_models):
    # A parser fix re-structures the hour the page shows: same option ids, new totals, same moment.
    refresh_serving(loaded, trained_models)
    client = models_client(loaded)
    mark_stored_page(loaded)
    stamped = stamped_routes(loaded)
    assert list(stamped) == [("SFO", "JFK")]
    with psycopg.connect(loaded) as conn:
        # The newest collection's rows again change nothing: no stamp moves and the stored page is still served.
        newest = history_rows(TOTALS)[-2:]
        assert warehouse.load_fares(conn, newest) == {"national_fares": 0, "international_fares": 0}
    assert stamped_routes(loaded) == stamped
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    with psycopg.connect(loaded) as conn:
        corrected = [newest[0][:13] + (Decimal("245.00"),) + newest[0][14:], newest[1]]
        assert warehouse.load_fares(conn, corrected) == {"national_fares": 1, "international_fares": 0}
    assert stamped_routes(loaded)[("SFO", "JFK")] > stamped[("SFO", "JFK")]
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "stored page" not in text and "245.00 USD" in text and "240.00 USD" not in text

    # Refreshed, the page is served again until a neighbouring departure, in its date grid, is collected.
    refresh_serving(loaded, trained_models)
    mark_stored_page(loaded)
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, history_rows(["199.00"], depart=NEARBY[0], back=NEARBY[1], prefix="nearby",
                                                last=NOW + dt.timedelta(minutes=30)))
    assert "stored page" not in client.get("/fares", query_string=trip_query()).get_data(as_text=True)


def test_a_late_part_of_the_sweep_outdates_the_stored_page(loaded, trained_models):
    # Another provider's search of the sweep the page shows lands after the refresh, under the same moment.
    refresh_serving(loaded, trained_models)
    mark_stored_page(loaded)
    client = models_client(loaded)
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, [fare_row("late-duffel", "230.00", search_id="late", provider="duffel")])
    text = client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    assert "stored page" not in text and "230.00 USD" in text and "Duffel" in text
    assert client.get("/api/fares", query_string=trip_query()).get_json()["options"][0]["option_id"] == "late-duffel"


def test_pages_stored_by_an_older_version_are_rendered_live_until_a_refresh(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    mark_stored_page(loaded)
    with psycopg.connect(loaded) as conn:
        # A warehouse from before route stamps: neither the pages' column nor the table.
        conn.execute("ALTER TABLE trip_pages DROP COLUMN route_loaded_at")
        conn.execute("DROP TABLE route_loads")
    client = models_client(loaded)
    for path in ("/fares", "/api/fares"):
        response = client.get(path, query_string=trip_query())
        assert response.status_code == 200 and "stored page" not in response.get_data(as_text=True)
    with psycopg.connect(loaded) as conn:
        warehouse.ensure_schema(conn)
    assert "stored page" not in client.get("/fares", query_string=trip_query()).get_data(as_text=True)
    refresh_serving(loaded, trained_models)
    mark_stored_page(loaded)
    assert "stored page" in client.get("/fares", query_string=trip_query()).get_data(as_text=True)


def test_a_trip_nobody_watches_gets_fares_without_advice(loaded, trained_models):
    refresh_serving(loaded, trained_models)
    with psycopg.connect(loaded) as conn:
        warehouse.load_fares(conn, history_rows(["199.00"], depart=DEPART, back=RETURN + dt.timedelta(days=20),
                                                prefix="unwatched"))
    client = models_client(loaded)
    query = trip_query(back=RETURN + dt.timedelta(days=20))
    advice = client.get("/api/advice", query_string=query).get_json()["advice"]
    assert advice["action"] == "unavailable" and "shown without advice" in advice["reason"]
    assert advice["based_on_collection"] is None
    grid = client.get("/api/date-grid", query_string=query).get_json()
    assert grid["fare_model_available"] is False
    assert {cell["source"] for cell in grid["cells"]} == {"collected", "unknown"}


def test_grid_cells_start_today_at_the_origin_and_skip_collected_pairs(loaded):
    with psycopg.connect(loaded) as conn:
        observations = warehouse.observations(conn)
    latest = latest_collections(observations)
    # 01:00 UTC on the departure day is still the evening before in San Francisco.
    cells = grid_cells(latest, dt.datetime.combine(DEPART, dt.time(1), tzinfo=dt.timezone.utc))
    assert cells["depart_date"].min().date() == DEPART - dt.timedelta(days=1)
    cells = grid_cells(latest, dt.datetime.combine(DEPART, dt.time(9), tzinfo=dt.timezone.utc))
    assert cells["depart_date"].min().date() == DEPART
    assert (cells["return_date"] >= cells["depart_date"]).all()
    assert not ((cells["depart_date"].dt.date == DEPART) & (cells["return_date"].dt.date == RETURN)).any()


def test_asset_writes_both_tables_the_web_role_can_read(loaded, trained_models, tmp_path):
    resources = {"lake": LakeResource(root=trained_models), "warehouse_db": WarehouseResource(dsn=loaded),
                 "fare_source": watching(tmp_path, 1)}
    result = materialize([trip_serving_tables], resources=resources)
    assert result.success
    metadata = {event.asset_key.to_user_string(): event.materialization.metadata
                for event in result.get_asset_materialization_events()}
    assert metadata["trip_advice"]["rows"].value == 2 and metadata["predicted_fares"]["rows"].value == 60
    assert metadata["trip_pages"]["rows"].value == 2
    assert metadata["trip_advice"]["model_version"].value == "v1"
    with psycopg.connect(loaded.replace("//fares@", f"//{READONLY_ROLE}@")) as conn:
        assert conn.execute("SELECT count(*) FROM trip_advice").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM trip_pages").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM predicted_fares")


def test_advice_is_the_last_call_when_the_watchlist_stops_collecting_the_trip(loaded, trained_models, tmp_path):
    def advice_with(fare_source: FareSourceResource) -> dict:
        resources = {"lake": LakeResource(root=trained_models), "warehouse_db": WarehouseResource(dsn=loaded),
                     "fare_source": fare_source}
        assert materialize([trip_serving_tables], resources=resources).success
        return {row["depart_date"]: (row["action"], row["reason"]) for row in serving_rows(loaded, "trip_advice")}

    # Collected until the day before departure, 40 and 41 days away: the advisor's own advice.
    usual = advice_with(watching(tmp_path, 1))
    assert usual[DEPART][0] in ("buy", "wait") and usual[NEARBY[0]][0] == "not_enough_data"
    # Collection stopping 30 days ahead changes nothing yet; stopping at the later trip's days ahead (at the origin,
    # a day more than in UTC from 16:00 to midnight there), this is the trips' last day.
    assert advice_with(watching(tmp_path, 30)) == usual
    last_call = ("buy", "last collection before departure: buy now")
    stop = (NEARBY[0] - today_at("SFO", NOW)).days
    assert advice_with(watching(tmp_path, stop)) == {DEPART: last_call, NEARBY[0]: last_call}
    # A watchlist no longer watching 7-night trips: no collection will follow the advice.
    no_longer = ("buy", "this trip is no longer collected, so no later advice will come: buy now")
    assert advice_with(watching(tmp_path, 1, nights=3)) == {DEPART: no_longer, NEARBY[0]: no_longer}
    # An unreadable watchlist fails the collection, not the pages: the advisor's own last call is kept.
    unreadable = FareSourceResource(base_url="http://127.0.0.1:9", watchlist_path=str(tmp_path / "missing.yaml"))
    assert advice_with(unreadable) == usual


@pytest.mark.parametrize("origin, from_days, depart, horizon", [
    ("SFO", 0, "2027-01-15", 1 - 8 / 24), ("SFO", 1, "2027-01-15", 1 - 8 / 24), ("SFO", 3, "2027-01-15", 3 - 8 / 24),
    ("NRT", 1, "2027-01-15", 1 + 9 / 24), ("LHR", 3, "2027-01-15", 3.0),
    # Clocks go forward in San Francisco on 14 March at 02:00: the last days collected, 14 and 13 March, began at
    # midnight PST.
    ("SFO", 1, "2027-03-15", 1 - 8 / 24), ("SFO", 3, "2027-03-16", 3 - 8 / 24)])
def test_the_last_call_only_moves_earlier_than_the_advisors_own_from_the_origins_midnight(tmp_path, origin,
                                                                                         from_days, depart, horizon):
    # Collected on the departure day too (from: 0), the eve of departure stays a last call: "wait" then would leave
    # hours at most to act. Days ahead count to UTC midnight, the watchlist's days at the origin (UTC-8 in winter).
    depart = dt.date.fromisoformat(depart)
    latest = pd.DataFrame({"origin": [origin], "destination": ["JFK"], "depart_date": [pd.Timestamp(depart)],
                           "return_date": [pd.Timestamp(depart + dt.timedelta(days=7))], "adults": [1],
                           "children": [0], "cabin": ["COACH"]}, index=["trip"])
    horizons = last_call_days_ahead(latest, watching(tmp_path, from_days, origin=origin).watchlist(), 1.0).to_dict()
    assert horizons == {"trip": pytest.approx(horizon)}


def test_a_model_never_published_skips_its_table_without_failing_the_refresh(loaded, trained_models, tmp_path):
    # A young deployment: no departed trip to train the advisor on yet, a fare model already.
    lake = tmp_path / "young-lake"
    shutil.copytree(Path(trained_models) / "models" / "fare_model", lake / "models" / "fare_model")
    resources = {"lake": LakeResource(root=str(lake)), "warehouse_db": WarehouseResource(dsn=loaded),
                 "fare_source": watching(tmp_path, 1)}
    result = materialize([trip_serving_tables], resources=resources)
    assert result.success
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == {
        "predicted_fares", "trip_pages"}
    assert serving_rows(loaded, "trip_advice") == [] and len(serving_rows(loaded, "trip_pages")) == 2


def test_a_corrupt_model_fails_the_asset_and_keeps_its_tables_previous_rows(loaded, trained_models, tmp_path):
    refresh_serving(loaded, trained_models)
    before = serving_rows(loaded, "trip_advice")
    lake = tmp_path / "bad-lake"
    shutil.copytree(Path(trained_models) / "models" / "fare_model", lake / "models" / "fare_model")
    folder = lake / "models" / "buy_wait_advisor"
    (folder / "v2").mkdir(parents=True)
    (folder / "v2" / "model.pkl").write_bytes(b"not a model")
    (folder / "latest.json").write_text(json.dumps({"version": "v2"}))
    resources = {"lake": LakeResource(root=str(lake)), "warehouse_db": WarehouseResource(dsn=loaded),
                 "fare_source": watching(tmp_path, 1)}
    result = materialize([trip_serving_tables], resources=resources, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert "trip_advice not refreshed: " in failure.step_failure_data.error.message
    # The fare model still fills the date grid, and the pages show the new fares beside the previous advice.
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == {
        "predicted_fares", "trip_pages"}
    assert serving_rows(loaded, "trip_advice") == before


def test_a_model_that_loads_but_fails_on_the_trips_skips_its_table_only(loaded, trained_models, tmp_path):
    from sklearn.linear_model import LinearRegression

    refresh_serving(loaded, trained_models)
    before = serving_rows(loaded, "trip_advice")
    # A readable advisor whose waiting model expects other columns (as after a library or feature change).
    lake = republished_advisor(trained_models, tmp_path,
                               waiting_model=LinearRegression().fit([[0.0, 1.0], [1.0, 0.0]], [1.0, 2.0]))
    resources = {"lake": LakeResource(root=str(lake)), "warehouse_db": WarehouseResource(dsn=loaded),
                 "fare_source": watching(tmp_path, 1)}
    result = materialize([trip_serving_tables], resources=resources, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert "trip_advice not refreshed: buy_wait_advisor v2 failed on the trips: ValueError" in (
        failure.step_failure_data.error.message)
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == {
        "predicted_fares", "trip_pages"}
    assert serving_rows(loaded, "trip_advice") == before


def test_definitions_run_the_refresh_after_loads_and_retrains(loaded, trained_models):
    defs = build_defs({**local_resources(), "lake": LakeResource(root=trained_models),
                       "warehouse_db": WarehouseResource(dsn=loaded)})
    assert defs.resolve_sensor_def("serving_tables_sensor").job_name == "serve_trips"
    assert {key.to_user_string() for key in defs.resolve_job_def("serve_trips").asset_layer.executable_asset_keys} == {
        "trip_advice", "predicted_fares", "trip_pages"}
    with DagsterInstance.ephemeral() as instance:
        context = build_multi_asset_sensor_context(monitored_assets=SERVING_INPUTS, instance=instance,
                                                   definitions=defs)
        assert isinstance(serving_tables_sensor(context), SkipReason)
        run_keys = set()
        # A load alone, a retrain of either model alone: each asks for a refresh run of its own.
        for asset, partition in (("national_fares", "2026-11-28-08:00"), ("buy_wait_advisor", None),
                                 ("fare_model", None)):
            instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))
            request = serving_tables_sensor(context)
            assert isinstance(request, RunRequest) and request.run_key not in run_keys
            run_keys.add(request.run_key)
            assert isinstance(serving_tables_sensor(context), SkipReason)
        instance.report_runless_asset_event(AssetMaterialization("national_fares", partition="2026-11-28-09:00"))
        instance.report_runless_asset_event(AssetMaterialization("buy_wait_advisor"))
        # Both new materializations are consumed by one refresh run.
        assert isinstance(serving_tables_sensor(context), RunRequest)
        assert isinstance(serving_tables_sensor(context), SkipReason)
