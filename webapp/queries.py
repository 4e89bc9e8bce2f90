"""The fare page's SQL, one function per question; every value is a bound parameter.

A trip is served from whichever of the two warehouse tables holds it, so each question runs
the same statement on both tables and combines them with UNION ALL; each branch can use the
(origin, destination, depart_date, return_date, collected_at DESC) index.
"""
import datetime as dt

import psycopg
from psycopg import sql

from fare_assets.local_dates import earliest_today, today_in_zones
from fare_assets.show.serving import GRID_DAYS
from fare_assets.storing.warehouse import ABSENT_PROVIDER_WINDOW, FARE_TABLES, absent_until_sql, expected_until_sql
from fare_assets.streaming.watchlist import CABINS
from webapp.validation import Trip

# The page lists this many of a collection's options; the full count is reported alongside.
OPTIONS_SHOWN = 20
# How many other collected trips an empty result suggests.
SUGGESTIONS_SHOWN = 12

_TRIP_MATCH = """
    origin = %(origin)s AND destination = %(destination)s
    AND depart_date = %(depart_date)s AND return_date = %(return_date)s"""
# The party and cabin asked for, where a None matches any; or, for a shown collection's (exact_party), where a None
# matches a search that did not record it (another producer's), so its page never mixes in every party's fares.
_PARTY_MATCH = "".join(f"""
    AND ({column} = %({column})s::{kind} OR %({column})s::{kind} IS NULL AND ({column} IS NULL OR NOT %(exact_party)s))"""
                       for column, kind in (("adults", "int"), ("children", "int"), ("cabin", "text")))

# The page's currency, when it has one: amounts in two currencies are never ranked against each other.
_CURRENCY_MATCH = """
      AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)"""

# Cabins in the order of the watchlist's CABINS (economy first), not alphabetically.
_CABIN_ORDER = "array_position(ARRAY[" + ", ".join(f"'{cabin}'" for cabin in CABINS) + "], cabin)"

# Newest collection first. One sweep may collect the trip for several parties, cabins or currencies at one moment:
# economy, the smallest party and the first currency in alphabetical order come first, so the page shows the same
# one sweep after sweep. `currency` is the output column's (empty_answers has none: NULL, last).
_NEWEST_FIRST = "collected_at DESC, " + _CABIN_ORDER + ", adults, children, currency, search_id DESC"

# The trip's newest answer in one table (index scan, one row): its moment, party, cabin and currency (the newest in a
# currency when one is asked for: an alert reads the fares in its own). In empty_answers (no currency), an answer
# without options, which counts in every currency: a provider with nothing to sell sells nothing in any. At one
# moment a search with options comes first (NULLS LAST), so an answer without options is the newest collection only
# when no provider quoted the party then.
_NEWEST_ANSWER = """
  SELECT search_id, collected_at, adults, children, cabin, {currency} AS currency FROM {table}
  WHERE""" + _TRIP_MATCH + _PARTY_MATCH + """
    AND (%(currency)s::text IS NULL OR {currency} IS NULL OR {currency} = %(currency)s::text)
  ORDER BY """ + _NEWEST_FIRST + """
  LIMIT 1"""

# The newest of the tables' newest answers. A sweep that found nothing to sell is the trip's newest collection: the
# options quoted before it were not on sale then, so the page never shows them as the cheapest now, nor does an alert
# fire on them.
_LATEST_COLLECTION = """
  SELECT collected_at, adults, children, cabin, currency
  FROM ({newest}) AS newest_per_table
  ORDER BY """ + _NEWEST_FIRST + """
  LIMIT 1"""

# A collection is every search of one sweep's moment for the party and cabin, whichever provider answered it
# (the collector stamps a sweep's records with one collected_at), so a trip watched on two providers shows both;
# its amounts are in one currency, since totals in two currencies cannot be ranked without exchange rates.
_COLLECTION_OPTIONS = """
  SELECT {market} AS market, option_id, search_id, provider, fares.collected_at, origin, destination,
         depart_date, return_date, fares.adults, fares.children, fares.cabin, total_amount, fares.currency, carriers,
         stops_out, stops_back, duration_out_min, duration_back_min, depart_out_local, depart_back_local
  FROM {table} AS fares JOIN latest_collection
    ON fares.collected_at = latest_collection.collected_at
    AND (fares.adults, fares.children, fares.cabin)
        IS NOT DISTINCT FROM (latest_collection.adults, latest_collection.children, latest_collection.cabin)
    AND fares.currency = latest_collection.currency
  WHERE""" + _TRIP_MATCH

