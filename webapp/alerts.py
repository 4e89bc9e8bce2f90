"""Price alerts: a watched trip with a threshold, saved by the page and checked by a Dagster sensor.

The checks (given the time) and the message are pure; `save_alert`, `open_alerts`, `mark_notified` and
`notify_due_alerts` (the sensor's work) touch the database.
"""
import datetime as dt
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

import psycopg
from psycopg.rows import tuple_row

from fare_assets.local_dates import earliest_today, today_at
from fare_assets.storing.warehouse import ALERT_INPUT_COLUMNS
from fare_assets.streaming.notify import SUBJECT_PREFIX, Alert, AlertSettings, send_alert
from webapp import queries
from webapp.db import DatabaseUnavailable
from webapp.formatting import cabin_label, first_still_to_leave, party, utc_time
from webapp.validation import Trip, TripError, parse_trip

# A threshold above this is a typo (no round-trip fare costs ten million in any common currency).
MAX_THRESHOLD = Decimal("10000000")
# Thresholds are kept to the cent; one that rounds to nothing could never be met.
MIN_THRESHOLD = Decimal("0.01")


class AlertError(TripError):
    """The alert request is invalid; `problems` maps each field to what to fix."""


@dataclass(frozen=True)
class PriceAlert:
    """Notify when the trip's cheapest fare falls below `threshold` (in `currency`; None until `pinned_to_trip`)."""

    trip: Trip
    threshold: Decimal
    currency: str | None
    alert_id: int | None = None
    # The channels that already took this alert, when another failed: a retry sends only to the others.
    notified_channels: tuple[str, ...] = ()


# Longer is no amount (and would let a pattern's backtracking cost a worker seconds).
MAX_THRESHOLD_TEXT = 40
# What a traveller may write around an amount: a currency sign or a 3-letter code, before or after it. "$" and "¥"
# name several currencies, so they name none.
_SIGN_CURRENCIES = {"€": "EUR", "£": "GBP", "₹": "INR", "$": None, "¥": None}
_SIGNS = "".join(_SIGN_CURRENCIES)
_WRITTEN_AMOUNT = re.compile(rf"(?P<before>[{_SIGNS}]|[A-Za-z]{{3}})?\s*(?P<number>[0-9][0-9.,\s]*?)\s*"
                             rf"(?P<after>[{_SIGNS}]|[A-Za-z]{{3}})?")
# The ways of writing a number, each with how to make it Python's: "1250.5", "350,50" (a decimal comma), "1,250.00"
# and "1.250,00". Cents have two digits at most, so three after a lone mark group thousands: "1,250" and "1.250" are
# both 1250 (a 3-decimal currency's "1.250" would be misread; the saved threshold says which).
_NUMBER_FORMS = [(re.compile(r"[0-9]+(\.[0-9]{1,2})?"), lambda number: number),
                 (re.compile(r"[0-9]+,[0-9]{1,2}"), lambda number: number.replace(",", ".")),
                 (re.compile(r"[1-9][0-9]{0,2}(,[0-9]{3})+(\.[0-9]{1,2})?"), lambda number: number.replace(",", "")),
                 (re.compile(r"[1-9][0-9]{0,2}(\.[0-9]{3})+(,[0-9]{1,2})?"),
                  lambda number: number.replace(".", "").replace(",", "."))]


def written_amount(text: str) -> tuple[Decimal | None, str | None]:
    """The amount in a threshold as the page writes amounts ("1,250.00 USD") or a traveller might ("€350,50",
    "1 250", "350 €"), and the currency written with it (a code, or a sign naming one); (None, None) when it reads as
    no amount."""
    match = _WRITTEN_AMOUNT.fullmatch(text.strip()) if len(text) <= MAX_THRESHOLD_TEXT else None
    if match is None or (match["before"] and match["after"]):
        return None, None
    number = re.sub(r"\s", "", match["number"])
    written = match["before"] or match["after"]
    currency = _SIGN_CURRENCIES[written] if written in _SIGN_CURRENCIES else written and written.upper()
    for form, as_python in _NUMBER_FORMS:
        if form.fullmatch(number):
            return Decimal(as_python(number)), currency
    return None, None


