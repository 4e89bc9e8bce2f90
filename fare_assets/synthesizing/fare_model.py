"""Fare model: predicts a trip's cheapest fare for dates never collected (fills holes in the date grid)."""
import os
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from fare_assets.synthesizing.estimators import SKLEARN, SPARK, gradient_boosted_regressor
from fare_assets.synthesizing.features import CABIN_RANKS, airport_countries, route_distances_km, spark_observations
from fare_assets.synthesizing.model_files import load_model_file, save_model_file

MODEL_KIND = "fare-model"
FORMAT_VERSION = 2

FARE_MODEL_FEATURES = [
    "route_code",
    "distance_km",
    "national",
    "days_ahead",
    "depart_weekday",
    "return_weekday",
    "depart_month",
    "nights",
    "passengers",
    "cabin_rank",
    "carrier_count",
    "nonstop_share",
]

# What a collection knows of its options besides their fares; a date never collected has none of it.
CARRIER_MIX = ("carrier_count", "nonstop_share")

# HistGradientBoosting takes at most 255 categories; routes beyond the busiest are left to distance alone.
MAX_ROUTE_CODES = 250
# The share of observations, the latest departures, the evaluation tests on.
TEST_SHARE = 0.25


def _route_names(frame: pd.DataFrame) -> pd.Series:
    """Directional route name, e.g. SFO-JFK."""
    return frame["origin"].astype(str) + "-" + frame["destination"].astype(str)


def _national(frame: pd.DataFrame) -> np.ndarray:
    """Whether both airports are in one country (from airportsdata; NaN when either is unknown)."""
    countries = airport_countries()
    origin = frame["origin"].map(countries)
    destination = frame["destination"].map(countries)
    return np.where(origin.isna() | destination.isna(), np.nan, (origin == destination).astype(float))


def log_fare_per_passenger(cheapest_total: pd.Series, passengers: pd.Series) -> pd.Series:
    """What the regressor learns: the log of the cheapest total per passenger (a party pays per seat)."""
    return np.log(cheapest_total.astype(float) / passengers)


