"""BuyWaitAdvisor.fit and its judgement on the test trips as Spark jobs, for the MLlib engine: labels, policy
iteration, threshold, calibration and the policies followed through the test trips are computed where the feature
rows are, so no trip's rows have to fit on the driver.

advisor.py defines the policy (which rows are modelled, when it buys, what a threshold means); this module computes
the same quantities over Spark frames of spark_features.observation_features and hands the fitted models to the same
BuyWaitAdvisor, so saving, loading and advising do not depend on where it was trained. The parity tests hold its
labels, continuation ratios and threshold scores to the pandas functions' values.
"""
import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from sklearn.isotonic import IsotonicRegression

from fare_assets.local_dates import day_end
from fare_assets.synthesizing.advisor import (MIN_HISTORY, POLICY_ITERATIONS, THRESHOLD_CANDIDATES, BuyWaitAdvisor,
                                              chosen_threshold, is_last_call, too_early)
from fare_assets.synthesizing.estimators import SPARK, prior_classifier
from fare_assets.synthesizing.evaluation import (BUY_DAYS_BEFORE_DEPARTURE, IMPORTANCE_MAX_ROWS, TEST_SHARE,
                                                 VALIDATION_SHARE, EvaluationResult, HeldOutJudgement, TripSplit,
                                                 brier_score, calibration_bins, evaluated)
from fare_assets.synthesizing.features import MEANINGFUL_DROP_SHARE, MODEL_FEATURES
from fare_assets.synthesizing.spark_features import bounded_sample, route_calendar

# The classifier's probabilities are grouped to this many decimals before they reach the driver (to fit the
# calibration on validation rows, to bin and score it on test rows): at most a million points (24 MB) whatever the
# number of rows, and, as isotonic regression pools equal probabilities anyway, a fit that differs from one on every
# row only where probabilities differ by less than this.
CALIBRATION_DECIMALS = 6


def _trip() -> Window:
    """A trip's collections in time order (a function: building a window needs a running session)."""
    return Window.partitionBy("trip_id").orderBy("collected_at")


def with_drop_labels(features: DataFrame) -> DataFrame:
    """features.drop_labels as columns: future_min_fare (null at the last observation), drops_meaningfully,
    is_last_observation."""
    later = _trip().rowsBetween(1, Window.unboundedFollowing)
    future_min = F.min("fare").over(later)
    return (features.withColumn("future_min_fare", future_min)
            .withColumn("drops_meaningfully",
                        F.coalesce(F.col("future_min_fare") <= F.col("fare") * (1 - MEANINGFUL_DROP_SHARE), F.lit(False)))
            .withColumn("is_last_observation", F.lead("collected_at").over(_trip()).isNull()))


def _with_policy_columns(features: DataFrame, advisor: BuyWaitAdvisor) -> DataFrame:
    """Labels, and the rows the advisor models, must buy at (last call) or cannot advise on (short history)."""
    short_history = too_early(F.col("observation_count"), F.col("days_observed"), advisor.min_history)
    return (with_drop_labels(features)
            .withColumn("short_history", short_history)
            .withColumn("modelled", ~F.col("short_history") & ~F.col("is_last_observation"))
            .withColumn("last_call", is_last_call(F.col("days_ahead"), advisor.last_call_days_ahead)))


def buys(ratio: Column, threshold: float | Column) -> Column:
    """advisor.buy_mask: buy at the last call, else (with enough history) unless waiting promises > threshold."""
    return F.col("last_call") | (~F.col("short_history") & ~(ratio < 1 - threshold))


def continuation_ratio(buy: Column) -> Column:
    """advisor.continuation_ratios: the fare the policy pays if it waits now, over the fare now (null at the last row)."""
    purchase = F.when(buy | F.col("is_last_observation"), F.col("fare"))
    paid_from_here = F.first(purchase, ignorenulls=True).over(_trip().rowsBetween(0, Window.unboundedFollowing))
    return F.lead(paid_from_here, 1).over(_trip()) / F.col("fare")


def _model_inputs(frame: DataFrame, empty_columns: list[str]) -> DataFrame:
    """advisor.model_inputs: a column without any value in training is 0 where missing."""
    for column in empty_columns:
        value = F.col(column).cast("double")
        frame = frame.withColumn(column, F.when(value.isNull() | F.isnan(value), 0.0).otherwise(value))
    return frame


