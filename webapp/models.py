"""The trained advisor and fare model, read from the lake's latest versions and reloaded when they change."""
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from fare_assets.settings import load_settings
from fare_assets.storing.lake import models_path
from fare_assets.synthesizing.advisor import BuyWaitAdvisor
from fare_assets.synthesizing.fare_model import FareModel
from fare_assets.synthesizing.model_files import ModelUnavailable

ADVISOR = "buy_wait_advisor"
FARE_MODEL = "fare_model"
_LOADERS = {ADVISOR: BuyWaitAdvisor.load, FARE_MODEL: FareModel.load}
# Answers kept per model: a few thousand trips' advice and predicted grids, a few MB.
MEMO_ENTRIES = 4096


def default_models_root() -> str:
    """The lake holding models/<name>/latest.json (FARES_LAKE)."""
    return str(load_settings().lake)


class ModelStore:
    """Loads each model once per published version, so a request never unpickles a model."""

    def __init__(self, lake_root: str):
        self.lake_root = lake_root
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple, object]] = {}
        self._memo: dict[str, OrderedDict] = {}

    def _pointer(self, name: str) -> Path:
        return Path(models_path(self.lake_root, name)) / "latest.json"

    def get(self, name: str):
        """The latest model `name`; raises ModelUnavailable when none is published or it cannot be read."""
        pointer = self._pointer(name)
        try:
            stamp = (pointer.stat().st_mtime_ns, pointer.stat().st_size)
        except OSError as error:
            raise ModelUnavailable(f"no {name} has been trained yet") from error
        cached = self._loaded.get(name)
        if cached and cached[0] == stamp:
            return cached[1]
        with self._lock:
            cached = self._loaded.get(name)
            if cached and cached[0] == stamp:
                return cached[1]
            try:
                path = json.loads(pointer.read_text())["path"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ModelUnavailable(f"{pointer} does not name a model file") from error
            model = _LOADERS[name](os.fspath(path))
            self._loaded[name] = (stamp, model)
            self._memo[name] = OrderedDict()
            return model

    def memo(self, name: str, key: Hashable, compute: Callable[[object], object]):
        """`compute(model)` for the latest model `name`, remembered under `key` until the model changes.

        Advice and predictions are pure functions of the model and their inputs; callers put in `key`
        everything the answer depends on (a trip's newest collection time stands for its observations),
        so a page view repeats no model work until a new collection or a new model arrives.
        """
        model = self.get(name)
        with self._lock:
            entries = self._memo.setdefault(name, OrderedDict())
            if key in entries:
                entries.move_to_end(key)
                return entries[key]
        value = compute(model)
        with self._lock:
            entries = self._memo.setdefault(name, OrderedDict())
            entries[key] = value
            if len(entries) > MEMO_ENTRIES:
                entries.popitem(last=False)
        return value
