"""Buy/wait advisor: the fare a traveller can expect to pay by waiting, P(the fare drops meaningfully), and the policy.

The policy is learnt by policy iteration on the collected trips (an optimal-stopping problem): a regressor
predicts, for each observation, the fare the current policy would end up paying if it waited, relative to
the fare now; the improved policy waits only where that prediction is lower; repeat. Predicting the lowest
later fare instead (what an oracle pays) overstates what waiting can achieve and waits too long.
"""
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from fare_assets.synthesizing.estimators import SKLEARN, gradient_boosted_classifier, gradient_boosted_regressor, prior_classifier
from fare_assets.synthesizing.features import (MEANINGFUL_DROP_SHARE, MODEL_FEATURES, RouteCalendar, drop_labels,
                                               observation_features)
from fare_assets.synthesizing.model_files import load_model_file, save_model_file

MODEL_KIND = "buy-wait-advisor"
FORMAT_VERSION = 5

# Below three collections a trip has no history to compare against (the rolling ratios are all 1 and
# the slope undefined), so a recommendation would be the model's prior for the date, not advice.
MIN_HISTORY = 3
# Nor below a day of them: half-hourly sweeps reach three collections within an hour, while the rolling ratios and
# the trend are read over days (the fares are refiled about once a day). On daily collections the third is two days
# in, so this changes nothing there.
MIN_HISTORY_DAYS = 1.0

# Collection stops after the day before departure, so a collection at most one day ahead is on that last day, the
# last chance to buy through this platform; any earlier one is followed by a whole day of collections. Within the
# last day a collection is the last call too, though the schedule's later sweeps follow it: fares are refiled from
# day to day, and a traveller told to wait on the eve of departure would have hours at most to act. The watchlist
# counts that day at the origin, so the page's advice moves this horizon by the origin's UTC offset
# (fare_assets.show.serving.last_call_days_ahead); training and evaluation keep days ahead to UTC midnight.
# (Until 2026-12-06 this was "below 1.5 days", right for one collection a day but, at the schedule's 30-minute
# sweeps, a last call from noon two days before departure, with a day and a half of collections still to come.)
LAST_CALL_DAYS_AHEAD = 1.0


def too_early(observation_count, days_observed, min_history):
    """Whether a collection has too little history before it to advise on: under `min_history` collections, or under
    MIN_HISTORY_DAYS of them (numbers, pandas series or Spark columns alike, as is_last_call)."""
    return (observation_count < min_history) | (days_observed < MIN_HISTORY_DAYS)


def is_last_call(days_ahead, horizon):
    """Whether a collection `days_ahead` of departure is the last call for a `horizon` (numbers, arrays or Spark
    columns alike, so every engine and the advice's reason apply one rule)."""
    return days_ahead <= horizon

# Rounds of policy iteration: each one looks one purchase decision further; the policy stops changing after a few.
POLICY_ITERATIONS = 4
# The expected saving, as a share of the fare now, that waiting must promise: chosen on validation trips.
# Up to 10%: the best saving comes below 4%, but holding upsets to 5% took 4.75% to 8.75% in the bench.
THRESHOLD_CANDIDATES = tuple(float(t) for t in np.round(np.arange(0.0, 0.1001, 0.0025), 4))

BUY, WAIT, NOT_ENOUGH_DATA = "buy", "wait", "not_enough_data"


@dataclass(frozen=True)
class Advice:
    """What to do about one trip now, how sure the advisor is and what waiting might save.

    `confidence` is the calibrated chance that the advice pays off: for "wait", that the fare drops meaningfully
    before departure (drop_probability); for "buy", that it does not; None where the policy, not the model, decides. The action itself comes from the expected
    fare if waiting, so a wait can rest on a modest chance of a large drop.
    """

    action: str
    drop_probability: float | None
    confidence: float | None
    expected_saving: float | None
    currency: str
    reason: str


# Scores closer than this are a tie: thresholds that give the same policy score the same saving, but summed in
# another order (Spark's partial sums) they can differ in the last bits.
SCORE_TIE = 1e-12


def best_threshold(scores: dict[float, float]) -> float:
    """The threshold with the best score; among tied ones (the same policy on these data) the lowest, so both engines
    pick alike."""
    best = max(scores.values())
    return min(threshold for threshold, score in scores.items() if score >= best - SCORE_TIE)


