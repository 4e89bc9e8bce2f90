"""The Spark features (MLlib engine) hold the same values as the pandas features, row by row and column by column."""
import numpy as np
import pandas as pd
import pytest

from fare_assets.synthesizing import spark_features
from fare_assets.synthesizing.estimators import SPARK
from fare_assets.synthesizing.features import (MODEL_FEATURES, engine_features, observation_features, route_calendar,
                                               spark_observation_features)
from fare_assets_tests.test_synthesizing import (CHANGING_REFILINGS, fare_observations, hand_made_trip,
                                                 route_departing_every_other_day, route_with_refilings)


@pytest.fixture(scope="module")
def spark_engine(spark):
    """The project's session, used by the MLlib engine (model_session takes the active one)."""
    return SPARK


def assert_same_features(observations: pd.DataFrame) -> pd.DataFrame:
    """Both engines' features of `observations` agree (same index, columns, dtypes and values); the Spark ones."""
    expected = observation_features(observations)
    actual = engine_features(observations, SPARK)
    assert list(actual.index) == list(expected.index) and actual.index.name == expected.index.name
    assert sorted(actual.columns) == sorted(expected.columns)
    for column in expected.columns:
        assert actual[column].dtype == expected[column].dtype, column
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(actual[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float),
                                       rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)
        else:
            assert actual[column].tolist() == expected[column].tolist(), column
    return actual


def test_spark_features_equal_the_pandas_features_on_a_watched_market(spark_engine):
    observations = fare_observations(80, seed=5)
    # Shuffled and indexed as a caller's frame may be: the features keep each row's index.
    observations = observations.sample(frac=1.0, random_state=3).set_axis(
        pd.Index(np.arange(len(observations)) * 7 + 100, name="row"))
    actual = assert_same_features(observations)
    # The data exercise what is compared: one-way trips, route peers, and a value in every model column.
    assert actual["return_date"].isna().any()
    assert actual["fare_to_route_peers"].notna().sum() > 300
    assert [column for column in MODEL_FEATURES if actual[column].isna().all()] == []


@pytest.mark.parametrize("collections_per_day, refiled_from_collection", [(1, 0), (4, 0), (4, 2)])
def test_spark_features_find_the_same_refilings(spark_engine, collections_per_day, refiled_from_collection):
    observations = route_with_refilings([5, 15, 25, 35], range(20, 22), collections_per_day=collections_per_day,
                                        refiled_from_collection=refiled_from_collection)
    # Dates as the warehouse returns them (datetime64), not as date objects.
    for column in ("depart_date", "return_date"):
        observations[column] = pd.to_datetime(observations[column])
    actual = assert_same_features(observations)
    # Each refiling day from the collection that shows it; the first (day 5) has no earlier refiling to count from.
    assert (actual["days_since_route_refile"] == 0).sum() == 4 * 6 * (collections_per_day - refiled_from_collection)
    assert actual["route_refile_interval"].max() == 10


def test_spark_features_give_the_same_route_calendar(spark_engine):
    observations = route_departing_every_other_day(CHANGING_REFILINGS)
    expected = route_calendar(observation_features(observations))
    actual = spark_features.route_calendar(spark_observation_features(observations))
    assert actual.complete_from == expected.complete_from == pd.Timestamp("2027-01-01") + pd.Timedelta(days=298)
    pd.testing.assert_frame_equal(actual.refilings, expected.refilings)
    assert len(actual.refilings) > 10


def test_spark_features_do_not_depend_on_the_session_time_zone(spark, spark_engine):
    trip = hand_made_trip([300.0, 290.0, 310.0, 305.0, 280.0])
    # Hourly across the night New York's clocks fall back (2026-11-01 05:00-06:00 UTC happens twice there).
    trip["collected_at"] = pd.date_range("2026-11-01 03:30", periods=5, freq="h", tz="UTC")
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        actual = assert_same_features(trip)
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert actual["collected_at"].tolist() == trip["collected_at"].tolist()


@pytest.mark.parametrize("engine", ["sklearn", SPARK])
def test_both_engines_refuse_a_repeated_moment_and_no_observations(spark_engine, engine):
    trip = hand_made_trip([300.0, 250.0, 280.0, 260.0])
    trip.loc[2, "collected_at"] = trip.loc[1, "collected_at"]
    with pytest.raises(ValueError, match="1 observation.s. repeat a trip's collection moment .first trip: SFO-JFK-2027-01-10"):
        engine_features(trip, engine)
    with pytest.raises(ValueError, match="no observations"):
        engine_features(trip.iloc[:0], engine)
    with pytest.raises(ValueError, match="nonstop_share"):
        engine_features(trip.drop(columns=["nonstop_share"]), engine)


def test_both_engines_see_no_spread_when_the_days_changes_are_all_taken_back(spark_engine):
    observations = route_with_refilings([5], range(0), days=8, collections_per_day=4, refiled_from_collection=1)
    for column in ("depart_date", "return_date"):
        observations[column] = pd.to_datetime(observations[column])
    # The day-5 refiling shows from 15:00 on three trips and from 18:00 on the other three, and is withdrawn at
    # 21:00: every trip is back at its fare of the day before (the running sums take the moves back in another order).
    day_5 = pd.Timestamp("2027-01-06 12:00", tz="UTC")
    before = observations.loc[observations["collected_at"] == day_5 - pd.Timedelta(days=1), "cheapest_total"].to_numpy()
    observations.loc[observations["collected_at"] == day_5 + pd.Timedelta(hours=9), "cheapest_total"] = before
    late = (observations["collected_at"] == day_5 + pd.Timedelta(hours=3)) & (observations["depart_date"] >= "2027-04-04")
    observations.loc[late, "cheapest_total"] = before[3:]
    actual = assert_same_features(observations)
    at_withdrawal = actual[actual["collected_at"] == day_5 + pd.Timedelta(hours=9)]
    assert (at_withdrawal["route_changed_share"] == 0).all() and at_withdrawal["route_change_dispersion"].isna().all()
    assert (at_withdrawal["route_mean_change"] == 0).all()