# Per upcoming trip (party and cabin) collected in the last day, the cheapest option of its latest collection:
# DISTINCT ON keeps the first row per trip, ordered newest collection first, then cheapest. A fare quoted before the
# trip's newest answer without options was not on sale after it, so a trip whose newest collection sold nothing has no
# row. A trip not collected for over a day (no longer watched, or its provider failing) has no fare to call "now"
# either, as its page gives no advice on it; and the bound keeps these reads to the last day's rows (the key's range),
# where every collection of every upcoming trip would grow to millions of rows at the live schedule's sweeps.
_CHEAPEST_LATEST_PER_TRIP = """
  SELECT DISTINCT ON (origin, destination, depart_date, return_date, adults, children, cabin)
         {market} AS market, origin, destination, depart_date, return_date, adults, children, cabin,
         collected_at, total_amount, currency
  FROM {table} AS fares
  WHERE depart_date >= %(today)s AND collected_at >= %(fresh_since)s {route_match}
    AND NOT EXISTS (
      SELECT 1 FROM empty_answers AS emptied
      WHERE (emptied.origin, emptied.destination, emptied.depart_date, emptied.return_date)
            = (fares.origin, fares.destination, fares.depart_date, fares.return_date)
        AND (emptied.adults, emptied.children, emptied.cabin) IS NOT DISTINCT FROM (fares.adults, fares.children, fares.cabin)
        AND emptied.collected_at > fares.collected_at)
  ORDER BY origin, destination, depart_date, return_date, adults, children, cabin, collected_at DESC, currency,
           total_amount"""

_ROUTE_MATCH = "AND origin = %(origin)s AND destination = %(destination)s"

# A search's options are split between the two tables by route (a US trip with an option via Canada is in
# both), so each table's newest cheapest row per trip is merged into one: the newest, then the cheapest.
_ONE_PER_TRIP = """
  SELECT DISTINCT ON (origin, destination, depart_date, return_date, adults, children, cabin) *
  FROM ({per_trip}) AS per_table
  ORDER BY origin, destination, depart_date, return_date, adults, children, cabin, collected_at DESC, currency,
           total_amount"""

# A route's cheapest fare is ranked in one currency, that of its newest collection (the first alphabetically when
# one sweep quoted two), as on the trip page: totals in two currencies cannot be ranked without exchange rates.
# The route's trip count and freshest collection still count every currency. Each trip's latest collection is taken
# across both tables, as on the trip page. A route is national when any of its options is (every airport in one
# country, so its ends are too): an option routed through another country lands in international_fares, and must
# neither list the route as international nor show that option's older fare as the route's cheapest now.
_WITH_ROUTE_MARKET = """
  SELECT *, CASE WHEN bool_or(market = 'national') OVER (PARTITION BY origin, destination)
                 THEN 'national' ELSE 'international' END AS route_market
  FROM ({per_table}) AS per_table"""
_ROUTE_SUMMARY = """
  SELECT DISTINCT ON (origin, destination)
         route_market AS market, origin, destination, depart_date, return_date, adults, children, cabin,
         total_amount, currency, fare_collected_at, freshest_collected_at, upcoming_trips
  FROM (
    SELECT per_trip.*, collected_at AS fare_collected_at,
           max(collected_at) OVER route AS freshest_collected_at,
           count(*) OVER route AS upcoming_trips,
           first_value(currency) OVER (route ORDER BY collected_at DESC, currency) AS route_currency
    FROM ({per_trip}) AS per_trip
    LEFT JOIN airports ON airports.code = per_trip.origin
    LEFT JOIN unnest(%(zones)s::text[], %(zone_todays)s::date[]) AS zone (name, today) ON zone.name = airports.tz
    WHERE per_trip.depart_date >= coalesce(zone.today, %(utc_today)s::date)
    WINDOW route AS (PARTITION BY per_trip.origin, per_trip.destination)
  ) AS per_trip_in_route
  WHERE currency = route_currency
  ORDER BY origin, destination, total_amount, depart_date, return_date"""


