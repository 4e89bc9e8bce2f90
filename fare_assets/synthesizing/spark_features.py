"""observation_features as Spark jobs, for the MLlib engine: the same columns and values as the pandas version.

Every feature is a window over a trip, a route's collection day or a route's days, or an as-of join with the
trip's route peers, so the feature step itself runs on the cluster's executors. The constants (windows,
tolerances, what a refiling is, who is a peer) are features.py's; the parity test holds both versions to the
same numbers. pyspark is imported here only: features.py stays free of it.
"""
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from fare_assets.synthesizing.features import (
    CABIN_RANKS,
    FARE_CHANGE_TOLERANCE,
    NO_OBSERVATIONS,
    OBSERVATION_COLUMNS,
    PEER_DEPARTURE_DAYS,
    PEER_KEY,
    PEER_MAX_AGE,
    REFILE_CHANGED_SHARE,
    REFILE_MIN_DISPERSION,
    REFILE_MIN_TRIPS,
    ROLLING_WINDOWS_DAYS,
    ROUTE_KEY,
    TREND_WINDOW_DAYS,
    VARIANCE_RESIDUE,
    RouteCalendar,
    check_observation_columns,
    great_circle_km,
    repeated_moments,
)

MICROS_PER_DAY = 86_400_000_000
# The pandas version's columns, in its order, after the observation columns it keeps.
FEATURE_COLUMNS = [
    "days_ahead", "nights", "depart_weekday", "return_weekday", "depart_month", "distance_km", "passengers",
    "cabin_rank", "log_fare", "observation_count", "days_observed", "running_min", "fare_to_running_min",
    "fare_to_running_max", "fare_to_first", "fare_change_last",
    *[f"{stat}_{days}d" for days in ROLLING_WINDOWS_DAYS for stat in ("min", "mean", "fare_to_min", "fare_to_mean")],
    f"slope_{TREND_WINDOW_DAYS}d", f"relative_slope_{TREND_WINDOW_DAYS}d",
    "route_changed_share", "route_mean_change", "route_change_dispersion", "route_refile_interval",
    "days_since_route_refile", "days_to_next_refile", "days_ahead_at_next_refile", "fare_to_min_since_refile",
    "fare_to_route_peers",
]
# The observation columns the pandas version keeps (cheapest_total is read as `fare`).
KEPT_OBSERVATION_COLUMNS = [column if column != "cheapest_total" else "fare" for column in OBSERVATION_COLUMNS]


def _trip() -> Window:
    """A trip's collections in time order (a function: building a window needs a running session)."""
    return Window.partitionBy("trip_id").orderBy("at")


def _trip_so_far() -> Window:
    """A trip's collections up to and including the current one."""
    return _trip().rowsBetween(Window.unboundedPreceding, Window.currentRow)


def _trip_id() -> Column:
    """features.trip_ids in Spark: SFO-JFK-2027-01-10-2027-01-17-1a0c-COACH."""
    return F.concat_ws(
        "-", "origin", "destination", F.date_format("depart_date", "yyyy-MM-dd"),
        F.coalesce(F.date_format("return_date", "yyyy-MM-dd"), F.lit("oneway")),
        F.concat(F.col("adults").cast("int"), F.lit("a"), F.col("children").cast("int"), F.lit("c")), "cabin",
    )


def _days(micros: Column) -> Column:
    """Microseconds as days."""
    return micros / MICROS_PER_DAY


