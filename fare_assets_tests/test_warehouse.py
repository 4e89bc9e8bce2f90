import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from dagster import Failure, build_init_resource_context
from psycopg.rows import dict_row

from fare_assets.resources import WarehouseResource
from fare_assets.storing import warehouse
from fare_assets.storing.assets import load_errors_as_failures
from fare_assets.storing.postgres import READONLY_ROLE


def fare_row(option_id: str, total: str, national: bool, currency: str | None = "USD") -> tuple:
    values = {
        "option_id": option_id, "search_id": "s1", "provider": "qpx",
        "collected_at": dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc),
        "origin": "SFO", "destination": "JFK" if national else "LHR",
        "depart_date": dt.date(2026, 12, 1), "return_date": dt.date(2026, 12, 8),
        "days_ahead": 61, "nights": 7, "adults": 1, "children": 0, "cabin": "COACH",
        "total_amount": Decimal(total), "currency": currency, "carriers": "UA",
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


def test_estimated_rows_sum_each_tables_partitions_once_analyzed(warehouse_dsn):
    # Two collection months: two partitions of national_fares, whose estimates add up to its rows.
    rows = [fare_row("a", "250.10", True), fare_row("b", "900.00", False), fare_row("c", "310.00", True)]
    november = [row[:3] + (dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc),) + row[4:] for row in rows[:1]]
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.load_fares(conn, rows + november)
        conn.execute("ANALYZE national_fares, international_fares")
        assert warehouse.estimated_rows(conn) == {"national_fares": 3, "international_fares": 1}
        assert warehouse.table_counts(conn) == {"national_fares": 3, "international_fares": 1}


def test_an_option_whose_market_changed_moves_table_on_a_reload(warehouse_dsn):
    # A newer airport reference can move an airport's country: the same options, reloaded, are international now.
    national = [fare_row("a", "250.10", True), fare_row("c", "310.00", True)]
    moved = [row[:-1] + (False,) for row in national]
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, national)
        load = warehouse.load_warehouse(conn, moved, {})
        assert (load.reclassified, load.present, load.staged) == (2, 2, 2)
        assert warehouse.table_counts(conn) == {"national_fares": 0, "international_fares": 2}


def test_a_reload_withdraws_the_options_its_searches_no_longer_yield(warehouse_dsn):
    # Structured again under a stricter rule, search s1 yields option a alone, and search s2 nothing (quarantined).
    collected = fare_row("a", "1", True)[warehouse.COLUMN_NAMES.index("collected_at")]
    other_search = [fare_row("d", "410.00", True)[:1] + ("s2",) + fare_row("d", "410.00", True)[2:]]
    unrelated = [fare_row("e", "199.00", True)[:1] + ("s3",) + fare_row("e", "199.00", True)[2:]]
    first = [fare_row("a", "250.10", True), fare_row("b", "900.00", False), fare_row("c", "310.00", True),
             *other_search, *unrelated]
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.load_warehouse(conn, first, {}, searches=[("s1", collected), ("s2", collected), ("s3", collected)])
        stamped = route_stamps(conn)
        load = warehouse.load_warehouse(conn, [fare_row("a", "250.10", True)], {},
                                        searches=[("s1", collected), ("s2", collected)])
        assert load.withdrawn == {"national_fares": 2, "international_fares": 1}
        assert sorted(option for (option,) in conn.execute(
            "SELECT option_id FROM national_fares UNION ALL SELECT option_id FROM international_fares")) == ["a", "e"]
        assert route_stamps(conn)[("SFO", "LHR")] > stamped[("SFO", "LHR")]
        # A search collected at another time is another search: nothing of it is withdrawn.
        later = collected + dt.timedelta(hours=1)
        again = warehouse.load_warehouse(conn, [], {}, searches=[("s3", later)])
        assert again.withdrawn == {"national_fares": 0, "international_fares": 0}
        assert warehouse.table_counts(conn) == {"national_fares": 2, "international_fares": 0}


def answer_summaries(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT search_id, currency, cheapest_total, option_count, carriers, nonstop_count, national"
                        " FROM answer_summaries ORDER BY collected_at, search_id, currency").fetchall()


