"""/healthz: whether the app can reach its database, for load balancers and monitors."""
import psycopg
from flask import Blueprint, jsonify

from webapp import queries
from webapp.db import DatabaseUnavailable, get_db

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """200 when the database answers, 503 when it does not."""
    try:
        queries.ping(get_db())
    except (DatabaseUnavailable, psycopg.OperationalError):
        response = jsonify(status="unavailable", database="unreachable")
        response.status_code = 503
    else:
        response = jsonify(status="ok", database="ok")
    # A cached answer would hide an outage.
    response.headers["Cache-Control"] = "no-store"
    return response
