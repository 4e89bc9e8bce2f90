"""The JSON API under /api/: the same answers as the HTML pages, for programs."""
import datetime as dt

from flask import Blueprint, current_app, jsonify, request, url_for

from fare_assets.local_dates import today_at
from webapp import alerts, queries
from webapp.db import get_db
from webapp.formatting import age_seconds, amount_text, arrival_local, trip_params
from webapp.trip_view import advice_for, date_grid_for, insight_for, price_history, shown_trip
from webapp.validation import Trip, TripError, airport_name, parse_trip, suggest_airports

api = Blueprint("api", __name__, url_prefix="/api")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat()


def _trip_json(trip: Trip) -> dict:
    return {"origin": trip.origin, "origin_name": airport_name(trip.origin),
            "destination": trip.destination, "destination_name": airport_name(trip.destination),
            "depart": trip.depart_date.isoformat(), "return": trip.return_date.isoformat(),
            "adults": trip.adults, "children": trip.children, "cabin": trip.cabin}


def _leg_json(departs_local: dt.datetime | None, stops: int | None, duration_min: int | None,
              origin: str, destination: str) -> dict:
    arrives_local = arrival_local(departs_local, duration_min, origin, destination)
    return {"departs_local": departs_local.isoformat() if departs_local else None,
            "arrives_local": arrives_local.isoformat() if arrives_local else None,
            "stops": stops, "duration_min": duration_min}


def _option_json(row: dict) -> dict:
    # Amounts are strings so no decimal is lost to binary floating point.
    return {"option_id": row["option_id"], "market": row["market"], "provider": row["provider"],
            "total": amount_text(row["total_amount"]), "currency": row["currency"],
            "carriers": row["carriers"].split(",") if row["carriers"] else [],
            "cabin": row["cabin"], "adults": row["adults"], "children": row["children"],
            "outbound": _leg_json(row["depart_out_local"], row["stops_out"], row["duration_out_min"],
                                  row["origin"], row["destination"]),
            "return": _leg_json(row["depart_back_local"], row["stops_back"], row["duration_back_min"],
                                row["destination"], row["origin"])}


def _cheapest_trip_json(row: dict) -> dict:
    return {"depart": row["depart_date"].isoformat(), "return": row["return_date"].isoformat(),
            "adults": row["adults"], "children": row["children"], "cabin": row["cabin"],
            "total": amount_text(row["total_amount"]), "currency": row["currency"],
            "url": url_for("api.trip_fares", **trip_params(row))}


def _provider_quote_json(row: dict) -> dict:
    return {"provider": row["provider"], "collected_at": _iso(row["collected_at"]),
            "cheapest": amount_text(row["total_amount"]), "currency": row["currency"]}


def fares_document(trip: Trip, found: dict) -> dict:
    """/api/fares for the trip, from what queries.fares_for_trip found."""
    options, collection = found["options"], found["collection"]
    return {"trip": _trip_json(trip),
            "collected_at": _iso(collection["collected_at"]) if collection else None,
            "nothing_on_sale": collection is not None and not options,
            "options_in_collection": options[0]["options_in_collection"] if options else 0,
            "options": [_option_json(row) for row in options],
            "absent_providers": [_provider_quote_json(row) for row in found["absent_providers"]],
            "other_currency_quotes": [_provider_quote_json(row) for row in found["other_currency_quotes"]],
            "other_trips": [{**_cheapest_trip_json(row), "collected_at": _iso(row["collected_at"])}
                            for row in found["other_trips"]]}


@api.get("/fares")
def trip_fares():
    """The trip's latest collection, cheapest first; when empty, the route's other collected trips."""
    trip, today = _asked_trip()
    # As the page: a watched trip's answer is stored by the pipeline for its newest collection (webapp/pages.py).
    stored = queries.trip_page(get_db(), trip, today, "fares_json")
    if stored is not None:
        return current_app.response_class(stored["fares_json"], mimetype="application/json")
    return jsonify(fares_document(trip, queries.fares_for_trip(get_db(), trip, today)))


