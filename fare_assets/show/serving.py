"""What the fare page serves about each watched trip, computed once per collection instead of per view (pure).

A page view used to run the advisor's features (~80 ms) and the fare model (~35 ms) for its trip; here
both run once for every upcoming watched trip, in one vectorised call each, and the rows go to the
warehouse's serving tables (fare_assets.storing.warehouse.SERVING_COLUMNS order).
"""
import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd

from fare_assets.local_dates import day_end, today_at
from fare_assets.synthesizing.features import TRIP_KEY, trip_ids

# The page's date grid: departures and returns within this many days of the watched trip's.
GRID_DAYS = 3
PARTY_KEY = ["origin", "destination", "adults", "children", "cabin"]


def latest_collections(observations: pd.DataFrame) -> pd.DataFrame:
    """Each watched trip's newest observation (TRIP_KEY, collected_at, currency), indexed by trip_id."""
    ordered = observations.assign(trip_id=trip_ids(observations)).sort_values(["trip_id", "collected_at"])
    return ordered.groupby("trip_id", sort=False).tail(1).set_index("trip_id")[[*TRIP_KEY, "collected_at", "currency"]]


def departing_from_today(trips: pd.DataFrame, now: dt.datetime) -> pd.Series:
    """Per row of `trips` (origin, depart_date), whether it departs today or later by the date at its origin, as the
    page judges a departure past (fare_assets.local_dates.today_at)."""
    todays = {origin: pd.Timestamp(today_at(origin, now)) for origin in trips["origin"].unique()}
    return trips["depart_date"] >= pd.to_datetime(trips["origin"].map(todays))


def _optional(value) -> float | None:
    return None if pd.isna(value) else float(value)


def last_call_days_ahead(latest: pd.DataFrame, watchlist, advisor_last_call: float) -> pd.Series:
    """Per trip_id of `latest`, the days ahead at or below which its advice is the last call, from the watchlist.

    The advisor's own last call is for a trip collected until the day before departure. Days ahead count to the
    departure date's UTC midnight, and the watchlist counts days at the origin, so the horizon moves by the origin's
    UTC offset (the day before a San Francisco departure begins 0.67 days ahead in winter, a Tokyo one's 1.375). An
    entry that stops collecting `from` days ahead moves it `from - 1` days earlier, so its last advice is never
    "wait". One collecting on the departure day too (`from: 0`) keeps the advisor's own: a traveller told to wait on
    its eve would have hours at most to act. A trip no entry watches any more (the watchlist changed) gets infinity:
    no later collection will follow its advice.
    """
    horizons = {}
    for trip_id, row in zip(latest.index, latest.itertuples()):
        last_day = watchlist.last_collection_days_ahead(row.origin, row.destination, row.depart_date.date(),
                                                        row.return_date.date(), int(row.adults), int(row.children),
                                                        row.cabin)
        if last_day is None:
            horizons[trip_id] = np.inf
            continue
        depart = row.depart_date.date()
        # The entry's last collection day (for `from: 0` the advisor's own, the eve) begins at the origin's
        # midnight; counted in hours, its days ahead hold any clock change between it and departure.
        begins = day_end(row.origin, depart - dt.timedelta(days=max(last_day, 1) + 1))
        utc_midnight = dt.datetime.combine(depart, dt.time(), dt.timezone.utc)
        horizons[trip_id] = advisor_last_call - 1 + (utc_midnight - begins) / dt.timedelta(days=1)
    return pd.Series(horizons, dtype=float)


def trip_advice_rows(advisor, observations: pd.DataFrame, model_version: str, computed_at: dt.datetime,
                     watchlist=None) -> list[tuple]:
    """Per watched trip departing from `computed_at`'s date (at its origin), the advisor's advice at its latest
    collection, as trip_advice rows.

    `observations` may hold departed trips too (the advisor's route calendar reads them). With the `watchlist` (a
    Watchlist), each trip's last call follows the day its collection stops.
    """
    if observations.empty:
        return []
    latest = latest_collections(observations)
    latest = latest[departing_from_today(latest, computed_at)]
    horizons = None if watchlist is None else last_call_days_ahead(latest, watchlist, advisor.last_call_days_ahead)
    advice = latest.join(advisor.advise_trips(observations, horizons), how="inner", rsuffix="_advice")
    return [(row.origin, row.destination, row.depart_date.date(), row.return_date.date(), int(row.adults),
             int(row.children), row.cabin, row.collected_at.to_pydatetime(), row.action,
             _optional(row.drop_probability), _optional(row.confidence), _optional(row.expected_saving),
             row.currency_advice, row.reason, model_version, computed_at)
            for row in advice.itertuples()]


def grid_cells(latest: pd.DataFrame, now: dt.datetime) -> pd.DataFrame:
    """The date-grid cells around every watched trip that no watched trip collects, from today on (at its origin).

    One row per (route, party, cabin, depart_date, return_date) with `predicted_for`: the newest
    collection among the trips whose grid holds the cell, so a cell is predicted as quoted when its
    neighbours were last seen (and a rerun on the same data predicts the same amount).
    """
    offsets = np.arange(-GRID_DAYS, GRID_DAYS + 1)
    depart_shift, return_shift = (np.repeat(offsets, len(offsets)), np.tile(offsets, len(offsets)))
    trips = latest.reset_index(drop=True)
    cells = trips.loc[trips.index.repeat(len(depart_shift))].reset_index(drop=True)
    cells["depart_date"] = cells["depart_date"] + pd.to_timedelta(np.tile(depart_shift, len(trips)), unit="D")
    cells["return_date"] = cells["return_date"] + pd.to_timedelta(np.tile(return_shift, len(trips)), unit="D")
    cells = cells[departing_from_today(cells, now) & (cells["return_date"] >= cells["depart_date"])]
    cell_key = [*PARTY_KEY, "depart_date", "return_date"]
    cells = cells.groupby(cell_key, as_index=False)["collected_at"].max().rename(columns={"collected_at": "predicted_for"})
    collected = trips[cell_key].drop_duplicates().assign(collected=True)
    cells = cells.merge(collected, on=cell_key, how="left")
    return cells[cells["collected"].isna()].drop(columns="collected").reset_index(drop=True)


def predicted_fare_rows(fare_model, observations: pd.DataFrame, model_version: str,
                        computed_at: dt.datetime) -> list[tuple]:
    """The fare model's cheapest total for every uncollected grid cell around the watched trips, as predicted_fares rows."""
    if observations.empty:
        return []
    cells = grid_cells(latest_collections(observations), computed_at)
    if cells.empty:
        return []
    amounts = fare_model.predict_frame(cells.rename(columns={"predicted_for": "at"}))
    return [(row.origin, row.destination, row.depart_date.date(), row.return_date.date(), int(row.adults),
             int(row.children), row.cabin, Decimal(f"{amount:.2f}"), row.predicted_for.to_pydatetime(),
             model_version, computed_at)
            for row, amount in zip(cells.itertuples(), amounts)]