def test_answer_summaries_follow_the_fare_rows_through_loads_reloads_retention_and_an_upgrade(warehouse_dsn):
    def of_search(search_id: str, option_id: str, total: str, national: bool = True, **values) -> tuple:
        row = dict(zip(warehouse.LOAD_COLUMNS, fare_row(option_id, total, national)), search_id=search_id, **values)
        return tuple(row[name] for name in warehouse.LOAD_COLUMNS)

    collected = fare_row("a", "1", True)[warehouse.COLUMN_NAMES.index("collected_at")]
    first = [of_search("s1", "a", "250.10"), of_search("s1", "b", "900.00", national=False, destination="JFK",
                                                   carriers="BA,AA"),
             of_search("s1", "c", "310.00", stops_back=0), of_search("s2", "d", "410.00"),
             of_search("s3", "e", "199.00", currency="EUR")]
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        load = warehouse.load_warehouse(conn, first, {}, searches=[("s1", collected), ("s2", collected)])
        assert load.answer_summaries_changed == 3
        assert answer_summaries(conn) == [("s1", "USD", Decimal("250.100"), 3, "AA,BA,UA", 1, False),
                                          ("s2", "USD", Decimal("410.000"), 1, "UA", 0, True),
                                          ("s3", "EUR", Decimal("199.000"), 1, "UA", 0, True)]
        assert warehouse.load_warehouse(conn, first, {}).answer_summaries_changed == 0
        # Structured again, search s1 yields option c alone and s2 nothing: their summaries follow.
        load = warehouse.load_warehouse(conn, [first[2]], {}, searches=[("s1", collected), ("s2", collected)])
        assert load.answer_summaries_changed == 2
        assert answer_summaries(conn) == [("s1", "USD", Decimal("310.000"), 1, "UA", 1, True),
                                          ("s3", "EUR", Decimal("199.000"), 1, "UA", 0, True)]
        # A warehouse loaded before the summaries gains them from its fare rows.
        kept = answer_summaries(conn)
        conn.execute("DROP TABLE answer_summaries")
        warehouse.ensure_schema(conn)
        assert answer_summaries(conn) == kept
        # Retention drops the month's fares and their summaries with them.
        later = of_search("s4", "f", "280.00", collected_at=collected + dt.timedelta(days=65))
        warehouse.load_warehouse(conn, [later], {}, retention_days=30)
        assert answer_summaries(conn) == [("s4", "USD", Decimal("280.000"), 1, "UA", 0, True)]


def route_stamps(conn: psycopg.Connection) -> dict[tuple[str, str], dt.datetime]:
    return {(origin, destination): at for origin, destination, at in conn.execute(
        "SELECT origin, destination, loaded_at FROM route_loads")}


def test_a_load_stamps_the_routes_whose_fares_it_inserted_changed_or_deleted(warehouse_dsn):
    national = [fare_row("a", "250.10", True), fare_row("c", "310.00", True)]
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.load_fares(conn, [*national, fare_row("b", "900.00", False)])
        first = route_stamps(conn)
        assert set(first) == {("SFO", "JFK"), ("SFO", "LHR")}
        warehouse.load_fares(conn, national)
        assert route_stamps(conn) == first
        warehouse.load_fares(conn, [fare_row("a", "255.00", True)])
        changed = route_stamps(conn)
        assert changed[("SFO", "JFK")] > first[("SFO", "JFK")] and changed[("SFO", "LHR")] == first[("SFO", "LHR")]
        # A copy left in the other table by an earlier version: the reload changes nothing in its own table but
        # deletes the copy, which the stored page showed.
        moved = [row[:-1] + (False,) for row in national]
        warehouse.load_fares(conn, moved)
        conn.execute("INSERT INTO national_fares SELECT * FROM international_fares WHERE option_id = 'c'")
        before = route_stamps(conn)
        load = warehouse.load_warehouse(conn, moved, {})
        assert (load.changed["international_fares"], load.reclassified) == (0, 1)
        assert route_stamps(conn)[("SFO", "JFK")] > before[("SFO", "JFK")]


def test_a_retention_drop_stamps_every_route(warehouse_dsn):
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.load_warehouse(conn, [collected_on("old", utc(2025, 1, 15), national=False),
                                        collected_on("new", utc(2025, 1, 16))], {}, retention_days=80)
        before = route_stamps(conn)
        # Only SFO-JFK is loaded, but January goes from both tables: SFO-LHR's stored pages lose a collection.
        load = warehouse.load_warehouse(conn, [collected_on("later", utc(2025, 5, 31))], {}, retention_days=80)
        assert load.dropped_partitions == ["national_fares_p202501", "international_fares_p202501"]
        after = route_stamps(conn)
        assert after[("SFO", "LHR")] > before[("SFO", "LHR")] and after[("SFO", "JFK")] > before[("SFO", "JFK")]


def test_failed_load_leaves_nothing_half_loaded(warehouse_dsn):
    good, bad = fare_row("a", "250.10", True), fare_row("b", "-1", True)
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            warehouse.load_fares(conn, [good, bad])
        assert warehouse.table_counts(conn) == {"national_fares": 0, "international_fares": 0}


@pytest.mark.parametrize(("total", "currency", "rejected_by", "message"), [
    ("0", "USD", {"table": "national_fares_p202610", "constraint": "national_fares_total_amount_check"},
     'new row for relation "national_fares_p202610" violates check constraint "national_fares_total_amount_check"'),
    ("250.10", None, {"table": "fare_staging", "column": "currency"},
     'null value in column "currency" of relation "fare_staging" violates not-null constraint'),
])
def test_a_rejected_row_fails_the_load_naming_the_rule_never_the_password(warehouse_dsn, total, currency,
                                                                           rejected_by, message):
    # The cluster trusts local connections, so the password is carried but never checked.
    dsn = warehouse_dsn.replace("//fares@", "//fares:s3cret-pw@")
    address = warehouse.warehouse_address(dsn)
    with pytest.raises(Failure) as failure, load_errors_as_failures(address), psycopg.connect(dsn) as conn:
        warehouse.load_fares(conn, [fare_row("a", "250.10", True), fare_row("b", total, True, currency)])
    description, metadata = failure.value.description, failure.value.metadata
    assert description.startswith(f"warehouse PostgreSQL {address} rejected a row of the load: {message} (")
    assert all(f"{what} {name}" in description for what, name in rejected_by.items())
    assert {what: metadata[what].value for what in rejected_by} == rejected_by
    assert "s3cret-pw" not in description + repr(metadata)
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.table_counts(conn) == {"national_fares": 0, "international_fares": 0}


