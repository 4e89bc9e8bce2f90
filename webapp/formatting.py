"""How amounts, durations, stops and times read on the page and in JSON; template filters."""
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from flask import Flask

from fare_assets.local_dates import airport_timezone
from webapp.validation import CABIN_LABELS, Trip, cabin_code


def amount_text(amount: Decimal) -> str:
    """The amount with two decimals, or three when the third is not zero (e.g. a KWD fare)."""
    cents = amount.quantize(Decimal("0.01"))
    return str(cents) if cents == amount else str(amount.quantize(Decimal("0.001")))


def money(amount: Decimal, currency: str) -> str:
    """'1,234.50 USD'."""
    return f"{Decimal(amount_text(amount)):,} {currency}"


def duration(minutes: int | None) -> str:
    """'5h 30m', or a dash when the provider did not say."""
    if minutes is None:
        return "—"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h {rest:02d}m" if hours else f"{rest}m"


def stops(count: int | None) -> str:
    """'nonstop', '1 stop', '2 stops'."""
    if count is None:
        return "—"
    if count == 0:
        return "nonstop"
    return f"{count} stop" if count == 1 else f"{count} stops"


def local_time(moment: dt.datetime | None) -> str:
    """A departure in the airport's local time: 'Tue 01 Dec 08:05'."""
    return moment.strftime("%a %d %b %H:%M") if moment else "—"


def arrival_local(departs_local: dt.datetime | None, duration_min: int | None, origin: str,
                  destination: str) -> dt.datetime | None:
    """The arrival in the destination's local time: local departure + flight time across time zones."""
    origin_zone, destination_zone = airport_timezone(origin), airport_timezone(destination)
    if departs_local is None or duration_min is None or origin_zone is None or destination_zone is None:
        return None
    # The flight time is elapsed time: added in UTC, since adding it to a zoned time would move the wall clock and
    # put a trip leaving the evening before a clock change an hour off.
    departs = departs_local.replace(tzinfo=origin_zone).astimezone(dt.timezone.utc)
    return (departs + dt.timedelta(minutes=duration_min)).astimezone(destination_zone).replace(tzinfo=None)


def departs_at(departs_local: dt.datetime | None, origin: str) -> dt.datetime | None:
    """A local departure as a UTC instant (None where the time or the airport's zone is unknown)."""
    zone = airport_timezone(origin)
    if departs_local is None or zone is None:
        return None
    return departs_local.replace(tzinfo=zone).astimezone(dt.timezone.utc)


def first_still_to_leave(options: list[dict], now: dt.datetime) -> dict | None:
    """The first of `options` whose outbound flight has not left at `now`; one whose departure time or airport zone is
    unknown counts, as the page does not mark it departed either."""
    return next((option for option in options
                 if (departs := departs_at(option["depart_out_local"], option["origin"])) is None or departs > now),
                None)


def departs_utc(departs_local: dt.datetime | None, origin: str) -> str | None:
    """departs_at in ISO form, for the page's script."""
    departs = departs_at(departs_local, origin)
    return departs.isoformat() if departs else None


def utc_time(moment: dt.datetime) -> str:
    """'2026-11-28 04:30 UTC'."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def trip_dates(depart: dt.date, back: dt.date) -> str:
    """'Tue 01 Dec 2026 – Tue 08 Dec 2026 (7 nights)'."""
    nights = (back - depart).days
    return (f"{depart.strftime('%a %d %b %Y')} – {back.strftime('%a %d %b %Y')}"
            f" ({nights} night{'' if nights == 1 else 's'})")


def age_seconds(moment: dt.datetime, now: dt.datetime) -> int:
    """Whole seconds from `moment` to `now` (never negative, so clock skew reads as 'just now')."""
    return max(0, int((now - moment).total_seconds()))


def age(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    """'just now', '12 min ago', '3 h ago', '2 days ago'."""
    seconds = age_seconds(moment, now or dt.datetime.now(dt.timezone.utc))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def party(adults: int | None, children: int | None) -> str:
    """'1 adult', '2 adults, 1 child' ('unknown party' for a search that did not record it)."""
    if adults is None:
        return "unknown party"
    text = f"{adults} adult{'' if adults == 1 else 's'}"
    if children:
        text += f", {children} child{'' if children == 1 else 'ren'}"
    return text


def cabin_label(cabin: str | None) -> str:
    """'Premium economy' for PREMIUM_COACH: the page's name for a watchlist cabin ('Unknown' for a search without one)."""
    if cabin is None:
        return "Unknown"
    return CABIN_LABELS.get(cabin) or cabin.replace("_", " ").capitalize()


# The fare APIs by the names travellers know them; the page says which one quoted each option, since a
# collection can hold several providers' options and the traveller buys through the one that quoted it.
PROVIDER_LABELS = {"qpx": "QPX Express", "duffel": "Duffel", "amadeus": "Amadeus"}


def provider_label(provider: str) -> str:
    """'QPX Express' for qpx: the fare API that quoted an option."""
    return PROVIDER_LABELS.get(provider) or provider.capitalize()


def sentence(text: str) -> str:
    """`text` with its first letter upper case and the rest as written (Jinja's `capitalize` lowers "EUR")."""
    return text[:1].upper() + text[1:]


def trip_params(row: Mapping) -> dict[str, str]:
    """The /fares query parameters that ask for the trip a result row describes."""
    return Trip(row["origin"], row["destination"], row["depart_date"], row["return_date"],
                row["adults"], row["children"], row["cabin"]).as_params()


def init_app(app: Flask) -> None:
    """Make the formatters available to templates as filters and globals."""
    for formatter in (money, duration, stops, local_time, utc_time, age, cabin_label, provider_label, sentence):
        app.add_template_filter(formatter)
    for helper in (trip_dates, party, trip_params, arrival_local, departs_utc, cabin_code):
        app.add_template_global(helper)
    app.add_template_global(CABIN_LABELS, "cabin_labels")
