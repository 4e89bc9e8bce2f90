"""Refresh the serving tables from the warehouse and the latest published models (the asset's work, without Dagster)."""
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg

from fare_assets.show.serving import predicted_fare_rows, trip_advice_rows
from fare_assets.storing import warehouse
from fare_assets.storing.lake import models_path
from fare_assets.synthesizing.advisor import BuyWaitAdvisor
from fare_assets.synthesizing.assets import ADVISOR, FARE_MODEL
from fare_assets.synthesizing.fare_model import FareModel
from fare_assets.synthesizing.model_files import ModelUnavailable
from webapp import create_app
from webapp.pages import render_trip_pages
from webapp.validation import Trip


@dataclass(frozen=True)
class PublishedModel:
    """A model as published under models/<name>/latest.json, with the version it was saved as."""

    model: object
    version: str


def latest_model(lake_root: str, name: str, loader: Callable[[str], object]) -> PublishedModel:
    """The model latest.json points at; raises ModelUnavailable when none is published or it cannot be read."""
    pointer = Path(models_path(lake_root, name)) / "latest.json"
    try:
        published = json.loads(pointer.read_text())
        path, version = published["path"], str(published["version"])
    except FileNotFoundError as error:
        raise ModelUnavailable(f"no {name} has been published yet ({pointer} is missing)") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelUnavailable(f"{pointer} does not name a {name} model file") from error
    return PublishedModel(loader(path), version)


def published_models(lake_root: str) -> tuple[PublishedModel, PublishedModel]:
    """The latest advisor and fare model; raises ModelUnavailable naming the one that cannot be read."""
    return latest_model(lake_root, ADVISOR, BuyWaitAdvisor.load), latest_model(lake_root, FARE_MODEL, FareModel.load)


def watched_trips(observations: pd.DataFrame) -> list[Trip]:
    """Each collected round trip once, whatever the party (the page's trips)."""
    if observations.empty:
        return []
    pairs = observations[["origin", "destination", "depart_date", "return_date"]].drop_duplicates()
    return [Trip(row.origin, row.destination, row.depart_date.date(), row.return_date.date())
            for row in pairs.itertuples()]


def refresh_serving_tables(conn: psycopg.Connection, advisor: PublishedModel, fare_model: PublishedModel,
                           now: dt.datetime) -> dict:
    """Advice, predicted grid cells and trip pages for every trip departing from today, in one transaction.

    Returns per table the rows written, changed and deleted.
    """
    observations = warehouse.observations(conn, departing_from=now.date())
    tables = {
        "trip_advice": trip_advice_rows(advisor.model, observations, advisor.version, now),
        "predicted_fares": predicted_fare_rows(fare_model.model, observations, now.date(), fare_model.version, now),
    }
    # The pages are rendered from the advice and predictions just written, before anyone sees either.
    with conn.transaction():
        loaded = warehouse.load_serving_tables(conn, tables)
        tables["trip_pages"] = render_trip_pages(create_app(), conn, watched_trips(observations), now.date(), now)
        loaded |= warehouse.load_serving_tables(conn, {"trip_pages": tables["trip_pages"]})
    return {table: {"rows": len(rows), **loaded[table]} for table, rows in tables.items()}
