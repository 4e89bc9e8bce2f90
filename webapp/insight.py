"""Is today's cheapest fare low, typical or high for this trip? (pure)"""
import statistics
from decimal import Decimal

from webapp.formatting import provider_label

# Fewer reference prices than this say little about what is typical.
MIN_REFERENCE_PRICES = 5


def price_insight(current: Decimal, currency: str, own_history: list[Decimal], similar_trips: list[Decimal]) -> dict:
    """Place `current` (in `currency`, as the references) among the trip's own earlier cheapest fares and nearby dates'
    latest cheapest fares.

    Low is below the reference's lower quartile, high above its upper quartile: fares are repriced about once a
    day while collections come every 30 minutes, so a history is long runs of equal prices, and a fare equal to
    them is typical.
    """
    reference = [float(price) for price in [*own_history, *similar_trips]]
    facts = {"compared_with": {"own_collections": len(own_history), "similar_trips": len(similar_trips)}}
    if len(reference) < MIN_REFERENCE_PRICES:
        return {"level": "unknown", **facts, "typical_low": None, "typical_high": None, "percentile": None,
                "text": (f"Not enough history yet to judge this price ({len(reference)} reference fares; "
                         f"{MIN_REFERENCE_PRICES} needed).")}
    lower, _, upper = statistics.quantiles(reference, n=4, method="inclusive")
    value = float(current)
    percentile = round(100 * sum(price < value for price in reference) / len(reference))
    dearer = round(100 * sum(price > value for price in reference) / len(reference))
    level = "low" if value < lower else "high" if value > upper else "typical"
    seen = f"{len(reference)} fares seen for it and for nearby dates"
    # Each level says the share that makes it so: "cheaper than 0%" of a high fare read as a contradiction.
    if level == "low":
        placed = f"cheaper than {dearer}% of {seen}"
    elif level == "high":
        placed = f"dearer than {percentile}% of {seen}"
    else:
        same = round(100 * sum(price == value for price in reference) / len(reference))
        shares = [f"{share}% {word}" for share, word in
                  ((percentile, "cheaper"), (same, "the same"), (dearer, "dearer")) if share]
        placed = f"of {seen}, {', '.join(shares)}"
    return {"level": level, **facts, "typical_low": round(lower, 2), "typical_high": round(upper, 2),
            "percentile": percentile,
            "text": f"Today's cheapest fare is {level} for this trip: {placed} "
                    f"({_typical_range(lower, upper, currency)})."}


def _typical_range(low: float, high: float, currency: str) -> str:
    return f"typical range {low:,.2f}–{high:,.2f} {currency}"


def providers_that_may_undercut(current: Decimal, currency: str, absent_providers: list[dict]) -> list[str]:
    """The providers missing from a collection whose newest quote was below its cheapest `current`, or in another
    currency (so no one can tell): with them in it, its cheapest might have been lower."""
    return sorted({row["provider"] for row in absent_providers
                   if row["currency"] != currency or row["total_amount"] < current})


def not_judged(insight: dict, providers: list[str], currency: str) -> dict:
    """`insight` withheld: the judged collection misses `providers`, which may have undercut its cheapest fare.

    Judged, its cheapest would read as high on a sweep where only the usually cheaper provider's call failed. A
    missing provider whose last quote was dearer cannot have lowered the cheapest, so it does not withhold it.
    """
    if insight["level"] == "unknown":
        return insight
    names = " and ".join(provider_label(provider) for provider in providers)
    verb = "is" if len(providers) == 1 else "are"
    return {**insight, "level": "incomplete", "percentile": None,
            "text": (f"Not judged: {names} {verb} missing from this collection, and may have quoted it cheaper, so "
                     f"today's cheapest may be dearer than the market "
                     f"({_typical_range(insight['typical_low'], insight['typical_high'], currency)}).")}


def departed_before_judged(insight: dict) -> dict:
    """`insight` withheld: every option of the collection has left (the trip's departure day), so none can be bought."""
    return {**insight, "level": "departed", "percentile": None,
            "text": "Not judged: every flight of the newest collection has already left, so none of its fares can be "
                    "bought."}


def judged_after_departures(insight: dict) -> dict:
    """`insight` on the cheapest option still to leave, saying that cheaper ones have left."""
    return {**insight, "text": insight["text"] + " It judges the cheapest flight still to leave: cheaper ones have "
                                                 "already left."}


def too_old_to_judge(insight: dict, days: int) -> dict:
    """`insight` withheld: the judged collection is more than `days` days old, so "today's cheapest" is not today's
    (the provider keeps failing, or collection stopped), and the market may have moved since."""
    return {**insight, "level": "stale", "percentile": None,
            "text": (f"Not judged: the newest fares were collected more than {days} day{'' if days == 1 else 's'} "
                     "ago, and the market may have moved since.")}
