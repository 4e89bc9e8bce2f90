"""Streaming: collect fare quotes for the watchlist and deliver them to the lake's landing prefix."""
import datetime as dt

from dagster import (AssetExecutionContext, Config, MaterializeResult, ScheduleDefinition, asset,
                     define_asset_job)

from fare_assets.resources import FareSourceResource, LakeResource
from fare_assets.storing.lake import landing_hour_of_key
from fare_assets.streaming.collector import SweepStats, sweep


class CollectConfig(Config):
    """history_days > 0 replays past sweeps against the market's settable clock (a backfill)."""

    history_days: float = 0
    every_hours: float = 12
    # ISO-8601 end of the replayed history; empty means now. A fixed end makes a backfill reproducible.
    history_until: str = ""


def collection_times(history_days: float, every_hours: float, now: dt.datetime) -> list[dt.datetime | None]:
    """Market times to sweep at: the past `history_days` every `every_hours`, or just now (None)."""
    if history_days <= 0:
        return [None]
    step = dt.timedelta(hours=every_hours)
    moment = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=history_days)
    times = []
    while moment <= now:
        times.append(moment)
        moment += step
    return times


# Raw is the platform's source of truth: every later table can be rebuilt from it.
@asset(group_name="streaming", description="Raw fare-search records in the lake's landing prefix "
       "(one JSON envelope per provider call, Firehose key layout).")
def raw_fare_quotes(context: AssetExecutionContext, config: CollectConfig, fare_source: FareSourceResource,
                    lake: LakeResource) -> MaterializeResult:
    watchlist = fare_source.watchlist()
    client = fare_source.client()
    delivery = lake.delivery_stream()
    now = (dt.datetime.fromisoformat(config.history_until).astimezone(dt.timezone.utc) if config.history_until
           else dt.datetime.now(dt.timezone.utc))
    stats = SweepStats()
    times = collection_times(config.history_days, config.every_hours, now)
    for at in times:
        stats.add(sweep(watchlist.trips_at(at or now), client, delivery, at, fare_source.concurrency))
    delivery.flush()
    context.log.info(f"{stats.calls} calls in {len(times)} sweeps, {delivery.records_delivered} records delivered")
    return MaterializeResult(metadata={
        "sweeps": len(times),
        "calls": stats.calls,
        "failures": sum(stats.failures.values()),
        "failures_by_kind": dict(stats.failures),
        "p50_latency_ms": stats.percentile_ms(0.5),
        "p95_latency_ms": stats.percentile_ms(0.95),
        "bytes": stats.bytes,
        "records_delivered": delivery.records_delivered,
        "objects_written": len(delivery.objects_written),
        "landing_hours": sorted({landing_hour_of_key(key) for key in delivery.objects_written}),
    })


collect_job = define_asset_job("collect_fares", selection=[raw_fare_quotes],
                               description="One collection sweep of the watchlist (or a backfill with config).")
# Fares move during the day; 30 minutes is the platform's collection cadence.
collect_schedule = ScheduleDefinition(job=collect_job, cron_schedule="*/30 * * * *", name="collect_every_30_minutes")