def parse_alert(fields: Mapping) -> PriceAlert:
    """Check a trip (as for /fares) plus threshold and currency, reporting every problem at once."""
    texts = {name: str(value) for name, value in fields.items() if isinstance(value, (str, int, float))}
    problems: dict[str, str] = {}
    try:
        trip = parse_trip(texts)
    except TripError as error:
        problems.update(error.problems)
        trip = None
    raw = texts.get("threshold", "").strip()
    amount, written_currency = written_amount(raw)
    try:
        threshold = amount.quantize(MIN_THRESHOLD) if amount is not None else None
    except InvalidOperation:
        threshold = None
    if threshold is None or not threshold.is_finite() or not MIN_THRESHOLD <= threshold < MAX_THRESHOLD:
        problems["threshold"] = (f"threshold must be an amount from {MIN_THRESHOLD} to below {MAX_THRESHOLD:,}, "
                                 f"such as 350 or 1,250.00, got {raw[:20]!r}")
    currency = texts.get("currency", "").strip().upper() or None
    if currency is not None and (len(currency) != 3 or not currency.isascii() or not currency.isalpha()):
        problems["currency"] = f"currency must be a 3-letter ISO code such as USD, got {currency[:20]!r}"
    elif written_currency is not None and currency not in (None, written_currency):
        problems["currency"] = f"the threshold is written in {written_currency}, the currency field says {currency}"
    currency = currency or written_currency
    if problems:
        raise AlertError(problems)
    return PriceAlert(trip, threshold, currency)


def _party_of(alert: PriceAlert, shown: Mapping) -> PriceAlert:
    """`alert` watching the party and cabin of `shown` (a collection of its trip) where it names none."""
    # Left open, a party matches every party's fares, so a family's alert could be met by one adult's total. The page's
    # form sends the party it shows; an alert from the API watches the one its page would show.
    return replace(alert, trip=replace(alert.trip, **{name: shown[name] for name in ("adults", "children", "cabin")
                                                      if getattr(alert.trip, name) is None}))


def pinned_to_trip(conn: psycopg.Connection, alert: PriceAlert) -> PriceAlert:
    """`alert` with the currency, party and cabin of its trip's newest collection where it names none (left open on a
    trip not collected or quoted yet, until `_pinned_on_first_collection`); an AlertError when the trip's fares were
    quoted, but never in the currency it names (nothing could meet it: "USS", or USD on a EUR trip)."""
    newest = queries.latest_collection(conn, alert.trip)
    if newest is None:
        return alert
    # The party the page shows, even when its newest collection found nothing on sale; the currency of that party's
    # newest quote, since such a collection has none.
    pinned = _party_of(alert, newest)
    quoted_collection = queries.latest_collection(conn, pinned.trip, quoted=True)
    if quoted_collection is None:
        return pinned
    quoted = quoted_collection["currency"]
    if alert.currency not in (None, quoted):
        in_currency = queries.latest_collection(conn, alert.trip, alert.currency, quoted=True)
        if in_currency is None:
            raise AlertError({"currency": f"this trip's fares are quoted in {quoted}, never in {alert.currency}: an "
                                          f"alert in {alert.currency} would never be met"})
        return _party_of(alert, in_currency)
    return pinned if pinned.currency else replace(pinned, currency=quoted)


def _pinned_on_first_collection(conn: psycopg.Connection, alert: PriceAlert) -> PriceAlert:
    """An alert saved before its trip was collected or quoted, with no party, cabin or currency, pinned (and saved) to
    those of its trip's newest collection once there is one: as saved, it would be met by whichever party was
    collected last, and never by a fare (it has no currency)."""
    trip = alert.trip
    if None not in (trip.adults, trip.children, trip.cabin, alert.currency):
        return alert
    try:
        pinned = pinned_to_trip(conn, alert)
    except AlertError:
        # The trip is quoted, never in the alert's currency: nothing to pin, and nothing can meet it.
        return alert
    if pinned == alert:
        # Nothing collected or quoted yet, or a collection that did not record its party (another producer's): no write
        # every tick.
        return alert
    conn.execute("UPDATE price_alerts SET adults = %s, children = %s, cabin = %s, currency = %s WHERE id = %s",
                 (pinned.trip.adults, pinned.trip.children, pinned.trip.cabin, pinned.currency, alert.alert_id))
    return pinned


