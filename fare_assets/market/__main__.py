"""Run the fare market simulator: `python -m fare_assets.market [--host H] [--port N] [--seed N] [--profile P]`."""
import argparse
import dataclasses
import logging
import signal
import sys
import threading

from fare_assets.market.pricing import PROFILES
from fare_assets.market.server import SEARCH_PATH, make_server
from fare_assets.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    """Serve the market until SIGINT or SIGTERM."""
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m fare_assets.market", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.market_port)
    parser.add_argument("--seed", type=int, default=None,
                        help="default: FARES_MARKET_SEED for the default profile, the profile's own seed otherwise")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    seed = args.seed
    if seed is None:
        seed = settings.market_seed if args.profile == "default" else PROFILES[args.profile].seed
    params = dataclasses.replace(PROFILES[args.profile], seed=seed)
    server = make_server(args.host, args.port, params)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it must run outside the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"fare market ({args.profile}, seed {seed}) on {server.url}{SEARCH_PATH}", flush=True)
    with server:
        server.serve_forever()
    print("fare market stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
