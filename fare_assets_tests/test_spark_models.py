"""The Spark MLlib model engine: gradient-boosted estimators with scikit-learn's surface, the advisor and the fare
model trained on it, their model files, and FARES_MODEL_ENGINE choosing it."""
import functools
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fare_assets.settings import PROJECT_ROOT, load_settings
from fare_assets.synthesizing import advisor as advisor_module
from fare_assets.synthesizing import fare_model as fare_model_module
from fare_assets.synthesizing.advisor import LAST_CALL_DAYS_AHEAD, BuyWaitAdvisor
from fare_assets.synthesizing.estimators import SPARK, gradient_boosted_classifier, gradient_boosted_regressor
from fare_assets.synthesizing.evaluation import evaluate_advisor
from fare_assets.synthesizing.fare_model import FareModel, evaluate_fare_model
from fare_assets.synthesizing.plots import permutation_importances
from fare_assets.synthesizing.spark_estimators import SparkGradientBoostingClassifier, SparkGradientBoostingRegressor
from fare_assets.synthesizing.spark_features import to_pandas
from fare_assets_tests.test_synthesizing import WATCH_START, fare_observations

# The advisor boosts 200-300 rounds per model and the fare model 300, about 0.4 s each in local Spark on two busy
# cores; a few rounds show the same wiring. MLlib's first tree fits the target at full weight, so a few rounds
# already predict sensibly.
BOOSTING_ROUNDS = 5


def synthetic_inputs(rows: int, seed: int) -> pd.DataFrame:
    """A driving number, a category with its own effect, a column that is missing on a third of the rows, noise."""
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0, 1, rows)
    gap[rng.random(rows) < 0.33] = np.nan
    return pd.DataFrame({"x": rng.uniform(0, 10, rows), "category": rng.integers(0, 4, rows).astype(float),
                         "gap": gap, "noise": rng.normal(size=rows)})


CATEGORY_EFFECTS = np.array([0.0, 6.0, -6.0, 3.0])


def synthetic_target(inputs: pd.DataFrame, seed: int) -> np.ndarray:
    """Rises with x, shifts by category, and is 5 higher where `gap` is missing."""
    noise = np.random.default_rng(seed).normal(0, 0.2, len(inputs))
    effects = CATEGORY_EFFECTS[inputs["category"].astype(int)]
    return 2 * inputs["x"].to_numpy() + effects + 5 * inputs["gap"].isna().to_numpy() + noise


def capped_rounds(factory):
    """`factory` building estimators of at most BOOSTING_ROUNDS rounds."""

    @functools.wraps(factory)
    def build(engine, **params):
        return factory(engine, **{**params, "max_iter": min(params["max_iter"], BOOSTING_ROUNDS)})

    return build


