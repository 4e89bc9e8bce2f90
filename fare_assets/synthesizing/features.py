"""Per-observation features and labels for watched trips, computed without look-ahead."""
from functools import lru_cache

import airportsdata
import numpy as np
import pandas as pd

TRIP_KEY = ["origin", "destination", "depart_date", "return_date", "adults", "children", "cabin"]
OBSERVATION_COLUMNS = TRIP_KEY + [
    "collected_at",
    "cheapest_total",
    "currency",
    "option_count",
    "carrier_count",
    "nonstop_share",
    "national",
]

# A drop counts as "meaningful" when a later fare is at least 2% below the current one. A relative
# threshold is currency-neutral (2% of a USD 300 fare is USD 6, of a JPY 45,000 fare JPY 900) and sits
# above the cent-level jitter that quotes show between collections.
MEANINGFUL_DROP_SHARE = 0.02

ROLLING_WINDOWS_DAYS = (1, 3, 7)
TREND_WINDOW_DAYS = 3

CABIN_RANKS = {"COACH": 0, "ECONOMY": 0, "PREMIUM_COACH": 1, "PREMIUM_ECONOMY": 1, "BUSINESS": 2, "FIRST": 3}

EARTH_RADIUS_KM = 6371.0088

# The columns models read: ratios to the trip's own history rather than raw amounts where possible,
# so what is learnt on one route and currency carries over to others.
MODEL_FEATURES = [
    "days_ahead",
    "nights",
    "depart_weekday",
    "return_weekday",
    "depart_month",
    "distance_km",
    "national",
    "passengers",
    "cabin_rank",
    "log_fare",
    "observation_count",
    "days_observed",
    "option_count",
    "carrier_count",
    "nonstop_share",
    "fare_to_min_1d",
    "fare_to_mean_1d",
    "fare_to_min_3d",
    "fare_to_mean_3d",
    "fare_to_min_7d",
    "fare_to_mean_7d",
    "fare_to_running_min",
    "fare_to_running_max",
    "fare_to_first",
    "fare_change_last",
    "relative_slope_3d",
]


@lru_cache(maxsize=1)
def _airport_positions() -> dict[str, tuple[float, float]]:
    """Latitude and longitude of every IATA airport known to airportsdata."""
    return {code: (row["lat"], row["lon"]) for code, row in airportsdata.load("IATA").items()}


@lru_cache(maxsize=1)
def airport_countries() -> dict[str, str]:
    """ISO country code of every IATA airport known to airportsdata."""
    return {code: row["country"] for code, row in airportsdata.load("IATA").items()}


def great_circle_km(origin: str, destination: str) -> float:
    """Great-circle distance between two IATA airports in km (NaN if either is unknown)."""
    positions = _airport_positions()
    if origin not in positions or destination not in positions:
        return float("nan")
    (lat1, lon1), (lat2, lon2) = positions[origin], positions[destination]
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi, half_dlambda = np.radians(lat2 - lat1) / 2, np.radians(lon2 - lon1) / 2
    haversine = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    return float(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(haversine)))


def route_distances_km(origins: pd.Series, destinations: pd.Series) -> np.ndarray:
    """Great-circle distance for each (origin, destination) pair, computed once per route."""
    routes = pd.DataFrame({"origin": origins.to_numpy(), "destination": destinations.to_numpy()})
    unique = routes.drop_duplicates()
    unique = unique.assign(distance_km=[great_circle_km(o, d) for o, d in zip(unique["origin"], unique["destination"])])
    return routes.merge(unique, on=["origin", "destination"], how="left")["distance_km"].to_numpy()


def trip_ids(frame: pd.DataFrame) -> pd.Series:
    """A readable, stable identifier of each row's watched trip, e.g. SFO-JFK-2027-01-10-2027-01-17-1a0c-COACH."""
    depart = pd.to_datetime(frame["depart_date"]).dt.strftime("%Y-%m-%d")
    back = pd.to_datetime(frame["return_date"]).dt.strftime("%Y-%m-%d").fillna("oneway")
    return (
        frame["origin"].astype(str) + "-" + frame["destination"].astype(str) + "-" + depart + "-" + back + "-"
        + frame["adults"].astype(int).astype(str) + "a" + frame["children"].astype(int).astype(str) + "c-"
        + frame["cabin"].astype(str)
    )


