"""The Flask fare page and JSON API over the PostgreSQL warehouse (read-only)."""

from urllib.parse import urlsplit

import psycopg
from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from fare_assets.settings import env_or_default, load_settings
from fare_assets.storing.postgres import READONLY_ROLE, WAREHOUSE_DB
from fare_assets.storing.warehouse import checked_dsn, schema_is_current
from webapp import db, formatting, fragments
from webapp.api import api
from webapp.fares import fares
from webapp.health import health
from webapp.openapi import openapi

SECURITY_HEADERS = {
    # No inline scripts or styles and nothing from other origins: the page works offline.
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
UNAVAILABLE_MESSAGE = "The fare database is unreachable right now; please try again in a minute."


def default_dsn() -> str:
    """FARES_WEB_DSN, or the embedded cluster's warehouse as the read-only web role."""
    return env_or_default("FARES_WEB_DSN", "") or (
        f"postgresql://{READONLY_ROLE}@127.0.0.1:{load_settings().pg_port}/{WAREHOUSE_DB}")


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/openapi.json")


def _error_response(status: int, title: str, message: str):
    if _wants_json():
        return jsonify(error=message), status
    return render_template("error.html", title=title, message=message), status


def _http_error(error: HTTPException):
    """404, 405, 500 and the rest as a clean page or JSON, never a stack trace."""
    return _error_response(error.code or 500, error.name, error.description or error.name)


def _database_unavailable(error: Exception):
    # The driver's message names host and port, never the password, so it is safe to log.
    current_app.logger.warning("fare database unavailable: %s", error.__cause__ or error)
    return _error_response(503, "Service Unavailable", UNAVAILABLE_MESSAGE)


def _schema_behind(error: psycopg.Error):
    """A table or column the warehouse lacks: it is older than this page until the next load (or price-alert sensor
    tick) adds what it reads, which the page's role cannot, so unavailable for a while; if the warehouse is current,
    the query is wrong (a 500)."""
    try:
        current = schema_is_current(db.get_db())
    # The catalog cannot be read either (a lost connection, a timeout): unavailable, whatever the first error was.
    except psycopg.Error:
        current = False
    if current:
        raise error
    return _database_unavailable(error)


def _refuse_cross_site_posts():
    """A 403 for a post another site's page made the browser send (the alert form needs no preflight).

    Without it, any site the operator visits could fill price_alerts from a page bound to 127.0.0.1. Browsers say
    where a request comes from in Sec-Fetch-Site (since 2020-2023), older ones in Origin, compared with the Host
    (a proxy in front must pass the Host on); a client that is no browser sends neither and is not refused.
    """
    if request.method != "POST":
        return None
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        cross = site not in ("same-origin", "none")
    else:
        cross = origin is not None and urlsplit(origin).netloc != request.host
    if cross:
        return _error_response(403, "Forbidden", "Alerts are saved from this site's own pages only.")
    return None


def _add_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _revalidated(response):
    """A page or API answer a client already holds is a 304, so polling the page between collections costs no body.

    The ETag is the body's digest (fares change every half hour, each load's pages are rendered once), and
    `no-cache` has a browser or proxy ask again every time rather than show fares it guessed are still fresh.
    """
    if request.method not in ("GET", "HEAD") or response.status_code != 200 or response.direct_passthrough:
        return response
    response.headers.setdefault("Cache-Control", "no-cache")
    if "no-store" not in response.headers["Cache-Control"]:
        response.add_etag()
        response.make_conditional(request)
    return response


def create_app(config: dict | None = None) -> Flask:
    """Build the app; `config` overrides the defaults (tests pass DATABASE_DSN and TESTING)."""
    app = Flask(__name__)
    # DEBUG is left to Flask, which turns it on only when FLASK_DEBUG is set.
    app.config.from_mapping(
        DATABASE_DSN=default_dsn(),
        DATABASE_CONNECT_TIMEOUT=3,
        DATABASE_STATEMENT_TIMEOUT_MS=5000,
        # An alert is a few hundred bytes: a larger body is refused (413) before it is read into memory.
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    if config:
        app.config.update(config)
    # At start-up, not in a request: a connection string psycopg cannot parse fails with its text, password and all,
    # which the request's error log would keep.
    checked_dsn(app.config["DATABASE_DSN"], "FARES_WEB_DSN")

    db.init_app(app)
    formatting.init_app(app)
    fragments.init_app(app)
    app.register_blueprint(fares)
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(openapi)
    app.register_error_handler(HTTPException, _http_error)
    # OperationalError covers a connection lost mid-request and a query over the statement timeout.
    app.register_error_handler(db.DatabaseUnavailable, _database_unavailable)
    app.register_error_handler(psycopg.OperationalError, _database_unavailable)
    app.register_error_handler(psycopg.errors.UndefinedTable, _schema_behind)
    app.register_error_handler(psycopg.errors.UndefinedColumn, _schema_behind)
    # A column this version lets be null (an alert's currency before its trip's first quote) not yet relaxed.
    app.register_error_handler(psycopg.errors.NotNullViolation, _schema_behind)
    app.before_request(_refuse_cross_site_posts)
    app.after_request(_revalidated)
    app.after_request(_add_security_headers)
    return app