def chosen_threshold(scores: dict[float, float], upset_rates: dict[float, float],
                     max_upset_rate: float | None = None) -> float:
    """best_threshold among the thresholds upsetting at most `max_upset_rate` of the trips (all when None); when
    none does, the best of those upsetting the fewest: a traveller who caps upsets prefers fewer to more savings."""
    if max_upset_rate is None:
        return best_threshold(scores)
    known = {threshold: rate for threshold, rate in upset_rates.items() if rate is not None and np.isfinite(rate)}
    if not known:
        raise ValueError("no upset rate on the validation trips to hold to FARES_ADVISOR_MAX_UPSET_RATE")
    allowed = {threshold: scores[threshold] for threshold, rate in known.items() if rate <= max_upset_rate}
    if not allowed:
        fewest = min(known.values())
        allowed = {threshold: scores[threshold] for threshold, rate in known.items() if rate == fewest}
    return best_threshold(allowed)


def last_observation_mask(features: pd.DataFrame) -> pd.Series:
    """True on each trip's latest collection in `features`."""
    return features.groupby("trip_id", sort=False).cumcount(ascending=False) == 0


def purchases(features: pd.DataFrame, buy_mask: pd.Series | np.ndarray) -> pd.DataFrame:
    """Follow a policy through each trip: it buys at its first "buy" row, or at the trip's last observation.

    `buy_mask` lines up with `features` by position. One row per trip_id: price_paid, days_ahead at purchase, first_fare (buying at once) and min_fare (oracle).
    """
    ordered = features.sort_values(["trip_id", "collected_at"], kind="stable")
    mask = pd.Series(np.asarray(buy_mask, dtype=bool), index=features.index).reindex(ordered.index)
    bought = ordered[mask.to_numpy() | last_observation_mask(ordered).to_numpy()].groupby("trip_id", sort=False).head(1)
    by_trip = ordered.groupby("trip_id", sort=False)["fare"]
    result = bought.set_index("trip_id")[["fare", "days_ahead", "currency"]].rename(columns={"fare": "price_paid"})
    result["first_fare"] = by_trip.first()
    result["min_fare"] = by_trip.min()
    return result


def continuation_ratios(features: pd.DataFrame, buy_mask: np.ndarray) -> np.ndarray:
    """Per row: the fare a policy pays if it waits now (buying at its next "buy" row or the last one), over the fare now.

    `features` must be sorted by trip and collection time (as observation_features returns them); NaN on each
    trip's last row, where waiting is impossible.
    """
    trips = features["trip_id"]
    purchase = features["fare"].where(np.asarray(buy_mask, dtype=bool) | last_observation_mask(features).to_numpy())
    paid_from_here = purchase.groupby(trips, sort=False).bfill()
    return (paid_from_here.groupby(trips, sort=False).shift(-1) / features["fare"]).to_numpy()


def relative_savings(outcomes: pd.DataFrame) -> pd.Series:
    """Per trip: saving versus buying at the first observation, as a share of that first fare (currency-neutral)."""
    return (outcomes["first_fare"] - outcomes["price_paid"]) / outcomes["first_fare"]


def mean_relative_saving(outcomes: pd.DataFrame) -> float:
    """Mean saving versus buying at the first observation, as a share of that first fare."""
    return float(relative_savings(outcomes).mean())


def upset_rate(outcomes: pd.DataFrame) -> float:
    """Share of the trips on which the policy paid more than buying at the first observation."""
    return float((outcomes["price_paid"] > outcomes["first_fare"]).mean())