def _market(table: str) -> str:
    return table.removesuffix("_fares")


def _each_table(template: str, **parts: sql.Composable) -> sql.Composed:
    """`template` once per fare table, each in parentheses (so it may ORDER BY), joined with UNION ALL."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("(" + template + ")").format(table=sql.Identifier(table), market=sql.Literal(_market(table)), **parts)
        for table in FARE_TABLES
    )


# A template's `{currency}` and `{total}` columns: a fare row's, or none for an answer without options.
_QUOTED = {"currency": sql.SQL("currency"), "total": sql.SQL("total_amount")}
_NOTHING_QUOTED = {"currency": sql.SQL("NULL::text"), "total": sql.SQL("NULL::numeric")}


def _with_empty_answers(quoted: sql.Composable, template: str) -> sql.Composed:
    """`quoted` (rows of `template` that quoted fares) and, as rows without currency or total, `template` over
    `empty_answers`: a provider that answered with no option was not missing from its collection."""
    empty = sql.SQL("(" + template + ")").format(table=sql.Identifier("empty_answers"), **_NOTHING_QUOTED)
    return sql.SQL(" UNION ALL ").join([quoted, empty])


def _answer_rows(template: str) -> sql.Composed:
    """`template` over both fare tables and the empty answers."""
    return _with_empty_answers(_each_table(template, **_QUOTED), template)


def _summarised_answers(template: str) -> sql.Composed:
    """`template` over each answer's summary (its cheapest for `{total}`) and the empty answers: one row per provider
    and sweep instead of one per option."""
    summaries = sql.SQL("(" + template + ")").format(table=sql.Identifier("answer_summaries"),
                                                     currency=sql.SQL("currency"), total=sql.SQL("cheapest_total"))
    return _with_empty_answers(summaries, template)


def _over_answers(conn: psycopg.Connection, query: str, template: str, params: dict) -> list[dict]:
    """`query` over `template`'s rows of the answers' summaries; of the option rows on a warehouse upgraded from before
    the summaries, until its next load (or `make run`) creates them, which the page's role cannot do (the connection
    is in autocommit, so the failed statement leaves nothing aborted)."""
    try:
        return conn.execute(sql.SQL(query).format(rows=_summarised_answers(template)), params).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
        return conn.execute(sql.SQL(query).format(rows=_answer_rows(template)), params).fetchall()


def _trip_params(trip: Trip, currency: str | None = None) -> dict:
    return {"origin": trip.origin, "destination": trip.destination, "depart_date": trip.depart_date,
            "return_date": trip.return_date, "adults": trip.adults, "children": trip.children, "cabin": trip.cabin,
            "exact_party": trip.exact_party, "currency": currency}


def cheapest_options_now(conn: psycopg.Connection, trip: Trip, limit: int | None = OPTIONS_SHOWN,
                         currency: str | None = None) -> list[dict]:
    """The options of the trip's latest collection (every provider's), cheapest first, each with the collection's size;
    in the collection's first currency, or of the latest collection in `currency` when given; every one when `limit`
    is None."""
    query = sql.SQL("""