def test_web_role_reads_but_cannot_write(warehouse_dsn, postgres):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [fare_row("a", "250.10", True)])
        assert warehouse.web_role_exists(conn)
        conn.execute(f"ALTER ROLE {READONLY_ROLE} RENAME TO fares_web_away")
        assert not warehouse.web_role_exists(conn)
        conn.rollback()
    readonly_dsn = warehouse_dsn.replace("//fares@", f"//{READONLY_ROLE}@")
    with psycopg.connect(readonly_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM national_fares").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM national_fares")


def test_the_web_role_may_insert_only_what_a_traveller_says_into_price_alerts(warehouse_dsn, postgres):
    def may_insert(conn, column: str) -> bool:
        return conn.execute("SELECT has_column_privilege(%s, 'price_alerts', %s, 'INSERT')",
                            (READONLY_ROLE, column)).fetchone()[0]

    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.ensure_schema(conn)
        assert may_insert(conn, "threshold") and not may_insert(conn, "notified_at") and not may_insert(conn, "id")
        # A warehouse of before 2026-12-07 granted INSERT on the whole table: it is taken back.
        conn.execute(f"GRANT INSERT ON price_alerts TO {READONLY_ROLE}")
        assert not warehouse.schema_is_current(conn)
        warehouse.ensure_schema(conn)
        assert warehouse.schema_is_current(conn)
        assert may_insert(conn, "currency") and not may_insert(conn, "notified_at")


def airport_row(code: str, name: str) -> tuple:
    return (code, name, code, name, "US", "America/New_York", 40.6, -73.8,
            dt.datetime(2026, 10, 1, 12, tzinfo=dt.timezone.utc))


def test_dimension_columns_mirror_the_curated_schemas():
    from fare_assets.structuring.tables import DIMENSION_SCHEMAS

    assert {table: [name for name, _ in columns] for table, columns in warehouse.DIMENSION_COLUMNS.items()} == {
        table: schema.fieldNames() for table, schema in DIMENSION_SCHEMAS.items()}


def test_dimensions_are_upserted_with_the_fares_and_readable_by_the_web_role(warehouse_dsn):
    fares = [fare_row("a", "250.10", True)]
    carriers = [("UA", "United", dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc))]
    with psycopg.connect(warehouse_dsn) as conn:
        first = warehouse.load_warehouse(conn, fares, {"airports": [airport_row("JFK", "Kennedy")], "carriers": carriers})
        again = warehouse.load_warehouse(conn, fares, {"airports": [airport_row("JFK", "Kennedy")], "carriers": carriers})
        renamed = warehouse.load_warehouse(conn, [], {"airports": [airport_row("JFK", "John F Kennedy Intl")]})
    assert (first.staged, first.present, again.staged, again.present, renamed.staged) == (1, 1, 1, 1, 0)
    first, again, renamed = first.changed, again.changed, renamed.changed
    assert first == {"national_fares": 1, "international_fares": 0, "airports": 1, "carriers": 1}
    assert again == {"national_fares": 0, "international_fares": 0, "airports": 0, "carriers": 0}
    assert renamed["airports"] == 1
    with psycopg.connect(warehouse_dsn.replace("//fares@", f"//{READONLY_ROLE}@")) as conn:
        assert conn.execute("SELECT name FROM airports").fetchall() == [("John F Kennedy Intl",)]
        assert conn.execute("SELECT count(*) FROM carriers").fetchone()[0] == 1


def test_a_bad_dimension_row_rolls_back_the_fares_too(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(psycopg.errors.NotNullViolation):
            warehouse.load_warehouse(conn, [fare_row("a", "250.10", True)], {"carriers": [(None, "nameless", None)]})
        assert warehouse.table_counts(conn, warehouse.WAREHOUSE_TABLES) == dict.fromkeys(warehouse.WAREHOUSE_TABLES, 0)


def test_a_backend_killed_mid_load_leaves_the_tables_as_they_were_and_a_rerun_loads(warehouse_dsn):
    loaded = [fare_row(f"old-{n}", "200.00", n % 2 == 0) for n in range(10)]
    batch = [fare_row(f"new-{n}", "300.00", n % 2 == 0) for n in range(20_000)]
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, loaded)
        before = warehouse.table_counts(conn)
    loading = psycopg.connect(warehouse_dsn)

    def rows_then_terminate_the_loader():
        yield from batch[:5_000]
        with psycopg.connect(warehouse_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (loading.info.backend_pid,))
        yield from batch[5_000:]

    with pytest.raises(psycopg.OperationalError):
        warehouse.load_fares(loading, rows_then_terminate_the_loader())
    loading.close()
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.table_counts(conn) == before
        warehouse.load_fares(conn, batch)
        assert warehouse.table_counts(conn) == {"national_fares": 10_005, "international_fares": 10_005}


def test_the_warehouse_address_names_no_credentials():
    address = warehouse.warehouse_address("postgresql://fares:s3cret@db.internal:5433/fares")
    assert address == "db.internal:5433/fares"


