"""How long a run may take before Dagster's run monitoring (dagster.yaml) fails it.

With the default run launcher a run whose worker died (a machine restart, an out-of-memory kill, `make run`
stopped hard) stays STARTED for ever: it holds its pool, so every later run of that pool queues behind it, and no
failure event reaches failed_run_alert. Past its limit the run is failed, which frees the pool and sends the alert.
"""
MAX_RUNTIME_TAG = "dagster/max_runtime"
# A collection, a retrain or a refresh takes minutes on this machine; a year's backfill of a large watchlist hours.
LOCAL_RUN_MAX_SECONDS = 6 * 3600


def max_runtime_tags(seconds: int = LOCAL_RUN_MAX_SECONDS) -> dict[str, str]:
    """The tags that give a job's runs `seconds` before run monitoring fails them."""
    return {MAX_RUNTIME_TAG: str(seconds)}