WITH latest_collection AS (
  SELECT collected_at, adults, children, cabin, coalesce(%(currency)s::text, currency) AS currency
  FROM (""" + _LATEST_COLLECTION + """) AS latest
)
SELECT options.*, count(*) OVER () AS options_in_collection
FROM ({options}) AS options
ORDER BY total_amount, duration_out_min + duration_back_min, option_id
LIMIT %(limit)s""").format(newest=_answer_rows(_NEWEST_ANSWER), options=_each_table(_COLLECTION_OPTIONS))
    return conn.execute(query, {**_trip_params(trip, currency), "limit": limit}).fetchall()


def latest_collection(conn: psycopg.Connection, trip: Trip, currency: str | None = None,
                      quoted: bool = False) -> dict | None:
    """The trip's newest collection (in `currency` when given; that quoted a fare when `quoted`): its moment, party,
    cabin and currency, which is None when every provider that answered then had nothing to sell (its options, when it
    has any, are those of cheapest_options_now); None when the trip was never collected."""
    newest = _each_table(_NEWEST_ANSWER, **_QUOTED) if quoted else _answer_rows(_NEWEST_ANSWER)
    return conn.execute(sql.SQL(_LATEST_COLLECTION).format(newest=newest), _trip_params(trip, currency)).fetchone()


def upcoming_trips_on_route(conn: psycopg.Connection, origin: str, destination: str, today: dt.date) -> list[dict]:
    """Trips collected for the route departing from `today`, each with its cheapest latest fare."""
    query = sql.SQL("SELECT * FROM (" + _ONE_PER_TRIP + ") AS trips ORDER BY depart_date, return_date, adults, children, "
                    + _CABIN_ORDER + " LIMIT %(limit)s").format(
        per_trip=_each_table(_CHEAPEST_LATEST_PER_TRIP, route_match=sql.SQL(_ROUTE_MATCH)))
    params = {"origin": origin, "destination": destination, "today": today, "limit": SUGGESTIONS_SHOWN,
              "fresh_since": fresh_since()}
    return conn.execute(query, params).fetchall()


def route_collected(conn: psycopg.Connection, origin: str, destination: str) -> bool:
    """Whether any fare of the route was ever collected (an index probe per table)."""
    probes = sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {table} WHERE origin = %(origin)s AND destination = %(destination)s)").format(
            table=sql.Identifier(table)) for table in FARE_TABLES)
    row = conn.execute(sql.SQL("SELECT {probes} AS collected").format(probes=probes),
                       {"origin": origin, "destination": destination}).fetchone()
    return row["collected"]


def parties_collected(conn: psycopg.Connection, trip: Trip, today: dt.date) -> list[dict]:
    """Each party and cabin the trip's dates were collected for, with its cheapest latest fare."""
    query = sql.SQL("SELECT * FROM (" + _ONE_PER_TRIP + ") AS parties ORDER BY " + _CABIN_ORDER + ", adults, children"
                    ).format(per_trip=_each_table(_CHEAPEST_LATEST_PER_TRIP, route_match=sql.SQL("AND" + _TRIP_MATCH)))
    return conn.execute(query, {**_trip_params(trip), "today": today,
                                "fresh_since": fresh_since()}).fetchall()


# Each provider's newest quote of the trip (party and cabin) per currency, from `since` to the shown collection, with
# its cheapest total: one range of the trip index per table.
_PROVIDERS_NEWEST = """
SELECT DISTINCT ON (provider, currency) provider, currency, collected_at, total_amount
FROM ({rows}) AS recent
ORDER BY provider, currency, collected_at DESC, total_amount"""
_PROVIDER_ROWS = ("SELECT provider, {currency} AS currency, collected_at, {total} AS total_amount FROM {table} WHERE"
                  + _TRIP_MATCH + """
    AND (adults, children, cabin) IS NOT DISTINCT FROM (%(adults)s::int, %(children)s::int, %(cabin)s::text)
    AND collected_at BETWEEN %(since)s AND %(shown_at)s""")


def provider_quotes(conn: psycopg.Connection, trip: Trip, shown: dict) -> dict[str, list[dict]]:
    """What the shown collection (an option of it) leaves out: `absent_providers`, providers that quoted the trip in the
    day before but did not answer at that moment in any currency (each with its newest quote, in the shown currency
    where it has one), and `other_currency_quotes`, providers that quoted it at that moment in another currency.

    A provider whose call failed in a sweep is missing from that collection: if it is usually the cheaper, the
    collection's cheapest looks like a rise. The page names it, with its last quote, rather than mixing a quote nobody
    confirmed at the shown moment into the collection. One that answered with no option, then or since its last quote,
    is not missing: it had nothing to sell. A quote in another currency cannot be ranked with the options without
    exchange rates, so it is named beside them. The advisor's observations leave out a moment by the same rule
    (fare_assets.storing.warehouse.observations).
    """
    params = {**_trip_params(trip), "adults": shown["adults"], "children": shown["children"], "cabin": shown["cabin"],
              "shown_at": shown["collected_at"], "since": shown["collected_at"] - ABSENT_PROVIDER_WINDOW}
    rows = _over_answers(conn, _PROVIDERS_NEWEST, _PROVIDER_ROWS, params)
    present = {row["provider"] for row in rows if row["collected_at"] == shown["collected_at"]}
    newest = {}
    for row in sorted(rows, key=lambda row: -row["collected_at"].timestamp()):
        newest.setdefault(row["provider"], row)
    missing = {provider for provider, row in newest.items() if provider not in present and row["currency"] is not None}
    # A quote from before the provider's newest answer without options was no longer on sale after it.
    emptied_at = {row["provider"]: row["collected_at"] for row in rows if row["currency"] is None}
    quoted = {}
    for row in sorted((row for row in rows if row["currency"] is not None),
                      key=lambda row: (row["currency"] != shown["currency"], -row["collected_at"].timestamp())):
        emptied = emptied_at.get(row["provider"])
        if row["provider"] in missing and (emptied is None or row["collected_at"] > emptied):
            quoted.setdefault(row["provider"], row)
    return {"absent_providers": sorted(quoted.values(), key=lambda row: row["provider"]),
            "other_currency_quotes": sorted((row for row in rows if row["currency"] not in (None, shown["currency"])
                                        and row["collected_at"] == shown["collected_at"]),
                                       key=lambda row: (row["currency"], row["total_amount"]))}


