"""The buy/wait advisor against its baselines on two simulated markets (the table of Etzioni et al., KDD 2003).

Each market profile is watched like the watchlist watches it: round trips on a dozen routes, departing every
DEPARTURE_EVERY_DAYS days over a year, each collected once a purchase day (the market reprices once a UTC day)
from WATCH_DAYS_AHEAD days ahead until the day before departure. Quotes come from the simulator in process,
the answers its HTTP server gives; HTTP, Spark and the warehouse are measured by the other benches. Trips are
split by departure date: the advisor trains on the earliest, picks its threshold on the next, and is judged
on the latest, which it never saw. It reads only the quotes, never the market's parameters; the "alt"
profile (seed, volatility, advance-purchase steps, booking curve) was never used to tune it.
Observations are cached under BENCH_DATA_DIR by profile. The models train on FARES_MODEL_ENGINE (scikit-learn
unless told; `spark` computes the same features as Spark jobs and trains the same model family on Spark
MLlib, local[*]).

Beside the baselines, two rows show what is attainable at all: `informed` knows the market's model and its
hidden state today (informed_policy.py), only the future moves and sales are hidden from it; `informed_2pct`
is the same policy waiting only for an expected saving of 2% or more (fewer upsets).
"""
import datetime as dt
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS  # noqa: E402
from informed_policy import SOLUTIONS, informed_purchases  # noqa: E402

from fare_assets.market.pricing import PROFILES, Market, Query  # noqa: E402
from fare_assets.settings import load_settings  # noqa: E402
from fare_assets.synthesizing.advisor import THRESHOLD_CANDIDATES, chosen_threshold  # noqa: E402
from fare_assets.synthesizing.evaluation import (BASELINES, HAMLET_SHARE_OF_ORACLE_SAVING,  # noqa: E402
                                                 evaluate_advisor, evaluate_policies, threshold_tradeoff)
from fare_assets.synthesizing.estimators import SKLEARN  # noqa: E402
from fare_assets.synthesizing.features import airport_countries  # noqa: E402
from fare_assets.synthesizing.spark_features import to_pandas  # noqa: E402

DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", Path(tempfile.gettempdir()) / "fares-bench-advisor"))
ROUTES = (
    ("SFO", "JFK"), ("BOS", "LAX"), ("ORD", "MIA"), ("SEA", "DEN"), ("ATL", "DFW"), ("MIA", "LGA"),
    ("LHR", "JFK"), ("ORD", "LHR"), ("DEN", "CDG"), ("CDG", "MAD"), ("FRA", "BCN"), ("AMS", "LIS"),
)
NIGHTS = (3, 7)
FIRST_DEPARTURE = dt.date(2027, 1, 2)
DEPARTURES = 90
DEPARTURE_EVERY_DAYS = 4
WATCH_DAYS_AHEAD = 63
COLLECTION_HOUR_UTC = 12
# The informed policy's margins: risk-neutral, and waiting only for an expected saving of 2% or more.
INFORMED_MARGINS = {"informed": 0.0, "informed_2pct": 0.02}
# The trade-off table's thresholds, and the upset target.
TRADEOFF_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(9))
MAX_UPSET_RATE = 0.05


def observation_row(market: Market, query: Query, at: dt.datetime) -> dict | None:
    """One collection of one trip as the warehouse's observations hold it (None when the market has no option)."""
    options = market.search(query, at, SOLUTIONS)
    if not options:
        return None
    carriers = {segment.flight.carrier for option in options for part in option.slices for segment in part.segments}
    countries = airport_countries()
    return {
        "origin": query.origin, "destination": query.destination, "depart_date": query.depart_date,
        "return_date": query.return_date, "adults": query.adults, "children": query.children, "cabin": query.cabin,
        "collected_at": at, "cheapest_total": min(option.total_cents for option in options) / 100,
        "currency": options[0].currency, "option_count": len(options), "carrier_count": len(carriers),
        "nonstop_share": sum(all(len(part.segments) == 1 for part in option.slices) for option in options) / len(options),
        "national": countries[query.origin] == countries[query.destination],
    }


def observation_frame(rows: list[dict]) -> pd.DataFrame:
    """observation_row's rows as the warehouse reader types them."""
    frame = pd.DataFrame(rows)
    frame["depart_date"] = pd.to_datetime(frame["depart_date"])
    frame["return_date"] = pd.to_datetime(frame["return_date"])
    frame["collected_at"] = pd.to_datetime(frame["collected_at"], utc=True)
    return frame


def _route_observations(profile: str, origin: str, destination: str) -> list[dict]:
    """Every daily collection of every watched trip on one route (one row per collection, as the warehouse has)."""
    market = Market(PROFILES[profile])
    rows = []
    for departure in range(DEPARTURES):
        depart = FIRST_DEPARTURE + dt.timedelta(days=departure * DEPARTURE_EVERY_DAYS)
        for nights in NIGHTS:
            query = Query(origin, destination, depart, depart + dt.timedelta(days=nights), 1, 0, "COACH")
            for ahead in range(WATCH_DAYS_AHEAD, 0, -1):
                at = dt.datetime.combine(depart - dt.timedelta(days=ahead), dt.time(COLLECTION_HOUR_UTC), dt.timezone.utc)
                row = observation_row(market, query, at)
                if row is not None:
                    rows.append(row)
    return rows