def _epoch_day(micros: Column) -> Column:
    """The UTC day (days since 1970-01-01) of a time in microseconds since the epoch."""
    return F.floor(micros / MICROS_PER_DAY).cast("int")


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, null where the denominator is 0 or null (pandas gives NaN there, ANSI Spark fails).

    Only counts can be 0 here: the other divisions are by fares and their means, which are positive.
    """
    return F.try_divide(numerator, denominator)


def _trailing(days: int) -> Window:
    """A trip's collections in (at - days, at], as pandas' time-based rolling window closes on the right."""
    return _trip().rangeBetween(-days * MICROS_PER_DAY + 1, Window.currentRow)


def _trip_features(frame: DataFrame) -> DataFrame:
    """Calendar, route, party and trip-history columns (features.observation_features up to the rolling ones)."""
    cabin_ranks = F.create_map(*[F.lit(value) for pair in CABIN_RANKS.items() for value in pair])
    frame = (
        frame.withColumn("days_ahead", _days(F.unix_date("depart_date") * MICROS_PER_DAY - F.col("at")))
        .withColumn("nights", F.datediff("return_date", "depart_date").cast("double"))
        .withColumn("depart_weekday", F.weekday("depart_date"))
        .withColumn("return_weekday", F.weekday("return_date").cast("double"))
        .withColumn("depart_month", F.month("depart_date"))
        .withColumn("national", F.col("national").cast("double"))
        .withColumn("passengers", (F.col("adults") + F.col("children")).cast("long"))
        .withColumn("cabin_rank", cabin_ranks[F.upper("cabin")].cast("double"))
        .withColumn("log_fare", F.ln("fare"))
    )
    for column in ("option_count", "carrier_count", "nonstop_share"):
        frame = frame.withColumn(column, F.col(column).cast("double"))
    whole_trip = Window.partitionBy("trip_id")
    frame = (
        frame.withColumn("observation_count", F.row_number().over(_trip()).cast("long"))
        .withColumn("days_observed", _days(F.col("at") - F.min("at").over(whole_trip)))
        .withColumn("running_min", F.min("fare").over(_trip_so_far()))
        .withColumn("fare_to_running_min", F.col("fare") / F.col("running_min"))
        .withColumn("fare_to_running_max", F.col("fare") / F.max("fare").over(_trip_so_far()))
        .withColumn("fare_to_first", F.col("fare") / F.first("fare").over(_trip_so_far()))
        .withColumn("fare_change_last", F.col("fare") / F.lag("fare").over(_trip()) - 1)
    )
    for days in ROLLING_WINDOWS_DAYS:
        frame = (
            frame.withColumn(f"min_{days}d", F.min("fare").over(_trailing(days)))
            .withColumn(f"mean_{days}d", F.avg("fare").over(_trailing(days)))
            .withColumn(f"fare_to_min_{days}d", F.col("fare") / F.col(f"min_{days}d"))
            .withColumn(f"fare_to_mean_{days}d", F.col("fare") / F.col(f"mean_{days}d"))
        )
    # The least-squares slope from trailing sums, as features._add_rolling_features computes it.
    trend = _trailing(TREND_WINDOW_DAYS)
    x, y = F.col("days_observed"), F.col("fare")
    count, sum_x, sum_y = F.count(y).over(trend), F.sum(x).over(trend), F.sum(y).over(trend)
    sum_xy, sum_xx = F.sum(x * y).over(trend), F.sum(x * x).over(trend)
    denominator = count * sum_xx - sum_x * sum_x
    slope = F.when(denominator > 1e-9, (count * sum_xy - sum_x * sum_y) / denominator)
    return (
        frame.withColumn(f"slope_{TREND_WINDOW_DAYS}d", slope)
        .withColumn(f"relative_slope_{TREND_WINDOW_DAYS}d",
                    F.col(f"slope_{TREND_WINDOW_DAYS}d") / F.col(f"mean_{TREND_WINDOW_DAYS}d"))
    )


def _route_moments(frame: DataFrame) -> DataFrame:
    """Per route and collection moment: its trips' fare changes today and whether they make a refiling
    (features._route_day_changes: each trip as its latest collection of the day shows it, against its last fare
    of an earlier day)."""
    days = frame.groupBy("trip_id", "day").agg(F.max_by("fare", "at").alias("last_fare_of_day"))
    days = days.select("trip_id", "day", F.lag("last_fare_of_day").over(
        Window.partitionBy("trip_id").orderBy("day")).alias("fare_before_day"))
    day_move = F.ln(F.col("fare") / F.col("fare_before_day"))
    changed = day_move.isNotNull() & (F.abs(day_move) > FARE_CHANGE_TOLERANCE)
    move = F.when(changed, day_move).otherwise(0.0)
    states = frame.join(days, ["trip_id", "day"]).select(
        *ROUTE_KEY, "trip_id", "day", "at", day_move.isNotNull().cast("double").alias("observed"),
        changed.cast("double").alias("changed"), move.alias("move"), (move * move).alias("move_squared"))
    # Each collection replaces its trip's state of the day: the day's running sums of the differences hold every
    # trip's latest state.
    trip_day = Window.partitionBy("trip_id", "day").orderBy("at")
    columns = ("observed", "changed", "move", "move_squared")
    replaced = states.select(*ROUTE_KEY, "day", "at", *[
        (F.col(column) - F.coalesce(F.lag(column).over(trip_day), F.lit(0.0))).alias(column) for column in columns])
    per_moment = replaced.groupBy(*ROUTE_KEY, "day", "at").agg(*[F.sum(column).alias(column) for column in columns])
    day_so_far = Window.partitionBy(*ROUTE_KEY, "day").orderBy("at").rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    for column in columns:
        per_moment = per_moment.withColumn(column, F.sum(column).over(day_so_far))
    # Where no trip stands changed, the sums of moves hold only the residue of moves taken back.
    for column in ("move", "move_squared"):
        per_moment = per_moment.withColumn(column, F.when(F.col("changed") > 0, F.col(column)).otherwise(0.0))
    mean_move, mean_square = _ratio(F.col("move"), F.col("changed")), _ratio(F.col("move_squared"), F.col("changed"))
    variance = mean_square - mean_move * mean_move
    moments = (
        per_moment.withColumn("route_changed_share", _ratio(F.col("changed"), F.col("observed")))
        .withColumn("route_mean_change", _ratio(F.col("move"), F.col("observed")))
        .withColumn("route_change_dispersion",
                    F.sqrt(F.when(variance <= VARIANCE_RESIDUE * mean_square, 0.0).otherwise(variance)))
    )
    refiling = (
        (F.col("observed") >= REFILE_MIN_TRIPS)
        & (F.col("route_changed_share") >= REFILE_CHANGED_SHARE)
        & (F.col("route_change_dispersion") >= REFILE_MIN_DISPERSION)
    )
    # Once seen, a refiling stays seen for the rest of the day (features._route_day_changes).
    return moments.withColumn("refiling_so_far", F.max(F.coalesce(refiling, F.lit(False))).over(day_so_far))


def _median(values: Column) -> Column:
    """The median of an array of numbers (mean of the middle two for an even count), null when it is empty."""
    # Spark refuses median() over a window frame; the arrays here hold a route's refiling gaps, a handful.
    ordered, count = F.array_sort(values), F.size(values)
    lower = F.get(ordered, F.floor((count - 1) / 2).cast("int"))
    upper = F.get(ordered, F.floor(count / 2).cast("int"))
    return F.when(count > 0, (lower + upper) / 2)


def _route_calendar(moments: DataFrame) -> DataFrame:
    """Per route and collection day: the latest refiling day before it and the median interval between the
    refilings known then (features._route_refile_calendar)."""
    days = moments.groupBy(*ROUTE_KEY, "day").agg(F.max_by("refiling_so_far", "at").alias("refiled"))
    earlier_days = Window.partitionBy(*ROUTE_KEY).orderBy("day").rowsBetween(Window.unboundedPreceding, -1)
    refiled_day = F.when(F.col("refiled"), F.col("day"))
    return (
        days.withColumn("last_refile_before", F.max(refiled_day).over(earlier_days))
        # The gap a refiling day closes; the median of the gaps closed on earlier days is the interval known today.
        .withColumn("gap", F.when(F.col("refiled"), F.datediff("day", "last_refile_before")).cast("double"))
        .withColumn("route_refile_interval", _median(F.collect_list("gap").over(earlier_days)))
        .drop("refiled", "gap")
    )


def _route_features(frame: DataFrame) -> DataFrame:
    """Where the trip's route stands in its fare-filing cycle (features._add_route_features)."""
    moments = _route_moments(frame)
    route = moments.join(_route_calendar(moments), [*ROUTE_KEY, "day"]).select(
        *ROUTE_KEY, "at", "route_changed_share", "route_mean_change", "route_change_dispersion", "refiling_so_far",
        "last_refile_before", "route_refile_interval",
    )
    frame = frame.join(route, [*ROUTE_KEY, "at"], "left")
    days_since = F.when(F.col("refiling_so_far"), F.lit(0.0)).otherwise(
        F.datediff("day", "last_refile_before").cast("double"))
    # The lowest fare since the route last refiled; trips without a refiling yet share one epoch (1970).
    epoch = F.coalesce(F.when(F.col("refiling_so_far"), F.col("day")).otherwise(F.col("last_refile_before")),
                       F.lit("1970-01-01").cast("date"))
    since_refile = Window.partitionBy("trip_id", "refile_epoch").orderBy("at").rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    return (
        frame.withColumn("days_since_route_refile", days_since)
        .withColumn("days_to_next_refile", F.col("route_refile_interval") - F.col("days_since_route_refile"))
        .withColumn("days_ahead_at_next_refile", F.col("days_ahead") - F.col("days_to_next_refile"))
        .withColumn("refile_epoch", epoch)
        .withColumn("fare_to_min_since_refile", F.col("fare") / F.min("fare").over(since_refile))
        .drop("refiling_so_far", "last_refile_before", "refile_epoch")
    )


