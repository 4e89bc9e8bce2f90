"""The fare model trained as Spark jobs (MLlib engine) builds the pandas FareModel's design matrix, route tables and
evaluation split."""
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from fare_assets.synthesizing import fare_model as fare_model_module
from fare_assets.synthesizing import spark_fare_model
from fare_assets.synthesizing.fare_model import FARE_MODEL_FEATURES, FareModel, evaluate_fare_model
from fare_assets.synthesizing.features import spark_observations
from fare_assets.synthesizing.spark_estimators import SparkGradientBoostingRegressor
from fare_assets.synthesizing.spark_features import to_pandas_times
from fare_assets_tests.test_spark_models import capped_rounds
from fare_assets_tests.test_synthesizing import fare_observations

ORDER = ["origin", "destination", "depart_date", "return_date", "adults", "children", "cabin", "collected_at"]


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    frame = fare_observations(60, seed=4).sort_values(ORDER, kind="stable").reset_index(drop=True)
    # Rows the matrix must fill in: a route never seen in training, no carrier mix, no known country pair.
    odd = frame.iloc[:3].copy()
    odd[["origin", "destination"]] = [("DEN", "ATL"), ("SFO", "JFK"), ("LAX", "ORD")]
    odd["carrier_count"] = [np.nan, np.nan, 2.0]
    odd["nonstop_share"] = [0.5, np.nan, np.nan]
    # SFO-JFK's collection held an option via Canada: not national there, as a grid cell never knows.
    odd["national"] = [np.nan, False, np.nan]
    return frame, odd


@pytest.fixture(scope="module")
def few_rounds():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fare_model_module, "gradient_boosted_regressor",
                      capped_rounds(fare_model_module.gradient_boosted_regressor))
        yield


def test_the_spark_design_matrix_and_route_tables_are_the_pandas_ones(spark, few_rounds, observations):
    frame, odd = observations
    expected = FareModel().fit(frame)
    trained = spark_fare_model.fit_on_spark(FareModel(engine="spark"), spark_observations(frame))
    assert isinstance(trained.regressor, SparkGradientBoostingRegressor)
    assert trained.route_codes == expected.route_codes and len(trained.route_codes) == 6
    pd.testing.assert_frame_equal(trained.route_defaults, expected.route_defaults, check_dtype=False)
    assert trained.global_defaults == pytest.approx(expected.global_defaults)
    rows = pd.concat([frame.iloc[:200], odd], ignore_index=True).astype({"national": object})
    rows["national"] = rows["national"].where(rows["national"].notna(), None)
    rows["row"] = np.arange(len(rows))
    spark_rows = spark_observations(rows)
    matrix = to_pandas_times(spark_fare_model.design_matrix(expected, spark_rows.withColumn("at", F.col("collected_at"))))
    matrix = matrix.sort_values("row").reset_index(drop=True)
    wanted = expected.design_matrix(rows.rename(columns={"collected_at": "at"}))
    for column in FARE_MODEL_FEATURES:
        np.testing.assert_allclose(matrix[column].to_numpy(dtype=float), wanted[column].to_numpy(dtype=float),
                                   rtol=1e-12, equal_nan=True, err_msg=column)
    # The odd rows exercise every fallback: an unseen route, the route's usual mix, the overall median, countries.
    assert np.isnan(matrix["route_code"].iloc[-3]) and matrix["national"].iloc[-3] == 1.0
    assert matrix["national"].iloc[-2] == 1.0
    assert matrix["carrier_count"].iloc[-2] == expected.route_defaults.loc["SFO-JFK", "carrier_count"]


def test_the_spark_evaluation_judges_the_same_test_rows_as_pandas(spark, few_rounds, observations):
    frame, _ = observations
    expected = evaluate_fare_model(frame)
    evaluation = evaluate_fare_model(frame, engine="spark")
    for key in ("train_rows", "test_rows", "route_mean_mae", "route_mean_mape"):
        assert evaluation.metrics[key] == pytest.approx(expected.metrics[key], rel=1e-12), key
    assert 0 < evaluation.metrics["mape"] < evaluation.metrics["route_mean_mape"]
    # Fewer test rows than a chart draws: the sample is every one of them.
    assert len(evaluation.predicted) == len(evaluation.test_rows) == evaluation.metrics["test_rows"]
    # The errors computed in Spark are those of the same model's pandas predictions on the same rows.
    train, test = fare_model_module.evaluation_split(frame)
    route_means = train.groupby(train["origin"] + "-" + train["destination"])["cheapest_total"].mean()
    on_driver = fare_model_module.evaluated(evaluation.model, test, route_means, float(train["cheapest_total"].mean()),
                                            len(train))
    for key in ("mae", "mape", "route_mean_mae"):
        assert evaluation.metrics[key] == pytest.approx(on_driver.metrics[key], rel=1e-9), key
    # The charted rows are the observed ones with their predictions, as predict_frame gives them.
    np.testing.assert_allclose(evaluation.predicted, evaluation.model.predict_frame(evaluation.test_rows), rtol=1e-9)
    charted = evaluation.test_rows.set_index(ORDER[:-1] + ["at"]).sort_index()
    observed = test.rename(columns={"collected_at": "at"}).set_index(ORDER[:-1] + ["at"]).sort_index()
    np.testing.assert_allclose(charted["cheapest_total"].astype(float), observed["cheapest_total"].astype(float))
    # Judged as the page asks: without the carrier mix a date never collected lacks.
    assert set(evaluation.test_rows.columns) == set(test.rename(columns={"collected_at": "at"}).columns) - {
        "carrier_count", "nonstop_share"}
