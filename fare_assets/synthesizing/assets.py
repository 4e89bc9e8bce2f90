"""Synthesizing: the buy/wait advisor and the fare model, retrained daily from the warehouse."""
import datetime as dt
import json
from pathlib import Path

from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, MaterializeResult,
                     MetadataValue, ScheduleDefinition, define_asset_job, multi_asset)

from fare_assets.resources import LakeResource, WarehouseResource
from fare_assets.settings import load_settings
from fare_assets.storing import warehouse
from fare_assets.storing.lake import models_path
from fare_assets.synthesizing.evaluation import train_and_evaluate
from fare_assets.synthesizing.fare_model import FareModel, evaluate_fare_model
from fare_assets.synthesizing.features import observation_features
from fare_assets.synthesizing.plots import advisor_charts, fare_model_charts, markdown_image

ADVISOR = "buy_wait_advisor"
FARE_MODEL = "fare_model"
# Held-out sets are a few dozen trips and the advisor needs three collections before it advises, so
# a loss of a fraction of a percent against buying at the first quote is noise, not a worse model.
ADVISOR_LOSS_TOLERANCE_SHARE = 0.005


def save_version(lake_root: str, name: str, version: str, model, metrics: dict, charts: dict[str, bytes] | None = None) -> Path:
    """Write model, metrics and charts (<chart>.png) under models/<name>/<version>/ and point models/<name>/latest.json at it."""
    folder = Path(models_path(lake_root, name)) / version
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.pkl")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    for chart, png in (charts or {}).items():
        (folder / f"{chart}.png").write_bytes(png)
    latest = Path(models_path(lake_root, name)) / "latest.json"
    latest.write_text(json.dumps({"version": version, "path": str(folder / "model.pkl")}))
    return folder


def read_latest_metrics(lake_root: str) -> dict:
    """Headline metrics of the latest advisor and fare model, flattened for a summary."""
    metrics = {}
    for name in (ADVISOR, FARE_MODEL):
        latest = Path(models_path(lake_root, name)) / "latest.json"
        if latest.exists():
            folder = Path(json.loads(latest.read_text())["path"]).parent
            for key, value in json.loads((folder / "metrics.json").read_text()).items():
                metrics[f"{name}.{key}"] = round(value, 4) if isinstance(value, float) else value
    return metrics


def _chart_metadata(charts: dict[str, bytes]) -> dict[str, MetadataValue]:
    """Each chart as markdown metadata, which the Dagster UI renders as the image itself."""
    return {chart: MetadataValue.md(markdown_image(png, chart.replace("_", " "))) for chart, png in charts.items()}


# The advisor is why the platform exists: it tells a traveller whether waiting is worth it.
@multi_asset(
    specs=[
        AssetSpec(ADVISOR, group_name="synthesizing", deps=["national_fares", "international_fares"],
                  description="P(the cheapest fare drops meaningfully before departure) and a buy/wait policy."),
        AssetSpec(FARE_MODEL, group_name="synthesizing", deps=["national_fares", "international_fares"],
                  description="Predicts a trip's cheapest fare for dates never collected (fills the date grid)."),
    ],
    check_specs=[AssetCheckSpec("advisor_not_worse_than_buying_now", asset=ADVISOR,
                                description="On held-out trips the advisor pays no more than buying at once "
                                            "(within 0.5% of the fare).")],
)
def fare_advisor_models(context: AssetExecutionContext, lake: LakeResource, warehouse_db: WarehouseResource):
    with warehouse_db.connect() as conn:
        observations = warehouse.observations(conn)
    version = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    engine = load_settings().model_engine
    evaluation = train_and_evaluate(observation_features(observations), engine=engine)
    charts = advisor_charts(evaluation)
    save_version(lake.root, ADVISOR, version, evaluation.advisor, evaluation.headline, charts)
    yield MaterializeResult(asset_key=ADVISOR, metadata={
        "version": version,
        "engine": engine,
        "observations": len(observations),
        **{key: value for key, value in evaluation.headline.items() if isinstance(value, (int, float, str))},
        "policies": MetadataValue.md(evaluation.table.to_markdown()),
        **_chart_metadata(charts),
    })
    fare_evaluation = evaluate_fare_model(observations, engine=engine)
    fare_charts = fare_model_charts(fare_evaluation)
    save_version(lake.root, FARE_MODEL, version, FareModel(engine=engine).fit(observations), fare_evaluation.metrics,
                 fare_charts)
    yield MaterializeResult(asset_key=FARE_MODEL, metadata={"version": version, "engine": engine,
                                                             **fare_evaluation.metrics, **_chart_metadata(fare_charts)})
    yield AssetCheckResult(check_name="advisor_not_worse_than_buying_now", asset_key=ADVISOR,
                           passed=evaluation.headline["advisor_mean_saving_share"] >= -ADVISOR_LOSS_TOLERANCE_SHARE,
                           metadata={key: evaluation.headline[key]
                                     for key in ("advisor_mean_saving", "advisor_mean_saving_share", "test_trips")})


synthesize_job = define_asset_job("synthesize", selection=[fare_advisor_models],
                                  description="Retrain and evaluate the advisor and the fare model.")
# Prices and the watchlist change daily; so does what the advisor should have learned.
retrain_schedule = ScheduleDefinition(job=synthesize_job, cron_schedule="15 3 * * *", name="retrain_daily")