def observations(profile: str) -> pd.DataFrame:
    """The profile's collected observations, simulated once and cached."""
    cache = DATA_DIR / f"{profile}-{DEPARTURES}x{DEPARTURE_EVERY_DAYS}-{WATCH_DAYS_AHEAD}d.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        parts = pool.map(_route_observations, [profile] * len(ROUTES), *zip(*ROUTES))
        frame = observation_frame([row for part in parts for row in part])
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(cache)
    return frame


def evaluate(profile: str, engine: str) -> dict:
    """Train, validate and test the advisor on one market; print and return its policy table."""
    started = time.perf_counter()
    frame = observations(profile)
    result = evaluate_advisor(frame, engine)
    test = _pandas(result.split.test)
    informed = {name: informed_purchases(test, PROFILES[profile], margin)
                for name, margin in INFORMED_MARGINS.items()}
    table, _ = evaluate_policies({**result.judgement.outcomes, **informed}, result.advisor.threshold)
    print(f"\n{profile} market: {frame['depart_date'].nunique()} departures, {len(frame):,} observations, "
          f"test trips {int(table.loc['advisor', 'trips'])} departing from {result.split.test_from.date()}, "
          f"threshold {result.advisor.threshold:.2%} (chosen on validation), {engine} engine, "
          f"{time.perf_counter() - started:.0f} s")
    shown = table[["share_of_oracle_saving", "mean_saving", "mean_saving_share", "upset_rate", "mean_upset_excess",
                   "mean_days_ahead_at_purchase"]]
    print(shown.to_string(float_format=lambda value: f"{value:,.3f}"))
    baselines = table.loc[list(BASELINES), "mean_saving"]
    beats_baselines = bool((table.loc["advisor", "mean_saving"] > baselines).all())
    print(f"advisor share of oracle savings {table.loc['advisor', 'share_of_oracle_saving']:.1%} "
          f"(Hamlet: {HAMLET_SHARE_OF_ORACLE_SAVING:.1%}); upset rate {table.loc['advisor', 'upset_rate']:.1%}; "
          f"ahead of every baseline: {beats_baselines}")
    tradeoff = print_tradeoff(result, test)
    brier, bins = result.judgement.brier_score, result.judgement.calibration
    print(f"drop probability on the test rows (calibrated on validation), Brier score {brier:.3f}:")
    print(bins.to_string(index=False, float_format=lambda value: f"{value:.2f}"))
    return {"table": table.reset_index().to_dict(orient="records"), "beats_baselines": beats_baselines,
            "threshold": result.advisor.threshold, "brier": brier, "calibration": bins.to_dict(orient="records"),
            "tradeoff": tradeoff}


def _pandas(features) -> pd.DataFrame:
    """Features as pandas: the MLlib engine keeps its split in Spark, the informed policy and the trade-off read pandas."""
    return features if isinstance(features, pd.DataFrame) else to_pandas(features)


def print_tradeoff(result, test: pd.DataFrame) -> dict:
    """The advisor's models at other thresholds, on validation and test; and the threshold it would choose with
    FARES_ADVISOR_MAX_UPSET_RATE=MAX_UPSET_RATE (the fewest upsets if none meets it), judged on test."""
    validation, advisor = _pandas(result.split.validation), result.advisor
    # Every shown threshold and the advisor's own lie on the candidates: each split is followed once per candidate.
    on_validation, on_test = (threshold_tradeoff(features, advisor, THRESHOLD_CANDIDATES)
                              for features in (validation, test))
    shown = sorted({*TRADEOFF_THRESHOLDS, advisor.threshold})
    table = on_validation.loc[shown].join(on_test.loc[shown], lsuffix="_validation", rsuffix="_test")
    print("the advisor's models at other thresholds (waiting only for a larger promised saving):")
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))
    # What the advisor would have chosen with FARES_ADVISOR_MAX_UPSET_RATE set to the upset target.
    capped = chosen_threshold(advisor.threshold_scores, advisor.threshold_upset_rates, MAX_UPSET_RATE)
    validation_upsets = advisor.threshold_upset_rates[capped]
    judged = on_test.loc[capped]
    print(f"with FARES_ADVISOR_MAX_UPSET_RATE={MAX_UPSET_RATE} the threshold is {capped:.2%} "
          f"({validation_upsets:.1%} upsets on validation): on test {judged['share_of_oracle_saving']:.1%} "
          f"of the oracle's savings with {judged['upset_rate']:.1%} upsets")
    return {"table": table.reset_index().to_dict(orient="records"), "capped_threshold": capped,
            "capped_validation_upset_rate": validation_upsets, "capped_on_test": judged.to_dict()}


def main() -> None:
    engine = load_settings().model_engine
    results = {profile: evaluate(profile, engine) for profile in ("default", "alt")}
    RESULTS.mkdir(exist_ok=True)
    name = "advisor_evaluation" if engine == SKLEARN else f"advisor_evaluation_{engine}"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
