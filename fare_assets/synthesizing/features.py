"""Per-observation features and labels for watched trips, computed without look-ahead."""
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import airportsdata
import numpy as np
import pandas as pd

from fare_assets.synthesizing.estimators import SPARK

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

NO_OBSERVATIONS = "no observations to compute features from"

ROLLING_WINDOWS_DAYS = (1, 3, 7)

# Airlines refile a route's fares on one day for every departure, so a refiling shows in the data as a day when
# most of the route's watched trips change fare at once, by different amounts (a sale moves them all by the same
# share; a closing booking class moves one trip). A change below the tolerance is quote jitter.
ROUTE_KEY = ["origin", "destination"]
FARE_CHANGE_TOLERANCE = 0.005
REFILE_CHANGED_SHARE = 0.5
REFILE_MIN_DISPERSION = 0.01
REFILE_MIN_TRIPS = 4
# The running sums add each trip's move of the day and take back the one it replaces, which leaves rounding
# residue: a variance of the moves below this share of their mean square is zero (the moves are all equal).
VARIANCE_RESIDUE = 1e-12
TREND_WINDOW_DAYS = 3

# A refiling redraws each departure's fare level by a market move of its own, and whether the next refiling will
# undercut today's fare depends on how high this move came out. The trip's own history cannot show it (every fare
# it has seen carries it); the route's other departures a few days either side can: collected at the same moment,
# for the same party, cabin and stay, they share the route, filing and booking curve but drew moves of their own.
PEER_KEY = ["origin", "destination", "nights", "adults", "children", "cabin"]
PEER_DEPARTURE_DAYS = 8
# A peer's fare counts only if it was collected at most this long before the row (the market reprices daily).
PEER_MAX_AGE = pd.Timedelta(days=1)

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
    "route_changed_share",
    "route_mean_change",
    "route_change_dispersion",
    "days_since_route_refile",
    "route_refile_interval",
    "days_to_next_refile",
    "days_ahead_at_next_refile",
    "fare_to_min_since_refile",
    "fare_to_route_peers",
]


@dataclass(frozen=True)
class RouteCalendar:
    """The route refiling days found on every trip collected (by the advisor's training), final before
    `complete_from`.

    A route's filing calendar reads all of its refilings, and a day's refiling is found from every trip collected
    that day. The serving refresh reads only the trips departing from the day before `complete_from`: its earlier
    days lack their departed trips and would show fewer refilings than training found, so it takes them from here;
    from `complete_from` on, it holds every trip collected and finds them itself.
    """

    # origin, destination, day (UTC midnight, naive datetime64) and first_seen (the first collection that showed the
    # refiling, naive UTC; absent from calendars saved before 2026-12-06)
    refilings: pd.DataFrame
    complete_from: pd.Timestamp  # UTC midnight, naive

    def read_from(self) -> dt.date:
        """The first departure date whose trips the features need (a day's margin for a trip collected on its
        departure's date in UTC)."""
        return (self.complete_from - pd.Timedelta(days=1)).date()


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


def _check_observations(observations: pd.DataFrame) -> None:
    """Fail clearly on observations the features cannot read: a repeated index, a missing column, no rows."""
    if not observations.index.is_unique:
        raise ValueError("observations need a unique index: features and labels are aligned on it")
    check_observation_columns(observations.columns)
    if observations.empty:
        raise ValueError(NO_OBSERVATIONS)


def check_observation_columns(columns) -> None:
    """Fail clearly when observations lack a column the features read."""
    missing = [column for column in OBSERVATION_COLUMNS if column not in columns]
    if missing:
        raise ValueError(f"observations lack columns: {', '.join(missing)}")


def repeated_moments(count: int, trip_id: str) -> ValueError:
    """The error for observations that hold a trip's collection moment more than once."""
    # Windows over a trip's history need one fare per moment: with two, which one came "before" is undefined.
    return ValueError(f"{count} observation(s) repeat a trip's collection moment (first trip: {trip_id}); "
                      f"give one row per trip and moment, the cheapest fare then (warehouse.observations does)")


