"""The failed-run alert: any run of the code location that fails is mailed or posted (FARES_ALERT_*).

Nothing re-runs a failed run by itself: the landing sensor requests each set of raw objects once, so a failed
structuring or load leaves its landing hours as they were until someone re-executes the run. The alert is how
they learn it.
"""
from dagster import DefaultSensorStatus, RunFailureSensorContext, SkipReason, run_failure_sensor

from fare_assets.streaming.notify import NO_CHANNEL, alert_settings_from_env, run_failure_alert, send_alert

# The tags Dagster gives a run of one partition, and of a range of partitions (a single-run backfill).
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _root_cause(error) -> str:
    """The innermost error's message: Dagster wraps the asset's own exception in its step error."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def run_partitions(tags: dict) -> str | None:
    """The partition or range of partitions a run covered, as '2026-12-05-08:00' or 'A … B'; None without one."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = (tags.get(tag) for tag in RANGE_TAGS)
    return f"{start} … {end}" if start and end else None


# Running by default: it only sends when a channel is configured, and a stopped alert is a silent one. Without
# monitored jobs it watches every job of the code location, the implicit asset job of UI materializations included.
@run_failure_sensor(name="failed_run_alert", default_status=DefaultSensorStatus.RUNNING,
                    description="Email / webhook alert when any run fails (FARES_ALERT_*).")
def failed_run_alert(context: RunFailureSensorContext):
    """Alert once per failed run; a channel that fails makes the tick fail, so the operator sees it in the UI."""
    settings = alert_settings_from_env()
    if not settings.channels:
        return SkipReason(NO_CHANNEL)
    run = context.dagster_run
    step_errors = [f"{event.step_key}: {_root_cause(event.event_specific_data.error)}"
                   for event in context.get_step_failure_events()
                   if event.event_specific_data is not None and event.event_specific_data.error is not None]
    alert = run_failure_alert(run.job_name, run.run_id, context.failure_event.message or "", step_errors,
                              run_partitions(run.tags))
    problems = {channel: problem for channel, problem in send_alert(alert, settings).items() if problem}
    if problems:
        raise RuntimeError(f"alert for run {run.run_id} not sent: {problems}")
    context.log.info(f"alert sent for run {run.run_id} by {', '.join(settings.channels)}")
    return None
