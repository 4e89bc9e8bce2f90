"""Everything the fare page says about one trip, assembled once for the HTML page and the JSON API."""
import dataclasses
import datetime as dt

import psycopg

from webapp import queries
from webapp.chart import price_chart
from webapp.formatting import first_still_to_leave
from webapp.insight import (departed_before_judged, judged_after_departures, not_judged, price_insight,
                            providers_that_may_undercut, too_old_to_judge)
from webapp.validation import Trip

# Unknown party sizes are looked up as the most common search: one adult in economy.
DEFAULT_PARTY = (1, 0, "COACH")


def shown_trip(trip: Trip, collection: dict | None) -> Trip:
    """The trip with the party and cabin the page describes: the shown collection's (queries.newest_collection), else
    those asked for.

    History, date grid and advice then read that party and cabin only, so a trip watched in two cabins (or
    for two parties) never mixes their fares on one page.
    """
    if collection is None:
        return trip
    return dataclasses.replace(trip, adults=collection["adults"], children=collection["children"],
                               cabin=collection["cabin"], exact_party=True)


def _no_advice(action: str, reason: str) -> dict:
    return {"action": action, "drop_probability": None, "confidence": None, "expected_saving": None,
            "currency": None, "reason": reason, "based_on_collection": None, "up_to_date": None,
            "model_version": None}


# The page never runs the advisor: advice comes from the trip_advice serving table, which the pipeline
# refreshes after each load and retrain (fare_assets/show). A trip without a row there (nobody watches
# it, or the first refresh has not run) is shown without advice rather than computed on demand: one
# computation costs ~80 ms of CPU under the GIL, which would stall every other request of the worker.
NO_ADVICE_YET = "no advice has been computed for this trip's fares yet; fares are shown without advice"


def advice_for(conn: psycopg.Connection, trip: Trip, collection: dict | None) -> dict:
    """Buy now or wait for the shown collection's trip and party, or why there is no advice."""
    if collection is None:
        return _no_advice("no_fares", "no fares collected for this trip yet")
    if collection["currency"] is None:
        # The advisor's last advice was on fares no longer on sale.
        return _no_advice("no_fares", "no provider had a fare on sale for this trip at its newest collection")
    row = queries.trip_advice(conn, shown_trip(trip, collection))
    if row is None:
        return _no_advice("unavailable", NO_ADVICE_YET)
    # Advice for an older collection is still shown, saying so, until the next refresh catches up.
    advice = {"action": row["action"], "drop_probability": row["drop_probability"], "confidence": row["confidence"],
              "expected_saving": row["expected_saving"], "currency": row["currency"], "reason": row["reason"],
              "based_on_collection": row["collected_at"], "up_to_date": row["collected_at"] >= collection["collected_at"],
              "model_version": row["model_version"]}
    withheld = {"drop_probability": None, "confidence": None, "expected_saving": None, "currency": None}
    if dt.datetime.now(dt.timezone.utc) - collection["collected_at"] > queries.ADVICE_FRESH_FOR:
        # Withheld (its basis stays in the API's answer): there are just no recent fares to advise on.
        return {**advice, **withheld, "action": "stale",
                "reason": f"the newest fares were collected more than {queries.ADVICE_FRESH_FOR.days} day ago; advice "
                          "resumes with the next collection"}
    if collection["collected_at"] - row["collected_at"] > queries.ADVICE_FRESH_FOR:
        # The advisor has not been refreshed through a day of newer fares (its model missing or corrupt, the refresh
        # failing, a provider missing from every sweep since): its last word is about a market that has moved.
        return {**advice, **withheld, "action": "unavailable",
                "reason": f"the last advice was given on fares collected more than {queries.ADVICE_FRESH_FOR.days} "
                          "day before the newest; fares are shown without advice until it is given again"}
    return advice


def date_grid_for(conn: psycopg.Connection, trip: Trip, collection: dict | None, today: dt.date) -> dict:
    """The ±3-day grid: collected cheapest fares, and the fare model's precomputed ones where nothing was collected."""
    shown = shown_trip(trip, collection)
    # A shown collection that did not record its party or cabin (another producer's search) is no party the fare
    # model predicts for: one adult's economy prediction in its grid would read as its own fare.
    party_unrecorded = shown.exact_party and None in (shown.adults, shown.children, shown.cabin)
    party = None if party_unrecorded else (shown.adults or DEFAULT_PARTY[0], shown.children or DEFAULT_PARTY[1],
                                           shown.cabin or DEFAULT_PARTY[2])
    if collection is None:
        # A trip never collected has no party of its own: its grid reads the predictions' party for collected cells
        # too, so it never shows another party's or cabin's fares.
        shown = dataclasses.replace(shown, adults=party[0], children=party[1], cabin=party[2])
    currency = collection and collection["currency"]
    cells = queries.date_grid(conn, shown, party, today, currency=currency)
    collected = [cell for cell in cells if cell["total_amount"] is not None]
    if currency is None and len({cell["currency"] for cell in collected}) > 1:
        # A trip never collected (or whose newest collection sold nothing) has no currency of its own: its grid takes
        # that of its newest collected neighbour
        # (the first alphabetically among equals), as a trip's page takes its newest collection's, so the grid
        # never ranks amounts in two currencies against each other.
        newest = min(collected, key=lambda cell: (-cell["collected_at"].timestamp(), cell["currency"]))
        currency = newest["currency"]
        cells = queries.date_grid(conn, shown, party, today, currency=currency)
    # The grid's caption names it; its predictions are labelled with it too (the fare model has no currency: README,
    # "Known gaps").
    currency = currency or next((cell["currency"] for cell in cells if cell["total_amount"] is not None), None)
    uncollected = [cell for cell in cells if cell["collected_at"] is None]
    departs = sorted({cell["depart_date"] for cell in cells})
    returns = sorted({cell["return_date"] for cell in cells})
    by_pair = {(cell["depart_date"], cell["return_date"]): cell for cell in cells}
    shown = [cell["total_amount"] or cell["predicted_amount"] for cell in cells]
    cheapest = min((amount for amount in shown if amount is not None), default=None)
    # "Available" as the page means it: every date never collected has a prediction to show.
    predicted = all(cell["predicted_amount"] is not None for cell in uncollected)
    # A pair whose newest collection found nothing on sale shows as such, not as an older fare or a prediction.
    sold_out = any(cell["collected_at"] is not None and cell["total_amount"] is None for cell in cells)
    return {"cells": cells, "departs": departs, "returns": returns, "by_pair": by_pair, "cheapest": cheapest,
            "model_available": predicted, "party_unrecorded": party_unrecorded, "sold_out": sold_out,
            "currency": currency}


