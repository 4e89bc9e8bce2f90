"""Read-only PostgreSQL connections: one per server thread, reused across its requests.

Connecting costs more than the page's queries (a new backend per connection), so each server
thread keeps its connection; a connection that broke is replaced on the next request.
"""
import threading

import psycopg
from flask import Flask, current_app, g
from psycopg.rows import dict_row


class DatabaseUnavailable(RuntimeError):
    """The fare database could not be reached."""


def _connect(config) -> psycopg.Connection:
    try:
        return psycopg.connect(
            config["DATABASE_DSN"],
            # Autocommit: no transaction outlives a request, so a reused connection carries no state.
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=config["DATABASE_CONNECT_TIMEOUT"],
            # A slow query must not hold a worker thread: fail it and answer 503 instead. JIT off: the
            # page's queries read a few hundred indexed rows, and the planner's guess for generate_series
            # (1,000 rows) would otherwise spend ~0.4 s compiling the date grid's query.
            options=f"-c statement_timeout={config['DATABASE_STATEMENT_TIMEOUT_MS']} -c jit=off",
        )
    except psycopg.OperationalError as error:
        # The DSN may carry a password, so the message names neither the DSN nor the driver text.
        raise DatabaseUnavailable("the fare database is unreachable") from error


def get_db() -> psycopg.Connection:
    """This thread's connection (rows as dicts), connecting on first use or after it broke."""
    if "db" not in g:
        per_thread = current_app.extensions["fare_db_connections"]
        conn = getattr(per_thread, "conn", None)
        if conn is None or conn.closed or conn.broken:
            per_thread.conn = conn = _connect(current_app.config)
        g.db = conn
    return g.db


def release_db(error: BaseException | None = None) -> None:
    """After a request: keep the thread's connection, unless the request failed on it."""
    conn = g.pop("db", None)
    # A request that ended in a database error may leave a cancelled or half-read connection behind.
    if conn is not None and isinstance(error, psycopg.Error):
        conn.close()


def init_app(app: Flask) -> None:
    """Give the app its per-thread connections and release them when each app context ends."""
    app.extensions["fare_db_connections"] = threading.local()
    app.teardown_appcontext(release_db)
