"""The work of one sweep point, stage by stage. These functions run in worker processes (local pool or
Ray), take and return plain JSON-able values, and import TensorFlow only inside the stages that need it.

Stages: ``build`` (one per model: Keras model, BatchNorm statistics set on sample photos or trained weights
loaded, saved .keras) or ``load`` (a user's trained ``.keras`` file: checked, loaded in a child, costed),
``convert`` (``edgecv.conversion.api.quantize``: convert, verify against Keras in the artifact's runtime),
``profile`` (``edgecv.profiling.api.static_profile``: the deployed graph's ops, MACs, bytes) and, in the
parent process one at a time, ``measure`` (``edgecv.profiling.api.profile`` on this host).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from edgecv.builders.batchnorm import recalibrate_batchnorm
from edgecv.formats import CALIBRATED

BN_PHOTOS = 16


def init_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def build_stage(model_name: str, path: str, seed: int = 0, weights: str | None = None) -> dict[str, Any]:
    """Build ``model_name``, recalibrate BatchNorm on sample photos, save to ``path`` atomically.

    With ``weights`` (a Keras weights file, read by ``edgecv.builders``' checked reader, every shape checked)
    the trained weights are loaded instead, BatchNorm statistics included (no recalibration)."""
    t0 = time.perf_counter()
    init_worker()
    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import get_config
    from edgecv.conversion.calibration import sample_images
    from edgecv.native import native_output_silenced
    from edgecv.fileio import atomic_path

    cfg = get_config(model_name)
    with native_output_silenced():
        import keras

        from edgecv.builders.keras_builder import build_keras

        keras.utils.set_random_seed(seed)
        model = build_keras(cfg, weights=weights)
        if weights is None:
            h, w, c = cfg.input_shape
            pixels = sample_images(BN_PHOTOS, max(h, w), seed=seed + 1)[:, :h, :w, :c]
            recalibrate_batchnorm(model, cfg.spec.preprocessing.apply(pixels))
        cost = model_cost(model)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            model.save(tmp)
    return {"model": model_name, "path": path, "macs": cost.macs, "params": cost.params,
            "params_deployed": cost.params_deployed, "input_shape": list(cfg.input_shape),
            "seconds": round(time.perf_counter() - t0, 3)}


def load_stage(model_name: str, path: str) -> dict[str, Any]:
    """A user's ``.keras`` file as a point source (no build): loaded the way ``edgecv quantize`` loads one
    (structure checked, loaded first in a child process, then with Keras' safe mode), costed, not copied."""
    t0 = time.perf_counter()
    init_worker()
    from edgecv.builders.cost import model_cost
    from edgecv.conversion.loading import load_model
    from edgecv.native import native_output_silenced

    loaded = load_model(path, isolate=True)
    with native_output_silenced():
        cost = model_cost(loaded.keras_model)
    shape = [int(d) for d in loaded.keras_model.input_shape[1:]]
    return {"model": model_name, "path": path, "macs": cost.macs, "params": cost.params,
            "params_deployed": cost.params_deployed, "input_shape": shape,
            "seconds": round(time.perf_counter() - t0, 3)}


def convert_stage(keras_path: str, precision: str, fmt: str, artifact: str, calib: str | None, samples: int,
                  verify_samples: int, isolate_load: bool = False) -> dict[str, Any]:
    """Convert and verify one point with the converter's API; returns the ConversionResult as a dict.
    ``isolate_load``: the model is a user's file, loaded in a child process first (as ``edgecv quantize`` does)."""
    init_worker()
    from edgecv.conversion.api import quantize

    res = quantize(keras_path, precision, format=fmt, calib=calib if precision in CALIBRATED else None,
                   samples=samples, output=artifact, verify=True, verify_samples=verify_samples,
                   isolate_load=isolate_load)
    d = res.to_dict()
    d.pop("debug_layers", None)
    return d


def profile_stage(artifact: str) -> dict[str, Any]:
    """Static analysis of the deployed graph (ops, MACs, params, bytes, peak activation memory)."""
    from edgecv.profiling.api import static_profile

    return static_profile(artifact).to_dict()


def measure_stage(artifact: str, threads: int | None, runs: int, min_time_s: float) -> dict[str, Any]:
    """Latency and memory measured on this host (no ops: the static stage has them)."""
    from edgecv.profiling.api import profile

    return profile(artifact, threads=threads, runs=runs, warmup_runs=3, min_time_s=min_time_s).to_dict(with_ops=False)


def run_stage(name: str, *args: Any) -> dict[str, Any]:
    """Entry point of every task: runs the stage and turns a user-level error into a result, not a crash."""
    from edgecv.errors import EdgecvError, one_line

    fn = {"build": build_stage, "load": load_stage, "convert": convert_stage, "profile": profile_stage, "measure": measure_stage}[name]
    try:
        return {"ok": True, "value": fn(*args)}
    except EdgecvError as exc:
        return {"ok": False, "error": one_line(exc), "kind": "edgecv"}
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on; not cached (may be transient)
        return {"ok": False, "error": f"{type(exc).__name__}: {one_line(exc)[:500]}", "kind": "crash"}
