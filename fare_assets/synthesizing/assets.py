"""Synthesizing: the buy/wait advisor and the fare model, retrained daily from the warehouse."""
import pandas as pd

from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, DefaultScheduleStatus, MaterializeResult,
                     MetadataValue, ScheduleDefinition, asset, define_asset_job)

from fare_assets.resources import LakeStorage, WarehouseResource
from fare_assets.run_limits import max_runtime_tags
from fare_assets.settings import load_settings
from fare_assets.storing import warehouse
from fare_assets.synthesizing.estimators import SPARK
from fare_assets.synthesizing.evaluation import advisor_not_worse_than_buying_now, evaluate_advisor
from fare_assets.synthesizing.fare_model import evaluate_fare_model, fit_fare_model
from fare_assets.synthesizing.model_files import (ADVISOR, FARE_MODEL, new_version, prune_versions, published_version,
                                                  save_version)
from fare_assets.synthesizing.plots import advisor_charts, fare_model_charts, markdown_image

ADVISOR_CHECK = "advisor_not_worse_than_buying_now"


def _chart_metadata(charts: dict[str, bytes]) -> dict[str, MetadataValue]:
    """Each chart as markdown metadata, which the Dagster UI renders as the image itself."""
    return {chart: MetadataValue.md(markdown_image(png, chart.replace("_", " "))) for chart, png in charts.items()}


def _engine_observations(warehouse_db: WarehouseResource, engine: str):
    """The observations where the engine computes: a pandas frame, or for MLlib a Spark frame read over JDBC."""
    if engine != SPARK:
        with warehouse_db.connect() as conn:
            return warehouse.observations(conn)
    from fare_assets.storing.spark_observations import read_observations
    from fare_assets.synthesizing.spark_estimators import model_session

    # Read by the training and counted for the metadata: kept after the first read, not queried from PostgreSQL twice.
    return read_observations(model_session(), warehouse_db.dsn).persist()


def _count(observations) -> int:
    """Rows of a pandas or a Spark frame."""
    return len(observations) if isinstance(observations, pd.DataFrame) else observations.count()


def _saved_and_pruned(context: AssetExecutionContext, lake: LakeStorage, name: str, version: str, model, metrics: dict,
                      charts: dict[str, bytes], publish: bool = True) -> list[str]:
    """Save (and publish) a version, then delete the versions FARES_MODEL_VERSIONS_KEPT lets go; those deleted."""
    try:
        # The version published until now stays too: a serving refresh may be reading it as this one replaces it.
        serving = [published_version(lake, name)]
    # None published yet, or a pointer the lake would not give now: then only the newest versions and the one this
    # run may publish are kept.
    except Exception:
        serving = []
    save_version(lake, name, version, model, metrics, charts, publish=publish)
    try:
        return prune_versions(lake, name, load_settings().model_versions_kept, spared=serving)
    # The new version is saved (and maybe published): old ones left over only cost space, and the next retrain
    # tries again.
    except Exception as error:
        context.log.warning(f"could not delete old {name} versions: {error}")
        return []


# The advisor is why the platform exists: it tells a traveller whether waiting is worth it.
@asset(
    name=ADVISOR, group_name="synthesizing", deps=["national_fares", "international_fares"],
    description="P(the cheapest fare drops meaningfully before departure) and a buy/wait policy.",
    # Blocking: a failing advisor stops the run before the serving tables read it.
    check_specs=[AssetCheckSpec(ADVISOR_CHECK, asset=ADVISOR, blocking=True,
                                description="On the validation trips the advisor pays no more than buying at once; "
                                            "an advisor that fails is saved but not published.")],
)
def buy_wait_advisor(context: AssetExecutionContext, lake: LakeStorage, warehouse_db: WarehouseResource):
    settings = load_settings()
    version, engine, max_upset_rate = new_version(), settings.model_engine, settings.advisor_max_upset_rate
    observations = _engine_observations(warehouse_db, engine)
    evaluation = evaluate_advisor(observations, engine, max_upset_rate)
    passed = advisor_not_worse_than_buying_now(evaluation.headline)
    charts = advisor_charts(evaluation)
    # A worse advisor stays on file for inspection, but the page keeps serving the last one that passed.
    pruned = _saved_and_pruned(context, lake, ADVISOR, version, evaluation.advisor, evaluation.headline, charts,
                               publish=passed)
    yield MaterializeResult(metadata={
        "version": version,
        "published": passed,
        "versions_pruned": MetadataValue.json(pruned),
        "engine": engine,
        "observations": _count(observations),
        **{key: value for key, value in evaluation.headline.items() if isinstance(value, (int, float, str))},
        # Text either way: one metadata type across materializations, with or without a cap.
        "max_upset_rate": "no cap" if max_upset_rate is None else f"{max_upset_rate:.1%}",
        "policies": MetadataValue.md(evaluation.table.to_markdown()),
        **_chart_metadata(charts),
    })
    yield AssetCheckResult(check_name=ADVISOR_CHECK, passed=passed,
                           metadata={key: evaluation.headline[key]
                                     for key in ("validation_mean_saving_share", "validation_trips",
                                                 "advisor_mean_saving_share", "test_trips")})


# The date grid shows a fare for every date, collected or not; this model fills the holes. It trains on
# its own so a watchlist too young for the advisor (no trip departed yet) still gets predictions.
@asset(
    name=FARE_MODEL, group_name="synthesizing", deps=["national_fares", "international_fares"],
    description="Predicts a trip's cheapest fare for dates never collected (fills the date grid).",
)
def fare_model(context: AssetExecutionContext, lake: LakeStorage, warehouse_db: WarehouseResource):
    version, engine = new_version(), load_settings().model_engine
    observations = _engine_observations(warehouse_db, engine)
    evaluation = evaluate_fare_model(observations, engine=engine)
    charts = fare_model_charts(evaluation)
    # Published refit on every observation, its metrics the holdout estimate of that fit: the page predicts the dates
    # nearest the newest departures, which the evaluated model never learned. (The advisor publishes its evaluated
    # model: its threshold and calibration are fitted on the part a refit would train on.)
    pruned = _saved_and_pruned(context, lake, FARE_MODEL, version, fit_fare_model(observations, engine),
                               evaluation.metrics, charts)
    return MaterializeResult(metadata={"version": version, "engine": engine, "observations": _count(observations),
                                       "versions_pruned": MetadataValue.json(pruned),
                                       **evaluation.metrics, **_chart_metadata(charts)})


synthesize_job = define_asset_job("synthesize", selection=[buy_wait_advisor, fare_model], tags=max_runtime_tags(),
                                  description="Retrain and evaluate the advisor and the fare model.")
# Prices and the watchlist change daily; so does what the advisor should have learned.
retrain_schedule = ScheduleDefinition(job=synthesize_job, cron_schedule="15 3 * * *", name="retrain_daily",
                                      default_status=DefaultScheduleStatus.RUNNING)
