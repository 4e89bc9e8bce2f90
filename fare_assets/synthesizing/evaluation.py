"""Time-split evaluation of the buy/wait advisor against baselines and a perfect-information oracle."""
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fare_assets.local_dates import day_end
from fare_assets.synthesizing.advisor import (BUY, MIN_HISTORY, BuyWaitAdvisor, continuation_ratios,
                                              mean_relative_saving, purchases, upset_rate)
from fare_assets.synthesizing.estimators import SKLEARN, SPARK
from fare_assets.synthesizing.features import observation_features, route_calendar, spark_observation_features

# Etzioni et al., "To buy or not to buy", KDD 2003: Hamlet's savings were 61.8% of the oracle's.
HAMLET_SHARE_OF_ORACLE_SAVING = 0.618

BUY_DAYS_BEFORE_DEPARTURE = 21

BASELINES = ("buy_first", "buy_21_days", "running_min_rule")
POLICIES = ("advisor", *BASELINES, "oracle")

CALIBRATION_BINS = 10
# The shares of departed trips, by departure date, held out for the threshold and calibration, and for the test.
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
# Permutation importance predicts the sample once per column and repeat: capped so a daily run takes seconds.
IMPORTANCE_MAX_ROWS = 3000


@dataclass(frozen=True)
class TripSplit:
    """Feature rows split by whole trips on departure date: train < validation_from <= validation < test_from <= test.

    With the MLlib engine all three are Spark frames: training and judging run where the rows are.
    """

    train: object
    validation: object
    test: object
    validation_from: pd.Timestamp
    test_from: pd.Timestamp


@dataclass(frozen=True)
class HeldOutJudgement:
    """What the test trips say about a trained advisor, small enough for the driver whatever their number: each
    policy's per-trip outcomes (purchases() rows), the drop probability's calibration_bins and Brier score on the
    rows the advisor is asked about, and a sample of at most IMPORTANCE_MAX_ROWS of them for the waiting model's
    permutation importance (its inputs, and the fare that waiting really cost over the fare then)."""

    outcomes: dict[str, pd.DataFrame]
    calibration: pd.DataFrame
    brier_score: float
    waiting_inputs: pd.DataFrame
    waiting_paid_ratio: np.ndarray


@dataclass(frozen=True)
class EvaluationResult:
    """A trained advisor, the split it was trained and judged on, the policy table, headline metrics and what the
    test trips say about it (HeldOutJudgement)."""

    advisor: BuyWaitAdvisor
    split: TripSplit
    table: pd.DataFrame
    headline: dict
    judgement: HeldOutJudgement


def split_by_departure(features: pd.DataFrame) -> TripSplit:
    """Split trips by departure date (VALIDATION_SHARE, TEST_SHARE of them, the latest) so validation and test trips
    depart after every training trip."""
    departures = features.groupby("trip_id")["depart_date"].first().sort_values()
    trip_count = len(departures)
    if trip_count == 0:
        raise ValueError("no watched trip has departed yet: the advisor learns from trips followed to departure")
    validation_from = departures.iloc[int(trip_count * (1 - VALIDATION_SHARE - TEST_SHARE))]
    test_from = departures.iloc[int(trip_count * (1 - TEST_SHARE))]
    depart = features["depart_date"]
    split = TripSplit(
        train=features[depart < validation_from],
        validation=features[(depart >= validation_from) & (depart < test_from)],
        test=features[depart >= test_from],
        validation_from=validation_from,
        test_from=test_from,
    )
    empty = [name for name in ("train", "validation", "test") if getattr(split, name).empty]
    if empty:
        raise ValueError(f"too few distinct departure dates for a split: {', '.join(empty)} would be empty")
    return split


