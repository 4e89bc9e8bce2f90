"""Everything the fare page says about one trip, assembled once for the HTML page and the JSON API."""
import dataclasses
import datetime as dt
from decimal import Decimal

import pandas as pd
import psycopg
from flask import current_app

from fare_assets.synthesizing.model_files import ModelUnavailable
from webapp import queries
from webapp.chart import price_chart
from webapp.insight import price_insight
from webapp.models import ADVISOR, FARE_MODEL
from webapp.validation import Trip

# Unknown party sizes are predicted as the most common search: one adult in economy.
DEFAULT_PARTY = (1, 0, "COACH")


def party_of(trip: Trip, options: list[dict]) -> tuple[int | None, int | None]:
    """The party the page describes: that of the shown collection, else the one asked for."""
    if options:
        return options[0]["adults"], options[0]["children"]
    return trip.adults, trip.children


def _no_advice(action: str, reason: str) -> dict:
    return {"action": action, "drop_probability": None, "confidence": None, "expected_saving": None,
            "currency": None, "reason": reason}


def advice_for(conn: psycopg.Connection, trip: Trip, options: list[dict]) -> dict:
    """Buy now or wait for the shown collection's trip and party, or why there is no advice."""
    if not options:
        return _no_advice("no_fares", "no fares collected for this trip yet")
    shown = options[0]
    key = (trip.origin, trip.destination, trip.depart_date, trip.return_date, shown["adults"], shown["children"],
           shown["cabin"], shown["collected_at"])

    def advise(advisor) -> dict:
        rows = queries.trip_observations(conn, trip, shown["adults"], shown["children"], shown["cabin"])
        frame = pd.DataFrame(rows)
        for column in ("depart_date", "return_date"):
            frame[column] = pd.to_datetime(frame[column])
        frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
        return dataclasses.asdict(advisor.advise(frame))

    try:
        return current_app.extensions["fare_models"].memo(ADVISOR, key, advise)
    except ModelUnavailable as error:
        current_app.logger.info("advice unavailable: %s", error)
        return _no_advice("unavailable", "the buy/wait advisor is not available right now; fares are shown without advice")


def _predict(trip: Trip, cells: list[dict], party: tuple, now: dt.datetime) -> bool:
    """Fill the cells without a collected fare from the fare model; False when it is unavailable."""
    missing = [cell for cell in cells if cell["total_amount"] is None]
    if not missing:
        return True
    adults, children, cabin = party
    pairs = tuple((cell["depart_date"], cell["return_date"]) for cell in missing)

    def predict(model) -> list:
        rows = pd.DataFrame({
            "origin": trip.origin, "destination": trip.destination,
            "depart_date": [depart for depart, _ in pairs], "return_date": [back for _, back in pairs],
            "at": pd.Timestamp(now), "adults": adults, "children": children, "cabin": cabin})
        return [Decimal(f"{predicted:.2f}") for predicted in model.predict_frame(rows)]

    # Predictions are for today's quotes: the key holds the day, not the instant.
    key = (trip.origin, trip.destination, pairs, party, now.date())
    try:
        predicted = current_app.extensions["fare_models"].memo(FARE_MODEL, key, predict)
    except ModelUnavailable as error:
        current_app.logger.info("fare model unavailable: %s", error)
        return False
    for cell, amount in zip(missing, predicted):
        cell["predicted_amount"] = amount
    return True


def date_grid_for(conn: psycopg.Connection, trip: Trip, options: list[dict], today: dt.date,
                  now: dt.datetime) -> dict:
    """The ±3-day grid: collected cheapest fares, predicted ones where nothing was collected."""
    adults, children = party_of(trip, options)
    cells = [{**row, "predicted_amount": None} for row in queries.date_grid(conn, trip, adults, children, today)]
    cabin = options[0]["cabin"] if options else DEFAULT_PARTY[2]
    party = (adults or DEFAULT_PARTY[0], children or DEFAULT_PARTY[1], cabin)
    model_available = _predict(trip, cells, party, now)
    departs = sorted({cell["depart_date"] for cell in cells})
    returns = sorted({cell["return_date"] for cell in cells})
    by_pair = {(cell["depart_date"], cell["return_date"]): cell for cell in cells}
    shown = [cell["total_amount"] or cell["predicted_amount"] for cell in cells]
    cheapest = min((amount for amount in shown if amount is not None), default=None)
    return {"cells": cells, "departs": departs, "returns": returns, "by_pair": by_pair,
            "cheapest": cheapest, "model_available": model_available}


def insight_for(conn: psycopg.Connection, trip: Trip, options: list[dict], grid: dict,
                history: list[dict] | None = None) -> dict:
    """Today's cheapest against the trip's own collections and the nearby dates' collected fares."""
    if history is None:
        history = queries.trip_history(conn, trip, *party_of(trip, options))
    asked = (trip.depart_date, trip.return_date)
    similar = [cell["total_amount"] for pair, cell in grid["by_pair"].items()
               if pair != asked and cell["total_amount"] is not None]
    return price_insight(options[0]["total_amount"], [row["cheapest_total"] for row in history], similar)


def trip_view(conn: psycopg.Connection, trip: Trip, today: dt.date, now: dt.datetime) -> dict:
    """The cheapest options now, the price insight, advice, date grid and price history of one trip."""
    found = queries.fares_for_trip(conn, trip, today)
    options = found["options"]
    adults, children = party_of(trip, options)
    history = queries.trip_history(conn, trip, adults, children) if options else []
    grid = date_grid_for(conn, trip, options, today, now)
    insight = insight_for(conn, trip, options, grid, history) if options else None
    return {**found, "history": history, "grid": grid, "insight": insight,
            "advice": advice_for(conn, trip, options),
            "chart": price_chart([(row["collected_at"], row["cheapest_total"]) for row in history])}
