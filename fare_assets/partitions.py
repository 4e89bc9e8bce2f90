"""Partitions shared by the structured and warehouse assets: the hour raw objects landed in."""
from dagster import AssetExecutionContext, HourlyPartitionsDefinition

# end_offset=1: the current hour is a partition too, so objects landing now are structured now.
landing_hours = HourlyPartitionsDefinition(start_date="2026-01-01-00:00", end_offset=1)


def landing_hour_of_partition(partition_key: str) -> str:
    """"2026-11-28-04:00" (Dagster's hourly key) -> "2026-11-28-04" (the lake's landing hour)."""
    return partition_key[:13]


def partition_of_landing_hour(landing_hour: str) -> str:
    return f"{landing_hour}:00"


def landing_hours_of_run(context: AssetExecutionContext) -> list[str]:
    """The landing hours a run materializes: one for the sensor's runs, many for a backfill."""
    return [landing_hour_of_partition(key) for key in context.partition_keys]


def range_run_tags(first_hour: str, last_hour: str) -> dict[str, str]:
    """Run tags that make one run materialize every landing hour from first to last (a single-run backfill)."""
    return {"dagster/asset_partition_range_start": partition_of_landing_hour(first_hour),
            "dagster/asset_partition_range_end": partition_of_landing_hour(last_hour)}
