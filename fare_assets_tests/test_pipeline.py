"""The whole asset graph on a tiny watchlist: real market server, local Spark, real PostgreSQL."""
import datetime as dt
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, EnvVar

from fare_assets.definitions import build_defs
from fare_assets.pipeline import _collected_until, curated_row_counts, run_pipeline
from fare_assets.resources import local_resources
from fare_assets.storing import warehouse
from fare_assets.streaming.sweep_times import collection_times
from fare_assets.storing.lake import model_version_key, published_model_key
from fare_assets.structuring.assets import CURATED_TABLES
from fare_assets.synthesizing import assets as synthesizing_assets
from fare_assets.synthesizing.model_files import published_version

TINY_WATCHLIST = """trips:
  - {origin: SFO, destination: JFK, nights: [3, 7], depart_days_ahead: {from: 1, to: 63, every: 3}}
  - {origin: LHR, destination: JFK, nights: [7], depart_days_ahead: {from: 1, to: 63, every: 3}, adults: 2, children: 1}
"""


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, market_url, postgres):
    home = tmp_path_factory.mktemp("fares")
    watchlist = home / "watchlist.yaml"
    watchlist.write_text(TINY_WATCHLIST)
    dsn = postgres.dsn("postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE pipeline_test")
    patch = pytest.MonkeyPatch()
    for name, value in {"FARES_HOME": str(home), "FARES_WATCHLIST": str(watchlist), "FARES_MARKET_URL": market_url,
                        "FARES_WAREHOUSE_DSN": postgres.dsn("pipeline_test")}.items():
        patch.setenv(name, value)
    defs = build_defs(local_resources())
    with DagsterInstance.ephemeral() as instance:
        # A fixed end keeps the market's answers, and so the trained advisor, the same on any day.
        report = run_pipeline(defs, instance, history_days=60, every_hours=24, history_until="2026-11-28T08:00:00+00:00")
        yield defs, instance, report
    patch.undo()


def test_every_asset_materializes_and_every_check_passes(pipeline_run):
    _, _, report = pipeline_run
    assert report.ok, report.summary()
    assert report.landing_hours


def test_every_curated_table_and_both_warehouse_tables_have_rows(pipeline_run):
    defs, _, report = pipeline_run
    assert set(report.curated_rows) == set(CURATED_TABLES)
    assert all(rows > 0 for rows in report.curated_rows.values()), report.curated_rows
    assert report.warehouse_rows["national_fares"] > 0 and report.warehouse_rows["international_fares"] > 0
    with defs.resources["warehouse_db"].connect() as conn:
        routes = conn.execute("SELECT DISTINCT origin || '-' || destination FROM national_fares").fetchall()
        foreign = conn.execute("SELECT DISTINCT origin || '-' || destination FROM international_fares").fetchall()
        partitions = warehouse.fare_partitions(conn, "national_fares")
    assert routes == [("SFO-JFK",)] and foreign == [("LHR-JFK",)]
    # 60 days collected up to 2026-11-28: one partition per collection month.
    assert partitions == ["national_fares_p202609", "national_fares_p202610", "national_fares_p202611"]


def test_runs_read_the_warehouse_dsn_from_the_environment_and_the_definitions_keep_only_its_name(pipeline_run):
    defs, _, report = pipeline_run
    # The Dagster UI shows resource configuration: an EnvVar by its name, never the DSN (and password) it holds.
    dsn = defs.resources["warehouse_db"].dsn
    assert isinstance(dsn, EnvVar) and dsn == "FARES_WAREHOUSE_DSN"
    assert report.warehouse_rows["national_fares"] > 0


def test_a_second_make_run_replays_only_what_the_warehouse_lacks(pipeline_run):
    defs, _, _ = pipeline_run
    # Every watched entry was collected up to the history's last sweep: the same history has nothing left to sweep,
    # and one day later only that day.
    end = dt.datetime(2026, 11, 28, 8, tzinfo=dt.timezone.utc)
    until = _collected_until(defs)
    assert dt.datetime.fromisoformat(until) == end
    # Its own instance: the module's keeps the first collection as the latest for the other tests.
    with DagsterInstance.ephemeral() as instance:
        again = defs.resolve_job_def("collect_fares").execute_in_process(instance=instance, run_config={"ops": {
            "raw_fare_quotes": {"config": {"history_days": 60, "every_hours": 24, "history_until": end.isoformat(),
                                           "history_after": until}}}})
    metadata = again.asset_materializations_for_node("raw_fare_quotes")[0].metadata
    assert (metadata["sweeps"].value, metadata["calls"].value) == (0, 0)
    assert collection_times(60, 24, end, after=end) == []
    assert collection_times(60, 24, end + dt.timedelta(days=1), after=end) == [
        end.replace(hour=0) + dt.timedelta(days=1), end + dt.timedelta(days=1)]
    # An entry never collected (a route added to the watchlist) gets the whole history.
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse.collected_until(conn, [("qpx", "SFO", "JFK", 1, 0, "COACH"),
                                                ("qpx", "BOS", "LAX", 1, 0, "COACH")]) is None