def test_a_dsn_psycopg_cannot_read_fails_the_resource_without_quoting_its_password():
    # A password with % not URL-encoded: psycopg's own error would quote it to the Dagster UI and the alerts.
    resource = WarehouseResource(dsn="postgresql://fares:s3cr%t@db.internal/fares")
    with pytest.raises(ValueError, match="URL-encode the special characters") as raised:
        resource.setup_for_execution(build_init_resource_context())
    assert "s3cr" not in str(raised.value) and raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_page_queries_read_indexes_not_the_whole_history(warehouse_dsn):
    from webapp import queries
    from webapp.validation import Trip

    today = dt.date(2026, 11, 1)
    departed_history = [
        (*fare_row(f"h{n}", "300.00", True)[:4], "SFO", f"J{n % 50:02d}",
         today - dt.timedelta(days=1 + n % 300), today - dt.timedelta(days=n % 300 - 6),
         *fare_row("x", "1", True)[8:])
        for n in range(20_000)]
    # Half collected within the route list's day, which leaves them to the departure date's index; half in September,
    # whose partition its bound on the collection time prunes.
    recent, september = (dt.datetime(2026, 11, 1, 11, tzinfo=dt.timezone.utc),
                         dt.datetime(2026, 9, 15, 11, tzinfo=dt.timezone.utc))
    rows = [row[:3] + (recent if index % 2 else september,) + row[4:]
            for index, row in enumerate(departed_history + [fare_row("upcoming", "250.00", True)])]
    with psycopg.connect(warehouse_dsn, row_factory=dict_row) as conn:
        warehouse.load_fares(conn, rows)
        conn.execute("ANALYZE")
        plans = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET client_min_messages = log")
        queries.cheapest_options_now(conn, Trip("SFO", "JFK", dt.date(2026, 12, 1), dt.date(2026, 12, 8)))
        queries.route_summaries(conn, dt.datetime.combine(today, dt.time(12), tzinfo=dt.timezone.utc))
    assert len(plans) == 2
    trip_plan, summary_plan = plans
    # Each monthly partition has the parent's indexes, named by PostgreSQL after their columns.
    assert "_origin_destination_depart_date_" in trip_plan and "Seq Scan on national_fares" not in trip_plan
    assert "_depart_date_idx" in summary_plan and "Seq Scan on national_fares" not in summary_plan
    assert "national_fares_p202611" in summary_plan and "national_fares_p202609" not in summary_plan


def collected_on(option_id: str, when: dt.datetime, national: bool = True) -> tuple:
    row = list(fare_row(option_id, "250.00", national))
    row[warehouse.COLUMN_NAMES.index("collected_at")] = when
    return tuple(row)


def utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, 12, tzinfo=dt.timezone.utc)


def test_fares_are_partitioned_by_collection_month_and_retention_drops_whole_months(warehouse_dsn):
    history = [collected_on(f"{when:%Y%m%d}-{n}", when, national=n % 2 == 0)
               for when in (utc(2025, 1, 15), utc(2025, 2, 27), utc(2025, 3, 1), utc(2025, 4, 30))
               for n in range(3)]
    # Autocommit, so each load is its own transaction between the test's queries, as in the storing asset.
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        # 2025-04-30 minus 80 days is in February: January's rows are not loaded at all.
        first = warehouse.load_warehouse(conn, history, {}, retention_days=80)
        assert (first.staged, first.past_retention, first.present, first.dropped_partitions) == (12, 3, 9, [])
        assert warehouse.fare_partitions(conn, "national_fares") == [
            "national_fares_p202502", "national_fares_p202503", "national_fares_p202504"]
        # A newer collection moves the horizon (2025-05-31 minus 80 days is in March): February goes.
        newer = warehouse.load_warehouse(conn, [collected_on("new", utc(2025, 5, 31)),
                                                collected_on("late-replay", utc(2025, 1, 20))], {}, retention_days=80)
        assert (newer.staged, newer.past_retention, newer.present) == (2, 1, 1)
        assert newer.dropped_partitions == ["national_fares_p202502", "international_fares_p202502"]
        months = conn.execute("SELECT tableoid::regclass::text, count(*) FROM national_fares GROUP BY 1 ORDER BY 1")
        assert months.fetchall() == [("national_fares_p202503", 2), ("national_fares_p202504", 2),
                                     ("national_fares_p202505", 1)]
        assert warehouse.table_counts(conn) == {"national_fares": 5, "international_fares": 2}
        # Without retention nothing is dropped, and a month comes back with its partition.
        replay = warehouse.load_warehouse(conn, history, {})
        assert (replay.past_retention, replay.present, replay.dropped_partitions) == (0, 12, [])
        assert warehouse.table_counts(conn) == {"national_fares": 9, "international_fares": 4}