def _census(rows: DataFrame) -> tuple[int, int, list[str]]:
    """Rows, distinct drop labels and model columns without a single value, in one job."""
    def present(column: str) -> Column:
        value = F.col(column).cast("double")
        return F.count(F.when(value.isNotNull() & ~F.isnan(value), 1)).alias(column)

    counts = rows.agg(F.count(F.lit(1)).alias("_rows"), F.countDistinct("drops_meaningfully").alias("_labels"),
                      *[present(column) for column in MODEL_FEATURES]).first()
    return counts["_rows"], counts["_labels"], [column for column in MODEL_FEATURES if not counts[column]]


def _prior_classifier(label: bool):
    """The prior classifier of labels that hold only `label` (what BuyWaitAdvisor.fit fits on such rows)."""
    return prior_classifier().fit(pd.DataFrame({column: [0.0] for column in MODEL_FEATURES}), [label])


def score_thresholds(validation: DataFrame, ratio: str) -> tuple[dict[float, float], dict[float, float]]:
    """advisor._choose_threshold's scores and upset rates: per candidate threshold, the mean relative saving on the
    validation trips of following the policy with the predicted `ratio` column (rows need _with_policy_columns), and
    the share of those trips on which it paid more than the first fare."""
    candidates = F.array(*[F.lit(threshold) for threshold in THRESHOLD_CANDIDATES])
    per_threshold = validation.select("trip_id", "collected_at", "fare", ratio, "last_call", "short_history",
                                      "is_last_observation", F.explode(candidates).alias("threshold"))
    paid = (per_threshold.where(buys(F.col(ratio), F.col("threshold")) | F.col("is_last_observation"))
            .groupBy("threshold", "trip_id").agg(F.min_by("fare", "collected_at").alias("price_paid")))
    first = validation.groupBy("trip_id").agg(F.min_by("fare", "collected_at").alias("first_fare"))
    rows = (paid.join(first, "trip_id")
            .groupBy("threshold")
            .agg(F.avg((F.col("first_fare") - F.col("price_paid")) / F.col("first_fare")).alias("score"),
                 F.avg((F.col("price_paid") > F.col("first_fare")).cast("double")).alias("upset_rate"))
            .collect())
    by_threshold = {round(row["threshold"], 4): row for row in rows}
    return ({threshold: by_threshold[round(threshold, 4)]["score"] for threshold in THRESHOLD_CANDIDATES},
            {threshold: by_threshold[round(threshold, 4)]["upset_rate"] for threshold in THRESHOLD_CANDIDATES})


def _raw_probability(advisor: BuyWaitAdvisor, frame: DataFrame, name: str) -> DataFrame:
    """The classifier's own P(meaningful drop) per row as column `name`, before calibration."""
    if not hasattr(advisor.classifier, "with_probability"):
        classes = list(advisor.classifier.classes_)
        prior = float(advisor.classifier.class_prior_[classes.index(True)]) if True in classes else 0.0
        return frame.withColumn(name, F.lit(prior))
    return advisor.classifier.with_probability(_model_inputs(frame, advisor.empty_columns), name)


def _grouped_drops(advisor: BuyWaitAdvisor, rows: DataFrame) -> pd.DataFrame:
    """The modelled rows grouped by the classifier's own probability (to CALIBRATION_DECIMALS): raw, the mean
    probability, rate, the share that dropped meaningfully, and rows."""
    return (_raw_probability(advisor, rows.where("modelled"), "raw")
            .groupBy(F.round("raw", CALIBRATION_DECIMALS).alias("bin"))
            .agg(F.avg("raw").alias("raw"), F.avg(F.col("drops_meaningfully").cast("double")).alias("rate"),
                 F.count(F.lit(1)).alias("rows"))
            .orderBy("bin").toPandas())


def _calibration(advisor: BuyWaitAdvisor, validation: DataFrame) -> IsotonicRegression | None:
    """advisor._calibration on grouped probabilities: the observed drop rate as a monotone function of the
    classifier's probability on the validation rows it models; None with one outcome only."""
    grouped = _grouped_drops(advisor, validation)
    dropped_rows = float((grouped["rate"] * grouped["rows"]).sum())
    if dropped_rows < 0.5 or dropped_rows > grouped["rows"].sum() - 0.5:
        return None
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        grouped["raw"].to_numpy(), grouped["rate"].to_numpy(), sample_weight=grouped["rows"].to_numpy(dtype=float))


