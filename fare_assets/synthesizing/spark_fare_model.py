"""FareModel.fit and evaluate_fare_model as Spark jobs, for the MLlib engine: the design matrix is built, the
regressor fitted and the test rows judged where the observations are; the route tables it keeps (codes, usual
carrier mix) are one row per route, and only a sample of the test rows comes to the driver, to be charted.

fare_model.py defines the model (its columns, codes and defaults); this module builds the same matrix over a Spark
frame, and the parity test holds it to FareModel.design_matrix's values.
"""
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fare_assets.synthesizing.fare_model import (CARRIER_MIX, CHARTED_TEST_ROWS, FARE_MODEL_FEATURES, MAX_ROUTE_CODES,
                                                 TEST_SHARE, FareModel, FareModelEvaluation, _national, as_grid_cells)
from fare_assets.synthesizing.features import CABIN_RANKS, TRIP_KEY, great_circle_km
from fare_assets.synthesizing.spark_features import MICROS_PER_DAY, bounded_sample, to_pandas_times


def _route() -> Column:
    return F.concat_ws("-", "origin", "destination")


def _lookup(mapping: dict, key: Column) -> Column:
    """`mapping[key]` as a Spark column (null for a key it lacks); the mappings here hold one entry per route."""
    if not mapping:
        return F.lit(None)
    return F.create_map(*[F.lit(item) for pair in mapping.items() for item in pair])[key]


def _route_table(rows: DataFrame) -> pd.DataFrame:
    """Per route in `rows`: great-circle km and whether both airports are in one country (few rows: one per route)."""
    routes = rows.select("origin", "destination").distinct().toPandas()
    routes["distance_km"] = [great_circle_km(o, d) for o, d in zip(routes["origin"], routes["destination"])]
    routes["airports_national"] = _national(routes)
    routes.index = routes["origin"] + "-" + routes["destination"]
    return routes


def design_matrix(model: FareModel, rows: DataFrame) -> DataFrame:
    """FareModel.design_matrix over a Spark frame of trip rows (`at` a timestamp): the rows with FARE_MODEL_FEATURES
    added (replacing any column of the same name)."""
    routes = _route_table(rows)
    route, depart, back = _route(), F.col("depart_date"), F.col("return_date")
    features = {
        "route_code": _lookup(model.route_codes, route).cast("double"),
        "distance_km": _lookup({name: float(km) for name, km in routes["distance_km"].dropna().items()}, route)
        .cast("double"),
        "national": _lookup({name: float(flag) for name, flag in routes["airports_national"].dropna().items()}, route)
        .cast("double"),
        "days_ahead": (F.unix_date(depart).cast("double") * MICROS_PER_DAY - F.unix_micros("at")) / MICROS_PER_DAY,
        "depart_weekday": F.weekday(depart),
        "return_weekday": F.weekday(back).cast("double"),
        "depart_month": F.month(depart),
        "nights": F.datediff(back, depart).cast("double"),
        "passengers": F.col("adults").cast("int") + F.col("children").cast("int"),
        "cabin_rank": _lookup({cabin: float(rank) for cabin, rank in CABIN_RANKS.items()}, F.upper("cabin")),
    }
    # A date never collected has no carrier mix: what the route usually shows, else the overall median.
    for column in CARRIER_MIX:
        given = F.col(column).cast("double") if column in rows.columns else F.lit(None).cast("double")
        usual = _lookup(model.route_defaults[column].dropna().astype(float).to_dict(), route)
        features[column] = F.coalesce(given, usual, F.lit(model.global_defaults.get(column)).cast("double"))
    return rows.withColumns({name: features[name] for name in FARE_MODEL_FEATURES})


