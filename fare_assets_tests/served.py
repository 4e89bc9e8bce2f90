"""Tests' server: the app under waitress in a background thread, on a free local port."""
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from waitress.server import create_server

from fare_assets.services import free_port


@contextmanager
def served(app: Flask, threads: int = 8) -> Iterator[str]:
    """Yield the base URL of `app` served by waitress with `threads` workers; stop it on exit."""
    server = create_server(app, host="127.0.0.1", port=free_port(), threads=threads)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)