# An open alert with the same traveller's values (ALERT_INPUT_COLUMNS) is the same alert.
_SAVE_ALERT = f"""
WITH asked ({", ".join(name for name, _ in ALERT_INPUT_COLUMNS)}) AS (
  VALUES ({", ".join(f"%s::{kind}" for _, kind in ALERT_INPUT_COLUMNS)})
), same AS (
  SELECT id FROM price_alerts AS saved, asked
  WHERE saved.notified_at IS NULL AND saved.depart_date = asked.depart_date
    AND ({", ".join(f"saved.{name}" for name, _ in ALERT_INPUT_COLUMNS)})
        IS NOT DISTINCT FROM ({", ".join(f"asked.{name}" for name, _ in ALERT_INPUT_COLUMNS)})
  ORDER BY id LIMIT 1
), added AS (
  INSERT INTO price_alerts ({", ".join(name for name, _ in ALERT_INPUT_COLUMNS)})
  SELECT * FROM asked WHERE NOT EXISTS (SELECT 1 FROM same)
  RETURNING id
)
SELECT id, true AS added FROM added UNION ALL SELECT id, false FROM same"""


def save_alert(conn: psycopg.Connection, alert: PriceAlert) -> tuple[int, bool]:
    """Insert the alert, unless the same one is still open (a form sent twice would notify twice); its id, and
    whether it was added."""
    trip = alert.trip
    try:
        with conn.transaction():
            # Saves take turns: two copies of a form sent at once would otherwise both find no open alert and insert.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('fares price alert saves'))")
            row = conn.execute(_SAVE_ALERT, (trip.origin, trip.destination, trip.depart_date, trip.return_date,
                                             trip.adults, trip.children, trip.cabin, alert.threshold,
                                             alert.currency)).fetchone()
    except psycopg.errors.UndefinedColumn as error:
        # The web role cannot change the schema: the next warehouse load (or price-alert sensor tick) adds the column.
        raise DatabaseUnavailable(f"price_alerts predates this version of the page: {error}") from error
    return tuple(row.values()) if isinstance(row, Mapping) else tuple(row)


def open_alerts(conn: psycopg.Connection, now: dt.datetime) -> list[PriceAlert]:
    """Alerts not yet notified whose trip has not departed (by the date at its origin)."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT id, origin, destination, depart_date, return_date, adults, children, cabin, threshold, currency,"
        " notified_channels FROM price_alerts WHERE notified_at IS NULL AND depart_date >= %s ORDER BY id",
        (earliest_today(now),)).fetchall()
    return [PriceAlert(Trip(*row[1:8]), row[8], row[9], row[0], tuple(row[10])) for row in rows
            if row[3] >= today_at(row[1], now)]


def mark_notified(conn: psycopg.Connection, alert_id: int, total: Decimal, at: dt.datetime) -> None:
    """Remember that the alert was sent, so it is sent once."""
    conn.execute("UPDATE price_alerts SET notified_at = %s, notified_total = %s WHERE id = %s", (at, total, alert_id))


def mark_channels_notified(conn: psycopg.Connection, alert_id: int, channels: list[str]) -> None:
    """Remember the channels that took the alert while another failed, so its retry does not repeat them."""
    conn.execute("UPDATE price_alerts SET notified_channels = ARRAY(SELECT DISTINCT unnest(notified_channels || %s))"
                 " WHERE id = %s", (channels, alert_id))


def is_due(alert: PriceAlert, cheapest: Mapping | None, now: dt.datetime) -> bool:
    """True when the latest cheapest fare is in the alert's currency, below its threshold and fresh at `now`.

    A fare older than a day (the provider keeps failing, collection stopped before departure) may be gone: notified
    on, the alert would be spent on a fare nobody can buy, as the page withholds advice on it too.
    """
    return (cheapest is not None and cheapest["currency"] == alert.currency
            and cheapest["total_amount"] < alert.threshold
            and now - cheapest["collected_at"] <= queries.ADVICE_FRESH_FOR)


def cheapest_not_departed(conn: psycopg.Connection, alert: PriceAlert, now: dt.datetime) -> dict | None:
    """The cheapest option of the trip's newest collection, in the alert's currency, whose outbound flight has not left
    at `now` (first_still_to_leave): on the departure day an earlier flight's fare can no longer be bought."""
    # Before the day ahead (in UTC, which no origin's date is more than a day from), no flight of the trip has left:
    # the cheapest is read alone.
    near = alert.trip.depart_date <= (now + dt.timedelta(days=1)).date()
    options = queries.cheapest_options_now(conn, alert.trip, limit=None if near else 1, currency=alert.currency)
    return first_still_to_leave(options, now)


