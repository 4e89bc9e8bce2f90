"""Dates as a traveller at an airport lives them: today there, in its time zone (pure)."""
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import airportsdata


@lru_cache(maxsize=1)
def _time_zones() -> dict[str, str]:
    return {code: airport["tz"] for code, airport in airportsdata.load("IATA").items() if airport.get("tz")}


def airport_timezone(code: str) -> ZoneInfo | None:
    """The airport's time zone, when airportsdata knows it."""
    try:
        return ZoneInfo(_time_zones()[code]) if code in _time_zones() else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def today_at(code: str | None, now: dt.datetime | None = None) -> dt.date:
    """Today's date at the airport, in its time zone (UTC when unknown): a departure from it before this date has
    left, and one on it may still be bought (a traveller in Los Angeles at 17:00 is on the UTC date after)."""
    zone = airport_timezone(code) if code else None
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone or dt.timezone.utc).date()


def earliest_today(now: dt.datetime | None = None) -> dt.date:
    """The earliest date anywhere now (UTC-12, where a day ends last): no airport's today is before it."""
    return ((now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=12)).astimezone(dt.timezone.utc).date()