def observation_features(observations: pd.DataFrame, calendar: RouteCalendar | None = None) -> pd.DataFrame:
    """One feature row per observation, from the trip's collections up to that moment only.

    Rows come back sorted by trip and collection time, keeping the input's index. With a `calendar`, the routes'
    refilings before its `complete_from` are its own (see RouteCalendar).
    """
    _check_observations(observations)
    frame = observations[OBSERVATION_COLUMNS].copy()
    frame["trip_id"] = trip_ids(frame)
    frame["depart_date"] = pd.to_datetime(frame["depart_date"]).dt.normalize()
    frame["return_date"] = pd.to_datetime(frame["return_date"]).dt.normalize()
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    repeated = frame.duplicated(["trip_id", "collected_at"])
    if repeated.any():
        raise repeated_moments(int(repeated.sum()), frame.loc[repeated, "trip_id"].min())
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
    _add_route_features(frame, calendar)
    _add_peer_features(frame)
    return frame.set_index(original_index)


def engine_features(observations: pd.DataFrame, engine: str) -> pd.DataFrame:
    """observation_features computed by the model engine's own machinery: pandas for scikit-learn, Spark jobs
    for MLlib (spark_features, the same values and the same index)."""
    if engine != SPARK:
        return observation_features(observations)
    from fare_assets.synthesizing import spark_features

    features = spark_features.to_pandas(spark_observation_features(observations))
    # A trip and a moment name one observation (both versions refuse repeats): the input's index goes back on.
    moments = pd.MultiIndex.from_arrays([trip_ids(observations), pd.to_datetime(observations["collected_at"], utc=True)])
    index_of = pd.Series(observations.index, index=moments)
    features.index = pd.Index(index_of.loc[pd.MultiIndex.from_arrays([features["trip_id"], features["collected_at"]])],
                              name=observations.index.name)
    return features


def spark_observations(observations):
    """Observations as a Spark frame in the model session: a pandas frame crosses over, a Spark one stays as it is."""
    from fare_assets.synthesizing.spark_estimators import model_session

    if not isinstance(observations, pd.DataFrame):
        return observations
    _check_observations(observations)
    # Dates cross as dates: a datetime64 column would cross as a timestamp in this process's time zone, and come
    # back a day off wherever that zone is east of the session's.
    dates = {column: pd.to_datetime(observations[column]).dt.date.astype(object).where(observations[column].notna(), None)
             for column in ("depart_date", "return_date")}
    return model_session().createDataFrame(observations.assign(**dates))


def spark_observation_features(observations):
    """observation_features as a Spark frame (spark_features), computed by Spark jobs in the model session, from
    observations in a pandas frame or already in a Spark one (storing.spark_observations)."""
    from fare_assets.synthesizing import spark_features

    return spark_features.observation_features(spark_observations(observations))


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