def newest_collection(conn: psycopg.Connection, trip: Trip,
                      limit: int = OPTIONS_SHOWN) -> tuple[list[dict], dict | None]:
    """The cheapest options of the trip's newest collection, and that collection: its first option, one that found
    nothing on sale (latest_collection), or None if the trip was never collected."""
    options = cheapest_options_now(conn, trip, limit)
    return options, options[0] if options else latest_collection(conn, trip)


def fares_for_trip(conn: psycopg.Connection, trip: Trip, today: dt.date) -> dict:
    """The trip's cheapest options now and what they leave out, or the route's other collected trips; `collection`
    as newest_collection says."""
    options, collection = newest_collection(conn, trip)
    other_trips = [] if options else upcoming_trips_on_route(conn, trip.origin, trip.destination, today)
    left_out = (provider_quotes(conn, trip, collection) if collection
                else {"absent_providers": [], "other_currency_quotes": []})
    # Whether a page without options may say its route is not watched: suggestions keep to the last day's collections.
    watched = bool(collection or other_trips) or route_collected(conn, trip.origin, trip.destination)
    return {"options": options, "collection": collection, **left_out, "other_trips": other_trips,
            "route_collected": watched}


def route_summaries(conn: psycopg.Connection, now: dt.datetime) -> dict[str, list[dict]]:
    """Per market, every route with trips departing today or later (at `now`, by the date at the origin): its
    freshest collection and cheapest latest fare."""
    # This reads every upcoming row; at fare-service scale it belongs on a per-trip serving table. Rows are read from
    # the earliest date anywhere, then each trip kept from the date at its origin: the airports dimension names its
    # zone (airportsdata's, as for the page's checks), whose date is worked out here as for the page; an airport the
    # dimension lacks, or a zone zoneinfo does not know, is judged in UTC.
    per_table = _each_table(_CHEAPEST_LATEST_PER_TRIP, route_match=sql.SQL(""))
    per_trip = sql.SQL(_ONE_PER_TRIP).format(per_trip=sql.SQL(_WITH_ROUTE_MARKET).format(per_table=per_table))
    zones = today_in_zones(now)
    params = {"today": earliest_today(now), "zones": list(zones), "zone_todays": list(zones.values()),
              "utc_today": now.astimezone(dt.timezone.utc).date(), "fresh_since": fresh_since(now)}
    rows = conn.execute(sql.SQL(_ROUTE_SUMMARY).format(per_trip=per_trip), params).fetchall()
    summaries: dict[str, list[dict]] = {_market(table): [] for table in FARE_TABLES}
    for row in rows:
        summaries[row["market"]].append(row)
    return summaries


# Each collection's cheapest total in one currency for one trip, party and cabin, oldest first (index range scan),
# and whether a provider was missing from it, by the advisor's observations' rule (read in every currency); a
# collection is a moment, so two providers' searches of one sweep are one point.
_HISTORY_PARTY = "adults, children, cabin"
_TRIP_HISTORY = """
SELECT collected_at, min(cheapest) AS cheapest_total, %(currency)s::text AS currency,
       coalesce(max(absent_until) >= collected_at, false) AS provider_absent
FROM (
  SELECT *, """ + absent_until_sql(_HISTORY_PARTY) + """ AS absent_until
  FROM (
    SELECT """ + _HISTORY_PARTY + """, collected_at, currency, provider, min(total_amount) AS cheapest,
           """ + expected_until_sql(_HISTORY_PARTY) + """ AS expected_until
    FROM ({rows}) AS trip_rows
    GROUP BY """ + _HISTORY_PARTY + """, collected_at, currency, provider
  ) AS per_provider
) AS expected
WHERE currency = %(currency)s
GROUP BY collected_at
ORDER BY collected_at"""
_TRIP_ROWS = ("SELECT " + _HISTORY_PARTY + ", collected_at, {currency} AS currency, provider,"
              " {total} AS total_amount FROM {table} WHERE" + _TRIP_MATCH + _PARTY_MATCH)

