"""Synthesizing: features without look-ahead, drop labels, the buy/wait advisor, its evaluation, the fare model and
their charts."""
import base64
import copy
import json
import re
import struct
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from fare_assets.resources import LakeResource
from fare_assets.settings import load_settings
from fare_assets.storing.lake import model_version_key, published_model_key
from fare_assets.synthesizing.advisor import (
    LAST_CALL_DAYS_AHEAD,
    MIN_HISTORY,
    Advice,
    BuyWaitAdvisor,
    chosen_threshold,
    continuation_ratios,
    last_observation_mask,
    mean_relative_saving,
    purchases,
)
from fare_assets.synthesizing.evaluation import (POLICIES, advisor_not_worse_than_buying_now, brier_score,
                                                 calibration_bins, drop_probability_outcomes, threshold_tradeoff,
                                                 train_and_evaluate, watched_to_departure)
from fare_assets.synthesizing.fare_model import FareModel, evaluate_fare_model
from fare_assets.synthesizing.features import (
    MEANINGFUL_DROP_SHARE,
    MODEL_FEATURES,
    drop_labels,
    great_circle_km,
    observation_features,
    route_calendar,
)
from fare_assets.synthesizing.model_files import (ModelUnavailable, prune_versions, published_version, save_version,
                                                  saved_versions)
from fare_assets.synthesizing.plots import (
    DPI,
    FIGURE_SIZE_INCHES,
    advisor_charts,
    calibration_png,
    fare_model_charts,
    markdown_image,
    permutation_importances,
)

ROUTES = [
    ("SFO", "JFK", True, 320.0),
    ("LAX", "ORD", True, 260.0),
    ("BOS", "MIA", True, 210.0),
    ("SEA", "DEN", True, 190.0),
    ("JFK", "LHR", False, 720.0),
    ("SFO", "NRT", False, 980.0),
]
WATCH_START = pd.Timestamp("2026-09-01", tz="UTC")


def advance_purchase_factor(days_ahead: np.ndarray, dip_center: float, dip_depth: float) -> np.ndarray:
    """Published shape: dearer beyond 112 days, a dip inside 21-112 days, steep steps at 21/14/7 days."""
    dip = 1 - dip_depth * np.exp(-(((days_ahead - dip_center) / 25.0) ** 2))
    late = 1 + 0.012 * (21 - days_ahead) + 0.08 * (days_ahead < 14) + 0.12 * (days_ahead < 7)
    return np.where(days_ahead > 112, 1.10, np.where(days_ahead >= 21, dip, late))


def fare_observations(trip_count: int, seed: int) -> pd.DataFrame:
    """Up to `trip_count` seeded, distinct watched trips collected every 12 h from up to 90 days out until one day
    before departure.

    Each path: route base fare, weekday and December premiums, the advance-purchase curve, a persistent
    AR(1) drift, quote jitter, and for some trips a short sale.
    """
    rng = np.random.default_rng(seed)
    trips, drawn = [], set()
    for _ in range(trip_count):
        origin, destination, national, base = ROUTES[rng.integers(len(ROUTES))]
        depart = WATCH_START.tz_localize(None) + pd.Timedelta(days=int(rng.integers(30, 200)))
        one_way = rng.random() < 0.1
        back = None if one_way else (depart + pd.Timedelta(days=int(rng.integers(2, 15)))).date()
        depart_utc = depart.tz_localize("UTC")
        first = max(WATCH_START, depart_utc - pd.Timedelta(days=90))
        times = pd.date_range(first, depart_utc - pd.Timedelta(days=1), freq="12h")
        days_ahead = ((depart_utc - times) / pd.Timedelta(days=1)).to_numpy()
        level = base * (1.08 if depart.weekday() in (4, 6) else 1.0) * (1.15 if depart.month == 12 else 1.0)
        curve = advance_purchase_factor(days_ahead, rng.uniform(40, 70), rng.uniform(0.04, 0.2))
        drift = np.zeros(len(times))
        for step in range(1, len(times)):
            drift[step] = 0.9 * drift[step - 1] + rng.normal(0, 0.015)
        sale = np.ones(len(times))
        if rng.random() < 0.3:
            start = int(rng.integers(len(times)))
            sale[start : start + int(rng.integers(4, 9))] = 0.85
        fares = np.round(level * curve * np.exp(drift) * sale * rng.normal(1, 0.005, len(times)), 2)
        # A trip drawn twice would be collected twice at every moment; the draws are made anyway, so the random
        # stream, and every other trip, stay as they are.
        if (origin, destination, depart, back) in drawn:
            continue
        drawn.add((origin, destination, depart, back))
        trips.append(
            pd.DataFrame(
                {
                    "origin": origin,
                    "destination": destination,
                    "depart_date": depart.date(),
                    "return_date": back,
                    "adults": 1,
                    "children": 0,
                    "cabin": "COACH",
                    "collected_at": times,
                    "cheapest_total": fares,
                    "currency": "USD",
                    "option_count": rng.integers(5, 30, len(times)),
                    "carrier_count": rng.integers(1, 5, len(times)),
                    "nonstop_share": rng.uniform(0, 1, len(times)).round(2),
                    "national": national,
                }
            )
        )
    return pd.concat(trips, ignore_index=True)


def hand_made_trip(fares: list[float]) -> pd.DataFrame:
    """One SFO-JFK round trip collected every 12 h, ending one day before departure."""
    depart = pd.Timestamp("2027-01-10", tz="UTC")
    times = pd.date_range(end=depart - pd.Timedelta(days=1), periods=len(fares), freq="12h")
    return pd.DataFrame(
        {
            "origin": "SFO",
            "destination": "JFK",
            "depart_date": pd.Timestamp("2027-01-10").date(),
            "return_date": pd.Timestamp("2027-01-17").date(),
            "adults": 1,
            "children": 0,
            "cabin": "COACH",
            "collected_at": times,
            "cheapest_total": fares,
            "currency": "USD",
            "option_count": 12,
            "carrier_count": 3,
            "nonstop_share": 0.5,
            "national": True,
        }
    )