class BuyWaitAdvisor:
    """Gradient-boosted fare-if-waiting (policy iteration) and P(meaningful drop); waits when waiting promises enough."""

    def __init__(self, min_history: int = MIN_HISTORY, last_call_days_ahead: float = LAST_CALL_DAYS_AHEAD, random_state: int = 0,
                 engine: str = SKLEARN, max_upset_rate: float | None = None):
        self.min_history = min_history
        self.last_call_days_ahead = last_call_days_ahead
        self.random_state = random_state
        self.engine = engine
        # The share of validation trips the chosen threshold may upset (pay more than at once); None: no cap.
        self.max_upset_rate = max_upset_rate
        self.classifier = None
        self.calibration: IsotonicRegression | None = None
        self.waiting_model = None
        self.threshold: float | None = None
        self.threshold_scores: dict[float, float] = {}
        self.threshold_upset_rates: dict[float, float] = {}
        self.empty_columns: list[str] = []
        # Every trip's refilings when it was trained, so the advice served on fewer trips reads the same calendar.
        self.route_calendar: RouteCalendar | None = None

    def _regressor(self):
        return gradient_boosted_regressor(self.engine, max_iter=300, learning_rate=0.05, min_samples_leaf=500,
                                          l2_regularization=1.0, early_stopping=False, random_state=self.random_state)

    def _classifier(self):
        return gradient_boosted_classifier(self.engine, max_iter=200, learning_rate=0.1, l2_regularization=1.0,
                                           random_state=self.random_state)

    def fit(self, train_features: pd.DataFrame, validation_features: pd.DataFrame) -> "BuyWaitAdvisor":
        """Train both models on the training trips, then pick the threshold on the validation trips only."""
        train_features = train_features.sort_values(["trip_id", "collected_at"], kind="stable")
        labels = drop_labels(train_features)
        # Rows the policy never asks the model about (short history, last collection) would only blur it.
        usable = self.modelled_rows(train_features)
        if not usable.any():
            raise ValueError(f"no training trip has {self.min_history}+ collections before its last one")
        rows = train_features[usable]
        # A season can pass without one meaningful drop (fares only rise close to departure); the honest
        # model of such data is the observed frequency.
        drops = labels["drops_meaningfully"][usable]
        classifier = self._classifier() if drops.nunique() == 2 else prior_classifier()
        # A young watchlist has no value yet for some columns (no second refiling seen: no interval between them).
        self.empty_columns = [column for column in MODEL_FEATURES if rows[column].isna().all()]
        self.classifier = classifier.fit(self.model_inputs(rows), drops)
        # Policy iteration from "buy now": waiting then means buying at the next collection.
        buy = np.ones(len(train_features), dtype=bool)
        for _ in range(POLICY_ITERATIONS):
            target = continuation_ratios(train_features, buy)[usable]
            self.waiting_model = self._regressor().fit(self.model_inputs(rows), target)
            buy = self.buy_mask(train_features, self.fare_ratio_if_waiting(train_features), 0.0)
        self.threshold = self._choose_threshold(validation_features)
        self.calibration = self._calibration(validation_features)
        return self

    def _calibration(self, validation_features: pd.DataFrame) -> IsotonicRegression | None:
        """The observed drop rate on the validation trips as a monotone function of the classifier's probability.

        Boosted trees trained on earlier departures came out over-confident on later ones (of the rows they gave
        80% or more, under half dropped); the page shows this probability as the advice's confidence. None when
        the validation trips hold no modelled row or only one outcome.
        """
        ordered = validation_features.sort_values(["trip_id", "collected_at"], kind="stable")
        modelled, dropped = self.modelled_drops(ordered)
        if len(np.unique(dropped)) < 2:
            return None
        raw = self._classifier_probability(ordered[modelled])
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, dropped.astype(float))

    def _choose_threshold(self, validation_features: pd.DataFrame) -> float:
        """The candidate threshold with the best mean relative saving on the validation trips within the upset cap
        (chosen_threshold)."""
        ratio = self.fare_ratio_if_waiting(validation_features)
        outcomes = {threshold: purchases(validation_features, self.buy_mask(validation_features, ratio, threshold))
                    for threshold in THRESHOLD_CANDIDATES}
        self.threshold_scores = {threshold: mean_relative_saving(paid) for threshold, paid in outcomes.items()}
        self.threshold_upset_rates = {threshold: upset_rate(paid) for threshold, paid in outcomes.items()}
        return chosen_threshold(self.threshold_scores, self.threshold_upset_rates, self.max_upset_rate)

    def short_history(self, features: pd.DataFrame) -> np.ndarray:
        """Rows too early in their trip to advise on: under min_history collections, or under MIN_HISTORY_DAYS."""
        return too_early(features["observation_count"], features["days_observed"], self.min_history).to_numpy()

    def modelled_rows(self, features: pd.DataFrame) -> np.ndarray:
        """Rows the models learn from and are judged on: enough history (short_history) and a later one to wait for.

        `features` must be sorted by trip and collection time.
        """
        return ~self.short_history(features) & ~last_observation_mask(features).to_numpy()

    def modelled_drops(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """modelled_rows(features), and per modelled row whether the fare then dropped meaningfully.

        `features` must be sorted by trip and collection time.
        """
        modelled = self.modelled_rows(features)
        # Labels look ahead over each whole trip, so they are taken before the rows are narrowed down.
        return modelled, drop_labels(features)["drops_meaningfully"].to_numpy(dtype=bool)[modelled]

    def model_inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model columns; one without any value in training is a constant 0 (gradient boosting cannot bin it)."""
        return features[MODEL_FEATURES].fillna({column: 0.0 for column in self.empty_columns})

    def _require_fitted(self) -> None:
        """Fail clearly when asked for predictions before fit or load."""
        if self.classifier is None or self.waiting_model is None:
            raise RuntimeError("the advisor is not trained: call fit() or BuyWaitAdvisor.load()")

    def _classifier_probability(self, features: pd.DataFrame) -> np.ndarray:
        """The classifier's own P(meaningful drop), before calibration."""
        classes = list(self.classifier.classes_)
        if True not in classes:
            return np.zeros(len(features))
        return self.classifier.predict_proba(self.model_inputs(features))[:, classes.index(True)]

    def drop_probability(self, features: pd.DataFrame) -> np.ndarray:
        """P(a later fare before departure is a meaningful drop below the current one), per row, calibrated."""
        self._require_fitted()
        return self.calibrated(self._classifier_probability(features))

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """The classifier's own probabilities mapped by the calibration fitted on the validation trips."""
        return raw if self.calibration is None or not len(raw) else self.calibration.predict(raw)

    def fare_ratio_if_waiting(self, features: pd.DataFrame) -> np.ndarray:
        """Expected fare paid by waiting (and following the advice from then on), over the fare now, per row."""
        self._require_fitted()
        return self.waiting_model.predict(self.model_inputs(features))

    def expected_saving(self, features: pd.DataFrame) -> np.ndarray:
        """Expected amount that waiting saves against buying now (0 when waiting is expected to cost more)."""
        return np.clip(1 - self.fare_ratio_if_waiting(features), 0, None) * features["fare"].to_numpy()

    def _actions(self, features: pd.DataFrame, ratio: np.ndarray, threshold: float,
                 last_call_days_ahead: np.ndarray | None = None) -> np.ndarray:
        """The policy: buy at the last call, no advice on short histories, otherwise wait if waiting saves > threshold.

        `last_call_days_ahead` is per row (default: the advisor's own, for trips collected until the day before).
        """
        horizon = self.last_call_days_ahead if last_call_days_ahead is None else last_call_days_ahead
        last_call = is_last_call(features["days_ahead"].to_numpy(), horizon)
        short_history = self.short_history(features)
        return np.select([last_call, short_history, ratio < 1 - threshold], [BUY, NOT_ENOUGH_DATA, WAIT], BUY)

    def buy_mask(self, features: pd.DataFrame, ratio: np.ndarray, threshold: float) -> np.ndarray:
        """Rows at which the policy buys (waiting for data counts as not buying yet)."""
        return self._actions(features, ratio, threshold) == BUY

    def decisions(self, features: pd.DataFrame, last_call_days_ahead: np.ndarray | None = None) -> pd.DataFrame:
        """Per row: drop_probability, expected_saving and action, aligned to `features`' index."""
        probability = self.drop_probability(features)
        actions = self._actions(features, self.fare_ratio_if_waiting(features), self.threshold, last_call_days_ahead)
        modelled = actions != NOT_ENOUGH_DATA
        return pd.DataFrame(
            {
                "drop_probability": np.where(modelled, probability, np.nan),
                "expected_saving": np.where(modelled, self.expected_saving(features), np.nan),
                "action": actions,
            },
            index=features.index,
        )

    def advise_trips(self, observations: pd.DataFrame, last_call_days_ahead: pd.Series | None = None) -> pd.DataFrame:
        """Advice for every watched trip at its latest collection, one row per trip_id with the Advice fields.

        `last_call_days_ahead` maps a trip_id to the days ahead at or below which its advice is the last call, for trips
        whose collection stops earlier than the day before departure; infinity for a trip no collection follows.
        Trips it does not map get the advisor's own. The observations need only the trips departing from
        `route_calendar.read_from()` (all, for an advisor saved without it).
        """
        features = observation_features(observations, self.route_calendar)
        # observation_features sorts by trip and collection time, so each trip's last row is its latest.
        latest = features[last_observation_mask(features).to_numpy()]
        horizons = (np.full(len(latest), self.last_call_days_ahead) if last_call_days_ahead is None else
                    latest["trip_id"].map(last_call_days_ahead).fillna(self.last_call_days_ahead).to_numpy(float))
        decision = self.decisions(latest, horizons)
        rows = [self._advice(row, action, probability, saving, horizon)
                for row, action, probability, saving, horizon in zip(
                    latest.to_dict("records"), decision["action"], decision["drop_probability"],
                    decision["expected_saving"], horizons)]
        return pd.DataFrame([vars(advice) for advice in rows], index=pd.Index(latest["trip_id"], name="trip_id"))

    def _advice(self, row: dict, action: str, probability: float, saving: float, last_call_days_ahead: float) -> Advice:
        """The Advice for one latest-collection row and the policy's decision on it, with its reason in words."""
        currency = str(row["currency"])
        # These two are the policy's, not the model's: no chance is estimated, so none is shown (a certainty would
        # read as the model's).
        if np.isinf(last_call_days_ahead):
            return Advice(BUY, None, None, 0.0, currency,
                          "this trip is no longer collected, so no later advice will come: buy now")
        if is_last_call(row["days_ahead"], last_call_days_ahead):
            return Advice(BUY, None, None, 0.0, currency, "last collection before departure: buy now")
        if action == NOT_ENOUGH_DATA:
            count, hours = int(row["observation_count"]), float(row["days_observed"]) * 24
            return Advice(
                NOT_ENOUGH_DATA, None, None, None, currency,
                f"only {count} collection(s) of this trip over {hours:.0f} hour{'' if round(hours) == 1 else 's'} so "
                f"far; advice needs at least {self.min_history} over {MIN_HISTORY_DAYS * 24:.0f} hours",
            )
        probability, saving = float(probability), float(saving)
        chance = f"{probability:.0%} chance the fare drops by {MEANINGFUL_DROP_SHARE:.0%} or more before departure"
        if action == WAIT:
            reason = f"waiting is expected to save about {saving:.0f} {currency}; {chance}"
            return Advice(WAIT, probability, probability, saving, currency, reason)
        reason = f"waiting is not expected to save more than {self.threshold:.1%} of the fare; {chance}"
        return Advice(BUY, probability, 1 - probability, saving, currency, reason)

    def save(self, path: str | os.PathLike) -> None:
        """Write the trained advisor to a versioned model file."""
        self._require_fitted()
        payload = {
            "classifier": self.classifier,
            "calibration": self.calibration,
            "waiting_model": self.waiting_model,
            "empty_columns": self.empty_columns,
            "threshold": self.threshold,
            "threshold_scores": self.threshold_scores,
            "threshold_upset_rates": self.threshold_upset_rates,
            "max_upset_rate": self.max_upset_rate,
            "min_history": self.min_history,
            "last_call_days_ahead": self.last_call_days_ahead,
            "random_state": self.random_state,
            "engine": self.engine,
            "route_calendar": self.route_calendar,
        }
        save_model_file(path, MODEL_KIND, FORMAT_VERSION, MODEL_FEATURES, payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BuyWaitAdvisor":
        """Read an advisor saved by save(); raises ModelUnavailable if the file is missing or unusable."""
        payload = load_model_file(path, MODEL_KIND, FORMAT_VERSION, MODEL_FEATURES)
        advisor = cls(payload["min_history"], payload["last_call_days_ahead"], payload["random_state"], payload["engine"],
                      payload["max_upset_rate"])
        advisor.classifier = payload["classifier"]
        advisor.calibration = payload["calibration"]
        advisor.waiting_model = payload["waiting_model"]
        advisor.empty_columns = payload["empty_columns"]
        advisor.threshold = payload["threshold"]
        advisor.threshold_scores = payload["threshold_scores"]
        advisor.threshold_upset_rates = payload["threshold_upset_rates"]
        # Advisors saved before 2026-12-06 have none: their advice reads the upcoming trips' calendar alone.
        advisor.route_calendar = payload.get("route_calendar")
        return advisor
