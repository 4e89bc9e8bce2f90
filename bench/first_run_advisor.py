"""Does a first `make run` publish an advisor? The advisor's check, on the history `make run` backfills, over end dates.

`make run` replays FARES_HISTORY_DAYS of the watchlist's daily sweeps ending now, so what the advisor learns
from, and whether `advisor_not_worse_than_buying_now` passes on its validation trips, depends on the day it runs.
This replays the same sweeps (the watchlist, the pipeline's sweep times, the default market with
FARES_MARKET_SEED, the collector's number of solutions) in process for each history length and each end date, and
runs the advisor's evaluation as the asset does (FARES_MODEL_ENGINE, FARES_ADVISOR_MAX_UPSET_RATE). HTTP, the
structuring job and the warehouse are left out: the pipeline test covers them, and the observations are the same (a
pipeline run's warehouse gave the same rows and validation figure for one end date). Not in
`make bench`: about 2 minutes per history and end date on 2 cores.

    .venv/bin/python bench/first_run_advisor.py --days 60,120 --ends 2026-12-02,2026-12-06
"""
import argparse
import dataclasses
import datetime as dt
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from advisor_evaluation import observation_frame, observation_row  # noqa: E402
from harness import report  # noqa: E402

from fare_assets.market.pricing import PROFILES, Market, Query  # noqa: E402
from fare_assets.settings import load_settings  # noqa: E402
from fare_assets.streaming.sweep_times import collection_times  # noqa: E402
from fare_assets.streaming.watchlist import load_watchlist  # noqa: E402
from fare_assets.synthesizing.evaluation import advisor_not_worse_than_buying_now, evaluate_advisor  # noqa: E402

# The last sweep's hour: `make run` ends its history, daily sweeps at midnight UTC, with a sweep at the hour it
# starts. At 08:00 every watched origin's date is the UTC date; at some other hours an origin's is a day behind or
# ahead, which moves that sweep's departures (counted from the origin's date) by a day.
END_HOUR_UTC = 8


def advisor_check(history_days: int, end: dt.date) -> dict:
    """The advisor's evaluation on `history_days` of the watchlist's daily sweeps ending on `end`."""
    settings = load_settings()
    watchlist = load_watchlist(settings.watchlist)
    market = Market(dataclasses.replace(PROFILES["default"], seed=settings.market_seed))
    now = dt.datetime.combine(end, dt.time(END_HOUR_UTC), dt.timezone.utc)
    rows = []
    for at in collection_times(history_days, settings.history_every_hours, now):
        for trip in watchlist.trips_at(at):
            query = Query(trip.origin, trip.destination, trip.depart_date, trip.return_date, trip.adults,
                          trip.children, trip.cabin)
            row = observation_row(market, query, at)
            if row is not None:
                rows.append(row)
    evaluation = evaluate_advisor(observation_frame(rows), settings.model_engine, settings.advisor_max_upset_rate)
    headline = evaluation.headline
    # Shares as text: the table's two decimals would print a failing -0.22% as -0.00.
    return {"history_days": history_days, "ends": end.isoformat(), "observations": len(rows),
            "validation_trips": headline["validation_trips"],
            "validation_saving_share": f"{headline['validation_mean_saving_share']:+.2%}",
            "test_share_of_oracle": f"{headline['advisor_share_of_oracle_saving']:.1%}",
            "test_upset_rate": f"{headline['advisor_upset_rate']:.1%}",
            "check": "passes" if advisor_not_worse_than_buying_now(headline) else "fails"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="60,120", help="history lengths, comma-separated")
    parser.add_argument("--ends", default="2026-11-24,2026-11-28,2026-12-02,2026-12-06,2026-12-10",
                        help="end dates (UTC), comma-separated")
    args = parser.parse_args()
    cases = [(int(days), dt.date.fromisoformat(end)) for days in args.days.split(",") for end in args.ends.split(",")]
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(advisor_check, *zip(*cases)))
    passing = {days: sum(row["check"] == "passes" for row in rows if row["history_days"] == days)
               / sum(row["history_days"] == days for row in rows) for days in dict.fromkeys(d for d, _ in cases)}
    # The headline is the default history's, when it was run; otherwise the last history given.
    headline_days = int(load_settings().history_days)
    if headline_days not in passing:
        headline_days = list(passing)[-1]
    report("first_run_advisor", rows, f"end dates passing with {headline_days} days", passing.pop(headline_days),
           {f"end dates passing with {days} days": share for days, share in passing.items()})


if __name__ == "__main__":
    main()