@pytest.fixture(scope="module", autouse=True)
def single_openmp_thread():
    """One OpenMP thread: on busy shared cores, gradient boosting's spinning threads slow these tests severalfold."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    return fare_observations(300, seed=7)


@pytest.fixture(scope="module")
def features(observations) -> pd.DataFrame:
    return observation_features(observations)


@pytest.fixture(scope="module")
def evaluation(features):
    return train_and_evaluate(features)


@pytest.fixture(scope="module")
def fare_evaluation(observations):
    return evaluate_fare_model(observations)


def test_features_use_only_what_was_collected_so_far(observations, features):
    cutoff = WATCH_START + pd.Timedelta(days=60)
    prefix = observation_features(observations[observations["collected_at"] <= cutoff])
    assert 0 < len(prefix) < len(features)
    pd.testing.assert_frame_equal(prefix, features.loc[prefix.index, prefix.columns], check_exact=False, rtol=1e-9)


def test_features_describe_the_trip_and_its_history():
    trip = observation_features(hand_made_trip([300.0, 280.0, 290.0, 310.0]))
    assert list(trip["observation_count"]) == [1, 2, 3, 4]
    assert trip["days_ahead"].iloc[-1] == pytest.approx(1.0)
    assert trip["nights"].iloc[0] == 7
    assert trip["fare_to_running_min"].iloc[-1] == pytest.approx(310.0 / 280.0)
    assert trip["fare_to_min_1d"].iloc[-1] == pytest.approx(310.0 / 290.0)
    assert trip["relative_slope_3d"].iloc[-1] > 0
    # New York is about 4,150 km from San Francisco by great circle.
    assert 4100 < trip["distance_km"].iloc[0] < 4200
    assert np.isnan(great_circle_km("SFO", "XXX"))


def test_fare_against_route_peers_uses_their_latest_fares_so_far():
    def trip(depart: str, fares: list[float], hours_late: int = 0, nights: int = 7) -> pd.DataFrame:
        frame = hand_made_trip(fares)
        frame["collected_at"] = pd.date_range("2027-01-01 12:00", periods=len(fares), freq="D", tz="UTC") + pd.Timedelta(hours=hours_late)
        frame["depart_date"] = pd.Timestamp(depart).date()
        frame["return_date"] = (pd.Timestamp(depart) + pd.Timedelta(days=nights)).date()
        return frame

    watched = pd.concat([
        trip("2027-03-10", [330.0, 330.0]),
        trip("2027-03-06", [300.0, 300.0]),
        trip("2027-03-14", [360.0, 250.0]),
        # Collected six hours after the others each day: not yet known at their collection moment.
        trip("2027-03-12", [900.0, 900.0], hours_late=6),
        # Too far away, or another length of stay: not peers.
        trip("2027-03-30", [100.0, 100.0]),
        trip("2027-03-09", [100.0, 100.0], nights=3),
    ], ignore_index=True)
    features = observation_features(watched)
    middle = features[features["depart_date"] == pd.Timestamp("2027-03-10")].sort_values("collected_at")
    # Day 2: the 2027-03-12 trip's day-1 fare is the latest within a day; the 2027-03-14 trip has its new fare.
    assert middle["fare_to_route_peers"].iloc[0] == pytest.approx(330.0 / (300.0 * 360.0) ** 0.5)
    assert middle["fare_to_route_peers"].iloc[1] == pytest.approx(330.0 / (300.0 * 250.0 * 900.0) ** (1 / 3))
    alone = features[features["depart_date"] == pd.Timestamp("2027-03-30")]
    assert alone["fare_to_route_peers"].isna().all()


def route_with_refilings(refile_days: list[int], sale_days: range, days: int = 40,
                         collections_per_day: int = 1, refiled_from_collection: int = 0) -> pd.DataFrame:
    """Six SFO-JFK trips collected daily from 12:00 UTC (or several times a day, every 3 hours): every trip changes
    fare on refiling days (from that day's collection `refiled_from_collection` on), each by its own share; a sale
    takes 15% off all."""
    start = pd.Timestamp("2027-01-01 12:00", tz="UTC")
    times = [start + pd.Timedelta(days=day, hours=3 * collection)
             for day in range(days) for collection in range(collections_per_day)]
    trips = []
    for trip in range(6):
        fares, fare = [], 300.0 + 10 * trip
        for day in range(days):
            before = fare
            if day in refile_days:
                fare *= 1 + 0.02 * (trip + 1) * (-1) ** (day + trip)
            fares += [round((before if collection < refiled_from_collection else fare)
                            * (0.85 if day in sale_days else 1.0), 2) for collection in range(collections_per_day)]
        frame = hand_made_trip(fares)
        frame["collected_at"] = times
        frame["depart_date"] = (start + pd.Timedelta(days=90 + trip)).date()
        frame["return_date"] = (start + pd.Timedelta(days=97 + trip)).date()
        trips.append(frame)
    return pd.concat(trips, ignore_index=True)


def test_route_refilings_are_found_and_sales_are_not_refilings():
    features = observation_features(route_with_refilings([5, 15, 25, 35], range(20, 22)))
    day = (features["collected_at"] - features["collected_at"].min()).dt.days
    by_day = features.groupby(day)[["days_since_route_refile", "route_refile_interval",
                                                                     "days_to_next_refile"]].first()
    assert np.isnan(by_day.loc[4, "days_since_route_refile"])
    assert by_day.loc[5, "days_since_route_refile"] == 0 and by_day.loc[12, "days_since_route_refile"] == 7
    # The sale on days 20-21 moves every trip by the same share: not a refiling.
    assert by_day.loc[23, "days_since_route_refile"] == 8
    assert np.isnan(by_day.loc[15, "route_refile_interval"]) and by_day.loc[16, "route_refile_interval"] == 10
    assert by_day.loc[33, "days_to_next_refile"] == 2
    assert features.loc[day == 20, "route_mean_change"].iloc[0] == pytest.approx(np.log(0.85), abs=1e-3)


def test_route_refilings_are_found_when_trips_are_collected_several_times_a_day():
    features = observation_features(route_with_refilings([5, 15, 25, 35], range(20, 22), collections_per_day=4))
    day = (features["collected_at"] - features["collected_at"].min()).dt.days
    # Later collections of a refiling day see unchanged fares: the day's refiling holds for all of its moments.
    assert (features.loc[day.isin([5, 15, 25, 35]), "days_since_route_refile"] == 0).all()
    assert (features.loc[day == 12, "days_since_route_refile"] == 7).all()
    assert (features.loc[day == 23, "days_since_route_refile"] == 8).all()
    assert features.loc[day == 15, "route_refile_interval"].isna().all()
    assert (features.loc[day == 16, "route_refile_interval"] == 10).all()
    assert (features.loc[day == 33, "days_to_next_refile"] == 2).all()


def test_a_refiling_filed_mid_day_is_found_from_the_first_collection_that_shows_it():
    # Collected at 12:00, 15:00, 18:00 and 21:00; the refilings show from 18:00, after two unchanged collections.
    features = observation_features(route_with_refilings([5, 15, 25, 35], range(20, 22), collections_per_day=4,
                                                         refiled_from_collection=2))
    since_start = features["collected_at"] - features["collected_at"].min()
    day, hour = since_start.dt.days, 12 + since_start.dt.seconds // 3600
    refiling_day = day.isin([15, 25, 35])
    assert (features.loc[refiling_day & (hour >= 18), "days_since_route_refile"] == 0).all()
    assert (features.loc[refiling_day & (hour >= 18), "route_changed_share"] == 1).all()
    # Before 18:00 the day still counts from the previous refiling, ten days earlier.
    assert (features.loc[refiling_day & (hour < 18), "days_since_route_refile"] == 10).all()
    assert (features.loc[day == 16, "route_refile_interval"] == 10).all()
    assert (features.loc[day == 23, "days_since_route_refile"] == 8).all()


def route_departing_every_other_day(refile_days: list[int], days: int = 300) -> pd.DataFrame:
    """SFO-JFK trips departing every other day, each collected daily at 12:00 UTC from 60 days ahead until the day
    before; on refiling days every trip collected changes fare by its own share."""
    start = pd.Timestamp("2027-01-01 12:00", tz="UTC")
    rng = np.random.default_rng(11)
    trips = []
    for depart_day in range(61, days, 2):
        days_collected = range(depart_day - 60, depart_day)
        fares, fare = [], 300.0 + rng.uniform(-30, 30)
        for day in days_collected:
            if day in refile_days:
                fare *= np.exp(rng.normal(0, 0.05))
            fares.append(round(fare, 2))
        frame = hand_made_trip(fares)
        frame["collected_at"] = [start + pd.Timedelta(days=day) for day in days_collected]
        frame["depart_date"] = (start + pd.Timedelta(days=depart_day)).date()
        frame["return_date"] = (start + pd.Timedelta(days=depart_day + 7)).date()
        trips.append(frame)
    return pd.concat(trips, ignore_index=True)


# Refilings every 12 days for 150 days, then every 30: the calendar's median interval moves from one to the other.
CHANGING_REFILINGS = [*range(5, 150, 12), *range(160, 300, 30)]


def test_the_lowest_fare_since_a_refiling_the_served_trips_alone_cannot_find_counts_from_training_s_moment():
    # Five trips refiled on 6 January, each by its own share, then rose 6%. Trained on the 10th, the refresh of the
    # 12th holds only the three departing from the 21st: too few to find that refiling itself.
    start = pd.Timestamp("2027-01-01 12:00", tz="UTC")
    trips = []
    for depart, share in {7: 0.90, 8: 0.97, 21: 0.93, 22: 1.05, 23: 0.95}.items():
        days = range(min(11, depart - 1))
        trip = hand_made_trip([300.0 if day < 5 else 300 * share * (1 if day == 5 else 1.06) for day in days])
        trip["collected_at"] = [start + pd.Timedelta(days=day) for day in days]
        trip["depart_date"] = pd.Timestamp(2027, 1, depart).date()
        trip["return_date"] = pd.Timestamp(2027, 1, depart + 7).date()
        trips.append(trip)
    observations = pd.concat(trips, ignore_index=True)
    calendar = route_calendar(observation_features(observations[observations["collected_at"] < start.floor("D")
                                                                + pd.Timedelta(days=10)]))
    assert calendar.refilings.to_dict("records") == [{"origin": "SFO", "destination": "JFK",
                                                      "day": pd.Timestamp("2027-01-06"),
                                                      "first_seen": pd.Timestamp("2027-01-06 12:00")}]
    served = observations[pd.to_datetime(observations["depart_date"]) >= pd.Timestamp(calendar.read_from())]
    assert served["depart_date"].nunique() == 3

    def newest(features: pd.DataFrame) -> pd.DataFrame:
        latest = features[last_observation_mask(features).to_numpy()]
        return latest[latest["depart_date"] >= pd.Timestamp("2027-01-21")].set_index("trip_id")[MODEL_FEATURES]

    everything = newest(observation_features(observations))
    assert everything["fare_to_min_since_refile"].to_list() == pytest.approx([1.06] * 3)
    pd.testing.assert_frame_equal(newest(observation_features(served, calendar)), everything)


def test_the_served_advice_reads_the_route_calendar_training_found(evaluation):
    observations = route_departing_every_other_day(CHANGING_REFILINGS)
    first_day = pd.Timestamp("2027-01-01", tz="UTC")

    def collected_before(day: int) -> pd.DataFrame:
        return observations[observations["collected_at"] < first_day + pd.Timedelta(days=day)]

    # Trained on day 279 on every trip; served on day 281 (its collections up to day 280) reading only the trips
    # departing from the calendar's read_from: most of the route's history has departed by then.
    calendar = route_calendar(observation_features(collected_before(279)))
    assert calendar.complete_from == pd.Timestamp("2027-01-01") + pd.Timedelta(days=278)
    known_today = collected_before(281)
    today = (first_day + pd.Timedelta(days=280)).date()
    served = known_today[pd.to_datetime(known_today["depart_date"]) >= pd.Timestamp(calendar.read_from())]
    upcoming = served[pd.to_datetime(served["depart_date"]) >= pd.Timestamp(today)]
    assert 0 < len(upcoming) < len(served) < len(known_today) / 10

    def newest(features: pd.DataFrame) -> pd.DataFrame:
        latest = features[last_observation_mask(features).to_numpy()]
        return latest[latest["depart_date"] >= pd.Timestamp(today)].set_index("trip_id")[MODEL_FEATURES]

    everything = newest(observation_features(known_today))
    assert (everything["route_refile_interval"] == 12).all() and len(everything) == 10
    pd.testing.assert_frame_equal(newest(observation_features(served, calendar)), everything)
    # Without the calendar, the served trips alone are too few on the route's earlier days to find their refilings.
    assert newest(observation_features(served))["route_refile_interval"].isna().all()

    # The advisor keeps the calendar in its file and reads it when it advises.
    advisor = copy.deepcopy(evaluation.advisor)
    advisor.route_calendar = calendar
    trained_view = copy.deepcopy(advisor)
    trained_view.route_calendar = None
    pd.testing.assert_frame_equal(advisor.advise_trips(served).loc[everything.index],
                                  trained_view.advise_trips(known_today).loc[everything.index])


def test_an_advisor_keeps_its_route_calendar_in_its_file(features, evaluation, tmp_path):
    # Found on every trip it was given, upcoming ones too, not on its training trips only.
    calendar = evaluation.advisor.route_calendar
    assert calendar.complete_from == features["collected_at"].max().floor("D").tz_convert(None)
    assert calendar.refilings["day"].max() > evaluation.split.train["collected_at"].max().tz_convert(None)
    evaluation.advisor.save(tmp_path / "advisor.joblib")
    loaded = BuyWaitAdvisor.load(tmp_path / "advisor.joblib").route_calendar
    assert loaded.complete_from == calendar.complete_from
    pd.testing.assert_frame_equal(loaded.refilings, calendar.refilings)


def test_continuation_ratios_follow_the_policy():
    features = observation_features(hand_made_trip([100.0, 90.0, 95.0, 80.0]))
    buy = np.array([False, True, False, False])
    ratios = continuation_ratios(features, buy)
    # Waiting at the first collection buys at the second (90); later, waiting runs to the last collection (80).
    assert list(ratios[:3]) == pytest.approx([0.9, 80 / 90, 80 / 95]) and np.isnan(ratios[3])


def test_drop_labels_on_a_hand_made_series():
    fares = [100.0, 99.0, 97.0, 101.0, 98.5, 105.0]
    labels = drop_labels(observation_features(hand_made_trip(fares)))
    expected_future_min = [97.0, 97.0, 98.5, 98.5, 105.0]
    assert list(labels["future_min_fare"].iloc[:-1]) == expected_future_min
    assert np.isnan(labels["future_min_fare"].iloc[-1])
    expected_drop = [f_min <= fare * (1 - MEANINGFUL_DROP_SHARE) for fare, f_min in zip(fares, expected_future_min)]
    assert list(labels["drops_meaningfully"]) == expected_drop + [False]
    assert expected_drop == [True, True, False, True, False]
    assert list(labels["is_last_observation"]) == [False] * 5 + [True]


def test_policy_buys_at_the_last_observation(evaluation):
    test = evaluation.split.test
    decisions = evaluation.advisor.decisions(test)
    assert (decisions.loc[test["days_ahead"] <= LAST_CALL_DAYS_AHEAD, "action"] == "buy").all()
    # Even an advisor that always wants to wait ends up buying each trip at its last collection.
    always_waiting = copy.copy(evaluation.advisor)
    always_waiting.threshold = -1.0
    actions = always_waiting.decisions(test)["action"]
    assert (actions[test["days_ahead"] > LAST_CALL_DAYS_AHEAD] != "buy").all()
    outcomes = purchases(test, actions == "buy")
    last = test[last_observation_mask(test)].set_index("trip_id")
    assert outcomes["price_paid"].equals(last.loc[outcomes.index, "fare"])


def test_last_call_is_the_last_collection_day_at_half_hour_sweeps(evaluation):
    always_waiting = copy.copy(evaluation.advisor)
    always_waiting.threshold = -1.0
    trip = hand_made_trip([300.0, 290.0, 295.0, 298.0])
    # The schedule's sweeps every 30 minutes: two a day before the third, on the afternoon two days before departure
    # (the third a day after the first: enough history).
    trip["collected_at"] = pd.to_datetime(["2027-01-07 12:00", "2027-01-07 12:30", "2027-01-08 13:00",
                                           "2027-01-09 00:00"], utc=True)
    two_days_before = advise_one(always_waiting, trip.iloc[:3])
    assert two_days_before.action == "wait"
    eve = advise_one(always_waiting, trip)
    assert (eve.action, eve.reason) == ("buy", "last collection before departure: buy now")
    # The policy decides, not the model: no chance is claimed for it.
    assert (eve.confidence, eve.drop_probability) == (None, None)


def advise_one(advisor: BuyWaitAdvisor, observations: pd.DataFrame) -> Advice:
    """The advice for one trip's observations so far."""
    [advice] = advisor.advise_trips(observations).to_dict("records")
    return Advice(**advice)


def trip_observations(observations: pd.DataFrame, features: pd.DataFrame, trip_id: str) -> pd.DataFrame:
    """One trip's observations in collection order."""
    return observations.loc[features.index[features["trip_id"] == trip_id]]


def test_not_enough_data_for_short_histories(evaluation, observations, features):
    advisor = evaluation.advisor
    trip = trip_observations(observations, features, evaluation.split.test["trip_id"].iloc[0])
    short = advise_one(advisor, trip.iloc[: MIN_HISTORY - 1])
    assert short.action == "not_enough_data"
    assert short.drop_probability is None and short.expected_saving is None
    enough = advise_one(advisor, trip.iloc[:MIN_HISTORY])
    assert enough.action in ("buy", "wait")
    assert 0 <= enough.drop_probability <= 1 and enough.expected_saving >= 0
    fare_now = trip["cheapest_total"].iloc[MIN_HISTORY - 1]
    assert (enough.action == "wait") == (enough.expected_saving > advisor.threshold * fare_now)
    short_rows = features[(features["observation_count"] < MIN_HISTORY) & (features["days_ahead"] > LAST_CALL_DAYS_AHEAD)]
    assert (advisor.decisions(short_rows)["action"] == "not_enough_data").all()
    # A trip first seen at its last collection must still be bought, history or not.
    assert advise_one(advisor, hand_made_trip([250.0])).action == "buy"


def test_three_collections_within_an_hour_are_not_enough_history(evaluation):
    # Half-hourly sweeps reach three collections in an hour, while every rolling ratio is still 1.
    trip = hand_made_trip([300.0, 310.0, 305.0])
    trip["collected_at"] = pd.date_range(end=pd.Timestamp("2026-12-10", tz="UTC"), periods=3, freq="30min")
    early = advise_one(evaluation.advisor, trip)
    assert early.action == "not_enough_data" and early.drop_probability is None
    assert early.reason == "only 3 collection(s) of this trip over 1 hour so far; advice needs at least 3 over 24 hours"
    trip["collected_at"] = pd.date_range(end=pd.Timestamp("2026-12-10", tz="UTC"), periods=3, freq="12h")
    assert advise_one(evaluation.advisor, trip).action in ("buy", "wait")


def test_advisor_beats_buying_at_once_and_the_oracle_bounds_every_policy(evaluation):
    table, test = evaluation.table, evaluation.split.test
    assert list(table.index) == list(POLICIES)
    assert table.loc["advisor", "mean_saving"] > table.loc["buy_first", "mean_saving"] == 0
    assert table.loc["advisor", "mean_price_paid"] < table.loc["buy_first", "mean_price_paid"]
    assert (table["mean_saving"] <= table.loc["oracle", "mean_saving"] + 1e-9).all()
    assert (table["share_of_oracle_saving"] <= 1 + 1e-9).all()
    assert table.loc["oracle", "upset_rate"] == 0
    assert table.loc["oracle", "mean_price_paid"] == pytest.approx(test.groupby("trip_id")["fare"].min().mean())
    assert 0 <= evaluation.headline["advisor_upset_rate"] <= 1
    assert evaluation.headline["test_trips"] == test["trip_id"].nunique()


def test_the_release_check_judges_the_advisor_on_the_validation_trips(evaluation):
    advisor, validation, headline = evaluation.advisor, evaluation.split.validation, evaluation.headline
    followed = purchases(validation, (advisor.decisions(validation)["action"] == "buy").to_numpy())
    assert headline["validation_trips"] == validation["trip_id"].nunique() == len(followed)
    assert headline["validation_mean_saving_share"] == pytest.approx(mean_relative_saving(followed))
    assert advisor_not_worse_than_buying_now(headline) == (mean_relative_saving(followed) >= 0) is True
    assert not advisor_not_worse_than_buying_now({**headline, "validation_mean_saving_share": -0.001})
    assert advisor_not_worse_than_buying_now({**headline, "validation_mean_saving_share": 0.0})


def test_the_threshold_tradeoff_at_the_chosen_threshold_is_the_policy_table_row(evaluation):
    advisor, test, table = evaluation.advisor, evaluation.split.test, evaluation.table
    tradeoff = threshold_tradeoff(test, advisor, [0.0, advisor.threshold, 1.0])
    assert list(tradeoff.index) == [0.0, advisor.threshold, 1.0]
    for column in ("share_of_oracle_saving", "mean_saving_share", "upset_rate"):
        assert tradeoff.loc[advisor.threshold, column] == pytest.approx(table.loc["advisor", column])
    # No wait promises all of the fare: the policy buys as soon as it has enough history (or at the last call).
    never_waits = (test["observation_count"] >= advisor.min_history) | (test["days_ahead"] <= advisor.last_call_days_ahead)
    bought = purchases(test, never_waits.to_numpy())
    assert tradeoff.loc[1.0, "upset_rate"] == pytest.approx((bought["price_paid"] > bought["first_fare"]).mean())
    assert tradeoff.loc[1.0, "mean_saving_share"] == pytest.approx(mean_relative_saving(bought))


def test_the_chosen_threshold_saves_most_within_the_upset_cap():
    scores = {0.0: 0.03, 0.01: 0.025, 0.02: 0.02, 0.03: 0.02, 0.04: 0.01}
    upset_rates = {0.0: 0.12, 0.01: 0.06, 0.02: 0.04, 0.03: 0.03, 0.04: 0.03}
    assert chosen_threshold(scores, upset_rates) == 0.0
    assert chosen_threshold(scores, upset_rates, 0.2) == 0.0
    # 0.02 and 0.03 save the same: the lower one waits for less.
    assert chosen_threshold(scores, upset_rates, 0.05) == 0.02
    # No threshold meets the cap: the one that saves most among those upsetting the fewest trips.
    assert chosen_threshold(scores, upset_rates, 0.01) == 0.03
    # A rate that could not be measured never meets the cap; with none measured there is nothing to hold to.
    assert chosen_threshold(scores, {**upset_rates, 0.0: float("nan")}, 0.2) == 0.01
    with pytest.raises(ValueError, match="no upset rate on the validation trips"):
        chosen_threshold(scores, dict.fromkeys(scores, float("nan")), 0.05)


def test_an_upset_cap_holds_the_upsets_on_validation_and_costs_savings(features, evaluation):
    uncapped = evaluation.advisor
    cap = uncapped.threshold_upset_rates[uncapped.threshold] / 2
    capped = train_and_evaluate(features, max_upset_rate=cap)
    advisor = capped.advisor
    # The same models (the cap only moves the threshold), so the same scores per threshold.
    assert advisor.threshold_scores == uncapped.threshold_scores
    assert advisor.threshold_upset_rates == uncapped.threshold_upset_rates
    assert advisor.threshold > uncapped.threshold
    assert advisor.threshold_upset_rates[advisor.threshold] <= cap
    assert capped.headline["validation_upset_rate"] == advisor.threshold_upset_rates[advisor.threshold]
    assert capped.headline["max_upset_rate"] == cap
    assert capped.headline["validation_mean_saving_share"] <= evaluation.headline["validation_mean_saving_share"]
    on_validation = threshold_tradeoff(capped.split.validation, advisor, [advisor.threshold])
    assert on_validation.loc[advisor.threshold, "upset_rate"] == pytest.approx(capped.headline["validation_upset_rate"])
    assert evaluation.headline["max_upset_rate"] is None


def test_settings_read_the_upset_cap(monkeypatch):
    monkeypatch.delenv("FARES_ADVISOR_MAX_UPSET_RATE", raising=False)
    assert load_settings().advisor_max_upset_rate is None
    monkeypatch.setenv("FARES_ADVISOR_MAX_UPSET_RATE", "0.05")
    assert load_settings().advisor_max_upset_rate == 0.05
    for wrong in ("5%", "1", "-0.1", "nan"):
        monkeypatch.setenv("FARES_ADVISOR_MAX_UPSET_RATE", wrong)
        with pytest.raises(ValueError, match=f"FARES_ADVISOR_MAX_UPSET_RATE is '{re.escape(wrong)}'; set a share"):
            load_settings()


def test_a_young_watchlist_without_refiling_history_still_trains(features):
    # Before a second refiling no route has an interval between refilings: the column is empty in training.
    young = features.assign(route_refile_interval=np.nan, days_to_next_refile=np.nan, days_ahead_at_next_refile=np.nan)
    advisor = train_and_evaluate(young).advisor
    assert advisor.empty_columns == ["route_refile_interval", "days_to_next_refile", "days_ahead_at_next_refile"]
    assert set(advisor.decisions(features)["action"]) <= {"buy", "wait", "not_enough_data"}


def test_a_watchlist_whose_trips_have_not_departed_is_told_so(features):
    # Every trip departs after the latest collection: none has a known price paid to learn from.
    with pytest.raises(ValueError, match="no watched trip has departed yet"):
        train_and_evaluate(features.assign(depart_date=features["collected_at"].max().tz_localize(None)
                                           + pd.Timedelta(days=30)))


def departures_around_the_latest_collection() -> pd.DataFrame:
    """Trips departing around the latest collection, 2027-01-10 06:00 UTC: 22:00 the day before in San Francisco,
    15:00 in Tokyo. Each is collected two days before and then."""
    trips = {"LHR 9th": ("LHR", "2027-01-09"), "LHR 10th": ("LHR", "2027-01-10"), "SFO 9th": ("SFO", "2027-01-09"),
             "NRT 9th": ("NRT", "2027-01-09"), "NRT 10th": ("NRT", "2027-01-10")}
    return pd.DataFrame([{"trip_id": trip_id, "origin": origin, "depart_date": pd.Timestamp(depart),
                          "collected_at": pd.Timestamp(at, tz="UTC")}
                         for trip_id, (origin, depart) in trips.items()
                         for at in ("2027-01-08 06:00", "2027-01-10 06:00")])


def test_a_trip_is_watched_until_its_departure_day_has_ended_at_its_origin():
    # The collector watches a trip through its departure day at its origin: later sweeps that day may still quote it.
    assert watched_to_departure(departures_around_the_latest_collection())["trip_id"].unique().tolist() == [
        "LHR 9th", "NRT 9th"]


def test_splits_keep_later_departures_for_testing(evaluation):
    split = evaluation.split
    assert split.train["depart_date"].max() < split.validation["depart_date"].min()
    assert split.validation["depart_date"].max() < split.test["depart_date"].min()
    assert not set(split.train["trip_id"]) & set(split.test["trip_id"])


def test_threshold_is_chosen_without_the_test_trips(observations, evaluation):
    test_trips = set(evaluation.split.test["trip_id"])
    scrambled = observations.copy()
    # Route features let a trip see the route's other trips collected up to the same moment, so only what
    # test trips saw after the last validation collection is scrambled: nothing trained on could have seen it.
    after_validation = scrambled["collected_at"] > evaluation.split.validation["collected_at"].max()
    in_test = observation_features(observations)["trip_id"].reindex(scrambled.index).isin(test_trips) & after_validation
    rng = np.random.default_rng(1)
    scrambled.loc[in_test, "cheapest_total"] = rng.permutation(scrambled.loc[in_test, "cheapest_total"].to_numpy())
    rerun = train_and_evaluate(observation_features(scrambled))
    assert rerun.advisor.threshold == evaluation.advisor.threshold
    assert rerun.advisor.threshold_scores == evaluation.advisor.threshold_scores
    assert not rerun.table.equals(evaluation.table)


def test_advisor_save_load_round_trip(evaluation, tmp_path):
    path = tmp_path / "models" / "advisor.joblib"
    evaluation.advisor.save(path)
    loaded = BuyWaitAdvisor.load(path)
    test = evaluation.split.test
    pd.testing.assert_frame_equal(loaded.decisions(test), evaluation.advisor.decisions(test))
    assert loaded.threshold == evaluation.advisor.threshold
    assert loaded.threshold_upset_rates == evaluation.advisor.threshold_upset_rates
    assert loaded.max_upset_rate is None


def test_missing_or_corrupt_model_files_raise_model_unavailable(evaluation, observations, tmp_path):
    missing = tmp_path / "absent.joblib"
    with pytest.raises(ModelUnavailable, match=str(missing)):
        BuyWaitAdvisor.load(missing)
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ModelUnavailable, match=str(garbage)):
        FareModel.load(garbage)
    truncated = tmp_path / "truncated.joblib"
    evaluation.advisor.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ModelUnavailable, match=str(truncated)):
        BuyWaitAdvisor.load(truncated)
    fare_model_file = tmp_path / "fare.joblib"
    FareModel().fit(observations.iloc[:2000]).save(fare_model_file)
    with pytest.raises(ModelUnavailable, match="not a buy-wait-advisor"):
        BuyWaitAdvisor.load(fare_model_file)
    old_format = tmp_path / "old.joblib"
    joblib.dump({"kind": "buy-wait-advisor", "format_version": 0, "features": MODEL_FEATURES, "payload": {}}, old_format)
    with pytest.raises(ModelUnavailable, match="format version 0"):
        BuyWaitAdvisor.load(old_format)


