"""The Spark features (MLlib engine) hold the same values as the pandas features, row by row and column by column."""
import numpy as np
import pandas as pd
import pytest

from fare_assets.synthesizing import spark_features
from fare_assets.synthesizing.features import MODEL_FEATURES, observation_features
from fare_assets_tests.test_synthesizing import fare_observations, route_with_refilings


def spark_and_pandas_features(spark, observations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both versions' features of `observations`, each sorted by trip and collection time."""
    expected = observation_features(observations).reset_index(drop=True)
    actual = spark_features.to_pandas(spark_features.observation_features(spark.createDataFrame(observations)))
    return expected, actual


def assert_same_features(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert sorted(actual.columns) == sorted(expected.columns)
    assert len(actual) == len(expected)
    assert actual["trip_id"].tolist() == expected["trip_id"].tolist()
    assert actual["collected_at"].tolist() == expected["collected_at"].tolist()
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(actual[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float),
                                       rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)
        else:
            assert actual[column].tolist() == expected[column].tolist(), column


def test_spark_features_equal_the_pandas_features_on_a_watched_market(spark):
    observations = fare_observations(80, seed=5)
    expected, actual = spark_and_pandas_features(spark, observations)
    assert_same_features(expected, actual)
    # The data exercise what is compared: one-way trips, route peers, and a value in every model column.
    assert actual["return_date"].isna().any()
    assert actual["fare_to_route_peers"].notna().sum() > 300
    assert [column for column in MODEL_FEATURES if actual[column].isna().all()] == []


def test_spark_features_find_the_same_refilings(spark):
    observations = route_with_refilings([5, 15, 25, 35], range(20, 22))
    expected, actual = spark_and_pandas_features(spark, observations)
    assert_same_features(expected, actual)
    assert (actual["days_since_route_refile"] == 0).sum() == 4 * 6
    assert actual["route_refile_interval"].max() == 10


def test_spark_features_name_what_is_missing(spark):
    observations = spark.createDataFrame(fare_observations(2, seed=1).drop(columns=["nonstop_share"]))
    with pytest.raises(ValueError, match="nonstop_share"):
        spark_features.observation_features(observations)
