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


def refresh(path: Path = FILE) -> None:
    from edgecv.builders.registry import list_models
    from edgecv.devices import features
    from edgecv.fileio import write_text_atomic

    names = [n for n in list_models() if n not in features.cached_models()]
    models = {}
    for n in names:
        print(f"building {n} ...", file=sys.stderr, flush=True)
        models[n] = features.build_entry(n)
    lines = ["{", '  "schema": "edgecv.anchor_features/v1",',
             '  "note": "Deployed ops of the registered variants not in edgecv/devices/anchor_features.json. '
             'Regenerate: python -m edgecv.sweep.registry_features",', '  "models": {']
    for i, (n, e) in enumerate(models.items()):
        ops = ",\n".join(f"        {json.dumps(r)}" for r in e["ops"])
        lines.append(f'    {json.dumps(n)}: {{\n      "columns": {json.dumps(e["columns"])},\n'
                     f'      "macs": {e["macs"]}, "peak_activation_elems": {e["peak_activation_elems"]},\n'
                     f'      "ops": [\n{ops}\n      ]\n    }}' + ("," if i < len(models) - 1 else ""))
    lines += ["  }", "}"]
    write_text_atomic(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    refresh()
