"""Dates as a traveller at an airport lives them: today there, in its time zone."""
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import airportsdata


@lru_cache(maxsize=1)
def airports() -> dict[str, dict]:
    """airportsdata's airports by IATA code (name, city, country, tz, position), loaded once."""
    return airportsdata.load("IATA")


@lru_cache(maxsize=1)
def _zones() -> dict[str, ZoneInfo]:
    """Every time zone of the zone database, by name: the warehouse's airports dimension, filled by the structuring
    job's copy of airportsdata (perhaps another version), may name any."""
    zones = {}
    for name in available_timezones():
        try:
            zones[name] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return zones


def airport_timezone(code: str) -> ZoneInfo | None:
    """The airport's time zone, when airportsdata knows it."""
    airport = airports().get(code)
    return _zones().get(airport.get("tz")) if airport else None


def day_end(code: str, day: dt.date) -> dt.datetime:
    """When `day` ends at the airport (its next midnight there), in UTC."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return midnight.replace(tzinfo=airport_timezone(code) or dt.timezone.utc).astimezone(dt.timezone.utc)


def today_at(code: str | None, now: dt.datetime | None = None) -> dt.date:
    """Today's date at the airport, in its time zone (UTC when unknown): a departure from it before this date has
    left, and one on it may still be bought (a traveller in Los Angeles at 17:00 is on the UTC date after)."""
    zone = airport_timezone(code) if code else None
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone or dt.timezone.utc).date()


def today_in_zones(now: dt.datetime) -> dict[str, dt.date]:
    """The date at `now` in every time zone of the zone database, by the zone's name."""
    return {name: now.astimezone(zone).date() for name, zone in _zones().items()}


def earliest_today(now: dt.datetime | None = None) -> dt.date:
    """The earliest date anywhere now (UTC-12, where a day ends last): no airport's today is before it."""
    return ((now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=12)).astimezone(dt.timezone.utc).date()