def _peer_features(frame: DataFrame) -> DataFrame:
    """The fare against the geometric mean of its peers' latest fares collected at most PEER_MAX_AGE before it
    (features._add_peer_features); a trip without peers gets null."""
    trips = frame.select("trip_id", "depart_date", *PEER_KEY).distinct()
    # Each trip names the departure days of its possible peers, so the pairing is an equi-join on (key, day):
    # pairing every departure of a key with every other one before filtering grew with the square of the calendar.
    peer_days = F.sequence(F.date_sub("depart_date", PEER_DEPARTURE_DAYS), F.date_add("depart_date", PEER_DEPARTURE_DAYS))
    near = trips.select("trip_id", "depart_date", *PEER_KEY, F.explode(peer_days).alias("peer_day")).where(
        F.col("peer_day") != F.col("depart_date"))
    peers = near.alias("trip").join(
        trips.alias("peer"),
        # A one-way trip has no nights: pandas' merge matches missing keys with each other, so this does too.
        [F.col("trip.peer_day") == F.col("peer.depart_date"),
         *[F.col(f"trip.{column}").eqNullSafe(F.col(f"peer.{column}")) for column in PEER_KEY]],
    ).select(F.col("trip.trip_id").alias("trip_id"), F.col("peer.trip_id").alias("peer_id"))
    # An as-of join in one pass, as merge_asof: each row's moments and each peer's fares on one timeline per
    # (trip, peer); a row reads the last fare before it. At equal times the fare sorts first: it is known then.
    asked = frame.select("trip_id", "at").join(peers, "trip_id").withColumn("peer_fare", F.lit(None).cast("double"))
    peer_fares = peers.join(frame.select(F.col("trip_id").alias("peer_id"), "at", F.col("log_fare").alias("peer_fare")),
                            "peer_id")
    timeline = Window.partitionBy("trip_id", "peer_id").orderBy("at", F.col("peer_fare").isNull()).rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    max_age = int(PEER_MAX_AGE / pd.Timedelta(microseconds=1))
    latest = (
        asked.unionByName(peer_fares)
        .withColumn("latest_fare", F.last("peer_fare", ignorenulls=True).over(timeline))
        .withColumn("latest_at", F.last(F.when(F.col("peer_fare").isNotNull(), F.col("at")), ignorenulls=True)
                    .over(timeline))
        .where(F.col("peer_fare").isNull() & (F.col("at") - F.col("latest_at") <= max_age))
        .groupBy("trip_id", "at").agg(F.avg("latest_fare").alias("peer_log_mean"))
    )
    return frame.join(latest, ["trip_id", "at"], "left").withColumn(
        "fare_to_route_peers", F.exp(F.col("log_fare") - F.col("peer_log_mean"))).drop("peer_log_mean")


