"""A ceiling for the advisor: the policy of someone who knows the market's model and its hidden state today.

It reads what the advisor never may: the route's filing calendar, each departure's current market move, and
every trip's fare at its coming filings as a function of the filed level, all from the simulator itself; it
knows the moves are lognormal with the market's volatility. Only the future moves and sales are unknown to it.
Between filings, without a sale, a fare never falls (booking classes close, advance-purchase steps pass), so
at each collection it compares buying now with the expected cost of waiting for the next filing and playing
on optimally from there: backward induction over the trip's remaining filings, the moves integrated by
sampling. It buys when the fare now is at most that expected cost times (1 + margin); a positive margin
trades savings for fewer upsets.
"""
import numpy as np
import pandas as pd

from fare_assets.market.pricing import Market, MarketParams, Query

MOVE_SAMPLES = 4000
# Options per search, for the bench's collections and this policy alike: the count bounds the pairs the market combines.
SOLUTIONS = 8


class _FixedLevelMarket(Market):
    """The market with the filed level set by the caller and no sale running: a fare as a function of the level."""

    def __init__(self, params: MarketParams, level: float) -> None:
        super().__init__(params)
        self.level = level

    def _filed_level(self, *_) -> float:
        return self.level

    def _sale_discount(self, *_) -> float:
        return 0.0


def _cheapest(market: Market, query: Query, at: pd.Timestamp) -> float:
    """The cheapest total for `query` at moment `at`, searched as the bench collects (SOLUTIONS options)."""
    return market.search(query, at.to_pydatetime(), SOLUTIONS)[0].total_cents / 100


def _follow(trip: pd.DataFrame, market: Market, at_level: dict[float, Market], moves: np.ndarray, margin: float) -> dict:
    """The informed policy through one trip's collections (sorted by time): what it pays and when."""
    first = trip.iloc[0]
    query = Query(first["origin"], first["destination"], first["depart_date"].date(),
                  None if pd.isna(first["return_date"]) else first["return_date"].date(),
                  int(first["adults"]), int(first["children"]), first["cabin"])
    moments = list(trip["collected_at"])
    fares = trip["fare"].to_numpy()
    filings = [market.filing(query.origin, query.destination, moment.date()) for moment in moments]
    starts = [i for i in range(len(moments)) if i == 0 or filings[i][0] != filings[i - 1][0]]
    # Expected cost of reaching the start of filing period e (before its move is drawn), from the last one back;
    # past the last period there is nothing left to wait for.
    reaching = [np.inf] * (len(starts) + 1)
    for period in range(len(starts) - 1, 0, -1):
        start = starts[period]
        # Fares are linear in the filed level (fare components scale with it, taxes do not).
        low, high = (_cheapest(at_level[level], query, moments[start]) for level in (1.0, 2.0))
        curve = market.sweet_spot_curve((query.depart_date - filings[start][1]).days)
        fares_then = (high - low) * curve * moves + (2 * low - high)
        reaching[period] = float(np.minimum(fares_then, reaching[period + 1]).mean())
    period_of = np.searchsorted(starts, np.arange(len(moments)), side="right") - 1
    bought = next(i for i in range(len(moments))
                  if i == len(moments) - 1 or fares[i] <= reaching[period_of[i] + 1] * (1 + margin))
    return {"price_paid": fares[bought], "days_ahead": trip["days_ahead"].iloc[bought], "currency": first["currency"],
            "first_fare": fares[0], "min_fare": fares.min()}


def informed_purchases(test_features: pd.DataFrame, params: MarketParams, margin: float = 0.0) -> pd.DataFrame:
    """The informed policy through every trip of `test_features`, one row per trip_id as purchases() gives them."""
    market = Market(params)
    at_level = {level: _FixedLevelMarket(params, level) for level in (1.0, 2.0)}
    moves = np.exp(params.volatility * np.random.default_rng(0).standard_normal(MOVE_SAMPLES))
    ordered = test_features.sort_values(["trip_id", "collected_at"], kind="stable")
    followed = {trip_id: _follow(trip, market, at_level, moves, margin) for trip_id, trip in ordered.groupby("trip_id", sort=False)}
    return pd.DataFrame.from_dict(followed, orient="index").rename_axis("trip_id")