def evaluation_split(observations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on earlier departures, test on the latest TEST_SHARE of departure dates."""
    departures = pd.to_datetime(observations["depart_date"])
    test_from = departures.quantile(1 - TEST_SHARE)
    return observations[departures < test_from], observations[departures >= test_from]


class FareModel:
    """Gradient-boosted regression of log fare per passenger on route, dates, days ahead and carrier mix."""

    def __init__(self, random_state: int = 0, engine: str = SKLEARN):
        self.random_state = random_state
        self.engine = engine
        self.regressor = None
        self.route_codes: dict[str, int] = {}
        self.route_defaults: pd.DataFrame = pd.DataFrame(columns=list(CARRIER_MIX))
        self.global_defaults: dict[str, float] = {}

    def design_matrix(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Model inputs from trip rows (origin, destination, depart_date, return_date, at, passengers, cabin, ...)."""
        depart = pd.to_datetime(rows["depart_date"]).dt.normalize()
        back = pd.to_datetime(rows["return_date"]).dt.normalize()
        at = pd.to_datetime(rows["at"], utc=True)
        routes = _route_names(rows)
        matrix = pd.DataFrame(index=rows.index)
        matrix["route_code"] = routes.map(self.route_codes).astype(float)
        matrix["distance_km"] = route_distances_km(rows["origin"], rows["destination"])
        # From the airports, never an observation's own flag: a collection of a US route holding an option via Canada
        # is not national there, a hint of its fare a grid cell never collected does not have.
        matrix["national"] = _national(rows)
        matrix["days_ahead"] = (depart.dt.tz_localize("UTC") - at) / pd.Timedelta(days=1)
        matrix["depart_weekday"] = depart.dt.weekday
        matrix["return_weekday"] = back.dt.weekday.astype(float)
        matrix["depart_month"] = depart.dt.month
        matrix["nights"] = (back - depart).dt.days.astype(float)
        matrix["passengers"] = rows["adults"].astype(int) + rows["children"].astype(int)
        matrix["cabin_rank"] = rows["cabin"].str.upper().map(CABIN_RANKS).astype(float)
        # A date never collected has no carrier mix: use what the route usually shows, else the overall median.
        for column in CARRIER_MIX:
            given = rows[column].astype(float) if column in rows else pd.Series(np.nan, index=rows.index)
            usual = routes.map(self.route_defaults[column]).astype(float)
            matrix[column] = given.fillna(usual).fillna(self.global_defaults.get(column, np.nan))
        return matrix[FARE_MODEL_FEATURES]

    def fit(self, observations: pd.DataFrame) -> "FareModel":
        """Train on observations (the warehouse frame: trip key, collected_at, cheapest_total, carrier mix)."""
        rows = observations.rename(columns={"collected_at": "at"})
        routes = _route_names(rows)
        busiest = routes.value_counts().index[:MAX_ROUTE_CODES]
        self.route_codes = {route: code for code, route in enumerate(sorted(busiest))}
        self.route_defaults = rows.groupby(routes)[list(CARRIER_MIX)].median()
        self.global_defaults = {column: float(rows[column].median()) for column in CARRIER_MIX}
        matrix = self.design_matrix(rows)
        per_passenger = log_fare_per_passenger(rows["cheapest_total"], matrix["passengers"])
        self.regressor = self._regressor().fit(matrix, per_passenger)
        return self

    def _regressor(self):
        return gradient_boosted_regressor(self.engine, max_iter=300, learning_rate=0.1,
                                          categorical_features=[column == "route_code" for column in FARE_MODEL_FEATURES],
                                          random_state=self.random_state)

    def predict_frame(self, rows: pd.DataFrame) -> np.ndarray:
        """Predicted cheapest total for each row: origin, destination, depart_date, return_date, at, adults,
        children, cabin, and optionally carrier_count, nonstop_share."""
        if self.regressor is None:
            raise RuntimeError("the fare model is not trained: call fit() or FareModel.load()")
        matrix = self.design_matrix(rows)
        return np.exp(self.regressor.predict(matrix)) * matrix["passengers"].to_numpy()

    def predict(
        self,
        origin: str,
        destination: str,
        depart_date: date,
        return_date: date | None,
        at: datetime,
        adults: int = 1,
        children: int = 0,
        cabin: str = "COACH",
        carrier_count: float | None = None,
        nonstop_share: float | None = None,
    ) -> float:
        """Predicted cheapest total for one trip as it would be quoted at time `at` (UTC)."""
        row = pd.DataFrame(
            {
                "origin": [origin], "destination": [destination], "depart_date": [depart_date],
                "return_date": [return_date], "at": [pd.Timestamp(at)], "adults": [adults], "children": [children],
                "cabin": [cabin], "carrier_count": [carrier_count], "nonstop_share": [nonstop_share],
            }
        )
        return float(self.predict_frame(row)[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write the trained fare model to a versioned model file."""
        if self.regressor is None:
            raise RuntimeError("the fare model is not trained: call fit() first")
        payload = {
            "regressor": self.regressor,
            "route_codes": self.route_codes,
            "route_defaults": self.route_defaults,
            "global_defaults": self.global_defaults,
            "random_state": self.random_state,
            "engine": self.engine,
        }
        save_model_file(path, MODEL_KIND, FORMAT_VERSION, FARE_MODEL_FEATURES, payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FareModel":
        """Read a fare model saved by save(); raises ModelUnavailable if the file is missing or unusable."""
        payload = load_model_file(path, MODEL_KIND, FORMAT_VERSION, FARE_MODEL_FEATURES)
        model = cls(payload["random_state"], payload["engine"])
        model.regressor = payload["regressor"]
        model.route_codes = payload["route_codes"]
        model.route_defaults = payload["route_defaults"]
        model.global_defaults = payload["global_defaults"]
        return model


def _errors(actual: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Mean absolute error and mean absolute percentage error."""
    absolute = np.abs(actual - predicted)
    return float(absolute.mean()), float((absolute / actual).mean())


# The predicted-vs-actual chart draws at most this many test rows; on MLlib no more reach the driver.
CHARTED_TEST_ROWS = 5000


def as_grid_cells(rows):
    """Test rows as the page asks for predictions (a pandas or Spark frame): a grid cell never collected has no
    carrier mix, so the observed one, a hint of the fare the model would never get there, is left out and the
    route's usual mix stands in; judged with it, the error would flatter the model."""
    present = [column for column in CARRIER_MIX if column in rows.columns]
    return rows.drop(columns=present) if isinstance(rows, pd.DataFrame) else rows.drop(*present)


@dataclass(frozen=True)
class FareModelEvaluation:
    """A fare model trained on earlier departures, the later rows it was judged on (as predict_frame takes them,
    collected_at named at; on MLlib a sample of them, for the charts), its predictions for them and the metrics
    (over every test row)."""

    model: FareModel
    test_rows: pd.DataFrame
    predicted: np.ndarray
    metrics: dict


def fit_fare_model(observations, engine: str = SKLEARN) -> FareModel:
    """A FareModel of `engine` trained on the observations: a pandas frame, or for MLlib also a Spark frame, where
    it trains as Spark jobs (spark_fare_model)."""
    if engine != SPARK:
        return FareModel(engine=engine).fit(observations)
    from fare_assets.synthesizing import spark_fare_model

    return spark_fare_model.fit_on_spark(FareModel(engine=engine), spark_observations(observations))


def evaluate_fare_model(observations, engine: str = SKLEARN) -> FareModelEvaluation:
    """Train on earlier departures, test on the latest TEST_SHARE of them; MAE and MAPE beside a per-route mean
    baseline.

    With MLlib the observations may be a Spark frame: the model trains and is judged where they are.
    """
    if engine == SPARK:
        from fare_assets.synthesizing import spark_fare_model

        return spark_fare_model.evaluate_on_spark(spark_observations(observations))
    train, test = evaluation_split(observations)
    model = FareModel(engine=engine).fit(train)
    route_means = train.groupby(_route_names(train))["cheapest_total"].mean()
    return evaluated(model, test, route_means, float(train["cheapest_total"].mean()), len(train))


def evaluated(model: FareModel, test: pd.DataFrame, route_means: pd.Series, overall_mean: float,
              train_rows: int) -> FareModelEvaluation:
    """A trained fare model judged on the test observations, beside the training routes' mean fares."""
    test_rows = as_grid_cells(test.rename(columns={"collected_at": "at"}))
    actual = test["cheapest_total"].to_numpy(dtype=float)
    predicted = model.predict_frame(test_rows)
    baseline = _route_names(test).map(route_means).fillna(overall_mean).to_numpy(dtype=float)
    mae, mape = _errors(actual, predicted)
    baseline_mae, baseline_mape = _errors(actual, baseline)
    metrics = {
        "train_rows": int(train_rows),
        "test_rows": len(test),
        "mae": mae,
        "mape": mape,
        "route_mean_mae": baseline_mae,
        "route_mean_mape": baseline_mape,
    }
    return FareModelEvaluation(model, test_rows, predicted, metrics)
