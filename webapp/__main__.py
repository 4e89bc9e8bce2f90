"""`python -m webapp`: serve the fare page with waitress on FARES_WEB_HOST:FARES_WEB_PORT, FARES_WEB_THREADS threads."""
import os

from waitress import serve

from fare_assets.settings import load_settings
from webapp import create_app


def main() -> None:
    """Serve until interrupted, on 127.0.0.1 unless FARES_WEB_HOST says otherwise."""
    host = os.environ.get("FARES_WEB_HOST") or "127.0.0.1"
    port = load_settings().web_port
    app = create_app()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"Fare page: http://{shown_host}:{port}/", flush=True)
    # Each thread holds one database connection; 16 serve 16 concurrent clients without queueing.
    threads = int(os.environ.get("FARES_WEB_THREADS") or "16")
    serve(app, host=host, port=port, threads=threads)


if __name__ == "__main__":
    main()
