"""The fare page in a real Chromium (Debian's package, driven by playwright) against a real waitress server."""
import datetime as dt
import re
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from fare_assets.settings import PROJECT_ROOT
from fare_assets.storing import warehouse
from fare_assets_tests.test_webapp import (DEPART, RETURN, history_rows, readonly, refresh_serving,  # noqa: F401
                                           trained_models)
from webapp import create_app
from fare_assets_tests.served import served

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / ".fares" / "test-artifacts"


@pytest.fixture
def page_url(warehouse_dsn, trained_models):  # noqa: F811
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        warehouse.load_fares(conn, history_rows(["310.00", "330.00", "295.00", "350.00", "300.00", "240.00"])
                             + history_rows(["280.00"], depart=DEPART + dt.timedelta(days=1),
                                            back=RETURN + dt.timedelta(days=1)))
    refresh_serving(warehouse_dsn, trained_models)
    app = create_app({"DATABASE_DSN": readonly(warehouse_dsn)})
    with served(app) as url:
        yield url


@pytest.fixture
def browser_page():
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        console_errors: list[str] = []
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.console_errors = console_errors
        yield page
        browser.close()


def test_search_a_trip_and_see_options_insight_advice_grid_and_chart(page_url, browser_page):
    page = browser_page
    page.goto(page_url + "/")
    page.fill("input[name=origin]", "san fr")
    # The local suggestion script fills the datalist from /api/airports.
    expect(page.locator("#origin-airports option[value=SFO]")).to_have_count(1)
    page.fill("input[name=origin]", "San Francisco")
    page.fill("input[name=destination]", "JFK")
    page.fill("input[name=depart]", DEPART.isoformat())
    page.fill("input[name=return]", RETURN.isoformat())
    page.click("button[type=submit]")

    expect(page.locator("h1")).to_have_text("SFO → JFK")
    rows = page.locator("table.options tr.option")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td.total")).to_have_text("240.00 USD")
    expect(rows.first.locator("td.provider")).to_have_text("QPX Express")
    # The page is served as the pipeline stored it; the local age script says how old the fares are.
    expect(page.locator("p.collection")).to_contain_text(re.compile(r"UTC \((just now|\d+ min ago)\), totals"))
    expect(page.locator("#insight .headline")).to_have_text("Low price")
    advice = page.locator("#advice .headline").inner_text()
    assert advice in ("Buy now", "Wait")
    expect(page.locator("#advice .confidence")).to_contain_text(re.compile(r"^Chance this advice pays off: \d+%"))
    expect(page.locator("svg.chart circle.dot")).to_have_count(6)
    assert page.locator("svg.chart polyline.line").bounding_box()["width"] > 300
    expect(page.locator("table.date-grid td.cell")).to_have_count(49)
    expect(page.locator("table.date-grid td.cell.collected")).to_have_count(2)
    expect(page.locator("table.date-grid td.cell.predicted")).to_have_count(47)
    expect(page.locator("table.date-grid td.asked")).to_contain_text("240")
    # What colour and outline show, a screen reader says: the grid's marks and the chart's text equivalent.
    expect(page.get_by_role("link", name=re.compile(r"^240 \(your dates"))).to_have_count(1)
    expect(page.locator("table.date-grid td.predicted a").first).to_have_accessible_name(
        re.compile(r"predicted, not collected\)$"))
    expect(page.get_by_role("img", name=re.compile(r"6 collections .*: lowest 240\.00 USD at .*, highest 350\.00 at"
                                                   r" .*, latest 240\.00$"))).to_have_count(1)
    assert page.console_errors == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "fare-page.png"
    screenshot.unlink(missing_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    page.fill("#price-alert input[name=threshold]", "200")
    page.click("#price-alert button[type=submit]")
    expect(page.locator("#price-alert .notice")).to_contain_text("Alert saved")


def test_invalid_query_shows_what_to_fix(page_url, browser_page):
    page = browser_page
    page.goto(page_url + "/")
    page.fill("input[name=origin]", "SFO")
    page.fill("input[name=destination]", "QQQ")
    page.fill("input[name=depart]", DEPART.isoformat())
    page.fill("input[name=return]", (DEPART - dt.timedelta(days=2)).isoformat())
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    assert navigation.value.status == 400
    expect(page.locator(".problems")).to_contain_text("destination QQQ is not a known IATA airport code")
    expect(page.locator("#return-problem")).to_contain_text("is before the departure date")
    expect(page.locator("input[name=destination]")).to_have_attribute("aria-invalid", "true")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "fare-page-invalid.png"))
    assert (ARTIFACTS / "fare-page-invalid.png").stat().st_size > 0


def test_an_option_whose_flight_has_left_is_marked_departed(warehouse_dsn, browser_page):
    # A trip departing today at SFO (a page lasts all day): one flight left five minutes ago, one leaves in two hours.
    from zoneinfo import ZoneInfo

    from fare_assets.local_dates import today_at
    from fare_assets_tests.test_webapp import fare_row

    today = today_at("SFO")
    back = today + dt.timedelta(days=3)
    local_now = dt.datetime.now(ZoneInfo("America/Los_Angeles")).replace(tzinfo=None, microsecond=0)
    departs = warehouse.COLUMN_NAMES.index("depart_out_local")
    rows = []
    for option, total, shift in (("left", "200.00", -dt.timedelta(minutes=5)), ("later", "260.00", dt.timedelta(hours=2))):
        row = fare_row(option, total, search_id="today", depart=today, back=back)
        rows.append(row[:departs] + (local_now + shift,) + row[departs + 1:])
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)
        warehouse.load_fares(conn, rows)
    with served(create_app({"DATABASE_DSN": readonly(warehouse_dsn)})) as url:
        browser_page.goto(f"{url}/fares?origin=SFO&destination=JFK&depart={today}&return={back}")
        options = browser_page.locator("table.options tr.option")
        expect(options).to_have_count(2)
        expect(options.nth(0).locator("td.total")).to_have_text("200.00 USD (departed)")
        expect(options.nth(0)).to_have_class(re.compile(r"\bdeparted\b"))
        expect(options.nth(1).locator("td.total")).to_have_text("260.00 USD")
        assert browser_page.console_errors == []
