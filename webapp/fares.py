"""The HTML fare page: search form, cheapest options for a trip, routes with data freshness."""
import datetime as dt

from flask import Blueprint, render_template, request

from webapp import queries
from webapp.db import get_db
from webapp.validation import TripError, airport_name, parse_trip, today_utc

fares = Blueprint("fares", __name__)


@fares.get("/")
def search():
    """The search form, prefilled from the query string."""
    return render_template("search.html", form=request.args, problems={}, today=today_utc())


@fares.get("/fares")
def trip_fares():
    """The cheapest options now for one round trip, or what else was collected for its route."""
    today = today_utc()
    trip = parse_trip(request.args, today)
    found = queries.fares_for_trip(get_db(), trip, today)
    return render_template("fares.html", trip=trip, form=trip.as_params(), problems={}, today=today,
                           origin_name=airport_name(trip.origin),
                           destination_name=airport_name(trip.destination), **found)


@fares.get("/routes")
def routes():
    """National and international routes with their freshest collection and cheapest latest fare."""
    summaries = queries.route_summaries(get_db(), today_utc())
    return render_template("routes.html", summaries=summaries, now=dt.datetime.now(dt.timezone.utc))


@fares.errorhandler(TripError)
def invalid_trip(error: TripError):
    """Show the form again with each field's problem, as a 400."""
    return render_template("search.html", form=request.args, problems=error.problems, today=today_utc()), 400
