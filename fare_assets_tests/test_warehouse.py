import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from fare_assets.storing import warehouse
from fare_assets.storing.postgres import READONLY_ROLE


def fare_row(option_id: str, total: str, national: bool) -> tuple:
    values = {
        "option_id": option_id, "search_id": "s1", "provider": "qpx",
        "collected_at": dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc),
        "origin": "SFO", "destination": "JFK" if national else "LHR",
        "depart_date": dt.date(2026, 12, 1), "return_date": dt.date(2026, 12, 8),
        "days_ahead": 61, "nights": 7, "adults": 1, "children": 0, "cabin": "COACH",
        "total_amount": Decimal(total), "currency": "USD", "carriers": "UA",
        "stops_out": 0, "stops_back": 1, "duration_out_min": 330, "duration_back_min": 420,
        "depart_out_local": dt.datetime(2026, 12, 1, 8, 5), "depart_back_local": dt.datetime(2026, 12, 8, 17, 0),
    }
    return (*[values[name] for name in warehouse.COLUMN_NAMES], national)


def test_load_is_idempotent_and_splits_national(warehouse_dsn):
    rows = [fare_row("a", "250.10", True), fare_row("b", "900.00", False), fare_row("c", "310.00", True)]
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.load_fares(conn, rows) == {"national_fares": 2, "international_fares": 1}
        warehouse.load_fares(conn, rows)
        assert warehouse.table_counts(conn) == {"national_fares": 2, "international_fares": 1}
        total = conn.execute("SELECT total_amount FROM national_fares WHERE option_id = 'a'").fetchone()[0]
    assert total == Decimal("250.100")


def test_failed_load_leaves_nothing_half_loaded(warehouse_dsn):
    good, bad = fare_row("a", "250.10", True), fare_row("b", "-1", True)
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            warehouse.load_fares(conn, [good, bad])
        assert warehouse.table_counts(conn) == {"national_fares": 0, "international_fares": 0}


def test_web_role_reads_but_cannot_write(warehouse_dsn, postgres):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [fare_row("a", "250.10", True)])
    readonly_dsn = warehouse_dsn.replace("//fares@", f"//{READONLY_ROLE}@")
    with psycopg.connect(readonly_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM national_fares").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM national_fares")
