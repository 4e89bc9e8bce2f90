"""The advisor trained and judged as Spark jobs (MLlib engine) computes what BuyWaitAdvisor.fit and the evaluation
compute in pandas: labels, the fare paid by waiting, the threshold scores, the calibration and each policy's purchases."""
import numpy as np
import pandas as pd
import pytest

from fare_assets.synthesizing import advisor as advisor_module
from fare_assets.synthesizing import spark_advisor
from fare_assets.synthesizing.advisor import THRESHOLD_CANDIDATES, BuyWaitAdvisor, continuation_ratios, drop_labels
from fare_assets.synthesizing.estimators import SPARK
from fare_assets.synthesizing.evaluation import judge_on_test, split_by_departure, watched_to_departure
from fare_assets.synthesizing.features import observation_features, route_calendar, spark_observation_features
from fare_assets.synthesizing.spark_estimators import SparkGradientBoostingClassifier, SparkGradientBoostingRegressor
from fare_assets.synthesizing.spark_features import bounded_sample, to_pandas
from fare_assets_tests.test_spark_models import capped_rounds
from fare_assets_tests.test_synthesizing import departures_around_the_latest_collection, fare_observations


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    return fare_observations(80, seed=11)


@pytest.fixture(scope="module")
def spark_features(spark, observations):
    """The Spark features of the watched market, checkpointed, and the same rows as pandas in the same order."""
    frame = spark_observation_features(observations).checkpoint()
    return frame, to_pandas(frame)