def fit_on_spark(model: FareModel, observations: DataFrame) -> FareModel:
    """FareModel.fit on a Spark frame of observations (the warehouse's columns); the regressor must be MLlib's."""
    rows = observations.withColumnRenamed("collected_at", "at").withColumn("_route", _route())
    busiest = (rows.groupBy("_route").count().orderBy(F.desc("count"), "_route").limit(MAX_ROUTE_CODES)
               .toPandas()["_route"])
    model.route_codes = {route: code for code, route in enumerate(sorted(busiest))}
    model.route_defaults = (rows.groupBy("_route").agg(*[F.median(column).alias(column) for column in CARRIER_MIX])
                            .toPandas().set_index("_route").rename_axis(None).sort_index())
    overall = rows.agg(*[F.median(column).alias(column) for column in CARRIER_MIX]).first()
    model.global_defaults = {column: float("nan") if overall[column] is None else float(overall[column])
                             for column in CARRIER_MIX}
    matrix = design_matrix(model, rows).withColumn(
        "_log_fare_per_passenger", F.log(F.col("cheapest_total").cast("double") / F.col("passengers")))
    model.regressor = model._regressor().fit_frame(matrix, FARE_MODEL_FEATURES, "_log_fare_per_passenger")
    return model


def evaluate_on_spark(observations: DataFrame) -> FareModelEvaluation:
    """evaluate_fare_model with MLlib: trained on earlier departures and judged on the later ones in Spark; the
    evaluation's test rows (and their predictions) are a sample of at most CHARTED_TEST_ROWS, for the charts."""
    # fare_model.evaluation_split: the departure date below which 1 - TEST_SHARE of the rows fall (interpolated).
    split_day = observations.agg(F.percentile(F.unix_date("depart_date"), 1 - TEST_SHARE)).first()[0]
    day = F.unix_date("depart_date")
    train, test = observations.where(day < split_day), observations.where(day >= split_day)
    model = fit_on_spark(FareModel(engine="spark"), train)
    means = train.groupBy(_route().alias("route")).agg(F.avg("cheapest_total").alias("mean")).toPandas()
    overall_mean, train_rows = train.agg(F.avg("cheapest_total"), F.count(F.lit(1))).first()
    # Judged as the page asks (fare_model.as_grid_cells). The matrix replaces columns of its own names (national,
    # the carrier mix): the test rows keep what was observed.
    test = as_grid_cells(test)
    kept = {column: f"_observed_{column}" for column in test.columns}
    rows = test.select(*[F.col(column).alias(name) for column, name in kept.items()], *test.columns)
    rows = rows.withColumnRenamed("collected_at", "at").withColumn("_route", _route())
    judged = (model.regressor.with_prediction(design_matrix(model, rows), "_log_fare_per_passenger")
              .withColumn("_predicted", F.exp("_log_fare_per_passenger") * F.col("passengers"))
              .withColumn("_baseline", F.coalesce(_lookup(means.set_index("route")["mean"].to_dict(), _route()),
                                                  F.lit(float(overall_mean))))
              .select(*[F.col(name).alias(column) for column, name in kept.items()], "_predicted", "_baseline")
              .persist())
    try:
        actual = F.col("cheapest_total").cast("double")
        totals = judged.agg(F.count(F.lit(1)).alias("rows"), *[
            aggregate(F.abs(actual - F.col(column)) / divisor).alias(f"{name}{column}")
            for column in ("_predicted", "_baseline") for name, aggregate, divisor in
            (("mae", F.avg, F.lit(1.0)), ("mape", F.avg, actual))]).first()
        test_rows = totals["rows"]
        key = [*TRIP_KEY, "collected_at"]
        sample = to_pandas_times(bounded_sample(judged, key, CHARTED_TEST_ROWS).orderBy(*key))
    finally:
        judged.unpersist()
    metrics = {
        "train_rows": int(train_rows),
        "test_rows": int(test_rows),
        "mae": float(totals["mae_predicted"]),
        "mape": float(totals["mape_predicted"]),
        "route_mean_mae": float(totals["mae_baseline"]),
        "route_mean_mape": float(totals["mape_baseline"]),
    }
    predicted = sample.pop("_predicted").to_numpy(dtype=float)
    sample = sample.drop(columns="_baseline").rename(columns={"collected_at": "at"})
    return FareModelEvaluation(model, sample, predicted, metrics)
