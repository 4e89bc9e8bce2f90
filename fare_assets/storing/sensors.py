"""Storing: notice new raw objects in the landing prefix and structure their landing hour."""
import datetime as dt
import json
from pathlib import Path

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from fare_assets.partitions import partition_of_landing_hour
from fare_assets.resources import LakeResource
from fare_assets.settings import load_settings
from fare_assets.storing.lake import raw_hour_prefix, recent_landing_hours


def new_objects_by_hour(lake: LakeResource, seen: dict[str, list[str]], hours: list[str]) -> dict[str, list[str]]:
    """Object names per landing hour that the cursor has not seen yet."""
    new = {}
    for hour in hours:
        names = [Path(path).name for path in lake.raw_files(raw_hour_prefix(hour))]
        unseen = sorted(set(names) - set(seen.get(hour, [])))
        if unseen:
            new[hour] = unseen
    return new


def landing_sensor_factory(job):
    """A sensor that lists only the recent hour prefixes, so its cost does not grow with history."""

    @sensor(job=job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description="Requests a structuring run for each landing hour that received new raw objects.")
    def raw_landing_sensor(context: SensorEvaluationContext, lake: LakeResource):
        lookback = load_settings().sensor_lookback_hours
        hours = recent_landing_hours(dt.datetime.now(dt.timezone.utc), lookback)
        seen = {hour: names for hour, names in json.loads(context.cursor or "{}").items() if hour in hours}
        new = new_objects_by_hour(lake, seen, hours)
        if not new:
            return SkipReason(f"no new raw objects in the last {lookback + 1} landing hours")
        requests = []
        for hour, names in new.items():
            seen[hour] = sorted(set(seen.get(hour, [])) | set(names))
            # One run per hour and batch of new objects: the newest name makes the key unique.
            requests.append(RunRequest(run_key=f"{hour}/{names[-1]}", partition_key=partition_of_landing_hour(hour)))
        context.update_cursor(json.dumps(seen))
        return requests

    return raw_landing_sensor