def _route_distances(frame: DataFrame) -> DataFrame:
    """Great-circle km of each route in `frame`, from features.great_circle_km (routes are few)."""
    routes = [(row["origin"], row["destination"]) for row in frame.select(*ROUTE_KEY).distinct().collect()]
    rows = [(origin, destination, great_circle_km(origin, destination)) for origin, destination in routes]
    schema = "origin string, destination string, distance_km double"
    return frame.sparkSession.createDataFrame(rows, schema).withColumn(
        "distance_km", F.when(~F.isnan("distance_km"), F.col("distance_km")))


def _check_one_row_per_moment(frame: DataFrame) -> None:
    """Fail as the pandas version does when observations are empty or repeat a trip's collection moment."""
    census = frame.groupBy("trip_id", "at").count().agg(
        F.count(F.lit(1)).alias("moments"), F.sum(F.col("count") - 1).alias("extra"),
        F.min(F.when(F.col("count") > 1, F.col("trip_id"))).alias("first")).first()
    if not census["moments"]:
        raise ValueError(NO_OBSERVATIONS)
    if census["extra"]:
        raise repeated_moments(int(census["extra"]), census["first"])


def observation_features(observations: DataFrame) -> DataFrame:
    """features.observation_features as a Spark frame: one feature row per observation, from the trip's
    collections up to that moment only; `collected_at` stays a timestamp, the dates stay dates.

    Needs the session's checkpoint folder (spark_estimators.model_session sets one).
    """
    check_observation_columns(observations.columns)
    frame = (
        observations.select(*OBSERVATION_COLUMNS)
        .withColumnRenamed("cheapest_total", "fare")
        .withColumn("fare", F.col("fare").cast("double"))
        .withColumn("depart_date", F.to_date("depart_date"))
        .withColumn("return_date", F.to_date("return_date"))
        .withColumn("trip_id", _trip_id())
        # Microseconds since the epoch: exact window bounds and differences, whatever the session's time zone.
        .withColumn("at", F.unix_micros("collected_at"))
        .withColumn("day", F.date_from_unix_date(_epoch_day(F.col("at"))))
    )
    _check_one_row_per_moment(frame)
    distances = _route_distances(frame)
    # The route and peer steps each read the trip features several times (aggregates joined back, self-joins):
    # checkpointed once, they are not recomputed per branch, and the plans stay small.
    frame = _trip_features(frame).join(F.broadcast(distances), ROUTE_KEY, "left").checkpoint()
    frame = _peer_features(_route_features(frame).checkpoint())
    return frame.select(*KEPT_OBSERVATION_COLUMNS, "trip_id", *FEATURE_COLUMNS)


