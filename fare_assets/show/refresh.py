"""Refresh the serving tables from the warehouse and the latest published models (the asset's work, without Dagster)."""
import datetime as dt
from dataclasses import dataclass

import pandas as pd
import psycopg

from fare_assets.local_dates import earliest_today
from fare_assets.show.serving import departing_from_today, predicted_fare_rows, trip_advice_rows
from fare_assets.storing import warehouse
from fare_assets.streaming.watchlist import Watchlist
from fare_assets.synthesizing.advisor import BuyWaitAdvisor
from fare_assets.synthesizing.fare_model import FareModel
from fare_assets.synthesizing.model_files import ADVISOR, FARE_MODEL, load_published
from webapp import create_app
from webapp.pages import render_trip_pages
from webapp.validation import Trip


@dataclass(frozen=True)
class PublishedModel:
    """A model as published under models/<name>/latest.json, with the version it was saved as."""

    model: object
    version: str


MODEL_LOADERS = {ADVISOR: BuyWaitAdvisor.load, FARE_MODEL: FareModel.load}


def published_model(lake, name: str) -> PublishedModel:
    """The published `name` (ADVISOR or FARE_MODEL) of a lake (a LakeStorage); raises ModelUnavailable if unreadable."""
    return PublishedModel(*load_published(lake, name, MODEL_LOADERS[name]))


def published_models(lake) -> tuple[PublishedModel, PublishedModel]:
    """The published advisor and fare model of a lake; raises ModelUnavailable naming the one that cannot be read."""
    return published_model(lake, ADVISOR), published_model(lake, FARE_MODEL)


def watched_trips(observations: pd.DataFrame) -> list[Trip]:
    """Each collected round trip once, whatever the party (the page's trips)."""
    if observations.empty:
        return []
    pairs = observations[["origin", "destination", "depart_date", "return_date"]].drop_duplicates()
    return [Trip(row.origin, row.destination, row.depart_date.date(), row.return_date.date())
            for row in pairs.itertuples()]


def refresh_serving_tables(conn: psycopg.Connection, advisor: PublishedModel | None,
                           fare_model: PublishedModel | None, now: dt.datetime,
                           watchlist: Watchlist | None = None) -> tuple[dict, dict]:
    """Advice, predicted grid cells and trip pages for every trip departing from today, in one transaction.

    A model that is None (unavailable), or that fails on the trips, leaves its table as it was; the pages still
    show the new fares. The `watchlist` tells the advice when each trip's collection stops (without it, the day
    before departure). Returns per table refreshed the rows written, changed and deleted, and per table left as it
    was for its model's failure, the error.
    """
    # The advice's route features read every trip collected since the advisor's calendar ends, departed ones too,
    # as in training (features.RouteCalendar); the tables and pages are the upcoming trips'.
    calendar = advisor.model.route_calendar if advisor is not None else None
    read_from = earliest_today(now) if calendar is None else min(earliest_today(now), calendar.read_from())
    observations = warehouse.observations(conn, departing_from=read_from)
    upcoming = observations[departing_from_today(observations, now)]
    computed = {
        "trip_advice": (advisor, lambda: trip_advice_rows(advisor.model, observations, advisor.version, now, watchlist)),
        "predicted_fares": (fare_model, lambda: predicted_fare_rows(fare_model.model, upcoming, fare_model.version, now)),
    }
    tables, failed = {}, {}
    for table, (model, rows) in computed.items():
        if model is None:
            continue
        try:
            tables[table] = rows()
        except Exception as error:
            # A model that loads but cannot predict (a damaged MLlib part, a library upgrade) must not hold back
            # the other table and the pages; the caller reports it.
            failed[table] = f"{type(error).__name__}: {error}"
    # The pages are rendered from the advice and predictions just written, before anyone sees either.
    with conn.transaction():
        loaded = warehouse.load_serving_tables(conn, tables)
        tables["trip_pages"] = render_trip_pages(create_app(), conn, watched_trips(upcoming), now)
        loaded |= warehouse.load_serving_tables(conn, {"trip_pages": tables["trip_pages"]})
    return {table: {"rows": len(rows), **loaded[table]} for table, rows in tables.items()}, failed
