"""Deployed-op features of every registered variant, so ``edgecv recommend`` predicts without TensorFlow.

The devices package caches the features of its anchor models (``edgecv/devices/anchor_features.json``);
this module ships the rest of the registry in ``registry_features.json`` beside it, in the same format
(rows from ``edgecv.devices.features.build_entry``: the ops the TFLite converter deploys for the Keras
model). Regenerate after a builder change (imports TensorFlow, builds every missing model):

    python -m edgecv.sweep.registry_features
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

from edgecv.records import ProfileResult

FILE = Path(__file__).with_name("registry_features.json")


@lru_cache(maxsize=1)
def _cache() -> dict:
    if not FILE.is_file():
        return {}
    return json.loads(FILE.read_text()).get("models", {})


def registry_static(name: str, dtype: str, build_missing: bool = False) -> ProfileResult:
    """Static profile (ops, MACs, bytes) of registry model ``name`` deployed as ``dtype``."""
    from edgecv.devices import features

    if name in features.cached_models():
        return features.anchor_static(name, dtype, build_missing=False)
    entry = _cache().get(name)
    if entry is None:
        if not build_missing:
            raise KeyError(f"{name!r} has no cached features; run python -m edgecv.sweep.registry_features")
        entry = features.build_entry(name)
    return features.static_from_rows(name, [dict(zip(entry["columns"], r)) for r in entry["ops"]],
                                      entry["peak_activation_elems"], dtype)


def available() -> list[str]:
    from edgecv.builders.registry import list_models
    from edgecv.devices import features

    have = set(features.cached_models()) | set(_cache())
    return [n for n in list_models() if n in have]


NOTE = ("Deployed ops of the registered variants not in edgecv/devices/anchor_features.json. "
        "Regenerate: edgecv models --rebuild")


def cached_costs() -> dict[str, dict]:
    """The builder's cost pass of every registered model from the two caches (no TensorFlow):
    name -> {input_shape, macs, params, params_deployed, activation_elems_max}."""
    from edgecv.devices import features

    out = {n: e["cost"] for n, e in features.cached_entries().items() if "cost" in e}
    out.update({n: e["cost"] for n, e in _cache().items() if "cost" in e})
    return out


def refresh(path: Path = FILE, names: list[str] | None = None, progress=None) -> None:
    """Rebuild the entries of ``names`` (default: every registered model) in both caches (imports TensorFlow).

    ``progress(name)`` is called before each model is built."""
    from edgecv.builders.registry import list_models
    from edgecv.devices import features

    names = list(list_models()) if names is None else list(names)
    anchors = set(features.cached_models())
    anchor_models = features.cached_entries()
    models = dict(_cache())
    registered = list(list_models())

    def write(anchor: bool) -> None:  # after each model: an interrupted rebuild keeps what it built
        if anchor:
            features.write_features(features.FEATURES_FILE, features.ANCHOR_NOTE, anchor_models)
        else:
            order = [n for n in registered if n in models] + sorted(set(models) - set(registered))
            features.write_features(path, NOTE, {n: models[n] for n in order})
            _cache.cache_clear()

    for n in names:
        if progress is not None:
            progress(n)
        else:
            print(f"building {n} ...", file=sys.stderr, flush=True)
        (anchor_models if n in anchors else models)[n] = features.build_entry(n)
        write(n in anchors)


if __name__ == "__main__":
    refresh()
