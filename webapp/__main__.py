"""`python -m webapp`: serve the fare page with gunicorn on FARES_WEB_HOST:FARES_WEB_PORT.

FARES_WEB_WORKERS processes (default: one per core) of FARES_WEB_THREADS threads each: Python runs one
request at a time per process, so only several processes use several cores; the threads overlap each
process's waits on PostgreSQL.
"""
import os

from gunicorn.app.base import BaseApplication

from fare_assets.settings import env_or_default, host_and_port, load_settings
from webapp import create_app


class FarePageServer(BaseApplication):
    """gunicorn with its settings given here rather than on a command line; each worker builds its own app."""

    def __init__(self, settings: dict):
        self.settings = settings
        super().__init__()

    def load_config(self):
        for name, value in self.settings.items():
            self.cfg.set(name, value)

    def load(self):
        # Built in each worker after the fork, so no database connection is shared between processes.
        return create_app()


def server_settings() -> dict:
    """gunicorn settings from the environment (FARES_WEB_HOST, _PORT, _WORKERS, _THREADS)."""
    settings = load_settings()
    return {
        "bind": host_and_port(settings.web_host, settings.web_port),
        "workers": int(env_or_default("FARES_WEB_WORKERS", str(os.cpu_count() or 1))),
        "worker_class": "gthread",
        # Each thread holds one database connection.
        "threads": int(env_or_default("FARES_WEB_THREADS", "8")),
        # Browsers and API clients reuse connections; a few seconds covers a page and its static files.
        "keepalive": 5,
        "accesslog": None,
    }


def main() -> None:
    """Serve until interrupted, on 127.0.0.1 unless FARES_WEB_HOST says otherwise."""
    settings = server_settings()
    print(f"Fare page: http://{settings['bind']}/", flush=True)
    FarePageServer(settings).run()


if __name__ == "__main__":
    main()