@api.get("/routes")
def routes():
    """Per market, each route's freshest collection, data age and cheapest latest fare."""
    now = dt.datetime.now(dt.timezone.utc)
    summaries = queries.route_summaries(get_db(), now)
    return jsonify(generated_at=_iso(now), **{
        market: [{"origin": row["origin"], "destination": row["destination"],
                  "freshest_collected_at": _iso(row["freshest_collected_at"]),
                  "data_age_seconds": age_seconds(row["freshest_collected_at"], now),
                  "upcoming_trips": row["upcoming_trips"],
                  "cheapest": {**_cheapest_trip_json(row), "collected_at": _iso(row["fare_collected_at"])}}
                 for row in rows]
        for market, rows in summaries.items()
    })


def _asked_trip() -> tuple[Trip, dt.date]:
    """The trip asked for and today's date at its origin."""
    trip = parse_trip(request.args)
    return trip, today_at(trip.origin)


@api.get("/history")
def trip_history():
    """The cheapest fare of each collection of the trip no provider was missing from, oldest first."""
    trip, today = _asked_trip()
    conn = get_db()
    _, collection = queries.newest_collection(conn, trip, limit=1)
    shown = shown_trip(trip, collection)
    history = price_history(conn, trip, collection)
    return jsonify(trip=_trip_json(trip), adults=shown.adults, children=shown.children, cabin=shown.cabin,
                   points=[{"collected_at": _iso(row["collected_at"]), "cheapest": amount_text(row["cheapest_total"]),
                            "currency": row["currency"]} for row in history["points"]],
                   collections_missing_a_provider=history["left_out"])


@api.get("/date-grid")
def date_grid():
    """The cheapest fare of each departure/return pair within 3 days of the trip; `source` says how it is known."""
    trip, today = _asked_trip()
    conn = get_db()
    _, collection = queries.newest_collection(conn, trip, limit=1)
    grid = date_grid_for(conn, trip, collection, today)

    def cell_json(cell: dict) -> dict:
        if cell["total_amount"] is not None:
            known = {"source": "collected", "total": amount_text(cell["total_amount"]),
                     "currency": cell["currency"], "collected_at": _iso(cell["collected_at"])}
        elif cell["collected_at"] is not None:
            known = {"source": "nothing_on_sale", "total": None, "currency": None,
                     "collected_at": _iso(cell["collected_at"])}
        elif cell["predicted_amount"] is not None:
            known = {"source": "predicted", "total": amount_text(cell["predicted_amount"]),
                     "currency": collection and collection["currency"], "collected_at": None,
                     "predicted_for": _iso(cell["predicted_for"])}
        else:
            known = {"source": "unknown", "total": None, "currency": None, "collected_at": None}
        return {"depart": cell["depart_date"].isoformat(), "return": cell["return_date"].isoformat(), **known}

    return jsonify(trip=_trip_json(trip), fare_model_available=grid["model_available"],
                   cells=[cell_json(cell) for cell in grid["cells"]])


@api.get("/advice")
def advice():
    """Buy now or wait (confidence, expected saving) and whether today's cheapest fare is low, typical or high."""
    trip, today = _asked_trip()
    conn = get_db()
    # As many options as the page shows: on the departure day the insight judges the cheapest still to leave.
    options, collection = queries.newest_collection(conn, trip)
    insight = insight_for(conn, trip, options, date_grid_for(conn, trip, collection, today)) if options else None
    advised = advice_for(conn, trip, collection)
    basis = advised["based_on_collection"]
    return jsonify(trip=_trip_json(trip), advice={**advised, "based_on_collection": basis and _iso(basis)},
                   insight=insight)


@api.get("/airports")
def airports():
    """Airports matching a code prefix, city or name, for the search form's suggestions."""
    return jsonify(airports=suggest_airports(request.args.get("q", "")))


@api.post("/alerts")
def create_alert():
    """Watch a trip: notify when its cheapest fare falls below `threshold` (JSON body)."""
    body = request.get_json(silent=True)
    conn = get_db()
    watched = alerts.pinned_to_trip(conn, alerts.parse_alert(body if isinstance(body, dict) else {}))
    alert_id, added = alerts.save_alert(conn, watched)
    collected = queries.latest_collection(conn, watched.trip) is not None
    return jsonify(id=alert_id, trip=_trip_json(watched.trip), threshold=amount_text(watched.threshold),
                   currency=watched.currency, collected=collected), 201 if added else 200


@api.errorhandler(alerts.AlertError)
@api.errorhandler(TripError)
def invalid_trip(error: TripError):
    """Say what to fix, overall and per field, as a 400."""
    return jsonify(error=str(error), fields=error.problems), 400