def test_a_warehouse_from_before_partitioning_is_moved_into_monthly_partitions(warehouse_dsn):
    columns = ", ".join(f"{name} {'numeric(18,3)' if kind == 'numeric' else kind}"
                        + (" PRIMARY KEY" if name == "option_id" else "") for name, kind in warehouse.FARE_COLUMNS)
    rows = [collected_on("october", utc(2026, 10, 1)), collected_on("november", utc(2026, 11, 2))]
    with psycopg.connect(warehouse_dsn) as conn:
        for table in warehouse.FARE_TABLES:
            conn.execute(f"CREATE TABLE {table} ({columns}, CHECK (total_amount > 0))")
            conn.execute(f"CREATE INDEX {table}_trip_idx ON {table} (origin, destination, depart_date)")
        with conn.cursor().copy(f"COPY national_fares ({', '.join(warehouse.COLUMN_NAMES)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row[:-1])
        conn.commit()
        load = warehouse.load_warehouse(conn, [collected_on("december", utc(2026, 12, 3))], {})
        kinds = dict(conn.execute("SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
                                  (list(warehouse.FARE_TABLES),)).fetchall())
        assert kinds == dict.fromkeys(warehouse.FARE_TABLES, "p")
        assert warehouse.fare_partitions(conn, "national_fares") == [
            "national_fares_p202610", "national_fares_p202611", "national_fares_p202612"]
        assert conn.execute("SELECT option_id FROM national_fares ORDER BY collected_at").fetchall() == [
            ("october",), ("november",), ("december",)]
        assert load.present == 1
    with psycopg.connect(warehouse_dsn.replace("//fares@", f"//{READONLY_ROLE}@")) as conn:
        assert conn.execute("SELECT count(*) FROM national_fares").fetchone()[0] == 3


def test_fare_tables_keyed_option_id_first_are_rekeyed_and_keep_their_rows(warehouse_dsn):
    rows = [collected_on("october", utc(2026, 10, 1)), collected_on("november", utc(2026, 11, 2), national=False)]
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.load_fares(conn, rows) == {"national_fares": 1, "international_fares": 1}
        # The layout before the key was reordered: option_id first, and an index of its own on collected_at.
        for table in warehouse.FARE_TABLES:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY (option_id, collected_at)")
            conn.execute(f"CREATE INDEX {table}_collected_idx ON {table} (collected_at)")
        conn.commit()
        # Readers find a key in place and change nothing: the one-time rebuild locks the table, so loads do it.
        warehouse.ensure_schema(conn)
        assert warehouse.table_counts(conn) == {"national_fares": 1, "international_fares": 1}
        assert warehouse._fare_key(conn, "national_fares")[1] == ["option_id", "collected_at"]
        conn.commit()
        assert warehouse.load_fares(conn, rows) == {"national_fares": 0, "international_fares": 0}
        conn.commit()
        keys = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'p' AND conrelid = ANY(%s::regclass[]) ORDER BY 1", (list(warehouse.FARE_TABLES),))
        assert keys.fetchall() == [("international_fares", "PRIMARY KEY (collected_at, option_id)"),
                                   ("national_fares", "PRIMARY KEY (collected_at, option_id)")]
        leftover = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%collected_idx'").fetchone()[0]
        assert leftover == 0
        # The rows stayed, the new key merges a reload, and the page's role still reads.
        assert warehouse.load_fares(conn, rows) == {"national_fares": 0, "international_fares": 0}
        assert warehouse.table_counts(conn) == {"national_fares": 1, "international_fares": 1}
        conn.commit()
        # A fare table that lost its key (a bulk load builds it afterwards) gets it back from the next load.
        conn.execute("ALTER TABLE international_fares DROP CONSTRAINT international_fares_pkey")
        conn.commit()
        assert warehouse.load_fares(conn, rows) == {"national_fares": 0, "international_fares": 0}
        assert warehouse._fare_key(conn, "international_fares") == ("international_fares_pkey", warehouse.FARE_KEY)
    with psycopg.connect(warehouse_dsn.replace("//fares@", f"//{READONLY_ROLE}@")) as conn:
        assert conn.execute("SELECT option_id FROM international_fares").fetchall() == [("november",)]


def test_concurrent_loads_of_a_new_month_both_land(warehouse_dsn):
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.ensure_schema(conn)

    def load(prefix: str) -> warehouse.FareLoad:
        rows = [collected_on(f"{prefix}-{n}", utc(2027, 1, 1 + n % 28), national=n % 2 == 0) for n in range(2_000)]
        with psycopg.connect(warehouse_dsn) as conn:
            return warehouse.load_warehouse(conn, rows, {}, retention_days=30)

    with ThreadPoolExecutor(max_workers=4) as pool:
        loads = list(pool.map(load, ["a", "b", "c", "d"]))
    assert [load.present for load in loads] == [2_000] * 4
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.table_counts(conn) == {"national_fares": 4_000, "international_fares": 4_000}
        assert warehouse.fare_partitions(conn, "international_fares") == ["international_fares_p202701"]


def test_a_new_months_partition_leaves_the_page_reading_until_the_load_commits(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [collected_on("october", utc(2026, 10, 1))])
    with psycopg.connect(warehouse_dsn) as loader, loader.transaction():
        warehouse.create_fare_partitions(loader, dt.date(2026, 12, 1), dt.date(2026, 12, 1))
        # The load goes on merging in this transaction; the page's read must not wait for its commit.
        with psycopg.connect(warehouse_dsn) as page:
            page.execute("SET lock_timeout = '1s'")
            assert page.execute("SELECT count(*) FROM national_fares").fetchone()[0] == 1
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.fare_partitions(conn, "national_fares") == ["national_fares_p202610", "national_fares_p202612"]


def test_a_retention_drop_waits_for_a_long_reader_after_the_merge_without_queueing_the_page(warehouse_dsn,
                                                                                           monkeypatch):
    import time
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(warehouse, "PARTITION_LOCK_WAIT", "200ms")
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [collected_on("october", utc(2025, 10, 1))])
    # A reader whose transaction stays open (as the serving refresh's does while it renders) holds the table.
    long_reader = psycopg.connect(warehouse_dsn)
    long_reader.execute("SELECT count(*) FROM national_fares")

    def load_march() -> warehouse.FareLoad:
        with psycopg.connect(warehouse_dsn) as conn:
            return warehouse.load_warehouse(conn, [collected_on("march", utc(2026, 3, 1))], {}, retention_days=60)

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(load_march)
        try:
            with psycopg.connect(warehouse_dsn, autocommit=True) as page:
                # The load is trying to drop October (so its merge has committed) once its statement is the drop.
                deadline = time.monotonic() + 60
                while not page.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'DROP TABLE%%'"
                                       " AND pid <> pg_backend_pid()").fetchone():
                    assert time.monotonic() < deadline and not loading.done(), "the load never tried the drop"
                    time.sleep(0.05)
                # Queued behind a lock that waits for the long reader, this query would fail its lock wait.
                page.execute("SET lock_timeout = '3s'")
                seen_by_page = page.execute("SELECT count(*) FROM national_fares").fetchone()[0]
            still_loading = not loading.done()
        finally:
            long_reader.commit()
            long_reader.close()
        load = loading.result(timeout=60)
    # March's partition did not wait and its row was committed; only dropping October waited for the reader.
    assert (seen_by_page, still_loading, load.present) == (2, True, 1)
    assert load.dropped_partitions == ["national_fares_p202510"]
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.fare_partitions(conn, "national_fares") == ["national_fares_p202603"]


