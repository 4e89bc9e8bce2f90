"""Streaming: collect fare quotes for the watchlist and deliver them to the lake's landing prefix."""
import datetime as dt

from dagster import (AssetExecutionContext, Config, DagsterRunStatus, DefaultScheduleStatus, MaterializeResult,
                     RunConfig, RunRequest, RunsFilter, ScheduleEvaluationContext, SkipReason, asset, config_mapping,
                     define_asset_job, schedule)

from fare_assets.resources import FareSourceResource, LakeResource
from fare_assets.run_limits import max_runtime_tags
from fare_assets.streaming.collector import SweepStats, sweep
from fare_assets.streaming.envelope import utc_iso
from fare_assets.streaming.sweep_times import parse_utc, sweep_times
from fare_assets.streaming.notify import (firehose_bypassed_alert, providers_without_success_alert, send_from_run,
                                          undelivered_records_alert, unproductive_sweeps_alert)


class CollectConfig(Config):
    """history_days > 0 (or a history_start) replays past sweeps against the market's settable clock (a backfill)."""

    history_days: float = 0
    every_hours: float = 12
    # ISO-8601 end of the replayed history; empty means now. A fixed end makes a backfill reproducible.
    history_until: str = ""
    # ISO-8601 start of the replayed history; when set it replaces history_days (the backfill_fares job sets it).
    history_start: str = ""
    # ISO-8601 time of the newest collection already held (history_days only): the replay sweeps after it alone.
    history_after: str = ""


# Raw is the platform's source of truth: every later table can be rebuilt from it.
# One collection at a time, scheduled or replayed: each run has its own rate limiters, so two overlapping runs
# (a sweep slower than its 30-minute slot, a backfill) would call each provider at twice its rate.
COLLECTION_POOL = "collection"


@asset(group_name="streaming", description="Raw fare-search records in the lake's landing prefix "
       "(one JSON envelope per provider call, Firehose key layout).", pool=COLLECTION_POOL)
def raw_fare_quotes(context: AssetExecutionContext, config: CollectConfig, fare_source: FareSourceResource,
                    lake: LakeResource) -> MaterializeResult:
    watchlist = fare_source.watchlist()
    client = fare_source.client(watchlist.providers)
    delivery = lake.delivery_stream()
    now = parse_utc(config.history_until, "history_until") if config.history_until else dt.datetime.now(dt.timezone.utc)
    times = sweep_times(config.history_days, config.every_hours, config.history_start, config.history_after, now,
                        config.history_until)
    stats = SweepStats()
    unproductive = []
    for at in times:
        swept = sweep(watchlist.trips_at(at or now), client, delivery, at, fare_source.concurrency, chosen_at=now)
        stats.add(swept)
        if swept.succeeded == 0:
            unproductive.append({"at": utc_iso(at or now), "calls": swept.calls,
                                 "failures_by_kind": dict(swept.failures)})
    delivery.flush()
    context.log.info(f"{stats.calls} calls in {len(times)} sweeps, {delivery.records_delivered} records delivered")
    if delivery.records_past_firehose:
        context.log.warning(f"Firehose did not take {delivery.records_past_firehose} records within its retry bound; "
                            "they were written straight to the landing prefix as the stream's -direct- objects")
        send_from_run(context.log, firehose_bypassed_alert(context.job_name, context.run.run_id,
                                                           delivery.records_past_firehose, delivery.stream_name))
    # Records past the retry bound are safe in the spool, but only the next run re-sends them: say so here.
    waiting = delivery.spool.waiting_records()
    if waiting:
        context.log.warning(f"{waiting} records undelivered; they wait in the spool {delivery.spool.folder} "
                            "for the next collection")
        send_from_run(context.log, undelivered_records_alert(context.job_name, context.run.run_id, waiting,
                                                             str(delivery.spool.folder)))
    if unproductive:
        context.log.warning(f"{len(unproductive)} of {len(times)} sweeps had no successful call")
        send_from_run(context.log, unproductive_sweeps_alert(context.job_name, context.run.run_id, unproductive))
    silent = stats.providers_without_success()
    if silent and stats.succeeded:
        context.log.warning(f"no usable answer in this run from {', '.join(silent)}, while others answered")
        send_from_run(context.log, providers_without_success_alert(context.job_name, context.run.run_id, silent))
    return MaterializeResult(metadata={
        "sweeps": len(times),
        "sweeps_without_success": len(unproductive),
        "calls": stats.calls,
        "failures": sum(stats.failures.values()),
        "failures_by_kind": dict(stats.failures),
        "providers_without_success": sorted(silent),
        "p50_latency_ms": stats.percentile_ms(0.5),
        "p95_latency_ms": stats.percentile_ms(0.95),
        "bytes": stats.bytes,
        "records_delivered": delivery.records_delivered,
        "records_past_firehose": delivery.records_past_firehose,
        "records_in_spool": waiting,
        "objects_written": len(delivery.objects_written),
        "landing_hours": sorted(delivery.landing_hours),
        "rate_limits": client.rate_limit_states(),
    })


collect_job = define_asset_job("collect_fares", selection=[raw_fare_quotes], tags=max_runtime_tags(),
                               description="One collection sweep of the watchlist (or a backfill with config).")


class BackfillConfig(Config):
    """A past period to replay: the watchlist is swept at start, start + every_hours, … up to end (ISO-8601, UTC)."""

    start: str
    end: str
    every_hours: float = 12


@config_mapping
def _replayed_period(config: BackfillConfig) -> RunConfig:
    return RunConfig(ops={"raw_fare_quotes": CollectConfig(history_start=config.start, history_until=config.end,
                                                           every_hours=config.every_hours)})


backfill_job = define_asset_job(
    "backfill_fares", selection=[raw_fare_quotes], config=_replayed_period, tags=max_runtime_tags(),
    description="Replay the watchlist over a past period against the market's settable clock "
                "(X-Market-Time; the simulator honours it, a live provider answers for today).",
)


# A collection not finished yet. Not NOT_STARTED: a run created but never launched would hold collection back for good.
_COLLECTING = [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


# Fares move during the day; 30 minutes is the platform's collection cadence.
# Running from the first deployment, as the sensors are: a platform that collects only once someone finds the
# switch in the UI serves stale fares meanwhile.
@schedule(job=collect_job, cron_schedule="*/30 * * * *", name="collect_every_30_minutes",
          default_status=DefaultScheduleStatus.RUNNING)
def collect_schedule(context: ScheduleEvaluationContext):
    """A sweep every 30 minutes, skipped while a collection or a backfill is queued or running.

    The pool holds one collection at a time: behind a sweep slower than its slot, a long backfill or a run whose worker
    died (STARTED until its time limit fails it), each slot would queue a run, and the queue would then run back to
    back: near-identical collections minutes apart, each spending the providers' quota.
    """
    # Unfinished runs are few. A collection is a run of either job, or one materializing raw_fare_quotes from the
    # asset graph (its job is the implicit asset job).
    for record in context.instance.get_run_records(RunsFilter(statuses=_COLLECTING)):
        run = record.dagster_run
        if run.job_name in (collect_job.name, backfill_job.name) or raw_fare_quotes.key in (run.asset_selection or ()):
            return SkipReason(f"{run.job_name} run {run.run_id} is still {run.status.value.lower()}: this slot's sweep "
                              "is skipped rather than queued behind it")
    return RunRequest()
