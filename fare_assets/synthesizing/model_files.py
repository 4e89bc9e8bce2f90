"""Versioned model files shared by the advisor and the fare model, and their versions in the lake (folder or S3)."""
import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import joblib

from fare_assets.storing.lake import model_prefix, model_version_key, published_model_key

MODEL_FILE, METRICS_FILE = "model.pkl", "metrics.json"
# The two models the platform trains and publishes, by their asset names.
ADVISOR, FARE_MODEL = "buy_wait_advisor", "fare_model"
# What new_version writes (a UTC timestamp), so versions sort by time; another folder is nobody's to delete.
_VERSION = re.compile(r"\d{8}T\d{6}Z")
# A published pointer names one folder of the model's: a "../" in it would lead a local lake's reader out of models/.
_FOLDER_NAME = re.compile(r"[\w-]+")


def new_version() -> str:
    """The version a model trained now is saved as."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class ModelUnavailable(Exception):
    """A model file is missing, unreadable, of another kind or format version, or built on other features."""


class ModelNotPublished(ModelUnavailable):
    """No version of the model has been published yet (a young deployment): expected, not a failure."""


def save_model_file(path: str | os.PathLike, kind: str, format_version: int, features: list[str], payload: dict) -> Path:
    """Write a model file atomically, so a reader never sees a half-written model."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    envelope = {"kind": kind, "format_version": format_version, "features": list(features), "payload": payload}
    joblib.dump(envelope, partial)
    os.replace(partial, target)
    return target


def load_model_file(path: str | os.PathLike, kind: str, format_version: int, features: list[str]) -> dict:
    """Read a model file's payload, raising ModelUnavailable (naming the path) unless it matches exactly.

    Model files are pickles: load only files this platform wrote.
    """
    source = Path(path)
    if not source.is_file():
        raise ModelUnavailable(f"no {kind} model file at {source}")
    try:
        envelope = joblib.load(source)
    # Truncated or foreign bytes fail in many ways inside joblib and pickle; all mean the same to the caller.
    except Exception as error:
        raise ModelUnavailable(f"{kind} model file {source} is corrupt or unreadable: {error!r}") from error
    if not isinstance(envelope, dict) or envelope.get("kind") != kind:
        raise ModelUnavailable(f"{source} is not a {kind} model file")
    if envelope.get("format_version") != format_version:
        raise ModelUnavailable(
            f"{kind} model file {source} has format version {envelope.get('format_version')}, expected {format_version}"
        )
    if envelope.get("features") != list(features):
        raise ModelUnavailable(f"{kind} model file {source} was trained on other features; retrain it")
    return envelope["payload"]


def save_version(lake, name: str, version: str, model, metrics: dict, charts: dict[str, bytes] | None = None,
                 publish: bool = True) -> str:
    """Write model, metrics and charts (<chart>.png) under models/<name>/<version>/ of the lake (a LakeStorage);
    when `publish`, point models/<name>/latest.json (what the page serves) at it. Returns the version's folder."""
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / MODEL_FILE
        model.save(model_file)
        lake.write_object(model_version_key(name, version, MODEL_FILE), model_file.read_bytes())
    lake.write_object(model_version_key(name, version, METRICS_FILE),
                      json.dumps(metrics, indent=1, default=str).encode())
    for chart, png in (charts or {}).items():
        lake.write_object(model_version_key(name, version, f"{chart}.png"), png)
    if publish:
        # Written last, so a reader it sends to this version finds the whole of it.
        lake.write_object(published_model_key(name), json.dumps({"version": version}).encode())
    return lake.object_path(model_version_key(name, version))


def published_version(lake, name: str) -> str:
    """The version models/<name>/latest.json names; raises ModelUnavailable when none is published or it is unreadable."""
    pointer = published_model_key(name)
    try:
        version = str(json.loads(lake.read_object(pointer))["version"])
    except FileNotFoundError as error:
        raise ModelNotPublished(f"no {name} has been published yet ({lake.object_path(pointer)} is missing)") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelUnavailable(f"{lake.object_path(pointer)} does not name a {name} version") from error
    if not _FOLDER_NAME.fullmatch(version):
        raise ModelUnavailable(f"{lake.object_path(pointer)} names {version!r}, which is no {name} version")
    return version


def load_published(lake, name: str, loader: Callable[[Path], object]) -> tuple[object, str]:
    """The published version of a model, read with `loader` (a model class's load), and that version."""
    version = published_version(lake, name)
    key = model_version_key(name, version, MODEL_FILE)
    try:
        data = lake.read_object(key)
    except FileNotFoundError as error:
        raise ModelUnavailable(f"{name} {version} has no model file at {lake.object_path(key)}") from error
    # Model loaders read files (MLlib models unpack into folders); a copy in a temporary folder serves S3 alike.
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / MODEL_FILE
        model_file.write_bytes(data)
        try:
            return loader(model_file), version
        except ModelUnavailable as error:
            raise ModelUnavailable(f"{name} {version} at {lake.object_path(key)}: {error}") from error


def published_metrics(lake, names: Iterable[str]) -> dict:
    """Headline metrics of each published model, flattened as <name>.<metric> for a summary (unpublished ones skipped)."""
    metrics = {}
    for name in names:
        try:
            version = published_version(lake, name)
        except ModelUnavailable:
            continue
        for key, value in json.loads(lake.read_object(model_version_key(name, version, METRICS_FILE))).items():
            metrics[f"{name}.{key}"] = round(value, 4) if isinstance(value, float) else value
    return metrics




def saved_versions(lake, name: str) -> list[str]:
    """Every saved version of a model, oldest first."""
    prefix = model_prefix(name)
    return sorted({folder for key in lake.list_keys(prefix)
                   for folder, slash, _ in [key.removeprefix(prefix).partition("/")]
                   if slash and _VERSION.fullmatch(folder)})


def prune_versions(lake, name: str, keep: int, spared: Iterable[str] = ()) -> list[str]:
    """Delete the versions of a model older than its newest `keep` (0 keeps all), never the published one nor those
    `spared`; the versions deleted."""
    if not keep:
        return []
    try:
        published = {published_version(lake, name)}
    except ModelNotPublished:
        published = set()
    except ModelUnavailable:
        # A pointer nobody can read names no version to spare: delete nothing until it is mended.
        return []
    doomed = [version for version in saved_versions(lake, name)[:-keep] if version not in published | set(spared)]
    for version in doomed:
        lake.delete_prefix(model_version_key(name, version))
    return doomed