def policy_buy_masks(features: pd.DataFrame, advisor: BuyWaitAdvisor) -> dict[str, np.ndarray]:
    """For each policy, the rows at which it would buy (the last observation is always a purchase)."""
    previous_low = features.groupby("trip_id", sort=False)["running_min"].shift(1)
    return {
        "advisor": (advisor.decisions(features)["action"] == "buy").to_numpy(),
        "buy_first": np.ones(len(features), dtype=bool),
        "buy_21_days": (features["days_ahead"] <= BUY_DAYS_BEFORE_DEPARTURE).to_numpy(),
        # The simple rule: once there is some history, buy the first time the fare matches or beats every earlier one.
        "running_min_rule": ((features["observation_count"] >= MIN_HISTORY) & (features["fare"] <= previous_low)).to_numpy(),
        "oracle": oracle_buys(features),
    }


def oracle_buys(features: pd.DataFrame) -> np.ndarray:
    """The rows at the trip's lowest fare: the perfect-information oracle buys at the first of them."""
    return (features["fare"] == features.groupby("trip_id", sort=False)["fare"].transform("min")).to_numpy()


def _policy_metrics(outcomes: pd.DataFrame, oracle_saving_total: float) -> dict:
    """Price paid, savings versus buying at once, share of the oracle's savings, and upsets for one policy."""
    saving = outcomes["first_fare"] - outcomes["price_paid"]
    upsets = saving < 0
    return {
        "trips": len(outcomes),
        "mean_price_paid": float(outcomes["price_paid"].mean()),
        "mean_saving": float(saving.mean()),
        # The measures the threshold is chosen by on validation, so the two cannot drift apart.
        "mean_saving_share": mean_relative_saving(outcomes),
        "share_of_oracle_saving": float(saving.sum() / oracle_saving_total) if oracle_saving_total > 0 else float("nan"),
        "upset_rate": upset_rate(outcomes),
        "mean_upset_excess": float(-saving[upsets].mean()) if upsets.any() else 0.0,
        "mean_days_ahead_at_purchase": float(outcomes["days_ahead"].mean()),
    }


def policy_outcomes(test_features: pd.DataFrame, advisor: BuyWaitAdvisor) -> dict[str, pd.DataFrame]:
    """Follow every policy through each test trip from its first observation to departure: its purchases() per policy."""
    return {name: purchases(test_features, mask) for name, mask in policy_buy_masks(test_features, advisor).items()}


def evaluate_policies(outcomes: dict[str, pd.DataFrame], threshold: float) -> tuple[pd.DataFrame, dict]:
    """Score each policy's per-trip outcomes (from policy_outcomes, plus any other policy's) for an advisor with this threshold.

    Returns a table (one row per policy: trips, mean_price_paid, mean_saving, mean_saving_share,
    share_of_oracle_saving, upset_rate, mean_upset_excess, mean_days_ahead_at_purchase) and headline metrics.
    Savings are against buying at the first observation; the share of the oracle's savings sums over trips
    as in Etzioni et al. (KDD 2003).
    """
    oracle_saving_total = float((outcomes["oracle"]["first_fare"] - outcomes["oracle"]["price_paid"]).sum())
    names = [*POLICIES, *(name for name in outcomes if name not in POLICIES)]
    table = pd.DataFrame(
        [_policy_metrics(outcomes[name], oracle_saving_total) for name in names], index=pd.Index(names, name="policy")
    )
    advisor_row = table.loc["advisor"]
    headline = {
        "test_trips": int(advisor_row["trips"]),
        "threshold": threshold,
        "advisor_share_of_oracle_saving": float(advisor_row["share_of_oracle_saving"]),
        "advisor_mean_saving": float(advisor_row["mean_saving"]),
        "advisor_mean_saving_share": float(advisor_row["mean_saving_share"]),
        "advisor_upset_rate": float(advisor_row["upset_rate"]),
        "advisor_mean_upset_excess": float(advisor_row["mean_upset_excess"]),
        "oracle_mean_saving": float(table.loc["oracle", "mean_saving"]),
        "best_baseline": str(table.loc[list(BASELINES), "mean_saving"].idxmax()),
        "hamlet_share_of_oracle_saving": HAMLET_SHARE_OF_ORACLE_SAVING,
    }
    return table, headline


