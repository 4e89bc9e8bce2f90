"""The JSON API under /api/: the same answers as the HTML pages, for programs."""
import datetime as dt

from flask import Blueprint, jsonify, request, url_for

from webapp import queries
from webapp.db import get_db
from webapp.formatting import age_seconds, amount_text, trip_params
from webapp.validation import Trip, TripError, airport_name, parse_trip, today_utc

api = Blueprint("api", __name__, url_prefix="/api")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat()


def _trip_json(trip: Trip) -> dict:
    return {"origin": trip.origin, "origin_name": airport_name(trip.origin),
            "destination": trip.destination, "destination_name": airport_name(trip.destination),
            "depart": trip.depart_date.isoformat(), "return": trip.return_date.isoformat(),
            "adults": trip.adults, "children": trip.children}


def _leg_json(departs_local: dt.datetime | None, stops: int | None, duration_min: int | None) -> dict:
    return {"departs_local": departs_local.isoformat() if departs_local else None,
            "stops": stops, "duration_min": duration_min}


def _option_json(row: dict) -> dict:
    # Amounts are strings so no decimal is lost to binary floating point.
    return {"option_id": row["option_id"], "market": row["market"], "provider": row["provider"],
            "total": amount_text(row["total_amount"]), "currency": row["currency"],
            "carriers": row["carriers"].split(",") if row["carriers"] else [],
            "cabin": row["cabin"], "adults": row["adults"], "children": row["children"],
            "outbound": _leg_json(row["depart_out_local"], row["stops_out"], row["duration_out_min"]),
            "return": _leg_json(row["depart_back_local"], row["stops_back"], row["duration_back_min"])}


def _cheapest_trip_json(row: dict) -> dict:
    return {"depart": row["depart_date"].isoformat(), "return": row["return_date"].isoformat(),
            "adults": row["adults"], "children": row["children"],
            "total": amount_text(row["total_amount"]), "currency": row["currency"],
            "url": url_for("api.trip_fares", **trip_params(row))}


@api.get("/fares")
def trip_fares():
    """The trip's latest collection, cheapest first; when empty, the route's other collected trips."""
    today = today_utc()
    trip = parse_trip(request.args, today)
    found = queries.fares_for_trip(get_db(), trip, today)
    options = found["options"]
    return jsonify(
        trip=_trip_json(trip),
        collected_at=_iso(options[0]["collected_at"]) if options else None,
        options_in_collection=options[0]["options_in_collection"] if options else 0,
        options=[_option_json(row) for row in options],
        other_trips=[{**_cheapest_trip_json(row), "collected_at": _iso(row["collected_at"])}
                     for row in found["other_trips"]],
    )


@api.get("/routes")
def routes():
    """Per market, each route's freshest collection, data age and cheapest latest fare."""
    now = dt.datetime.now(dt.timezone.utc)
    summaries = queries.route_summaries(get_db(), today_utc())
    return jsonify(generated_at=_iso(now), **{
        market: [{"origin": row["origin"], "destination": row["destination"],
                  "freshest_collected_at": _iso(row["freshest_collected_at"]),
                  "data_age_seconds": age_seconds(row["freshest_collected_at"], now),
                  "upcoming_trips": row["upcoming_trips"],
                  "cheapest": {**_cheapest_trip_json(row), "collected_at": _iso(row["fare_collected_at"])}}
                 for row in rows]
        for market, rows in summaries.items()
    })


@api.errorhandler(TripError)
def invalid_trip(error: TripError):
    """Say what to fix, overall and per field, as a 400."""
    return jsonify(error=str(error), fields=error.problems), 400