def fit_on_spark(advisor: BuyWaitAdvisor, train: DataFrame, validation: DataFrame) -> BuyWaitAdvisor:
    """BuyWaitAdvisor.fit on Spark frames of features: both models on the training trips, the threshold and the
    calibration on the validation trips. The advisor's estimators must be MLlib's (engine "spark")."""
    train = _with_policy_columns(train, advisor).checkpoint()
    usable = train.where("modelled")
    rows, labels, advisor.empty_columns = _census(usable)
    if not rows:
        raise ValueError(f"no training trip has {advisor.min_history}+ collections before its last one")
    inputs = _model_inputs(usable, advisor.empty_columns)
    if labels == 2:
        advisor.classifier = advisor._classifier().fit_frame(inputs, MODEL_FEATURES, "drops_meaningfully")
    else:
        advisor.classifier = _prior_classifier(bool(usable.select("drops_meaningfully").first()[0]))
    # Policy iteration from "buy now": waiting then means buying at the next collection.
    train = train.withColumn("buy", F.lit(True))
    for _ in range(POLICY_ITERATIONS):
        targets = _model_inputs(train.withColumn("target", continuation_ratio(F.col("buy"))).where("modelled"),
                                advisor.empty_columns)
        advisor.waiting_model = advisor._regressor().fit_frame(targets, MODEL_FEATURES, "target")
        predicted = advisor.waiting_model.with_prediction(_model_inputs(train, advisor.empty_columns), "_ratio")
        # Each round's policy is the next round's input: checkpointed, so the plan does not grow with the rounds.
        train = (train.drop("buy").join(predicted.select("trip_id", "collected_at", buys(F.col("_ratio"), 0.0)
                                                         .alias("buy")), ["trip_id", "collected_at"])
                 .checkpoint())
    validation = _with_policy_columns(validation, advisor)
    validation = advisor.waiting_model.with_prediction(_model_inputs(validation, advisor.empty_columns),
                                                       "_ratio").checkpoint()
    advisor.threshold_scores, advisor.threshold_upset_rates = score_thresholds(validation, "_ratio")
    advisor.threshold = chosen_threshold(advisor.threshold_scores, advisor.threshold_upset_rates,
                                         advisor.max_upset_rate)
    advisor.calibration = _calibration(advisor, validation)
    return advisor


def watched_to_departure(features: DataFrame) -> DataFrame:
    """evaluation.watched_to_departure: rows of trips whose departure day ended, at their origin, before the latest
    collection."""
    latest, trips = features.agg(F.max(F.unix_micros("collected_at")),
                                 F.collect_set(F.struct("origin", "depart_date"))).first()
    # Each trip's day end computed as pandas computes it (Python's zone rules), not with Spark's own (Java's).
    ends = features.sparkSession.createDataFrame(
        [(trip.origin, trip.depart_date, day_end(trip.origin, trip.depart_date)) for trip in trips],
        "origin string, depart_date date, departure_day_ended timestamp")
    return (features.join(F.broadcast(ends), ["origin", "depart_date"])
            .where(F.unix_micros("departure_day_ended") <= F.lit(latest)).select(*features.columns))


def split_by_departure(features: DataFrame) -> TripSplit:
    """evaluation.split_by_departure on a Spark frame: the three parts stay Spark frames."""
    # One row per departure date with its trips: the split needs the dates in order, not every trip on the driver.
    dates = (features.groupBy("trip_id").agg(F.first("depart_date").alias("depart_date"))
             .groupBy("depart_date").count().orderBy("depart_date").toPandas())
    position = dates["count"].cumsum().to_numpy()
    trip_count = int(position[-1]) if len(position) else 0

    def date_at(rank: int) -> pd.Timestamp:
        return pd.Timestamp(dates["depart_date"].iloc[int(np.searchsorted(position, rank, side="right"))])

    if trip_count == 0:
        raise ValueError("too few distinct departure dates for a split: train, validation, test would be empty")
    validation_from = date_at(int(trip_count * (1 - VALIDATION_SHARE - TEST_SHARE)))
    test_from = date_at(int(trip_count * (1 - TEST_SHARE)))
    depart = F.col("depart_date")
    train = features.where(depart < F.lit(validation_from.date()))
    validation = features.where((depart >= F.lit(validation_from.date())) & (depart < F.lit(test_from.date())))
    test = features.where(depart >= F.lit(test_from.date()))
    empty = [name for name, part in (("train", train), ("validation", validation), ("test", test)) if part.isEmpty()]
    if empty:
        raise ValueError(f"too few distinct departure dates for a split: {', '.join(empty)} would be empty")
    return TripSplit(train, validation, test, validation_from, test_from)