def route_calendar(features: DataFrame) -> RouteCalendar:
    """features.route_calendar of Spark features: the refiling days they found, final before their newest day."""
    # One pass over the features: a row per route and collection day (a few thousand) comes to the driver.
    refiled = F.col("days_since_route_refile") == 0
    days = (features.groupBy(*ROUTE_KEY, _epoch_day(F.unix_micros("collected_at")).alias("day"))
            .agg(F.min(F.when(refiled, F.unix_micros("collected_at"))).alias("first_seen")).toPandas())
    days["day"] = pd.to_datetime(days["day"].astype("int64"), unit="D")
    found = days.loc[days["first_seen"].notna()].copy()
    found["first_seen"] = pd.to_datetime(found["first_seen"].astype("int64"), unit="us")
    return RouteCalendar(found[[*ROUTE_KEY, "day", "first_seen"]].sort_values([*ROUTE_KEY, "day"]).reset_index(drop=True),
                         days["day"].max())


def bounded_sample(frame: DataFrame, key: list[str], rows: int, seed: int = 0) -> DataFrame:
    """At most `rows` rows drawn uniformly by a hash of their `key`: the same rows however the frame is partitioned,
    and a top-n per partition rather than a sort of every row."""
    pick = F.xxhash64(*key, F.lit(seed))
    return frame.withColumn("_pick", pick).orderBy("_pick", *key).limit(rows).drop("_pick")


def to_pandas(features: DataFrame) -> pd.DataFrame:
    """The Spark features as the pandas version's frame: sorted by trip and collection time, UTC-aware
    collected_at, datetime64 dates and NaN for missing numbers."""
    return to_pandas_times(features.orderBy("trip_id", "collected_at"))


def to_pandas_times(frame: DataFrame) -> pd.DataFrame:
    """A Spark frame of observations or features on the driver as the pandas code reads them: UTC-aware
    collected_at and datetime64 dates."""
    # Times travel as microseconds since the epoch: toPandas would give wall clock in the session's zone, which
    # is ambiguous for an hour each autumn wherever clocks fall back.
    result = frame.withColumn("collected_at", F.unix_micros("collected_at")).toPandas()
    result["collected_at"] = pd.to_datetime(result["collected_at"], unit="us", utc=True)
    for column in ("depart_date", "return_date"):
        result[column] = pd.to_datetime(result[column])
    return result
