"""The HTML fare page: search form, a trip's fares, insight, advice, date grid and chart, routes, alerts."""
import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for

from fare_assets.local_dates import earliest_today, today_at
from webapp import alerts, queries
from webapp.db import get_db
from webapp.pages import render_trip_page
from webapp.trip_view import trip_view
from webapp.validation import Trip, TripError, parse_trip

fares = Blueprint("fares", __name__)


@fares.get("/")
def search():
    """The search form, prefilled from the query string."""
    return render_template("search.html", form=request.args, problems={}, first_date=earliest_today())


def _render_trip(trip: Trip, today: dt.date, alert_problems: dict, alert_form: dict, status: int = 200):
    page = render_trip_page(trip, trip_view(get_db(), trip, today), today, alert_problems, alert_form,
                            alert_created=request.args.get("alert") == "created")
    return page, status


@fares.get("/fares")
def trip_fares():
    """One round trip: cheapest options now, price insight, buy-or-wait advice, date grid and price chart."""
    trip = parse_trip(request.args)
    today = today_at(trip.origin)
    # The notice after saving an alert is the one part of the page a stored page cannot hold.
    if "alert" not in request.args:
        stored = queries.trip_page(get_db(), trip, today)
        if stored is not None:
            return stored["html"]
    return _render_trip(trip, today, {}, {})


@fares.post("/alerts")
def create_alert():
    """Save a price alert from the trip page's form, then show the trip again (or the form's problems)."""
    try:
        watched = alerts.pinned_to_trip(get_db(), alerts.parse_alert(request.form))
    except alerts.AlertError as error:
        trip_problems = {field: problem for field, problem in error.problems.items()
                         if field not in ("threshold", "currency")}
        if trip_problems:
            raise TripError(trip_problems) from error
        trip = parse_trip(request.form)
        return _render_trip(trip, today_at(trip.origin), error.problems, request.form, 400)
    alerts.save_alert(get_db(), watched)
    return redirect(url_for("fares.trip_fares", **watched.trip.as_params(), alert="created"), 303)


@fares.get("/routes")
def routes():
    """National and international routes with their freshest collection and cheapest latest fare."""
    now = dt.datetime.now(dt.timezone.utc)
    return render_template("routes.html", summaries=queries.route_summaries(get_db(), now), now=now)


@fares.errorhandler(TripError)
def invalid_trip(error: TripError):
    """Show the form again with each field's problem, as a 400."""
    form = request.args if request.method == "GET" else request.form
    return render_template("search.html", form=form, problems=error.problems, first_date=earliest_today()), 400