def test_a_retention_drop_a_reader_blocks_throughout_is_deferred_and_the_merged_rows_stay(warehouse_dsn, monkeypatch):
    monkeypatch.setattr(warehouse, "PARTITION_LOCK_WAIT", "100ms")
    monkeypatch.setattr(warehouse, "PARTITION_LOCK_ATTEMPTS", 2)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [collected_on("october", utc(2025, 10, 1))])
    with psycopg.connect(warehouse_dsn) as long_reader:
        long_reader.execute("SELECT count(*) FROM national_fares")
        with psycopg.connect(warehouse_dsn) as conn:
            load = warehouse.load_warehouse(conn, [collected_on("march", utc(2026, 3, 1))], {}, retention_days=60)
    assert (load.present, load.dropped_partitions) == (1, [])
    assert "stayed locked by readers through 2 attempts" in load.retention_deferred
    with psycopg.connect(warehouse_dsn) as conn:
        assert warehouse.table_counts(conn)["national_fares"] == 2
        # The next load, with no reader in the way, drops October.
        later = warehouse.load_warehouse(conn, [collected_on("march-2", utc(2026, 3, 2))], {}, retention_days=60)
    assert (later.dropped_partitions, later.retention_deferred) == (["national_fares_p202510"], None)


def test_readers_find_the_schema_in_place_without_taking_the_loads_turn(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [collected_on("october", utc(2026, 10, 1))])
    with psycopg.connect(warehouse_dsn) as loader, psycopg.connect(warehouse_dsn) as reader:
        loader.execute("SELECT pg_advisory_xact_lock(hashtext('fares warehouse schema'))")
        reader.execute("SET lock_timeout = '3s'")
        assert warehouse.table_counts(reader) == {"national_fares": 1, "international_fares": 0}


def test_a_retention_that_would_drop_everything_stops_at_start_up(monkeypatch):
    from fare_assets.settings import load_settings

    monkeypatch.setenv("FARES_WAREHOUSE_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="FARES_WAREHOUSE_RETENTION_DAYS is -1"):
        load_settings()
    monkeypatch.setenv("FARES_WAREHOUSE_RETENTION_DAYS", "400")
    assert load_settings().warehouse_retention_days == 400


def test_a_collection_dated_in_the_future_does_not_move_the_retention_horizon(warehouse_dsn):
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    with psycopg.connect(warehouse_dsn) as conn:
        load = warehouse.load_warehouse(conn, [collected_on("recent", recent), collected_on("bad-clock", utc(2099, 1, 1))],
                                        {}, retention_days=60)
        assert (load.past_retention, load.present, load.dropped_partitions) == (0, 2, [])
        assert warehouse.table_counts(conn) == {"national_fares": 2, "international_fares": 0}


def test_observations_give_one_row_per_trip_and_collection_moment(warehouse_dsn):
    from fare_assets_tests.test_webapp import NOW, fare_row as option_row

    earlier = NOW - dt.timedelta(days=1)
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [
            # Two searches of one trip collected at the same moment (two providers): one look at the market.
            option_row("a-1", "300.00", search_id="a", carriers="UA", stops=(0, 0)),
            option_row("a-2", "410.00", search_id="a", carriers="UA,AA"),
            option_row("b-1", "250.00", search_id="b", carriers="DL", stops=(0, 0)),
            option_row("c-1", "320.00", search_id="c", collected_at=earlier),
        ])
        observations = warehouse.observations(conn)
    assert observations["collected_at"].tolist() == [earlier, NOW]
    latest = observations.iloc[-1]
    assert (latest["cheapest_total"], latest["option_count"], latest["carrier_count"]) == (250.0, 3, 3)
    assert latest["nonstop_share"] == pytest.approx(2 / 3)