def threshold_tradeoff(features: pd.DataFrame, advisor: BuyWaitAdvisor, thresholds: Iterable[float]) -> pd.DataFrame:
    """The advisor's policy over these trips at each threshold, indexed by threshold: share_of_oracle_saving,
    mean_saving_share and upset_rate. What waiting only for a larger promised saving trades: upsets for savings."""
    ratio = advisor.fare_ratio_if_waiting(features)
    oracle = purchases(features, oracle_buys(features))
    oracle_saving_total = float((oracle["first_fare"] - oracle["price_paid"]).sum())
    rows = {threshold: _policy_metrics(purchases(features, advisor.buy_mask(features, ratio, threshold)),
                                       oracle_saving_total)
            for threshold in thresholds}
    columns = ["share_of_oracle_saving", "mean_saving_share", "upset_rate"]
    return pd.DataFrame.from_dict(rows, orient="index")[columns].rename_axis("threshold")


def watched_to_departure(features: pd.DataFrame) -> pd.DataFrame:
    """Rows of trips whose departure day ended before the latest collection: only they have a known price paid."""
    # An entry collecting from 0 days ahead watches a trip through its departure day at its origin (where the watchlist
    # counts days ahead): such a trip may still be collected tonight, so it counts once a collection after that day
    # exists. (The default watchlist's entries stop the day before departure.)
    trips = features[["origin", "depart_date"]].drop_duplicates()
    ends = pd.Series([day_end(origin, depart.date()) for origin, depart in trips.itertuples(index=False)],
                     index=pd.MultiIndex.from_frame(trips), dtype="datetime64[ns, UTC]")
    departure_day_ended = ends.reindex(pd.MultiIndex.from_frame(features[["origin", "depart_date"]]))
    return features[departure_day_ended.set_axis(features.index) <= features["collected_at"].max()]


def train_and_evaluate(features: pd.DataFrame, engine: str = SKLEARN,
                       max_upset_rate: float | None = None) -> EvaluationResult:
    """Split departed trips by departure, train on the earliest, choose the threshold on validation (within the
    upset cap), judge on test."""
    split = split_by_departure(watched_to_departure(features))
    advisor = BuyWaitAdvisor(engine=engine, max_upset_rate=max_upset_rate)
    advisor.fit(split.train, split.validation)
    advisor.route_calendar = route_calendar(features)
    return evaluated(advisor, split, validation_trips=split.validation["trip_id"].nunique())


def judge_on_test(test_features: pd.DataFrame, advisor: BuyWaitAdvisor) -> HeldOutJudgement:
    """The advisor and every baseline followed through the test trips, and its models' errors on them."""
    drops = drop_probability_outcomes(test_features, advisor)
    inputs, paid_ratio = importance_sample(*waiting_outcomes(test_features, advisor))
    return HeldOutJudgement(policy_outcomes(test_features, advisor),
                            calibration_bins(drops["drop_probability"], drops["dropped"]),
                            brier_score(drops["drop_probability"], drops["dropped"]), inputs, paid_ratio)


def evaluated(advisor: BuyWaitAdvisor, split: TripSplit, validation_trips: int,
              judgement: HeldOutJudgement | None = None) -> EvaluationResult:
    """The trained advisor judged with the baselines and the oracle on the split's test trips (judge_on_test's
    judgement unless an engine made its own)."""
    judgement = judgement or judge_on_test(split.test, advisor)
    table, headline = evaluate_policies(judgement.outcomes, advisor.threshold)
    # The threshold was chosen for its saving on these trips, so that saving is the advisor's on validation.
    headline.update(validation_trips=int(validation_trips),
                    validation_mean_saving_share=float(advisor.threshold_scores[advisor.threshold]),
                    validation_upset_rate=float(advisor.threshold_upset_rates[advisor.threshold]),
                    max_upset_rate=advisor.max_upset_rate, test_brier_score=judgement.brier_score)
    return EvaluationResult(advisor, split, table, headline, judgement)