def _route_day_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per route and collection moment: its trips' fare changes today (share changed, mean and spread of the moves).

    Each trip counts once, as its latest collection of the day up to the moment shows it: its move is that fare
    against its last fare of an earlier day. So a refiling shows from the first moment most trips carry it,
    whatever the time of day it was filed, and collections that find the fares unchanged afterwards do not
    dilute it. A collection never sees a later one.
    """
    day = frame["collected_at"].dt.floor("D").rename("day")
    trip_day = [frame["trip_id"], day]
    # observation_features sorts by trip and time: each trip's days come in order, each day's last fare last.
    last_of_day = frame.groupby(trip_day, sort=False)["fare"].last()
    fare_before_day = last_of_day.groupby(level="trip_id", sort=False).shift(1)
    reference = fare_before_day.reindex(pd.MultiIndex.from_arrays(trip_day)).to_numpy()
    day_move = pd.Series(np.log(frame["fare"].to_numpy() / reference), index=frame.index)
    observed = day_move.notna()
    changed = observed & (day_move.abs() > FARE_CHANGE_TOLERANCE)
    move = day_move.where(changed, 0.0)
    states = pd.DataFrame({"observed": observed.astype(float), "changed": changed.astype(float), "move": move,
                           "move_squared": move ** 2})
    # Each collection replaces its trip's state of the day, so the day's running sums of the differences hold
    # every trip's latest state.
    replaced = states - states.groupby(trip_day, sort=False).shift(1).fillna(0.0)
    moves = replaced.assign(origin=frame["origin"], destination=frame["destination"], day=day,
                            collected_at=frame["collected_at"])
    # Summed per collection moment first, so trips collected at the same instant all see each other.
    per_moment = moves.groupby(ROUTE_KEY + ["day", "collected_at"], sort=True)[
        ["observed", "changed", "move", "move_squared"]].sum()
    so_far = per_moment.groupby(level=ROUTE_KEY + ["day"], sort=False).cumsum()
    # Where no trip stands changed, the sums of moves hold only the residue of moves taken back.
    so_far.loc[so_far["changed"] <= 0, ["move", "move_squared"]] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        so_far["route_changed_share"] = so_far["changed"] / so_far["observed"]
        so_far["route_mean_change"] = so_far["move"] / so_far["observed"]
        mean_move, mean_square = so_far["move"] / so_far["changed"], so_far["move_squared"] / so_far["changed"]
        variance = mean_square - mean_move ** 2
        so_far["route_change_dispersion"] = np.sqrt(variance.mask(variance <= VARIANCE_RESIDUE * mean_square, 0.0))
    refiling_now = (
        (so_far["observed"] >= REFILE_MIN_TRIPS)
        & (so_far["route_changed_share"] >= REFILE_CHANGED_SHARE)
        & (so_far["route_change_dispersion"] >= REFILE_MIN_DISPERSION)
    )
    # Once seen, a refiling stays seen for the rest of the day (a sale later that day moves the trips together).
    so_far["refiling_so_far"] = refiling_now.groupby(level=ROUTE_KEY + ["day"], sort=False).cummax()
    return so_far


def route_calendar(features: pd.DataFrame) -> RouteCalendar:
    """The refiling days `features` (every trip's, up to their newest collection) found, final before that day."""
    refiled = features.loc[features["days_since_route_refile"] == 0, [*ROUTE_KEY, "collected_at"]]
    seen = refiled["collected_at"].dt.tz_convert(None)
    days = refiled[ROUTE_KEY].assign(day=seen.dt.floor("D"), first_seen=seen)
    first_seen = days.groupby([*ROUTE_KEY, "day"], as_index=False, sort=True)["first_seen"].min()
    return RouteCalendar(first_seen, features["collected_at"].max().floor("D").tz_convert(None))


def _route_refile_calendar(so_far: pd.DataFrame, calendar: RouteCalendar | None) -> pd.DataFrame:
    """Per route and collection day: the latest refiling day before it and the median interval between refilings
    known then (before `calendar.complete_from`, the calendar's refilings rather than those found here)."""
    whole_days = so_far.groupby(level=ROUTE_KEY + ["day"], sort=True)["refiling_so_far"].last().reset_index()
    calendars = []
    for (origin, destination), days in whole_days.groupby(ROUTE_KEY, sort=False):
        day_values = days["day"].dt.tz_convert(None).to_numpy()
        refiled = day_values[days["refiling_so_far"].to_numpy(dtype=bool)]
        if calendar is not None:
            complete_from = calendar.complete_from.to_datetime64()
            known = calendar.refilings
            earlier = known.loc[(known["origin"] == origin) & (known["destination"] == destination),
                                "day"].to_numpy(dtype="datetime64[ns]")
            refiled = np.union1d(earlier[earlier < complete_from], refiled[refiled >= complete_from])
        last_refile, interval = [], []
        for before in np.searchsorted(refiled, day_values, side="left"):
            known_days = refiled[:before]
            last_refile.append(known_days[-1] if before else np.datetime64("NaT"))
            gaps = np.diff(known_days) / np.timedelta64(1, "D")
            interval.append(float(np.median(gaps)) if len(gaps) else np.nan)
        days = days.assign(last_refile_before=pd.to_datetime(last_refile, utc=True), route_refile_interval=interval)
        calendars.append(days.drop(columns="refiling_so_far"))
    return pd.concat(calendars, ignore_index=True)


def _add_route_features(frame: pd.DataFrame, calendar: RouteCalendar | None) -> None:
    """Where the trip's route stands in its fare-filing cycle, learnt from the route's watched trips so far."""
    so_far = _route_day_changes(frame)
    moments = so_far.reset_index()[ROUTE_KEY + ["day", "collected_at", "route_changed_share", "route_mean_change",
                                                "route_change_dispersion", "refiling_so_far"]]
    moments = moments.merge(_route_refile_calendar(so_far, calendar), on=ROUTE_KEY + ["day"], how="left")
    keys = pd.DataFrame({"origin": frame["origin"], "destination": frame["destination"], "collected_at": frame["collected_at"]})
    route = keys.merge(moments, on=ROUTE_KEY + ["collected_at"], how="left")
    if calendar is not None and "first_seen" in calendar.refilings:
        # Before the calendar is complete, a refiling shows from the moment training saw it: the trips held here
        # may be too few that day to find it, and the lowest fare since it would then leave that day's fares out.
        seen = route[ROUTE_KEY].assign(day=route["day"].dt.tz_convert(None)).merge(
            calendar.refilings, on=[*ROUTE_KEY, "day"], how="left")["first_seen"]
        at = route["collected_at"].dt.tz_convert(None)
        trained = seen.notna().to_numpy() & (at >= seen).to_numpy()
        route["refiling_so_far"] = np.where(at < calendar.complete_from, trained,
                                            route["refiling_so_far"].astype(bool))
    since_last = (route["day"] - route["last_refile_before"]) / pd.Timedelta(days=1)
    for column in ("route_changed_share", "route_mean_change", "route_change_dispersion", "route_refile_interval"):
        frame[column] = route[column].to_numpy(dtype=float)
    frame["days_since_route_refile"] = np.where(route["refiling_so_far"].to_numpy(dtype=bool), 0.0, since_last.to_numpy(dtype=float))
    frame["days_to_next_refile"] = frame["route_refile_interval"] - frame["days_since_route_refile"]
    frame["days_ahead_at_next_refile"] = frame["days_ahead"] - frame["days_to_next_refile"]
    # The trip's lowest fare since the route last refiled: within a filing, fares only rise unless a sale runs.
    refiled_on = route["day"].where(route["refiling_so_far"].astype(bool), route["last_refile_before"])
    epoch_key = pd.Series(pd.to_datetime(refiled_on, utc=True).to_numpy(), index=frame.index).fillna(pd.Timestamp(0))
    frame["fare_to_min_since_refile"] = frame["fare"] / frame.groupby([frame["trip_id"], epoch_key], sort=False)["fare"].cummin()


def _add_peer_features(frame: pd.DataFrame) -> None:
    """The fare against the geometric mean of its peers' latest fares (departures within PEER_DEPARTURE_DAYS)."""
    trips = frame.drop_duplicates("trip_id")[["trip_id", "depart_date", *PEER_KEY]]
    pairs = trips.merge(trips, on=PEER_KEY, suffixes=("", "_peer"))
    gap = (pairs["depart_date_peer"] - pairs["depart_date"]).dt.days.abs()
    pairs = pairs.loc[(gap > 0) & (gap <= PEER_DEPARTURE_DAYS), ["trip_id", "trip_id_peer"]]
    asked = frame[["trip_id", "collected_at"]].assign(row=np.arange(len(frame))).merge(pairs, on="trip_id")
    peer_fares = frame[["trip_id", "collected_at", "log_fare"]].rename(
        columns={"trip_id": "trip_id_peer", "log_fare": "peer_log_fare"})
    # Each peer's latest fare at or before the row's moment: a peer collected later that day is not known yet.
    latest = pd.merge_asof(asked.sort_values("collected_at"), peer_fares.sort_values("collected_at"), on="collected_at",
                           by="trip_id_peer", tolerance=PEER_MAX_AGE, direction="backward")
    peer_log_mean = latest.groupby("row")["peer_log_fare"].mean().reindex(np.arange(len(frame))).to_numpy()
    frame["fare_to_route_peers"] = np.exp(frame["log_fare"].to_numpy() - peer_log_mean)


def drop_labels(features: pd.DataFrame) -> pd.DataFrame:
    """Training labels that look ahead: the lowest later fare and whether it is a meaningful drop.

    Columns: future_min_fare (NaN at the last observation), drops_meaningfully (a later fare at least
    MEANINGFUL_DROP_SHARE below the current one), is_last_observation. Aligned to `features`' index.
    """
    ordered = features[["trip_id", "collected_at", "fare"]].sort_values(["trip_id", "collected_at"], kind="stable")
    reversed_rows = ordered.iloc[::-1]
    min_from_here = reversed_rows.groupby("trip_id", sort=False)["fare"].cummin()
    future_min = min_from_here.groupby(reversed_rows["trip_id"], sort=False).shift(1)
    labels = pd.DataFrame(index=reversed_rows.index)
    labels["future_min_fare"] = future_min
    labels["drops_meaningfully"] = future_min <= reversed_rows["fare"] * (1 - MEANINGFUL_DROP_SHARE)
    labels["is_last_observation"] = future_min.isna()
    return labels.reindex(features.index)