@pytest.fixture(scope="module")
def few_rounds():
    """The advisor's MLlib estimators with a few boosting rounds: the same wiring, seconds instead of minutes."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("gradient_boosted_regressor", "gradient_boosted_classifier"):
            patch.setattr(advisor_module, name, capped_rounds(getattr(advisor_module, name)))
        yield


def test_drop_labels_and_the_fare_paid_by_waiting_match_pandas(spark_features):
    from pyspark.sql import functions as F

    frame, features = spark_features
    # A policy that buys at every third collection of a trip, so waiting spans several rows.
    with_policy = (spark_advisor._with_policy_columns(frame, BuyWaitAdvisor(engine=SPARK))
                   .withColumn("buy", F.col("observation_count") % 3 == 0))
    computed = with_policy.withColumn("ratio", spark_advisor.continuation_ratio(F.col("buy")))
    computed = to_pandas(computed.select("trip_id", "collected_at", "depart_date", "return_date", "buy", "ratio",
                                         "future_min_fare", "drops_meaningfully", "is_last_observation"))
    labels = drop_labels(features)
    assert computed["drops_meaningfully"].tolist() == labels["drops_meaningfully"].tolist()
    assert computed["is_last_observation"].tolist() == labels["is_last_observation"].tolist()
    np.testing.assert_allclose(computed["future_min_fare"].to_numpy(dtype=float),
                               labels["future_min_fare"].to_numpy(dtype=float), equal_nan=True)
    expected = continuation_ratios(features, (features["observation_count"] % 3 == 0).to_numpy())
    np.testing.assert_allclose(computed["ratio"].to_numpy(dtype=float), expected, rtol=1e-12, equal_nan=True)
    # The data exercise what is compared: drops, and rows where waiting costs or saves.
    assert 0 < computed["drops_meaningfully"].mean() < 1
    assert (expected[~np.isnan(expected)] < 1).any() and (expected[~np.isnan(expected)] > 1).any()


def test_trips_count_as_departed_as_in_pandas_once_their_departure_day_has_ended(spark):
    departures = departures_around_the_latest_collection()
    frame = spark.createDataFrame(departures.assign(depart_date=departures["depart_date"].dt.date))
    departed = {row.trip_id for row in spark_advisor.watched_to_departure(frame).select("trip_id").collect()}
    assert departed == set(watched_to_departure(departures)["trip_id"]) == {"LHR 9th", "NRT 9th"}


def test_threshold_scores_and_upsets_match_following_the_policy_in_pandas(spark_features):
    frame, features = spark_features
    # Any ratio column will do: a smooth function of the features that crosses every candidate threshold.
    ratio = 0.95 + 0.1 * ((features["observation_count"] * 7 + features["nights"].fillna(0)) % 11) / 10
    advisor = BuyWaitAdvisor(engine=SPARK)
    ratios = frame.sparkSession.createDataFrame(features.assign(_ratio=ratio.to_numpy())[
        ["trip_id", "collected_at", "_ratio"]])
    validation = spark_advisor._with_policy_columns(frame, advisor).join(ratios, ["trip_id", "collected_at"])
    scores, upset_rates = spark_advisor.score_thresholds(validation, "_ratio")
    paid = {threshold: advisor_module.purchases(features, advisor.buy_mask(features, ratio.to_numpy(), threshold))
            for threshold in THRESHOLD_CANDIDATES}
    expected = {threshold: advisor_module.mean_relative_saving(outcomes) for threshold, outcomes in paid.items()}
    assert list(scores) == list(expected) == list(upset_rates)
    np.testing.assert_allclose(list(scores.values()), list(expected.values()), rtol=1e-9, atol=1e-12)
    assert len({round(score, 9) for score in scores.values()}) > 3
    assert upset_rates == {threshold: advisor_module.upset_rate(outcomes) for threshold, outcomes in paid.items()}
    assert len(set(upset_rates.values())) > 1


def test_the_advisor_trained_on_spark_scores_and_calibrates_as_pandas_would_with_its_models(spark, few_rounds,
                                                                                          observations):
    evaluation = spark_advisor.train_and_evaluate(spark_observation_features(observations))
    advisor, split = evaluation.advisor, evaluation.split
    assert isinstance(advisor.waiting_model, SparkGradientBoostingRegressor)
    assert isinstance(advisor.classifier, SparkGradientBoostingClassifier)
    # The same route calendar as pandas finds, on every trip.
    expected_calendar = route_calendar(observation_features(observations))
    assert advisor.route_calendar.complete_from == expected_calendar.complete_from
    pd.testing.assert_frame_equal(advisor.route_calendar.refilings, expected_calendar.refilings)
    # The same split as the pandas evaluation: trips by departure date.
    expected_split = split_by_departure(watched_to_departure(observation_features(observations)))
    assert (split.validation_from, split.test_from) == (expected_split.validation_from, expected_split.test_from)
    validation, test = to_pandas(split.validation), to_pandas(split.test)
    assert split.train.agg({"depart_date": "max"}).first()[0] < validation["depart_date"].min().date()
    assert validation["depart_date"].max() < test["depart_date"].min() == split.test_from
    # Given its fitted models, the pandas advisor's own threshold search and calibration give the same answers.
    expected_scores, expected_upsets = dict(advisor.threshold_scores), dict(advisor.threshold_upset_rates)
    assert advisor._choose_threshold(validation) == advisor.threshold
    np.testing.assert_allclose(list(advisor.threshold_scores.values()), list(expected_scores.values()), rtol=1e-9)
    assert advisor.threshold_upset_rates == expected_upsets
    spark_calibration = advisor.calibration
    spark_calibrated = advisor.drop_probability(validation)
    advisor.calibration = advisor._calibration(validation)
    np.testing.assert_allclose(spark_calibrated, advisor.drop_probability(validation), atol=1e-3)
    advisor.calibration = spark_calibration
    # The test trips judged in Spark are those the pandas split holds, with the same features.
    assert test["trip_id"].tolist() == expected_split.test["trip_id"].tolist()
    np.testing.assert_allclose(test["fare_to_route_peers"], expected_split.test["fare_to_route_peers"], rtol=1e-9)
    assert evaluation.headline["test_trips"] == test["trip_id"].nunique()
    assert evaluation.headline["validation_trips"] == validation["trip_id"].nunique()
    # Judged in Spark as the pandas functions judge the same rows with the same models.
    expected = judge_on_test(test, advisor)
    judgement = evaluation.judgement
    assert list(judgement.outcomes) == list(expected.outcomes)
    for policy, outcome in expected.outcomes.items():
        computed = judgement.outcomes[policy]
        assert computed.index.tolist() == outcome.index.tolist(), policy
        assert computed["currency"].tolist() == outcome["currency"].tolist(), policy
        for column in ("price_paid", "days_ahead", "first_fare", "min_fare"):
            np.testing.assert_allclose(computed[column].to_numpy(dtype=float), outcome[column].to_numpy(dtype=float),
                                       rtol=1e-12, err_msg=f"{policy} {column}")
    # Probabilities are grouped to 6 decimals in Spark: the bins agree to well under a ten-thousandth.
    assert judgement.calibration["rows"].tolist() == expected.calibration["rows"].tolist()
    np.testing.assert_allclose(judgement.calibration[["mean_probability", "observed_rate"]].to_numpy(),
                               expected.calibration[["mean_probability", "observed_rate"]].to_numpy(), atol=1e-4)
    assert judgement.brier_score == pytest.approx(expected.brier_score, abs=1e-4)
    # Fewer modelled rows than the sample holds: the sample is all of them, in another order.
    assert len(judgement.waiting_inputs) == len(expected.waiting_inputs) < 3000
    assert list(judgement.waiting_inputs.columns) == list(expected.waiting_inputs.columns)
    np.testing.assert_allclose(np.sort(judgement.waiting_paid_ratio), np.sort(expected.waiting_paid_ratio), rtol=1e-12)
    # The advisor does not buy at every first observation: the outcomes exercise waiting.
    assert (judgement.outcomes["advisor"]["price_paid"] != judgement.outcomes["advisor"]["first_fare"]).any()


def test_a_bounded_sample_is_the_same_rows_however_the_frame_is_partitioned(spark_features):
    frame, features = spark_features
    key = ["trip_id", "collected_at"]
    samples = [to_pandas(bounded_sample(frame.repartition(partitions), key, 50, seed=3)) for partitions in (1, 7)]
    assert len(samples[0]) == 50 < len(features)
    pd.testing.assert_frame_equal(samples[0], samples[1])
    # Rows of the frame, drawn across its trips rather than the first ones.
    rows = features.set_index(key)
    assert samples[0].set_index(key).index.isin(rows.index).all()
    assert samples[0]["trip_id"].nunique() > 10
    assert len(to_pandas(bounded_sample(frame, key, 50, seed=4)).merge(samples[0], on=key)) < 50
