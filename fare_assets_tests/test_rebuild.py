"""Rebuild from raw: curated Parquet and the warehouse, deleted and restructured, come back identical.

Also the warehouse going down during a load: a dedicated PostgreSQL cluster is stopped under a
structuring run, the run fails naming the server (never its password), and a rerun completes it.
"""
import hashlib
import json
import shutil
from pathlib import Path

import psycopg
import pyarrow.dataset as ds
import pytest
from dagster import DagsterInstance

from fare_assets.definitions import build_defs
from fare_assets.partitions import range_run_tags
from fare_assets.resources import local_resources
from fare_assets.storing import warehouse
from fare_assets.storing.lake import RAW_PREFIX, curated_table_path, is_partial_object
from fare_assets.storing.postgres import EmbeddedPostgres
from fare_assets.structuring.assets import CURATED_TABLES
from fare_assets.services import free_port

TINY_WATCHLIST = """trips:
  - {origin: SFO, destination: JFK, nights: [3], depart_days_ahead: {from: 1, to: 13, every: 6}}
  - {origin: LHR, destination: JFK, nights: [7], depart_days_ahead: {from: 1, to: 13, every: 6}}
"""
# Trust authentication ignores it; it is here to prove no message repeats it.
PASSWORD = "not-a-real-secret"


@pytest.fixture(scope="module")
def warehouse_cluster(tmp_path_factory):
    """A PostgreSQL cluster of this module's own, so stopping it disturbs no other test."""
    cluster = EmbeddedPostgres(tmp_path_factory.mktemp("rebuild-pg") / "cluster", free_port())
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def collected(tmp_path_factory, market_url, warehouse_cluster):
    """Four days of collections for two routes, structured and loaded once."""
    home = tmp_path_factory.mktemp("fares-rebuild")
    watchlist = home / "watchlist.yaml"
    watchlist.write_text(TINY_WATCHLIST)
    patch = pytest.MonkeyPatch()
    dsn = warehouse_cluster.dsn().replace("//fares@", f"//fares:{PASSWORD}@")
    for name, value in {"FARES_HOME": str(home), "FARES_WATCHLIST": str(watchlist), "FARES_MARKET_URL": market_url,
                        "FARES_WAREHOUSE_DSN": dsn}.items():
        patch.setenv(name, value)
    defs = build_defs(local_resources())
    with DagsterInstance.ephemeral() as instance:
        collect_config = {"history_days": 4, "every_hours": 24, "history_until": "2026-11-28T08:00:00+00:00"}
        collection = defs.resolve_job_def("collect_fares").execute_in_process(
            instance=instance, run_config={"ops": {"raw_fare_quotes": {"config": collect_config}}})
        hours = list(collection.asset_materializations_for_node("raw_fare_quotes")[0].metadata["landing_hours"].value)
        structure = lambda: defs.resolve_job_def("structure_landing_hour").execute_in_process(  # noqa: E731
            instance=instance, tags=range_run_tags(hours[0], hours[-1]), raise_on_error=False)
        assert structure().success
        yield defs, structure
    patch.undo()


def curated_checksums(lake_root: str) -> dict[str, str]:
    """Per curated table, a hash of its sorted rows (partition columns included): file layout and order do not count."""
    checksums = {}
    for table in CURATED_TABLES:
        rows = ds.dataset(curated_table_path(lake_root, table), format="parquet", partitioning="hive").to_table()
        lines = sorted(repr(tuple(row.values())) for row in rows.to_pylist())
        checksums[table] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return checksums


def warehouse_checksums(conn: psycopg.Connection) -> dict[str, str]:
    """Per warehouse table, the md5 of its rows as text in key order."""
    keys = {**dict.fromkeys(warehouse.FARE_TABLES, "option_id"), **dict.fromkeys(warehouse.DIMENSION_TABLES, "code")}
    return {table: conn.execute(f"SELECT md5(string_agg(t::text, ',' ORDER BY {key})) FROM {table} AS t").fetchone()[0]
            for table, key in keys.items()}


def failure_texts(result) -> str:
    """Every message and failure detail a run recorded."""
    return "\n".join(f"{event.message}\n{event.event_specific_data}" for event in result.all_events)