def test_an_observation_never_ranks_amounts_in_two_currencies(warehouse_dsn):
    from fare_assets_tests.test_webapp import EARLIER, NOW, fare_row as option_row

    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [
            # An hour ago only the dollar provider answered; now both did, in two currencies. The trip's series keeps
            # its newest collection's first currency, and leaves out the moment quoted only in the other.
            option_row("usd-0", "150.00", search_id="q0", carriers="UA", collected_at=EARLIER),
            option_row("usd-1", "200.00", search_id="q", carriers="UA"),
            option_row("eur-1", "260.00", search_id="d", carriers="AF", provider="duffel", currency="EUR"),
            option_row("eur-2", "280.00", search_id="d", carriers="KL", provider="duffel", currency="EUR"),
            # Half an hour later the euro provider missed the sweep: the trip stays in euros.
            option_row("usd-2", "210.00", search_id="q2", carriers="UA", collected_at=NOW + dt.timedelta(minutes=30)),
        ])
        observations = warehouse.observations(conn)
    assert observations["collected_at"].tolist() == [NOW]
    [latest] = observations.to_dict("records")
    assert (latest["cheapest_total"], latest["currency"], latest["option_count"], latest["carrier_count"]) == (
        260.0, "EUR", 2, 2)


def test_a_moment_a_provider_is_missing_from_is_left_out_for_a_day(warehouse_dsn):
    from fare_assets_tests.test_webapp import NOW, fare_row as option_row

    start, hour, day = NOW - dt.timedelta(days=3), dt.timedelta(hours=1), dt.timedelta(days=1)
    quotes = {  # moment -> {provider: total}; Duffel is the cheaper and misses some sweeps, QPX one.
        start: {"qpx": "300.00", "duffel": "250.00"},
        start + hour: {"qpx": "300.00", "duffel": "250.00"},
        start + 2 * hour: {"qpx": "300.00"},
        start + 3 * hour: {"qpx": "310.00"},
        start + hour + day: {"qpx": "320.00"},  # a day after Duffel's last quote: still expected
        start + 2 * hour + day: {"qpx": "330.00"},  # more than a day: QPX alone is the market now
        start + 2 * day: {"qpx": "340.00", "duffel": "260.00"},
        start + 2 * day + hour: {"duffel": "265.00"},
        start + 2 * day + 2 * hour: {"qpx": "345.00", "duffel": "270.00"},
    }
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [
            option_row(f"{provider}-{at:%d%H}", total, search_id=f"{provider}-{at:%d%H}", provider=provider, collected_at=at)
            for at, totals in quotes.items() for provider, total in totals.items()])
        observations = warehouse.observations(conn)
    kept = [start, start + hour, start + 2 * hour + day, start + 2 * day, start + 2 * day + 2 * hour]
    assert observations["collected_at"].tolist() == kept
    assert observations["cheapest_total"].tolist() == [250.0, 250.0, 330.0, 260.0, 270.0]
    assert observations["option_count"].tolist() == [2, 2, 1, 2, 2]


def test_a_provider_is_missing_only_from_its_own_party_and_in_no_currency(warehouse_dsn):
    from fare_assets_tests.test_webapp import NOW, fare_row as option_row

    t0, t1, t2, t3 = (NOW - dt.timedelta(hours=hours) for hours in (3, 2, 1, 0))
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.load_fares(conn, [
            # Economy: QPX every sweep; Duffel too, quoting once in euros (present all the same) and missing once.
            option_row("e-q0", "300.00", search_id="e-q0", collected_at=t0, carriers="UA", stops=(0, 0)),
            option_row("e-q0b", "420.00", search_id="e-q0", collected_at=t0, carriers="UA,AA"),
            option_row("e-d0", "250.00", search_id="e-d0", collected_at=t0, provider="duffel", carriers="BA",
                       stops=(0, 0)),
            option_row("e-q1", "310.00", search_id="e-q1", collected_at=t1),
            option_row("e-d1", "240.00", search_id="e-d1", collected_at=t1, provider="duffel", currency="EUR"),
            option_row("e-q2", "320.00", search_id="e-q2", collected_at=t2),
            option_row("e-q3", "330.00", search_id="e-q3", collected_at=t3),
            option_row("e-d3", "260.00", search_id="e-d3", collected_at=t3, provider="duffel"),
            # Business: QPX alone, every sweep; Duffel's miss in economy is not this party's.
            *(option_row(f"b-{index}", "900.00", search_id=f"b-{index}", collected_at=at, cabin="BUSINESS")
              for index, at in enumerate((t0, t1, t2, t3)))])
        observations = warehouse.observations(conn)
    assert {cabin: rows["collected_at"].tolist() for cabin, rows in observations.groupby("cabin")} == {
        "BUSINESS": [t0, t1, t2, t3], "COACH": [t0, t1, t3]}
    economy = observations[observations["cabin"] == "COACH"]
    assert economy["cheapest_total"].tolist() == [250.0, 310.0, 260.0] and set(economy["currency"]) == {"USD"}
    first = economy.iloc[0]
    assert (first["option_count"], first["carrier_count"]) == (3, 3)
    assert first["nonstop_share"] == pytest.approx(2 / 3)