def test_searches_match_the_calls_made(pipeline_run):
    defs, instance, report = pipeline_run
    collected = instance.get_latest_materialization_event(AssetKey("raw_fare_quotes")).asset_materialization.metadata
    assert report.curated_rows["searches"] == collected["calls"].value


def test_rerunning_a_landing_hour_changes_nothing(pipeline_run):
    defs, instance, report = pipeline_run
    hour = report.landing_hours[0]
    before_curated = curated_row_counts(defs.resources["lake"].root, list(CURATED_TABLES))
    with defs.resources["warehouse_db"].connect() as conn:
        before_warehouse = warehouse.table_counts(conn)
    result = defs.resolve_job_def("structure_landing_hour").execute_in_process(
        instance=instance, partition_key=f"{hour}:00")
    assert result.success
    assert curated_row_counts(defs.resources["lake"].root, list(CURATED_TABLES)) == before_curated
    with defs.resources["warehouse_db"].connect() as conn:
        assert warehouse.table_counts(conn) == before_warehouse


def test_the_models_report_a_score_and_show_their_charts(pipeline_run):
    defs, instance, report = pipeline_run
    assert report.model_metrics, "the synthesize run wrote no metrics"
    charts = {"buy_wait_advisor": ["savings_distribution", "calibration", "feature_importance"],
              "fare_model": ["predicted_vs_actual", "feature_importance"]}
    for model, names in charts.items():
        metadata = instance.get_latest_materialization_event(AssetKey(model)).asset_materialization.metadata
        for name in names:
            assert metadata[name].value.startswith(f"![{name.replace('_', ' ')}](data:image/png;base64,"), (model, name)
        folder = Path(defs.resources["lake"].object_path(model_version_key(model, metadata["version"].value)))
        assert all((folder / f"{name}.png").stat().st_size > 0 for name in names), sorted(folder.iterdir())


def test_the_advisor_and_the_fare_model_retrain_daily(pipeline_run):
    defs, _, _ = pipeline_run
    schedule = defs.resolve_schedule_def("retrain_daily")
    assert (schedule.cron_schedule, schedule.job_name) == ("15 3 * * *", "synthesize")
    job = defs.resolve_job_def("synthesize")
    assert job.asset_layer.executable_asset_keys == {AssetKey("buy_wait_advisor"), AssetKey("fare_model")}


def test_an_advisor_worse_than_buying_now_stops_the_run_and_is_not_published(pipeline_run, monkeypatch):
    defs, instance, _ = pipeline_run
    lake = defs.resources["lake"]
    published = lake.read_object(published_model_key("buy_wait_advisor"))
    # The real gate judges the asset's real headline, its validation saving made a loss.
    gate = synthesizing_assets.advisor_not_worse_than_buying_now
    judged = []

    def on_a_loss(headline: dict) -> bool:
        judged.append(headline)
        return gate({**headline, "validation_mean_saving_share": -0.01})
    monkeypatch.setattr(synthesizing_assets, "advisor_not_worse_than_buying_now", on_a_loss)
    result = defs.resolve_job_def("synthesize").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success and len(judged) == 1 and judged[0]["validation_mean_saving_share"] >= 0
    [check] = [evaluation for evaluation in result.get_asset_check_evaluations()
               if evaluation.check_name == synthesizing_assets.ADVISOR_CHECK]
    assert not check.passed
    metadata = instance.get_latest_materialization_event(AssetKey("buy_wait_advisor")).asset_materialization.metadata
    assert metadata["published"].value is False
    assert len(lake.read_object(model_version_key("buy_wait_advisor", metadata["version"].value, "model.pkl"))) > 0
    assert lake.read_object(published_model_key("buy_wait_advisor")) == published
    # The fare model does not depend on the advisor: it was retrained and published in the same run.
    fare_model = instance.get_latest_materialization_event(AssetKey("fare_model")).asset_materialization.metadata
    assert published_version(lake, "fare_model") == fare_model["version"].value


def test_the_mllib_engine_retrains_the_advisor_from_the_warehouse_over_jdbc(pipeline_run, monkeypatch):
    from fare_assets.synthesizing import advisor as advisor_module
    from fare_assets.synthesizing import fare_model as fare_model_module
    from fare_assets_tests.test_spark_models import capped_rounds

    defs, instance, _ = pipeline_run
    sklearn_run = instance.get_latest_materialization_event(AssetKey("buy_wait_advisor")).asset_materialization.metadata
    monkeypatch.setenv("FARES_MODEL_ENGINE", "spark")
    for module, name in [(advisor_module, "gradient_boosted_regressor"), (advisor_module, "gradient_boosted_classifier"),
                         (fare_model_module, "gradient_boosted_regressor")]:
        monkeypatch.setattr(module, name, capped_rounds(getattr(module, name)))
    result = defs.resolve_job_def("synthesize").execute_in_process(instance=instance)
    assert result.success
    metadata = instance.get_latest_materialization_event(AssetKey("buy_wait_advisor")).asset_materialization.metadata
    assert metadata["engine"].value == "spark" and metadata["published"].value is True
    # The same observations reached Spark over JDBC as reached pandas, and the same trips were judged.
    for key in ("observations", "test_trips", "validation_trips"):
        assert metadata[key].value == sklearn_run[key].value, key
