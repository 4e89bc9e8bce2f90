"""The failed-run alert: any run of the code location that fails is mailed or posted (FARES_ALERT_*).

Nothing re-runs a failed run by itself: the landing sensor requests each set of raw objects once, so a failed
structuring or load leaves its landing hours as they were until someone re-executes the run. The alert is how
they learn it.

An alert waits in the sensor's cursor until every configured channel has taken it, so a mail server that is down
for an hour delays the alert instead of losing it. Dagster's run-failure sensor moves past a run whether its alert
went out or not, hence a plain sensor that reads the run-failure events itself.
"""
import json
import time

from dagster import (DagsterEventType, DagsterInstance, DefaultSensorStatus, RunStatusChangeRecordsFilter,
                     SensorEvaluationContext, SkipReason, sensor)

from fare_assets.streaming.notify import NO_CHANNEL, Alert, alert_settings_from_env, run_failure_alert, send_waiting

# Failure events read per tick, and how long a tick starts sends for: the daemon gives a tick 60 s, and a tick that
# overruns loses its cursor, and with it which alerts it sent.
FAILURES_PER_TICK = 100
SENDING_SECONDS = 30
# An alert that no channel took within a day is given up (the tick's log says so), and at most this many wait: new
# failures are read only as room frees up, so a burst is sent late rather than dropped.
MAX_WAIT_SECONDS = 24 * 3600
MAX_WAITING = 200

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


def run_alert(instance: DagsterInstance, run_id: str) -> Alert | None:
    """The alert for a failed run, from its run-failure and step-failure events; None if the run was deleted."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    events = [record.event_log_entry.dagster_event for record in instance.get_records_for_run(
        run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.STEP_FAILURE}).records]
    message = next((event.message or "" for event in events if event.event_type == DagsterEventType.RUN_FAILURE), "")
    step_errors = [f"{event.step_key}: {_root_cause(event.event_specific_data.error)}" for event in events
                   if event.event_type == DagsterEventType.STEP_FAILURE
                   and event.event_specific_data is not None and event.event_specific_data.error is not None]
    return run_failure_alert(run.job_name, run_id, message, step_errors, run_partitions(run.tags))


def _failures_after(instance: DagsterInstance, storage_id: int, limit: int):
    """The run-failure event records after `storage_id`, oldest first."""
    return instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(DagsterEventType.RUN_FAILURE, after_storage_id=storage_id),
        limit=limit, ascending=True).records


def _newest_failure_id(instance: DagsterInstance) -> int:
    newest = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records
    return newest[0].storage_id if newest else 0


def cursor_state(cursor: str | None) -> dict | None:
    """The sensor's state in its cursor: {"after": a storage id, "waiting": {run id: {"sent", "since"}}}; None to start
    afresh. The cursor of the run-failure sensor this replaced (2026-12-05) goes on from its last failure."""
    try:
        state = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    if isinstance(state.get("after"), int) and isinstance(state.get("waiting"), dict):
        return state
    return {"after": state["record_id"], "waiting": {}} if isinstance(state.get("record_id"), int) else None


# Running by default: it only sends when a channel is configured, and a stopped alert is a silent one. It watches
# every run of the instance, the implicit asset job of UI materializations included.
@sensor(name="failed_run_alert", default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60,
        description="Email / webhook alert when any run fails (FARES_ALERT_*); kept until every channel took it.")
def failed_run_alert(context: SensorEvaluationContext):
    """Queue each new failed run's alert, then send what waits; the cursor keeps what is unsent."""
    instance = context.instance
    state = cursor_state(context.cursor)
    if state is None:
        # Runs that failed before the sensor first ran are not news.
        context.update_cursor(json.dumps({"after": _newest_failure_id(instance), "waiting": {}}))
        return SkipReason("started: alerts on runs that fail from now on")
    settings = alert_settings_from_env()
    waiting: dict[str, dict] = state["waiting"]
    if not settings.channels:
        # A run that fails while no channel is configured is not alerted later; what already waits keeps waiting.
        context.update_cursor(json.dumps({"after": max(state["after"], _newest_failure_id(instance)),
                                          "waiting": waiting}))
        return SkipReason(NO_CHANNEL)
    now = time.time()
    for run_id, entry in list(waiting.items()):
        if now - entry["since"] > MAX_WAIT_SECONDS:
            missing = ", ".join(channel for channel in settings.channels if channel not in entry["sent"])
            context.log.error(f"alert for run {run_id} given up: {missing} did not take it within a day")
            del waiting[run_id]
    room = min(FAILURES_PER_TICK, MAX_WAITING - len(waiting))
    failures = _failures_after(instance, state["after"], room) if room > 0 else []
    for record in failures:
        waiting.setdefault(record.event_log_entry.run_id, {"sent": [], "since": now})
    down = send_waiting(waiting, settings, lambda run_id: run_alert(instance, run_id),
                        time.monotonic() + SENDING_SECONDS)
    context.update_cursor(json.dumps({"after": failures[-1].storage_id if failures else state["after"],
                                      "waiting": waiting}))
    if down:
        # A failed tick would drop the cursor, and with it which channels already took each alert: the tick is
        # skipped with the reason instead, and its log carries the error.
        problems = "; ".join(f"{channel}: {problem}" for channel, problem in down.items())
        context.log.error(f"alerts not sent ({problems}); {len(waiting)} wait for the next tick")
        return SkipReason(f"{len(waiting)} alert(s) wait: {problems}")
    if waiting:
        return SkipReason(f"{len(waiting)} alert(s) wait for the next tick")
    return SkipReason(f"{len(failures)} new failed run(s); no alert waiting")
