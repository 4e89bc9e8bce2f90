"""The one place that knows the lake's key layout (local folder or S3 bucket alike)."""
import os
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

RAW_PREFIX = "raw/fares/"
CURATED_PREFIX = "curated/"
QUARANTINE_PREFIX = "quarantine/"
MODELS_PREFIX = "models/"
EXPORTS_PREFIX = "exports/"
# Where Firehose writes the records it could not deliver under RAW_PREFIX (its ErrorOutputPrefix).
RAW_ERRORS_PREFIX = "raw-errors/"
# What the EMR runner uploads (the job's code) and exchanges with its steps (Pipes context and messages).
CODE_PREFIX = "code/"
PIPES_PREFIX = "pipes/"
PIPES_CONTEXT_PREFIX = f"{PIPES_PREFIX}context/"
PIPES_MESSAGES_PREFIX = f"{PIPES_PREFIX}messages/"
# EMR's cluster and step logs (unless FARES_EMR_LOG_URI points elsewhere): a transient cluster per job writes them.
EMR_LOGS_PREFIX = "emr-logs/"
LANDING_HOUR_FORMAT = "%Y-%m-%d-%H"
# The hour folders of a raw object's key or URL; groups: year, month, day, hour. An object in a folder below its
# hour's (an operator's copy) belongs to that hour: listing an hour's prefix finds it too.
RAW_HOUR_PATTERN = re.escape(RAW_PREFIX) + r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/(?:[^/]+/)*[^/]+$"


def partial_object_path(target: Path) -> Path:
    """Where the local lake writes an object before a rename makes it appear whole: a name its listing skips."""
    return target.with_name(f".{target.name}.partial")


def write_whole(target: Path, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to `target` durably (fsync) under its partial_object_path, then rename: a reader never sees
    half of it, and once this returns it survives a crash."""
    partial = partial_object_path(target)
    with open(partial, "wb") as handle:
        handle.writelines(chunks)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)


def is_partial_object(key: str) -> bool:
    """Whether a local lake key is an object still being written (see partial_object_path), or left half-written."""
    name = key.rpartition("/")[2]
    # ".tmp" was the delivery stream's name for it until 2026-12-06: a lake may still hold one a killed run left.
    return name.startswith(".") and name.endswith((".partial", ".tmp"))


def raw_object_key(stream: str, arrival: datetime, uid: str) -> str:
    """Firehose's S3 key: raw/fares/YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>."""
    arrival = arrival.astimezone(timezone.utc)
    return f"{RAW_PREFIX}{arrival:%Y/%m/%d/%H}/{stream}-1-{arrival:%Y-%m-%d-%H-%M-%S}-{uid}"


def raw_hour_prefix(landing_hour: str) -> str:
    """Prefix of every raw object that landed in one hour ("YYYY-MM-DD-HH")."""
    hour = datetime.strptime(landing_hour, LANDING_HOUR_FORMAT)
    return f"{RAW_PREFIX}{hour:%Y/%m/%d/%H}/"


def job_code_key(digest: str, name: str = "") -> str:
    """Key of one file of the Spark job's code uploaded for EMR (its folder without `name`), by the code's digest."""
    return f"{CODE_PREFIX}{digest}/{name}"


def landing_hour_of_key(key: str) -> str:
    """The landing hour ("YYYY-MM-DD-HH") a raw object key (or a URL ending in one) belongs to."""
    match = re.search(RAW_HOUR_PATTERN, key)
    if not match:
        raise ValueError(f"{key!r} is not a raw object under {RAW_PREFIX}YYYY/MM/DD/HH/")
    return "-".join(match.groups())


def curated_table_path(root: str, table: str) -> str:
    """Folder (or s3a:// URL) of one curated Parquet table."""
    return f"{root.rstrip('/')}/{CURATED_PREFIX}{table}"


# The curated fact tables' partition folders, outermost first: a landing hour's rows nested under each collection date
# they carry (Spark's column=value folders).
CURATED_PARTITION_COLUMNS = ("collected_date", "landing_hour")


def curated_partition_path(root: str, table: str, collected_date: str = "*", landing_hour: str = "*") -> str:
    """Folder (or glob, `*` by default) of a curated fact table's rows collected on a date that landed in an hour."""
    date_column, hour_column = CURATED_PARTITION_COLUMNS
    return f"{curated_table_path(root, table)}/{date_column}={collected_date}/{hour_column}={landing_hour}"


def spool_folder(root: str, stream: str) -> str:
    """The local lake's write-ahead spool of one delivery stream: a hidden folder the raw listings skip, on the same
    disk as the objects."""
    return f"{root.rstrip('/')}/.spool/{stream}"


def quarantine_root(root: str) -> str:
    """Folder of the records structuring could not use, partitioned by landing_hour."""
    return f"{root.rstrip('/')}/{QUARANTINE_PREFIX.rstrip('/')}"


def quarantine_path(root: str, landing_hour: str) -> str:
    """Folder of the records one landing hour could not structure."""
    return f"{quarantine_root(root)}/landing_hour={landing_hour}"


def warehouse_export_key(run_id: str) -> str:
    """Prefix of what one run's warehouse load reads (the projected fares and the dimensions); removed after it."""
    return f"{EXPORTS_PREFIX}warehouse/{run_id}/"


def export_table_path(export_root: str, table: str) -> str:
    """Folder (or s3a:// URL) of one table of an export, under the export's root."""
    return f"{export_root.rstrip('/')}/{table}"


def model_prefix(name: str) -> str:
    """Prefix of every saved version of a model and of its published pointer."""
    return f"{MODELS_PREFIX}{name}/"


def model_version_key(name: str, version: str, file: str = "") -> str:
    """Key of one file of one saved model version (its folder's prefix without `file`)."""
    return f"{model_prefix(name)}{version}/{file}"


def published_model_key(name: str) -> str:
    """Key of the pointer naming the version of a model the page serves."""
    return f"{model_prefix(name)}latest.json"


def recent_landing_hours(now: datetime, lookback_hours: int) -> list[str]:
    """The landing hours a sensor lists: the current one and `lookback_hours` before it, oldest first."""
    current = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return [(current - timedelta(hours=back)).strftime(LANDING_HOUR_FORMAT) for back in range(lookback_hours, -1, -1)]