def price_drop_alert(alert: PriceAlert, cheapest: Mapping, page_url: str) -> Alert:
    """The notification for a fare that fell below its threshold."""
    trip = alert.trip
    route = f"{trip.origin} → {trip.destination}, {trip.depart_date.isoformat()} – {trip.return_date.isoformat()}"
    if trip.adults is not None:
        route += f" for {party(trip.adults, trip.children)}"
    if trip.cabin is not None:
        route += f" in {cabin_label(trip.cabin).lower()}"
    total = f"{cheapest['total_amount']:,.2f} {cheapest['currency']}"
    text = (f"The cheapest fare for {route} is now {total}, below your alert at "
            f"{alert.threshold:,.2f} {alert.currency} (collected {utc_time(cheapest['collected_at'])}, "
            f"carriers {cheapest['carriers']}).\n{page_url}")
    return Alert("price_below_threshold", f"{SUBJECT_PREFIX} {trip.origin}→{trip.destination} fare {total}", text,
                 {"alert_id": alert.alert_id, "origin": trip.origin, "destination": trip.destination,
                  "depart": trip.depart_date.isoformat(), "return": trip.return_date.isoformat(),
                  "adults": cheapest["adults"], "children": cheapest["children"], "cabin": cheapest["cabin"],
                  "total": f"{cheapest['total_amount']:.2f}",
                  "currency": cheapest["currency"],
                  "threshold": f"{alert.threshold:.2f}", "url": page_url})


def page_url(base_url: str, trip: Trip) -> str:
    """The fare page of the trip, for the notification's link."""
    return f"{base_url.rstrip('/')}/fares?{urlencode(trip.as_params())}"


# Held while one evaluation sends: a sensor evaluation that outlives its timeout keeps running, and the next tick's
# would read the same open alerts and send them again before either marks them. A session lock: behind a
# transaction-mode pooler (PgBouncer) the sensor needs a direct connection.
_SENDING_LOCK = "hashtext('fares price alerts')"


# A channel whose failures have cost this long in one evaluation is not tried for its other alerts until the next:
# each try of an unreachable mail server costs its timeout (three of them), while a message a receiver refuses at
# once costs nothing and holds back no other alert.
FAILING_SECONDS_PER_CHANNEL_AND_TICK = 30.0


def notify_due_alerts(conn: psycopg.Connection, settings: AlertSettings, base_url: str,
                      now: dt.datetime) -> dict[str, list] | None:
    """Send each open alert whose trip's latest cheapest fare is below its threshold, once; None when another
    evaluation is sending.

    `conn` returns rows as dicts (psycopg.rows.dict_row), as the page's queries expect, in autocommit.

    An alert is marked notified only when every configured channel took it, so a failed send retries
    on the next tick, to the channels that did not take it (FAILING_SECONDS_PER_CHANNEL_AND_TICK bounds the
    time a tick spends on a failing channel). Returns the alert ids sent and those that failed, with the channel
    problems.
    """
    if not conn.execute(f"SELECT pg_try_advisory_lock({_SENDING_LOCK}) AS locked").fetchone()["locked"]:
        return None
    try:
        sent, failed = [], []
        failing_seconds, last_problem = dict.fromkeys(settings.channels, 0.0), {}
        for alert in open_alerts(conn, now):
            alert = _pinned_on_first_collection(conn, alert)
            cheapest = cheapest_not_departed(conn, alert, now)
            if not is_due(alert, cheapest, now):
                continue
            message = price_drop_alert(alert, cheapest, page_url(base_url, alert.trip))
            outcome = {}
            for channel in settings.channels:
                if channel in alert.notified_channels:
                    continue
                if channel in last_problem and failing_seconds[channel] >= FAILING_SECONDS_PER_CHANNEL_AND_TICK:
                    outcome[channel] = f"not tried: failing for {failing_seconds[channel]:.0f} s this tick " \
                                       f"({last_problem[channel]})"
                    continue
                started = time.monotonic()
                outcome[channel] = send_alert(message, settings, [channel])[channel]
                if outcome[channel]:
                    failing_seconds[channel] += time.monotonic() - started
                    last_problem[channel] = outcome[channel]
            problems = {channel: problem for channel, problem in outcome.items() if problem}
            if problems:
                mark_channels_notified(conn, alert.alert_id, [channel for channel in outcome if not outcome[channel]])
                failed.append((alert.alert_id, problems))
            else:
                mark_notified(conn, alert.alert_id, cheapest["total_amount"], now)
                sent.append(alert.alert_id)
        return {"sent": sent, "failed": failed}
    finally:
        # A lost connection has lost its lock too; unlocking would only hide the error that lost it.
        if not conn.broken:
            conn.execute(f"SELECT pg_advisory_unlock({_SENDING_LOCK})")