# Per pair, its newest answer without options (no total, no currency): the pair's newest collection when no
# provider quoted it then, shown as nothing on sale rather than as an older fare or a prediction.
_NEWEST_EMPTY = """
  SELECT pairs.depart_date, pairs.return_date, newest.collected_at, NULL::numeric, NULL::text
  FROM pairs
  JOIN LATERAL (
    SELECT collected_at FROM empty_answers
    WHERE origin = %(origin)s AND destination = %(destination)s
      AND depart_date = pairs.depart_date AND return_date = pairs.return_date""" + _PARTY_MATCH + """
    ORDER BY collected_at DESC LIMIT 1
  ) AS newest ON true"""

# Every departure/return pair of the grid, each with the cheapest option of its newest collection and,
# where nothing was collected, the fare model's prediction from the serving table predicted_fares.
# Per pair and table: the newest collection time is the first entry of the trip index (LIMIT 1), and
# its options are one index range; the predictions are one primary-key range. So the cost does not
# grow with history or table size.
_DATE_GRID = """
WITH pairs AS (
  SELECT depart::date AS depart_date, back::date AS return_date
  FROM generate_series(%(first_depart)s::date, %(last_depart)s::date, interval '1 day') AS depart,
       generate_series(%(first_return)s::date, %(last_return)s::date, interval '1 day') AS back
  WHERE back >= depart
),
per_table AS ({newest_per_table} UNION ALL (""" + _NEWEST_EMPTY + """)),
collected AS (
  SELECT DISTINCT ON (depart_date, return_date) depart_date, return_date, collected_at, total_amount, currency
  FROM per_table
  ORDER BY depart_date, return_date, collected_at DESC NULLS LAST, total_amount
)
SELECT collected.*, predicted.predicted_amount, predicted.predicted_for
FROM collected
LEFT JOIN predicted_fares AS predicted
  ON collected.collected_at IS NULL
  AND predicted.origin = %(origin)s AND predicted.destination = %(destination)s
  AND predicted.adults = %(party_adults)s AND predicted.children = %(party_children)s
  AND predicted.cabin = %(party_cabin)s
  AND predicted.depart_date = collected.depart_date AND predicted.return_date = collected.return_date
ORDER BY collected.depart_date, collected.return_date"""
_NEWEST_CHEAPEST = """
  SELECT pairs.depart_date, pairs.return_date, newest.collected_at, cheapest.total_amount, cheapest.currency
  FROM pairs
  LEFT JOIN LATERAL (
    SELECT collected_at FROM {table}
    WHERE origin = %(origin)s AND destination = %(destination)s
      AND depart_date = pairs.depart_date AND return_date = pairs.return_date""" + _PARTY_MATCH + _CURRENCY_MATCH + """
    ORDER BY collected_at DESC LIMIT 1
  ) AS newest ON true
  LEFT JOIN LATERAL (
    SELECT total_amount, currency FROM {table}
    WHERE origin = %(origin)s AND destination = %(destination)s
      AND depart_date = pairs.depart_date AND return_date = pairs.return_date
      AND collected_at = newest.collected_at""" + _PARTY_MATCH + _CURRENCY_MATCH + """
    ORDER BY total_amount LIMIT 1
  ) AS cheapest ON true"""

# The advice the serving table trip_advice holds for one trip and party (primary-key probe).
_TRIP_ADVICE = """
SELECT collected_at, action, drop_probability, confidence, expected_saving, currency, reason, model_version,
       computed_at
FROM trip_advice
WHERE""" + _TRIP_MATCH + " AND adults = %(adults)s AND children = %(children)s AND cabin = %(cabin)s"