@pytest.fixture(scope="module")
def spark_engine(spark):
    """FARES_MODEL_ENGINE=spark read through the settings, as the asset reads it, with few boosting rounds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FARES_MODEL_ENGINE", "spark")
        factories = [(advisor_module, "gradient_boosted_regressor"), (advisor_module, "gradient_boosted_classifier"),
                     (fare_model_module, "gradient_boosted_regressor")]
        for module, name in factories:
            patch.setattr(module, name, capped_rounds(getattr(module, name)))
        yield load_settings().model_engine


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    return fare_observations(80, seed=11)


@pytest.fixture(scope="module")
def spark_evaluation(spark_engine, observations):
    return evaluate_advisor(observations, spark_engine)


@pytest.fixture(scope="module")
def fare_evaluation(spark_engine, observations):
    return evaluate_fare_model(observations, engine=spark_engine)


def test_spark_regressor_learns_a_rising_target_categories_and_missing_values(spark):
    inputs = synthetic_inputs(3000, seed=1)
    target = synthetic_target(inputs, seed=2)
    model = gradient_boosted_regressor(SPARK, max_iter=20, learning_rate=0.3, random_state=0,
                                       categorical_features=[False, True, False, False]).fit(inputs, target)
    assert isinstance(model, SparkGradientBoostingRegressor) and model.n_iter_ == 20
    # Without a checkpoint folder MLlib never cuts the boosting lineage, and a full-size fit overflows the stack.
    assert spark.sparkContext.getCheckpointDir()
    held_out = synthetic_inputs(1000, seed=3)
    predicted = model.predict(held_out)
    assert predicted.shape == (1000,)
    assert np.mean(np.abs(predicted - synthetic_target(held_out, seed=4))) < 1.0
    grid = pd.DataFrame({"x": np.linspace(0.5, 9.5, 10), "category": 0.0, "gap": 0.5, "noise": 0.0})
    along_x = model.predict(grid)
    assert np.all(np.diff(along_x) > 0) and along_x[-1] - along_x[0] == pytest.approx(18, abs=2)
    by_category = model.predict(grid.iloc[[4] * 4].assign(category=[0.0, 1.0, 2.0, 3.0]))
    assert by_category - by_category[0] == pytest.approx(CATEGORY_EFFECTS, abs=1.5)
    assert model.predict(grid.iloc[[4]].assign(gap=np.nan))[0] - along_x[4] == pytest.approx(5, abs=1.5)
    # A category never seen in training (or none) falls in the one kept for them: still a finite prediction.
    assert np.isfinite(model.predict(grid.iloc[[4, 4]].assign(category=[99.0, np.nan]))).all()
    importances = permutation_importances(model, held_out, synthetic_target(held_out, seed=4),
                                          "neg_mean_absolute_error", repeats=1)
    assert list(importances.index[:2]) == ["x", "category"]
    assert abs(importances["noise"]) < 0.05 * importances["x"]
    # On a Spark frame the same model predicts the same values, under the name asked for, beside the frame's columns.
    frame = spark.createDataFrame(grid.assign(row=np.arange(len(grid))))
    on_frame = model.with_prediction(frame, "fare_ratio").orderBy("row").toPandas()
    assert list(on_frame.columns) == [*grid.columns, "row", "fare_ratio"]
    np.testing.assert_allclose(on_frame["fare_ratio"], along_x, rtol=1e-12)
    with pytest.raises(ValueError, match="already has column"):
        model.with_prediction(frame.withColumnRenamed("row", "prediction"), "fare_ratio")


def test_spark_classifier_gives_probabilities_of_its_two_classes(spark):
    inputs = synthetic_inputs(2000, seed=5)
    labels = synthetic_target(inputs, seed=6) > 10
    model = gradient_boosted_classifier(SPARK, max_iter=10, learning_rate=0.3, random_state=0).fit(inputs, labels)
    assert isinstance(model, SparkGradientBoostingClassifier)
    assert list(model.classes_) == [False, True]
    held_out = synthetic_inputs(500, seed=7)
    probabilities = model.predict_proba(held_out)
    assert probabilities.shape == (500, 2)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(500))
    truth = synthetic_target(held_out, seed=8) > 10
    assert probabilities[truth, 1].mean() > 0.8 and probabilities[~truth, 1].mean() < 0.2
    assert (model.predict(held_out) == truth).mean() > 0.9
    with pytest.raises(ValueError, match="two classes"):
        model.fit(inputs, np.ones(len(inputs), dtype=bool))


def test_spark_early_stopping_keeps_only_rounds_that_help(spark):
    inputs = synthetic_inputs(2000, seed=9)
    pure_noise = np.random.default_rng(10).normal(100, 1, len(inputs))
    model = gradient_boosted_regressor(SPARK, max_iter=30, learning_rate=0.3, random_state=0,
                                       early_stopping=True).fit(inputs, pure_noise)
    assert 1 <= model.n_iter_ < 30
    assert model.predict(inputs.iloc[:50]) == pytest.approx(np.full(50, 100), abs=1)


def test_the_advisor_trains_and_advises_on_spark(spark_evaluation):
    advisor, test = spark_evaluation.advisor, to_pandas(spark_evaluation.split.test)
    assert advisor.engine == "spark"
    assert isinstance(advisor.waiting_model, SparkGradientBoostingRegressor)
    assert isinstance(advisor.classifier, SparkGradientBoostingClassifier)
    decisions = advisor.decisions(test)
    assert set(decisions["action"]) <= {"buy", "wait", "not_enough_data"} and "buy" in set(decisions["action"])
    assert (decisions.loc[test["days_ahead"] <= LAST_CALL_DAYS_AHEAD, "action"] == "buy").all()
    advised = decisions.dropna()
    assert len(advised) > 0
    assert advised["drop_probability"].between(0, 1).all() and (advised["expected_saving"] >= 0).all()
    table = spark_evaluation.table
    assert table.loc["oracle", "mean_price_paid"] <= table.loc["advisor", "mean_price_paid"]
    assert spark_evaluation.headline["test_trips"] == test["trip_id"].nunique() > 0


def test_a_spark_advisor_model_file_predicts_identically(spark_evaluation, tmp_path):
    path = tmp_path / "advisor" / "model.pkl"
    spark_evaluation.advisor.save(path)
    loaded = BuyWaitAdvisor.load(path)
    assert loaded.engine == "spark"
    test = to_pandas(spark_evaluation.split.test)
    pd.testing.assert_frame_equal(loaded.decisions(test), spark_evaluation.advisor.decisions(test))
    assert loaded.threshold == spark_evaluation.advisor.threshold


def test_the_fare_model_trains_and_predicts_on_spark(fare_evaluation, observations, tmp_path):
    model, metrics = fare_evaluation.model, fare_evaluation.metrics
    assert model.engine == "spark" and isinstance(model.regressor, SparkGradientBoostingRegressor)
    assert metrics["test_rows"] == len(fare_evaluation.predicted) > 0
    assert 0 < metrics["mape"] < metrics["route_mean_mape"]
    assert 0 < metrics["mae"] < metrics["route_mean_mae"]
    at = WATCH_START + pd.Timedelta(days=10)
    depart = pd.Timestamp("2026-12-01").date()
    back = pd.Timestamp("2026-12-08").date()
    fare = model.predict("SFO", "JFK", depart, back, at)
    route = observations[(observations["origin"] == "SFO") & (observations["destination"] == "JFK")]
    assert route["cheapest_total"].min() * 0.8 < fare < route["cheapest_total"].max() * 1.2
    # An unseen route has no route code: the category kept for unseen ones, with its distance and dates.
    assert 0 < model.predict("DEN", "ATL", depart, None, at) < np.inf
    model.save(tmp_path / "fare.pkl")
    assert FareModel.load(tmp_path / "fare.pkl").predict("SFO", "JFK", depart, back, at) == fare


def test_settings_choose_the_model_engine(monkeypatch):
    monkeypatch.delenv("FARES_MODEL_ENGINE", raising=False)
    assert load_settings().model_engine == "sklearn"
    monkeypatch.setenv("FARES_MODEL_ENGINE", "spark")
    assert load_settings().model_engine == "spark"
    monkeypatch.setenv("FARES_MODEL_ENGINE", "xgboost")
    with pytest.raises(ValueError, match="FARES_MODEL_ENGINE is 'xgboost'; set it to one of sklearn, spark"):
        load_settings()
    with pytest.raises(ValueError, match="unknown model engine 'xgboost'"):
        gradient_boosted_regressor("xgboost", max_iter=5, learning_rate=0.1, random_state=0)


def test_the_sklearn_engine_never_loads_spark():
    script = """
