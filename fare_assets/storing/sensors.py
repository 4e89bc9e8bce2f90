"""Storing: notice new raw objects in the landing prefix and structure their landing hour once it settles.

The cursor keeps, per landing hour in the sweep window, how many objects the hour held, a digest of
all their keys, when the sensor first saw that set and whether it was requested:
{"hours": {"YYYY-MM-DD-HH": {"objects": n, "digest": sha256 hex, "seen_at": ISO time, "requested": bool}},
"swept_at": ISO time}. Raw objects are immutable and never deleted, so an hour changes only by
gaining keys, and any new key changes the digest, wherever it sorts. That matters because Firehose
names objects <stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>: a "greatest key seen" watermark would miss an
object landing later with the same second and a smaller uuid. The cursor stays a few kilobytes
however many objects an hour holds, and hours leaving the window leave the cursor.

An hour is requested once no object has landed in it for the settle period: a structuring run
re-reads its whole hour, so requesting on every new object would cost the square of the hour's
objects at Firehose's volume. A sweep's objects are then structured in one run, and an hour that
fills without pause (a busy stream) is structured once it has closed, then again only on late arrivals.

Each tick lists the current hour and the lookback hours before it. An hour can still gain objects
long after: Firehose names an object by when its oldest record arrived, and retries a failing S3
delivery for up to 24 hours. So once an hour a tick sweeps the whole sweep window (26 hours by
default) and notes every hour that changed since it was last seen, to be requested once settled.
"""
import datetime as dt
import hashlib
import json
from collections.abc import Callable

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from fare_assets.partitions import partition_of_landing_hour
from fare_assets.resources import LakeStorage
from fare_assets.settings import load_settings
from fare_assets.storing.lake import raw_hour_prefix, recent_landing_hours


# How often a tick lists the whole sweep window instead of the lookback hours: 27 listings an hour.
SWEEP_EVERY = dt.timedelta(hours=1)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def landing_hour_state(keys: list[str]) -> dict:
    """What the cursor keeps of one landing hour: its object count and a digest of its keys."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return {"objects": len(keys), "digest": digest}


def changed_landing_hours(lake: LakeStorage, seen: dict[str, dict], hours: list[str]) -> dict[str, dict]:
    """The new state of every hour whose objects differ from what the cursor saw (only these hours are listed)."""
    changed = {}
    for hour in hours:
        keys = lake.list_keys(raw_hour_prefix(hour))
        if keys:
            state = landing_hour_state(keys)
            if state["digest"] != seen.get(hour, {}).get("digest"):
                changed[hour] = state
    return changed


def unrequested_hours(seen: dict[str, dict]) -> list[str]:
    """The hours whose newest set of objects has not been requested yet."""
    # An entry without "requested" comes from a cursor that requested every set as it saw it.
    return sorted(hour for hour, state in seen.items() if not state.get("requested", True))


def settled_hours(seen: dict[str, dict], at: dt.datetime, settle: dt.timedelta) -> list[str]:
    """The unrequested hours whose objects have not changed for the settle period."""
    return [hour for hour in unrequested_hours(seen) if at - dt.datetime.fromisoformat(seen[hour]["seen_at"]) >= settle]


def _read_cursor(cursor: str | None) -> tuple[dict, dt.datetime | None]:
    """The hour states and the last sweep's time; a cursor of the earlier flat {hour: state} shape has no sweep."""
    saved = json.loads(cursor or "{}")
    if "hours" not in saved:
        return saved, None
    return saved["hours"], dt.datetime.fromisoformat(saved["swept_at"]) if saved.get("swept_at") else None


def landing_sensor_factory(job, now: Callable[[], dt.datetime] = utc_now):
    """A sensor that lists only the recent hour prefixes, so its cost does not grow with history."""

    @sensor(job=job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description="Requests a structuring run for each landing hour that received new raw objects, "
                        "once none has landed in it for FARES_SENSOR_SETTLE_SECONDS.")
    def raw_landing_sensor(context: SensorEvaluationContext, lake: LakeStorage):
        settings, at = load_settings(), now()
        saved, swept_at = _read_cursor(context.cursor)
        window = recent_landing_hours(at, max(settings.sensor_sweep_hours, settings.sensor_lookback_hours))
        sweep = swept_at is None or at - swept_at >= SWEEP_EVERY
        hours = window if sweep else recent_landing_hours(at, settings.sensor_lookback_hours)
        # Entries of another shape (the earlier {hour: [names]} cursor) are dropped: that hour is structured once more.
        # An hour still settling stays until it is requested, even once it has left the window.
        seen = {hour: state for hour, state in saved.items()
                if isinstance(state, dict) and (hour in window or not state.get("requested", True))}
        for hour, state in changed_landing_hours(lake, seen, hours).items():
            landed = state["objects"] - seen.get(hour, {}).get("objects", 0)
            context.log.info(f"{hour}: {landed} new raw objects, {state['objects']} in all")
            seen[hour] = {**state, "seen_at": at.isoformat(), "requested": False}
        requests = []
        for hour in settled_hours(seen, at, dt.timedelta(seconds=settings.sensor_settle_seconds)):
            seen[hour]["requested"] = True
            # The digest names the hour's whole set of objects: each new set gets its own run, and a
            # set already structured (a replayed or reset cursor) repeats its run_key, which Dagster skips.
            requests.append(RunRequest(run_key=f"{hour}/{seen[hour]['digest']}",
                                       partition_key=partition_of_landing_hour(hour)))
        cursor = json.dumps({"hours": seen, "swept_at": (at if sweep else swept_at).isoformat()}, sort_keys=True)
        if requests:
            return SensorResult(run_requests=requests, cursor=cursor)
        settling = unrequested_hours(seen)
        if settling:
            skip_reason = (f"landing hours {', '.join(settling)} are settling: each is requested once no object "
                           f"has landed in it for {settings.sensor_settle_seconds:g} s")
        else:
            skip_reason = f"no new raw objects in the last {len(hours)} landing hours"
        return SensorResult(skip_reason=skip_reason, cursor=cursor)

    return raw_landing_sensor
