"""One read-only PostgreSQL connection per request, opened on first use and closed at teardown."""
import psycopg
from flask import Flask, current_app, g
from psycopg.rows import dict_row


class DatabaseUnavailable(RuntimeError):
    """The fare database could not be reached."""


def get_db() -> psycopg.Connection:
    """The request's connection (rows as dicts), connecting on first use."""
    if "db" not in g:
        config = current_app.config
        try:
            g.db = psycopg.connect(
                config["DATABASE_DSN"],
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=config["DATABASE_CONNECT_TIMEOUT"],
                # A slow query must not hold a worker thread: fail it and answer 503 instead.
                options=f"-c statement_timeout={config['DATABASE_STATEMENT_TIMEOUT_MS']}",
            )
        except psycopg.OperationalError as error:
            # The DSN may carry a password, so the message names neither the DSN nor the driver text.
            raise DatabaseUnavailable("the fare database is unreachable") from error
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    """Close the request's connection, if it opened one."""
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Close each request's connection when its app context ends."""
    app.teardown_appcontext(close_db)