def train_and_evaluate(features: DataFrame, max_upset_rate: float | None = None) -> EvaluationResult:
    """evaluation.train_and_evaluate with the MLlib engine on Spark features: trained, thresholded and judged in Spark."""
    # Every step below reads the features: computed once here, not once per job.
    split = split_by_departure(watched_to_departure(features).checkpoint())
    advisor = fit_on_spark(BuyWaitAdvisor(engine=SPARK, max_upset_rate=max_upset_rate),
                           split.train, split.validation)
    advisor.route_calendar = route_calendar(features)
    return evaluated(advisor, split, validation_trips=split.validation.select("trip_id").distinct().count(),
                     judgement=judge_on_test(split.test, advisor))


def judge_on_test(test: DataFrame, advisor: BuyWaitAdvisor) -> HeldOutJudgement:
    """evaluation.judge_on_test as Spark jobs: only per-trip outcomes, probabilities grouped to CALIBRATION_DECIMALS
    and a sample of IMPORTANCE_MAX_ROWS rows reach the driver."""
    rows = _with_policy_columns(test, advisor)
    rows = advisor.waiting_model.with_prediction(_model_inputs(rows, advisor.empty_columns), "_ratio")
    rows = rows.withColumn("_advisor_buys", buys(F.col("_ratio"), advisor.threshold))
    rows = rows.withColumn("_paid_ratio", continuation_ratio(F.col("_advisor_buys"))).checkpoint()
    grouped = _grouped_drops(advisor, rows)
    probability = advisor.calibrated(grouped["raw"].to_numpy())
    inputs, paid_ratio = _waiting_sample(advisor, rows)
    return HeldOutJudgement(_policy_outcomes(rows),
                         calibration_bins(probability, grouped["rate"], rows=grouped["rows"]),
                         brier_score(probability, grouped["rate"], rows=grouped["rows"]), inputs, paid_ratio)


def _policy_outcomes(rows: DataFrame) -> dict[str, pd.DataFrame]:
    """evaluation.policy_outcomes: each policy's purchases() rows, from rows holding the advisor's buys."""
    trip = _trip()
    masks = {
        "advisor": F.col("_advisor_buys"),
        "buy_first": F.lit(True),
        "buy_21_days": F.col("days_ahead") <= BUY_DAYS_BEFORE_DEPARTURE,
        "running_min_rule": (F.col("observation_count") >= MIN_HISTORY)
        & F.coalesce(F.col("fare") <= F.lag("running_min").over(trip), F.lit(False)),
        "oracle": F.col("fare") == F.min("fare").over(Window.partitionBy("trip_id")),
    }
    bought = rows.select("trip_id", "collected_at", "fare", "days_ahead", "currency",
                         *[(mask | F.col("is_last_observation")).alias(name) for name, mask in masks.items()])
    purchase = F.struct("collected_at", "fare", "days_ahead", "currency")
    # The earliest row at which each policy buys: the smallest struct, which compares collected_at first.
    per_trip = bought.groupBy("trip_id").agg(
        F.min(F.struct("collected_at", "fare")).getField("fare").alias("first_fare"), F.min("fare").alias("min_fare"),
        *[F.min(F.when(F.col(name), purchase)).alias(name) for name in masks])
    fields = {"fare": "price_paid", "days_ahead": "days_ahead", "currency": "currency"}
    flat = per_trip.select("trip_id", "first_fare", "min_fare", *[
        F.col(name).getField(field).alias(f"{name}__{column}") for name in masks for field, column in fields.items()
    ]).orderBy("trip_id").toPandas().set_index("trip_id")
    return {name: pd.DataFrame({**{column: flat[f"{name}__{column}"] for column in fields.values()},
                                "first_fare": flat["first_fare"], "min_fare": flat["min_fare"]})
            for name in masks}


def _waiting_sample(advisor: BuyWaitAdvisor, rows: DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """evaluation.waiting_outcomes on at most IMPORTANCE_MAX_ROWS modelled rows, drawn in Spark."""
    key = ["trip_id", "collected_at"]
    modelled = rows.where("modelled").select(*key, *MODEL_FEATURES, "_paid_ratio")
    sample = bounded_sample(modelled, key, IMPORTANCE_MAX_ROWS, advisor.random_state).orderBy(*key).toPandas()
    return advisor.model_inputs(sample), sample["_paid_ratio"].to_numpy(dtype=float)