def evaluate_advisor(observations, engine: str = SKLEARN, max_upset_rate: float | None = None) -> EvaluationResult:
    """train_and_evaluate on the observations' features, each engine on its own machinery: pandas and scikit-learn,
    or Spark jobs throughout (features, training, threshold, calibration, judging) for MLlib, whose observations
    may already be a Spark frame."""
    if engine != SPARK:
        return train_and_evaluate(observation_features(observations), engine=engine, max_upset_rate=max_upset_rate)
    from fare_assets.synthesizing import spark_advisor

    return spark_advisor.train_and_evaluate(spark_observation_features(observations), max_upset_rate=max_upset_rate)


def advisor_not_worse_than_buying_now(headline: dict) -> bool:
    """Whether the advisor saved at least nothing on average over buying at the first quote, on the validation trips."""
    return headline["validation_mean_saving_share"] >= 0


def drop_probability_outcomes(test_features: pd.DataFrame, advisor: BuyWaitAdvisor) -> pd.DataFrame:
    """Per test row the advisor's models are asked about: its drop_probability and whether the fare then dropped meaningfully."""
    modelled, dropped = advisor.modelled_drops(test_features)
    return pd.DataFrame({"drop_probability": advisor.drop_probability(test_features[modelled]), "dropped": dropped},
                        index=test_features.index[modelled])


def waiting_outcomes(test_features: pd.DataFrame, advisor: BuyWaitAdvisor) -> tuple[pd.DataFrame, np.ndarray]:
    """The waiting model's inputs on the test rows it is asked about, and the fare that waiting there really cost by
    following the advice (over the fare then): what its predictions are judged against."""
    modelled = advisor.modelled_rows(test_features)
    buys = (advisor.decisions(test_features)["action"] == BUY).to_numpy()
    return advisor.model_inputs(test_features[modelled]), continuation_ratios(test_features, buys)[modelled]


def calibration_bins(probability: np.ndarray, observed: np.ndarray, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Equal-width probability bins that hold rows: bin_from, bin_to, rows, mean_probability and observed_rate.

    `rows` weighs each point (grouped rows, with `observed` their drop rate); one row each when not given.
    """
    probability = np.asarray(probability, dtype=float)
    weight = np.ones(len(probability)) if rows is None else np.asarray(rows, dtype=float)
    frame = pd.DataFrame({
        # A probability of exactly 1 belongs to the top bin.
        "bin": np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1),
        "rows": weight,
        "probability": probability * weight,
        "observed": np.asarray(observed, dtype=float) * weight,
    })
    grouped = frame.groupby("bin").sum()
    grouped = pd.DataFrame({"bin_from": grouped.index / CALIBRATION_BINS, "bin_to": (grouped.index + 1) / CALIBRATION_BINS,
                            "rows": grouped["rows"].round().astype(int),
                            "mean_probability": grouped["probability"] / grouped["rows"],
                            "observed_rate": grouped["observed"] / grouped["rows"]})
    return grouped.reset_index(drop=True)


def brier_score(probability: np.ndarray, observed: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Mean squared error of the probabilities against what happened (weighted by `rows` as in calibration_bins)."""
    probability, observed = np.asarray(probability, dtype=float), np.asarray(observed, dtype=float)
    weight = np.ones(len(probability)) if rows is None else np.asarray(rows, dtype=float)
    if not weight.sum():
        return float("nan")
    # A group of n rows with k drops at probability p: n p^2 - 2 p k + k, which is the rows' sum when n = 1.
    return float((weight * probability ** 2 - 2 * probability * observed * weight + observed * weight).sum() / weight.sum())


def importance_sample(inputs: pd.DataFrame, target: np.ndarray, max_rows: int = IMPORTANCE_MAX_ROWS,
                      random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `max_rows` of the rows, drawn without replacement and kept in order."""
    target = np.asarray(target)
    if len(inputs) <= max_rows:
        return inputs, target
    sample = np.sort(np.random.default_rng(random_state).choice(len(inputs), max_rows, replace=False))
    return inputs.iloc[sample], target[sample]
