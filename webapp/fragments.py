"""The page's two largest repeated parts, the date grid's body and the chart's dots, built as one string each.

Through the template they were ~1,200 output pieces a view, each escaped and passed up three generator
levels (block, child, base): about half of a view's CPU. Here every value is a number, a date or a
validated IATA code, and the one value that comes from the request (the trip's codes) is escaped.
"""
import datetime as dt

from flask import url_for
from markupsafe import Markup, escape

from webapp.formatting import utc_time


def chart_dots(chart: dict) -> Markup:
    """One SVG circle per collection, titled with its cheapest fare and time."""
    return Markup("".join(
        f'<circle class="dot" cx="{dot["x"]}" cy="{dot["y"]}" r="3"><title>{dot["price"]:,.2f} at '
        f'{utc_time(dot["at"])}</title></circle>' for dot in chart["dots"]))


def _cell(trip, grid: dict, depart: dt.date, back: dt.date, link: str) -> str:
    cell = grid["by_pair"].get((depart, back))
    if cell is None:
        return '<td class="cell none">—</td>'
    collected, predicted = cell["total_amount"], cell["predicted_amount"]
    if collected is None and cell["collected_at"] is not None:
        return (f'<td class="cell sold-out" data-depart="{depart.isoformat()}" data-return="{back.isoformat()}">none'
                f'<span class="visually-hidden"> (nothing on sale when last collected)</span></td>')
    amount = collected if collected is not None else predicted
    source = "collected" if collected is not None else "predicted" if predicted is not None else "unknown"
    asked = (depart, back) == (trip.depart_date, trip.return_date)
    # Cells show whole units: two that read alike are both marked the cheapest, not one of two "250"s.
    cheapest = amount is not None and round(amount) == round(grid["cheapest"])
    marks = (" asked" if asked else "") + (" cheapest" if cheapest else "")
    # Colour, outline and the star mark the cells for the eye; these words say the same to a screen reader.
    spoken = ", ".join([*(["your dates"] if asked else []), *(["cheapest"] if cheapest else []),
                        *(["predicted, not collected"] if source == "predicted" else [])])
    said = f'<span class="visually-hidden"> ({spoken})</span>' if spoken else ""
    if amount is None:
        shown = '?<span class="visually-hidden"> (no fare known)</span>'
    else:
        star = '<span class="mark" title="predicted" aria-hidden="true">*</span>' if collected is None else ""
        shown = (f'<a href="{link}&amp;depart={depart.isoformat()}&amp;return={back.isoformat()}">'
                 f'{amount:,.0f}{said}</a>{star}')
    return (f'<td class="cell {source}{marks}" data-depart="{depart.isoformat()}" data-return="{back.isoformat()}">'
            f'{shown}</td>')


def grid_rows(trip, grid: dict) -> Markup:
    """The grid's body: a row per departure, a cell per return, collected, nothing on sale, predicted or unknown."""
    # One url_for and the dates appended per cell: 49 url_for calls would cost more than the queries. Not a bare
    # query string: the page is also shown at /alerts (a refused alert), where it would resolve to that URL.
    # The grid shows the page's party and cabin, so its links ask for them too.
    party = "".join(f"&amp;{name}={escape(value)}" for name, value in trip.as_params().items()
                    if name in ("adults", "children", "cabin"))
    link = (f"{escape(url_for('fares.trip_fares'))}?origin={escape(trip.origin)}"
            f"&amp;destination={escape(trip.destination)}{party}")
    return Markup("".join(
        f'<tr><th scope="row">{depart.strftime("%a %d %b")}</th>'
        + "".join(_cell(trip, grid, depart, back, link) for back in grid["returns"]) + "</tr>"
        for depart in grid["departs"]))


def init_app(app) -> None:
    """Make the fragments callable from templates."""
    for builder in (grid_rows, chart_dots):
        app.add_template_global(builder)
