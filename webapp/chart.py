"""The cheapest fare over collection time as SVG geometry, drawn server-side so the page needs no script (pure)."""
import datetime as dt
from decimal import Decimal

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 12, 30
# A dot is a hover target titled with its fare: closer than this (in the plot's units) they overlap.
DOT_SPACING = 6


def price_chart(points: list[tuple[dt.datetime, Decimal]]) -> dict | None:
    """Coordinates for a line of (collected_at, cheapest total), with three price ticks; None when empty.

    A trip watched for weeks has thousands of collections (48 sweeps a day): drawn each with its dot, they made a
    365 kB page of overlapping circles. The line keeps each pixel column's lowest and highest collection, which draws
    the same; where the dots do not fit DOT_SPACING apart, they keep each DOT_SPACING's lowest and highest. Both keep
    the latest.
    """
    if not points:
        return None
    times = [moment.timestamp() for moment, _ in points]
    prices = [float(price) for _, price in points]
    low, high = min(prices), max(prices)
    # A flat series still needs a visible band around its one price.
    padding = (high - low) * 0.1 or max(high * 0.05, 1.0)
    low, high = low - padding, high + padding
    start, end = min(times), max(times)
    span = (end - start) or 1.0
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(when: float) -> float:
        return round(LEFT + (when - start) / span * plot_width if end > start else LEFT + plot_width / 2, 1)

    def y(price: float) -> float:
        return round(TOP + (high - price) / (high - low) * plot_height, 1)

    every = [{"x": x(when), "y": y(price), "price": price, "at": moment}
             for when, price, (moment, _) in zip(times, prices, points)]
    # The first lowest and highest collections, for the chart's text equivalent.
    lowest, highest = min(every, key=lambda dot: dot["price"]), max(every, key=lambda dot: dot["price"])
    dots = every if len(every) * DOT_SPACING <= plot_width else _extremes_per(every, DOT_SPACING)
    ticks = _ticks([low + padding, (low + high) / 2, high - padding], y)
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": HEIGHT - BOTTOM, "line": " ".join(f"{dot['x']},{dot['y']}" for dot in _extremes_per(every, 1)),
            "dots": dots, "ticks": ticks, "first": points[0][0], "last": points[-1][0],
            "collections": len(every), "lowest": lowest, "highest": highest, "latest": every[-1]}


def _ticks(prices: list[float], y) -> list[dict]:
    """A tick per distinct label: whole units, or cents where whole units would label two gridlines alike."""
    # A fare moving by less than a unit (100.20 to 100.80) would read "100, 100, 101"; a flat one has one price.
    whole, cents = [f"{price:,.0f}" for price in prices], [f"{price:,.2f}" for price in prices]
    labels = whole if len(set(whole)) == len(set(cents)) else cents
    seen = {}
    for price, label in zip(prices, labels):
        seen.setdefault(label, {"y": y(price), "label": label})
    return list(seen.values())


def _extremes_per(dots: list[dict], width: float) -> list[dict]:
    """Per band of `width` along x, its lowest and highest price (the first of each), in time order, and the last."""
    bands: dict[int, list[dict]] = {}
    for dot in dots:
        bands.setdefault(int((dot["x"] - LEFT) // width), []).append(dot)
    kept = []
    for band in bands.values():
        extremes = {id(dot): dot for dot in (min(band, key=lambda dot: dot["price"]),
                                              max(band, key=lambda dot: dot["price"]))}
        kept.extend(dot for dot in band if id(dot) in extremes)
    return kept if kept[-1] is dots[-1] else [*kept, dots[-1]]