# Advice reads the fare and the days left at its collection: once the newest fares are older than this (the
# provider keeps failing, collection stopped), a "wait" could run on to departure, so no advice is given.
ADVICE_FRESH_FOR = dt.timedelta(days=1)


def fresh_since(now: dt.datetime | None = None) -> dt.datetime:
    """The oldest collection whose fares are still current at `now` (default: the current time)."""
    return (now or dt.datetime.now(dt.timezone.utc)) - ADVICE_FRESH_FOR

# A column of the trip's stored page, when it was rendered for today, its fares are fresh enough for advice and
# no load has changed its route's fares since it was rendered (two primary-key probes). The route, not the trip:
# the page's date grid shows the neighbouring departures' fares too. A page whose fares have grown too old for
# advice is rendered live, which says so.
_TRIP_PAGE = sql.SQL("""
SELECT {column}
FROM trip_pages AS page
WHERE""" + _TRIP_MATCH + """ AND rendered_on = %(today)s AND page.collected_at > %(fresh_since)s
  -- On the departure day flights leave between refreshes, and the insight judges the cheapest still to leave.
  AND page.depart_date > page.rendered_on
  AND page.route_loaded_at IS NOT DISTINCT FROM (
    SELECT loaded_at FROM route_loads WHERE origin = %(origin)s AND destination = %(destination)s)""")
# Composed once: every view of a watched trip runs one of them.
_TRIP_PAGE_QUERIES = {column: _TRIP_PAGE.format(column=sql.Identifier(column)) for column in ("html", "fares_json")}


def route_loaded_at(conn: psycopg.Connection, trip: Trip) -> dt.datetime | None:
    """When a load last changed the fares of the trip's route (None if no load has stamped it)."""
    row = conn.execute("SELECT loaded_at FROM route_loads WHERE origin = %(origin)s AND destination = %(destination)s",
                       _trip_params(trip)).fetchone()
    return row["loaded_at"] if row else None


def trip_page(conn: psycopg.Connection, trip: Trip, today: dt.date, column: str = "html") -> dict | None:
    """The stored page (`html`) or /api/fares answer (`fares_json`) of the trip if current, else None.

    A trip asked for a given party or cabin is never stored: the stored answer shows the newest collection of any.
    """
    if not trip.any_party:
        return None
    try:
        return conn.execute(_TRIP_PAGE_QUERIES[column],
                            {**_trip_params(trip), "today": today, "fresh_since": fresh_since()}).fetchone()
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
        # A warehouse older than the page's stored-page columns or route stamps (the web connection is in autocommit,
        # so nothing is left aborted): render the page until a load or refresh adds them.
        return None


def trip_history(conn: psycopg.Connection, trip: Trip, currency: str) -> list[dict]:
    """The cheapest total in `currency` of each collection of the trip for its party and cabin, oldest first, each
    saying whether a provider that quoted the trip in the day before was missing from it (`provider_absent`)."""
    return _over_answers(conn, _TRIP_HISTORY, _TRIP_ROWS, _trip_params(trip, currency))


def date_grid(conn: psycopg.Connection, trip: Trip, party: tuple[int, int, str] | None, today: dt.date,
              currency: str | None = None) -> list[dict]:
    """Per departure/return pair within GRID_DAYS of the trip, from today: the cheapest latest fare (in `currency`
    when given), else `party`'s prediction (none without a party)."""
    step = dt.timedelta(days=GRID_DAYS)
    adults, children, cabin = party or (None, None, None)
    params = {**_trip_params(trip, currency), "party_adults": adults, "party_children": children, "party_cabin": cabin,
              "first_depart": max(today, trip.depart_date - step), "last_depart": trip.depart_date + step,
              "first_return": max(today, trip.return_date - step), "last_return": trip.return_date + step}
    query = sql.SQL(_DATE_GRID).format(newest_per_table=_each_table(_NEWEST_CHEAPEST))
    return conn.execute(query, params).fetchall()


def trip_advice(conn: psycopg.Connection, trip: Trip) -> dict | None:
    """The precomputed advice for the trip, party and cabin, or None when the pipeline has not advised on it."""
    return conn.execute(_TRIP_ADVICE, _trip_params(trip)).fetchone()


def ping(conn: psycopg.Connection) -> None:
    """Run a trivial query, raising psycopg.OperationalError when the database does not answer."""
    conn.execute("SELECT 1").fetchone()