def price_history(conn: psycopg.Connection, trip: Trip, collection: dict | None) -> dict:
    """The shown party's collections in the shown currency, oldest first, that no provider was missing from
    (`points`), and how many were (`left_out`)."""
    # A collection a provider was missing from is the other providers' cheapest: drawn, it reads as a rise and a drop
    # when the missing one is usually the cheaper, and it would flatter today's fare in the insight. The advisor's
    # observations leave it out by the same rule.
    shown = shown_trip(trip, collection)
    currency = collection and collection["currency"]
    if collection and currency is None:
        # A collection that sold nothing has no currency: the chart keeps that of the party's newest quote, so the
        # traveller still sees what the trip cost before it sold out.
        quoted = queries.latest_collection(conn, shown, quoted=True)
        currency = quoted and quoted["currency"]
    rows = queries.trip_history(conn, shown, currency) if currency else []
    points = [row for row in rows if not row["provider_absent"]]
    return {"points": points, "left_out": len(rows) - len(points), "currency": currency}


def insight_for(conn: psycopg.Connection, trip: Trip, options: list[dict], grid: dict,
                history: list[dict] | None = None, absent_providers: list[dict] | None = None) -> dict:
    """Today's cheapest against the trip's own earlier collections and the nearby dates' collected fares, unless a
    provider missing from today's collection may have undercut it."""
    if history is None:
        history = price_history(conn, trip, options[0])["points"]
    if absent_providers is None:
        absent_providers = queries.provider_quotes(conn, trip, options[0])["absent_providers"]
    asked = (trip.depart_date, trip.return_date)
    # Nearby dates' fares collected over a day ago (no longer watched, or their provider failing) are not the market's
    # now: they are no reference for today's.
    fresh_since = queries.fresh_since()
    similar = [cell["total_amount"] for pair, cell in grid["by_pair"].items()
               if pair != asked and cell["total_amount"] is not None and cell["collected_at"] >= fresh_since]
    # The shown collection is the fare being judged, not a reference for it. On the departure day its cheapest flight
    # may have left since it was collected: the cheapest still to leave is the fare a traveller can buy, as the alerts
    # judge, among all the collection's options when every one shown has left.
    now = dt.datetime.now(dt.timezone.utc)
    current = first_still_to_leave(options, now)
    if current is None and options[0]["options_in_collection"] > len(options):
        current = first_still_to_leave(
            queries.cheapest_options_now(conn, shown_trip(trip, options[0]), limit=None,
                                         currency=options[0]["currency"]), now)
    judged = current or options[0]
    earlier = [row["cheapest_total"] for row in history if row["collected_at"] < judged["collected_at"]]
    insight = price_insight(judged["total_amount"], judged["currency"], earlier, similar)
    if current is None:
        return departed_before_judged(insight)
    if current is not options[0]:
        insight = judged_after_departures(insight)
    if current["collected_at"] < fresh_since:
        # As the advice: a fare this old is no longer "today's" (a stored page this old is rendered again, saying so).
        return too_old_to_judge(insight, queries.ADVICE_FRESH_FOR.days)
    missing = providers_that_may_undercut(current["total_amount"], current["currency"], absent_providers)
    return not_judged(insight, missing, current["currency"]) if missing else insight


def trip_view(conn: psycopg.Connection, trip: Trip, today: dt.date) -> dict:
    """The cheapest options now, the price insight, advice, date grid and price history of one trip."""
    found = queries.fares_for_trip(conn, trip, today)
    options, collection = found["options"], found["collection"]
    shown = shown_trip(trip, collection)
    history = price_history(conn, trip, collection)
    grid = date_grid_for(conn, trip, collection, today)
    insight = (insight_for(conn, trip, options, grid, history["points"], found["absent_providers"]) if options
               else None)
    # The other parties and cabins collected for these dates, so a traveller shown one can switch.
    parties = [party for party in (queries.parties_collected(conn, trip, today) if collection else [])
               if (party["adults"], party["children"], party["cabin"]) != (shown.adults, shown.children, shown.cabin)]
    return {**found, "history": history, "grid": grid, "insight": insight, "shown": shown, "other_parties": parties,
            "advice": advice_for(conn, trip, collection),
            "chart": price_chart([(row["collected_at"], row["cheapest_total"]) for row in history["points"]])}