def test_a_warehouse_down_during_the_load_fails_clearly_and_a_rerun_completes(collected, warehouse_cluster,
                                                                              monkeypatch):
    defs, structure = collected
    monkeypatch.setenv("FARES_WAREHOUSE_LOAD_ATTEMPTS", "2")
    monkeypatch.setenv("FARES_WAREHOUSE_RETRY_SECONDS", "0.1")
    with defs.resources["warehouse_db"].connect() as conn:
        before = warehouse_checksums(conn)
        counts = warehouse.table_counts(conn, warehouse.WAREHOUSE_TABLES)
    assert all(counts.values()), counts
    warehouse_cluster.stop()
    try:
        failed = structure()
    finally:
        warehouse_cluster.start()
    assert not failed.success
    texts = failure_texts(failed)
    assert f"warehouse PostgreSQL 127.0.0.1:{warehouse_cluster.port}/fares failed during the load in 2 attempts" in texts
    assert PASSWORD not in texts
    # The failed load's export was written (its parent folder is there) and removed all the same.
    exports = Path(defs.resources["lake"].root) / "exports" / "warehouse"
    assert exports.is_dir() and list(exports.iterdir()) == []
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse_checksums(conn) == before
    assert structure().success
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse_checksums(conn) == before


def test_a_load_that_finds_an_option_missing_fails_after_recording_its_check(collected, monkeypatch):
    defs, structure = collected
    load_warehouse = warehouse.load_warehouse

    def one_short(*arguments, **options):
        load = load_warehouse(*arguments, **options)
        load.present -= 1
        return load

    monkeypatch.setattr(warehouse, "load_warehouse", one_short)
    failed = structure()
    assert not failed.success
    assert {check.check_name: check.passed for check in failed.get_asset_check_evaluations()}[
        "every_option_loaded"] is False
    assert "every_option_loaded failed: " in failure_texts(failed)


def test_a_load_outlives_a_warehouse_restart_and_gives_up_after_its_attempts(collected, warehouse_cluster):
    # The server goes away and comes back while the load waits for its third attempt.
    def count_fares():
        with psycopg.connect(warehouse_cluster.dsn(), connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM national_fares").fetchone()[0]

    waits, warnings = [], []

    def restart_on_second_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            warehouse_cluster.start()

    expected = count_fares()
    warehouse_cluster.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            warehouse.retry_while_unreachable(count_fares, 2, 0, warnings.append, sleep=lambda seconds: None)
        assert len(warnings) == 1 and warnings[0].startswith("warehouse load attempt 1 of 2 failed (")
        warnings.clear()
        assert warehouse.retry_while_unreachable(count_fares, 4, 0.5, warnings.append,
                                                 sleep=restart_on_second_wait) == expected > 0
    finally:
        if not warehouse_cluster.running():
            warehouse_cluster.start()
    assert waits == [0.5, 1.0] and len(warnings) == 2 and "attempt 2 of 4" in warnings[1]


def test_an_option_a_restructured_hour_no_longer_yields_leaves_the_warehouse(collected):
    # A stricter rule, played by the raw object: one search's record is now quarantined (no status).
    defs, structure = collected
    raw = min(path for path in Path(defs.resources["lake"].root, RAW_PREFIX).rglob("*")
              if path.is_file() and not is_partial_object(str(path)))
    original = raw.read_text()
    lines = original.splitlines(keepends=True)
    search_id = json.loads(lines[0])["search_id"]

    def options_per_table() -> dict[str, int]:
        with defs.resources["warehouse_db"].connect() as conn:
            return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE search_id = %s", (search_id,)).fetchone()[0]
                    for table in warehouse.FARE_TABLES}

    with defs.resources["warehouse_db"].connect() as conn:
        before = warehouse_checksums(conn)
    options = options_per_table()
    assert sum(options.values()) > 0
    raw.write_text(json.dumps({**json.loads(lines[0]), "status": None}) + "\n" + "".join(lines[1:]))
    try:
        restructured = structure()
        assert restructured.success
        loads = restructured.asset_materializations_for_node("warehouse_fares")
        assert {load.asset_key.path[-1]: load.metadata["rows_withdrawn"].value for load in loads} == options
        assert {check.check_name: check.passed for check in restructured.get_asset_check_evaluations()}[
            "every_option_loaded"] is True
        assert options_per_table() == {table: 0 for table in warehouse.FARE_TABLES}
    finally:
        raw.write_text(original)
    assert structure().success
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse_checksums(conn) == before


def test_rebuilding_from_raw_reproduces_every_table(collected):
    defs, structure = collected
    lake_root = defs.resources["lake"].root
    curated_before = curated_checksums(lake_root)
    with defs.resources["warehouse_db"].connect() as conn:
        warehouse_before = warehouse_checksums(conn)
        conn.execute(f"DROP TABLE {', '.join(warehouse.WAREHOUSE_TABLES)}")
    shutil.rmtree(Path(curated_table_path(lake_root, "searches")).parent)
    assert structure().success
    assert curated_checksums(lake_root) == curated_before
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse_checksums(conn) == warehouse_before
    assert all(warehouse_before.values()), warehouse_before