def observation_features(observations: pd.DataFrame) -> pd.DataFrame:
    """One feature row per observation, from the trip's collections up to that moment only.

    Rows come back sorted by trip and collection time, keeping the input's index.
    """
    if not observations.index.is_unique:
        raise ValueError("observations need a unique index: features and labels are aligned on it")
    missing = [column for column in OBSERVATION_COLUMNS if column not in observations.columns]
    if missing:
        raise ValueError(f"observations lack columns: {', '.join(missing)}")
    frame = observations[OBSERVATION_COLUMNS].copy()
    frame["trip_id"] = trip_ids(frame)
    frame["depart_date"] = pd.to_datetime(frame["depart_date"]).dt.normalize()
    frame["return_date"] = pd.to_datetime(frame["return_date"]).dt.normalize()
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    frame = frame.rename(columns={"cheapest_total": "fare"})
    frame["fare"] = frame["fare"].astype(float)
    frame = frame.sort_values(["trip_id", "collected_at"], kind="stable")
    original_index = frame.index
    frame = frame.reset_index(drop=True)

    depart_utc = frame["depart_date"].dt.tz_localize("UTC")
    frame["days_ahead"] = (depart_utc - frame["collected_at"]) / pd.Timedelta(days=1)
    frame["nights"] = (frame["return_date"] - frame["depart_date"]).dt.days.astype(float)
    frame["depart_weekday"] = frame["depart_date"].dt.weekday
    frame["return_weekday"] = frame["return_date"].dt.weekday.astype(float)
    frame["depart_month"] = frame["depart_date"].dt.month
    frame["distance_km"] = route_distances_km(frame["origin"], frame["destination"])
    frame["national"] = frame["national"].astype(float)
    frame["passengers"] = frame["adults"].astype(int) + frame["children"].astype(int)
    frame["cabin_rank"] = frame["cabin"].str.upper().map(CABIN_RANKS).astype(float)
    frame["log_fare"] = np.log(frame["fare"])
    for column in ("option_count", "carrier_count", "nonstop_share"):
        frame[column] = frame[column].astype(float)

    by_trip = frame.groupby("trip_id", sort=False)
    frame["observation_count"] = by_trip.cumcount() + 1
    first_collected = by_trip["collected_at"].transform("min")
    frame["days_observed"] = (frame["collected_at"] - first_collected) / pd.Timedelta(days=1)
    frame["running_min"] = by_trip["fare"].cummin()
    frame["fare_to_running_min"] = frame["fare"] / frame["running_min"]
    frame["fare_to_running_max"] = frame["fare"] / by_trip["fare"].cummax()
    frame["fare_to_first"] = frame["fare"] / by_trip["fare"].transform("first")
    frame["fare_change_last"] = frame["fare"] / by_trip["fare"].shift(1) - 1

    _add_rolling_features(frame)
    return frame.set_index(original_index)


def _trailing(frame: pd.DataFrame, column: str, days: int, how: str) -> np.ndarray:
    """A per-trip trailing window over the last `days` of collection time, ending at each row."""
    rolled = (
        frame[["trip_id", "collected_at", column]]
        .groupby("trip_id", sort=False)
        .rolling(f"{days}D", on="collected_at")[column]
        .agg(how)
    )
    # The result is indexed by (trip, time), not by row; `frame` is sorted by trip then time with each trip's
    # rows contiguous, and sort=False keeps that group order, so positions line up with `frame`'s rows.
    return rolled.to_numpy()


def _add_rolling_features(frame: pd.DataFrame) -> None:
    """Rolling min/mean ratios over 1, 3, 7 days and the least-squares fare slope over the trend window."""
    for days in ROLLING_WINDOWS_DAYS:
        frame[f"min_{days}d"] = _trailing(frame, "fare", days, "min")
        frame[f"mean_{days}d"] = _trailing(frame, "fare", days, "mean")
        frame[f"fare_to_min_{days}d"] = frame["fare"] / frame[f"min_{days}d"]
        frame[f"fare_to_mean_{days}d"] = frame["fare"] / frame[f"mean_{days}d"]

    # Slope of fare against time from trailing sums, so it stays vectorised: (nΣxy − ΣxΣy) / (nΣx² − (Σx)²).
    x, y = frame["days_observed"], frame["fare"]
    sums = pd.DataFrame(
        {"trip_id": frame["trip_id"], "collected_at": frame["collected_at"], "x": x, "y": y, "xy": x * y, "xx": x * x}
    )
    totals = {name: _trailing(sums, name, TREND_WINDOW_DAYS, "sum") for name in ("x", "y", "xy", "xx")}
    count = _trailing(sums, "y", TREND_WINDOW_DAYS, "count")
    denominator = count * totals["xx"] - totals["x"] ** 2
    # Fewer than two collections, or all at one instant, leave the slope undefined rather than infinite.
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(denominator > 1e-9, (count * totals["xy"] - totals["x"] * totals["y"]) / denominator, np.nan)
    frame[f"slope_{TREND_WINDOW_DAYS}d"] = slope
    frame[f"relative_slope_{TREND_WINDOW_DAYS}d"] = slope / frame[f"mean_{TREND_WINDOW_DAYS}d"]


def drop_labels(features: pd.DataFrame, min_drop_share: float = MEANINGFUL_DROP_SHARE) -> pd.DataFrame:
    """Training labels that look ahead: the lowest later fare and whether it is a meaningful drop.

    Columns: future_min_fare (NaN at the last observation), drops_meaningfully (a later fare at least
    `min_drop_share` below the current one), is_last_observation. Aligned to `features`' index.
    """
    ordered = features[["trip_id", "collected_at", "fare"]].sort_values(["trip_id", "collected_at"], kind="stable")
    reversed_rows = ordered.iloc[::-1]
    min_from_here = reversed_rows.groupby("trip_id", sort=False)["fare"].cummin()
    future_min = min_from_here.groupby(reversed_rows["trip_id"], sort=False).shift(1)
    labels = pd.DataFrame(index=reversed_rows.index)
    labels["future_min_fare"] = future_min
    labels["drops_meaningfully"] = future_min <= reversed_rows["fare"] * (1 - min_drop_share)
    labels["is_last_observation"] = future_min.isna()
    return labels.reindex(features.index)