def test_a_pointer_leading_out_of_the_models_folder_is_refused(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    lake.write_object(published_model_key("fare_model"), json.dumps({"version": "../../raw"}).encode())
    with pytest.raises(ModelUnavailable, match="names '../../raw', which is no fare_model version"):
        published_version(lake, "fare_model")


def test_old_model_versions_are_pruned_but_never_the_published_one(tmp_path, monkeypatch):
    lake = LakeResource(root=str(tmp_path))
    versions = [f"202612{day:02d}T031500Z" for day in range(1, 6)]
    for version in versions:
        for file in ("model.pkl", "metrics.json", "calibration.png"):
            lake.write_object(model_version_key("fare_model", version, file), b"saved")
    assert prune_versions(lake, "fare_model", 2) == versions[:3]
    # The page serves the published version, however old: it stays.
    lake.write_object(published_model_key("fare_model"), json.dumps({"version": versions[3]}).encode())
    assert prune_versions(lake, "fare_model", 1) == [] and saved_versions(lake, "fare_model") == versions[3:]
    assert prune_versions(lake, "fare_model", 0) == []
    # A version spared (the one published until the retrain) stays, and so does a folder no retrain wrote.
    lake.write_object("models/fare_model/notes/readme.txt", b"mine")
    lake.write_object(published_model_key("fare_model"), json.dumps({"version": versions[4]}).encode())
    assert prune_versions(lake, "fare_model", 1, spared=[versions[3]]) == []
    assert lake.list_keys("models/fare_model/notes/") == ["models/fare_model/notes/readme.txt"]
    lake.write_object(published_model_key("fare_model"), b"not json")
    assert prune_versions(lake, "fare_model", 1) == [] and saved_versions(lake, "fare_model") == versions[3:]
    monkeypatch.setenv("FARES_MODEL_VERSIONS_KEPT", "-1")
    with pytest.raises(ValueError, match="FARES_MODEL_VERSIONS_KEPT is -1"):
        load_settings()


def test_fare_model_beats_the_route_mean(fare_evaluation):
    report = fare_evaluation.metrics
    assert report["test_rows"] > 0
    assert report["mae"] < report["route_mean_mae"]
    assert report["mape"] < report["route_mean_mape"]


def test_fare_model_is_judged_without_the_carrier_mix_a_grid_cell_lacks(observations, fare_evaluation):
    rows, model = fare_evaluation.test_rows, fare_evaluation.model
    assert {"carrier_count", "nonstop_share"}.isdisjoint(rows.columns)
    np.testing.assert_allclose(fare_evaluation.predicted, model.predict_frame(rows), rtol=1e-12)
    # The observed mix would have changed the predictions judged: it is a hint the page never has.
    observed = observations.rename(columns={"collected_at": "at"}).loc[rows.index]
    assert not np.allclose(model.predict_frame(observed), fare_evaluation.predicted)


def test_fare_model_fills_an_uncollected_date_and_round_trips(observations, tmp_path):
    model = FareModel().fit(observations)
    at = WATCH_START + pd.Timedelta(days=10)
    collected_departures = set(pd.to_datetime(observations["depart_date"]))
    new_date = next(d for d in pd.date_range("2026-10-01", periods=400) if d not in collected_departures)
    fare = model.predict("SFO", "JFK", new_date.date(), (new_date + pd.Timedelta(days=7)).date(), at)
    route = observations[(observations["origin"] == "SFO") & (observations["destination"] == "JFK")]
    assert route["cheapest_total"].min() * 0.8 < fare < route["cheapest_total"].max() * 1.2
    # An unseen route still gets a finite, positive estimate from its distance and dates.
    assert 0 < model.predict("DEN", "ATL", new_date.date(), None, at) < np.inf
    model.save(tmp_path / "fare.joblib")
    assert FareModel.load(tmp_path / "fare.joblib").predict(
        "SFO", "JFK", new_date.date(), (new_date + pd.Timedelta(days=7)).date(), at
    ) == pytest.approx(fare)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header chunk (IHDR), which must come first."""
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_charts_are_pngs_of_the_figure_size_kept_beside_the_model(evaluation, fare_evaluation, tmp_path):
    charts = advisor_charts(evaluation)
    fare_charts = fare_model_charts(fare_evaluation)
    assert set(charts) == {"savings_distribution", "calibration", "feature_importance"}
    assert set(fare_charts) == {"predicted_vs_actual", "feature_importance"}
    for png in [*charts.values(), *fare_charts.values()]:
        assert png_size(png) == (FIGURE_SIZE_INCHES[0] * DPI, FIGURE_SIZE_INCHES[1] * DPI) == (480, 280)
        assert 5_000 < len(png) < 100_000
    lake = LakeResource(root=str(tmp_path))
    folder = Path(save_version(lake, "buy_wait_advisor", "v1", evaluation.advisor, evaluation.headline, charts))
    assert {path.name for path in folder.iterdir()} == {
        "model.pkl", "metrics.json", "savings_distribution.png", "calibration.png", "feature_importance.png"}
    assert (folder / "calibration.png").read_bytes() == charts["calibration"]
    assert json.loads((folder.parent / "latest.json").read_text())["version"] == "v1"
    unpublished = Path(save_version(lake, "buy_wait_advisor", "v2", evaluation.advisor, evaluation.headline,
                                    publish=False))
    assert (unpublished / "model.pkl").exists()
    assert json.loads((folder.parent / "latest.json").read_text())["version"] == "v1"


def test_drop_probability_is_calibrated_on_the_validation_trips(evaluation):
    advisor, validation = evaluation.advisor, evaluation.split.validation
    assert advisor.calibration is not None
    rows = drop_probability_outcomes(validation, advisor)
    # Isotonic regression keeps the mean of what it fits: on the trips it was fitted on, the mean calibrated
    # probability is the observed drop rate.
    assert rows["drop_probability"].mean() == pytest.approx(rows["dropped"].mean(), abs=1e-9)
    assert rows["drop_probability"].between(0, 1).all()
    raw = advisor._classifier_probability(validation[advisor.modelled_rows(validation)])
    calibrated = rows["drop_probability"].to_numpy()
    assert (np.diff(calibrated[np.argsort(raw, kind="stable")]) >= -1e-12).all()


def test_calibration_bins_count_every_test_row_the_advisor_is_asked_about(evaluation):
    test = evaluation.split.test
    drops = drop_probability_outcomes(test, evaluation.advisor)
    bins = calibration_bins(drops["drop_probability"], drops["dropped"])
    has_later_collection = test["collected_at"] < test.groupby("trip_id")["collected_at"].transform("max")
    asked = (test["observation_count"] >= MIN_HISTORY) & has_later_collection
    assert bins["rows"].sum() == len(drops) == asked.sum() > 0
    assert (bins["rows"] * bins["observed_rate"]).sum() == pytest.approx(drop_labels(test)["drops_meaningfully"][asked].sum())
    assert ((bins["bin_from"] <= bins["mean_probability"]) & (bins["mean_probability"] <= bins["bin_to"])).all()
    hand_made = calibration_bins(np.array([0.05, 0.05, 0.95, 1.0, 0.55]), np.array([False, True, True, True, False]))
    assert list(hand_made["rows"]) == [2, 1, 2]
    assert list(hand_made["bin_from"]) == pytest.approx([0.0, 0.5, 0.9])
    assert list(hand_made["mean_probability"]) == pytest.approx([0.05, 0.55, 0.975])
    assert list(hand_made["observed_rate"]) == pytest.approx([0.5, 0.0, 1.0])
    # The judgement the charts and the bench read holds these bins and their Brier score.
    pd.testing.assert_frame_equal(evaluation.judgement.calibration, bins)
    assert evaluation.headline["test_brier_score"] == evaluation.judgement.brier_score == pytest.approx(
        float(((drops["drop_probability"] - drops["dropped"]) ** 2).mean()))


def test_grouped_rows_give_the_bins_and_brier_score_of_the_rows_themselves():
    probability = np.array([0.05, 0.05, 0.05, 0.95, 1.0, 0.55, 0.55])
    dropped = np.array([False, True, True, True, True, False, True])
    # The same rows grouped by probability: rows per group and the share of them that dropped.
    grouped = pd.DataFrame({"probability": probability, "dropped": dropped}).groupby("probability")["dropped"].agg(
        ["mean", "size"])
    weighted = calibration_bins(grouped.index.to_numpy(), grouped["mean"], rows=grouped["size"])
    pd.testing.assert_frame_equal(weighted, calibration_bins(probability, dropped))
    assert brier_score(grouped.index.to_numpy(), grouped["mean"], rows=grouped["size"]) == pytest.approx(
        float(((probability - dropped) ** 2).mean()))


def test_permutation_importance_ranks_a_feature_that_matters_above_noise():
    rng = np.random.default_rng(3)
    inputs = pd.DataFrame({"noise": rng.normal(size=6000), "weak": rng.normal(size=6000), "signal": rng.normal(size=6000)})
    target = 3 * inputs["signal"] + 0.5 * inputs["weak"] + rng.normal(0, 0.1, 6000)
    model = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(inputs, target)
    importances = permutation_importances(model, inputs, target, "neg_mean_absolute_error", max_rows=2000)
    assert list(importances.index) == ["signal", "weak", "noise"]
    assert abs(importances["noise"]) < 0.02 * importances["signal"]
    # A fixed sample and seed: the same chart every run on the same data.
    pd.testing.assert_series_equal(importances, permutation_importances(model, inputs, target, "neg_mean_absolute_error",
                                                                        max_rows=2000))


def test_markdown_image_holds_the_png_as_a_base64_data_uri():
    png = calibration_png(calibration_bins(np.array([0.2, 0.7]), np.array([False, True])))
    markdown = markdown_image(png, "calibration")
    found = re.fullmatch(r"!\[calibration\]\(data:image/png;base64,([A-Za-z0-9+/]+=*)\)", markdown)
    assert found and base64.b64decode(found.group(1), validate=True) == png
