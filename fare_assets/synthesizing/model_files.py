"""Versioned model files shared by the advisor and the fare model."""
import os
from pathlib import Path

import joblib


class ModelUnavailable(Exception):
    """A model file is missing, unreadable, of another kind or format version, or built on other features."""


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