def test_a_provider_that_answered_with_no_option_is_not_missing(warehouse_dsn):
    from fare_assets_tests.test_webapp import NOW, empty_answer, fare_row as option_row

    t0, t1, t2, t3, t4 = (NOW - dt.timedelta(hours=hours) for hours in (4, 3, 2, 1, 0))
    quotes = {  # moment -> {provider: total, None where it answered with no option}; Duffel's call fails at t1 and t3.
        t0: {"qpx": "300.00", "duffel": "250.00"}, t1: {"qpx": "300.00"}, t2: {"qpx": "305.00", "duffel": None},
        t3: {"qpx": "310.00"}, t4: {"qpx": "320.00", "duffel": "260.00"}}
    rows = {(provider, at): option_row(f"{provider}-{at:%H}", total or "1", search_id=f"{provider}-{at:%H}",
                                       provider=provider, collected_at=at)
            for at, totals in quotes.items() for provider, total in totals.items()}
    empty = [key for key, row in rows.items() if quotes[key[1]][key[0]] is None]
    with psycopg.connect(warehouse_dsn) as conn:
        load = warehouse.load_warehouse(
            conn, [row for key, row in rows.items() if key not in empty], {},
            searches=[(row[1], row[3]) for row in rows.values()], empty_answers=[empty_answer(rows[key]) for key in empty])
        observations = warehouse.observations(conn)
    assert load.empty_answers_changed == 1
    # The failed call at t1 may hide Duffel's cheaper fare; at t2 Duffel had nothing to sell, so QPX's fare was the
    # market's, and its failed call at t3, with nothing to sell when last heard from, hides none.
    assert observations["collected_at"].tolist() == [t0, t2, t3, t4]
    assert observations["cheapest_total"].tolist() == [250.0, 305.0, 310.0, 260.0]
    assert observations["option_count"].tolist() == [2, 1, 1, 2]


def test_a_reload_withdraws_an_empty_answer_its_search_structured_again_no_longer_is(warehouse_dsn):
    from fare_assets_tests.test_webapp import NOW, empty_answer, fare_row as option_row

    found = option_row("d-1", "250.00", search_id="d", provider="duffel", collected_at=NOW, destination="LHR",
                       national=False)
    old = option_row("o-1", "250.00", search_id="o", provider="duffel", collected_at=NOW - dt.timedelta(days=400))
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        first = warehouse.load_warehouse(conn, [], {}, searches=[("d", NOW), ("o", old[3])],
                                         empty_answers=[empty_answer(found), empty_answer(old)])
        stamped = route_stamps(conn)
        again = warehouse.load_warehouse(conn, [], {}, searches=[("d", NOW)], empty_answers=[empty_answer(found)])
        assert (first.empty_answers_changed, again.empty_answers_changed, route_stamps(conn)) == (2, 0, stamped)
        # A parser fix reads an option in the answer: it found something after all, and the page must say so.
        fixed = warehouse.load_warehouse(conn, [found], {}, retention_days=30, searches=[("d", NOW)])
        assert fixed.empty_answers_changed == 1 and route_stamps(conn)[("SFO", "LHR")] > stamped[("SFO", "LHR")]
        # Retention deletes the empty answers of the months it drops.
        assert conn.execute("SELECT search_id FROM empty_answers").fetchall() == []


def test_retention_deletes_the_alerts_of_trips_that_departed_before_the_oldest_month_kept(warehouse_dsn):
    now = dt.datetime.now(dt.timezone.utc)
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        warehouse.ensure_schema(conn)
        for depart in (now.date() - dt.timedelta(days=400), now.date() + dt.timedelta(days=30)):
            conn.execute("INSERT INTO price_alerts (origin, destination, depart_date, return_date, threshold, currency)"
                         " VALUES ('SFO', 'JFK', %s, %s, 250, 'USD')", (depart, depart + dt.timedelta(days=7)))
        warehouse.load_warehouse(conn, [collected_on("recent", now - dt.timedelta(days=1))], {}, retention_days=60)
        assert conn.execute("SELECT depart_date FROM price_alerts").fetchall() == [(now.date() + dt.timedelta(days=30),)]


def test_a_load_is_retried_only_while_the_server_cannot_be_reached(warehouse_dsn):
    warnings, waits, attempts = [], [], []

    def connect_nowhere():
        attempts.append("nowhere")
        psycopg.connect("postgresql://fares@127.0.0.1:9/warehouse", connect_timeout=2)

    with pytest.raises(psycopg.OperationalError):
        warehouse.retry_while_unreachable(connect_nowhere, 8, 100, warnings.append, sleep=waits.append)
    # Waits double up to their ceiling.
    assert len(attempts) == 8 and waits == [100, 200, 400, 600, 600, 600, 600] and len(warnings) == 7

    # A lock timeout is the server refusing the work, not going away: a retry would only wait for the lock again.
    with psycopg.connect(warehouse_dsn) as holder:
        warehouse.ensure_schema(holder)
        holder.execute("LOCK TABLE price_alerts IN ACCESS EXCLUSIVE MODE")
        attempts.clear()

        def wait_for_the_lock():
            attempts.append("locked")
            with psycopg.connect(warehouse_dsn) as conn:
                conn.execute("SET lock_timeout = '50ms'")
                conn.execute("SELECT count(*) FROM price_alerts")

        with pytest.raises(psycopg.errors.LockNotAvailable):
            warehouse.retry_while_unreachable(wait_for_the_lock, 3, 0, warnings.append, sleep=waits.append)
    assert attempts == ["locked"] and len(warnings) == 7
