"""When a collection sweeps: the live sweep, or the market times of a replayed history (pure)."""
import datetime as dt

from fare_assets.streaming.envelope import utc_iso


def parse_utc(text: str, name: str) -> dt.datetime:
    """An ISO-8601 time as UTC; one without an offset is taken as UTC (the market's clock is UTC)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an ISO-8601 time like 2026-10-01T12:00:00Z") from None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def collection_times(history_days: float, every_hours: float, now: dt.datetime,
                     after: dt.datetime | None = None) -> list[dt.datetime | None]:
    """Market times to sweep at: the past `history_days` on a grid of `every_hours` from the epoch, then the current
    hour, leaving out those up to `after` (collected already); or just now (None).

    On a grid from the epoch rather than from now, a second `make run` later that day replays the same market times:
    its searches repeat their ids and the warehouse keeps one copy, instead of gaining a second daily collection at
    another hour (the market reprices once a day, so it would repeat every fare).
    """
    if history_days <= 0:
        return [None]
    if every_hours <= 0:
        raise ValueError(f"every_hours must be positive, not {every_hours!r}")
    hour = now.replace(minute=0, second=0, microsecond=0)
    step = dt.timedelta(hours=every_hours)
    # The first grid time at or after the history's start (a floor division of the negated span rounds up).
    first = _EPOCH - ((_EPOCH - (hour - dt.timedelta(days=history_days))) // step) * step
    times = [moment for moment in replay_times(first, hour, every_hours) if moment < hour] if first <= hour else []
    return [moment for moment in [*times, hour] if after is None or moment > after]


def replay_times(start: dt.datetime, end: dt.datetime, every_hours: float) -> list[dt.datetime]:
    """Market times from `start` to `end` (inclusive) every `every_hours`."""
    if every_hours <= 0:
        raise ValueError(f"every_hours must be positive, not {every_hours!r}")
    if start > end:
        raise ValueError(f"the replayed period starts ({utc_iso(start)}) after it ends ({utc_iso(end)})")
    step = dt.timedelta(hours=every_hours)
    times = []
    moment = start
    while moment <= end:
        times.append(moment)
        moment += step
    return times


def sweep_times(history_days: float, every_hours: float, history_start: str, history_after: str,
                now: dt.datetime, history_until: str = "") -> list[dt.datetime | None]:
    """Market times a collection's settings ask for (None: the live sweep, at the real time): from `history_start` to
    now when given, else collection_times after `history_after`. `history_until` (which set `now`) ends a replay
    only: a live sweep stamped with it would record today's fares as collected then."""
    if history_start:
        return replay_times(parse_utc(history_start, "history_start"), now, every_hours)
    after = parse_utc(history_after, "history_after") if history_after else None
    times = collection_times(history_days, every_hours, now, after)
    if history_until and times == [None]:
        raise ValueError(f"history_until={history_until!r} ends a replayed history: set history_days or history_start "
                         "too, or leave it empty for a live sweep")
    return times