import sys
import numpy as np, pandas as pd
from fare_assets.settings import PROJECT_ROOT, load_settings
assert "sklearn" not in sys.modules, "reading the settings loaded scikit-learn"
from fare_assets.synthesizing.estimators import gradient_boosted_regressor
inputs = pd.DataFrame({"x": np.arange(200.0)})
model = gradient_boosted_regressor(load_settings().model_engine, max_iter=5, learning_rate=0.1, random_state=0)
model.fit(inputs, 2 * inputs["x"]).predict(inputs)
from fare_assets.synthesizing.evaluation import evaluate_advisor
from fare_assets.synthesizing.features import engine_features
observations = pd.DataFrame({"origin": "SFO", "destination": "JFK", "depart_date": pd.Timestamp("2027-01-10"),
                             "return_date": pd.Timestamp("2027-01-17"), "adults": 1, "children": 0, "cabin": "COACH",
                             "collected_at": pd.date_range("2026-12-01", periods=4, freq="D", tz="UTC"),
                             "cheapest_total": [300.0, 290.0, 310.0, 305.0], "currency": "USD", "option_count": 9,
                             "carrier_count": 3, "nonstop_share": 0.5, "national": True})
features = engine_features(observations, load_settings().model_engine)
print(type(model).__name__, len(features), "pyspark" in sys.modules)
"""
    env_without_engine = {name: value for name, value in os.environ.items() if name != "FARES_MODEL_ENGINE"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=PROJECT_ROOT, env=env_without_engine)
    assert result.stdout.split() == ["HistGradientBoostingRegressor", "4", "False"]
