"""The cheapest fare over collection time as SVG geometry, drawn server-side so the page needs no script (pure)."""
import datetime as dt
from decimal import Decimal

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 12, 30


def price_chart(points: list[tuple[dt.datetime, Decimal]]) -> dict | None:
    """Coordinates for a line of (collected_at, cheapest total), with three price ticks; None when empty."""
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

    dots = [{"x": x(when), "y": y(price), "price": price, "at": moment}
            for when, price, (moment, _) in zip(times, prices, points)]
    ticks = [{"y": y(price), "label": f"{price:,.0f}"} for price in (low + padding, (low + high) / 2, high - padding)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": HEIGHT - BOTTOM, "line": " ".join(f"{dot['x']},{dot['y']}" for dot in dots),
            "dots": dots, "ticks": ticks, "first": points[0][0], "last": points[-1][0],
            # The first lowest and highest collections, for the chart's text equivalent.
            "lowest": min(dots, key=lambda dot: dot["price"]), "highest": max(dots, key=lambda dot: dot["price"])}
