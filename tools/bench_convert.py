"""Benchmark of the converter pipeline; writes JSON.

Two parts, both on the registry models MobileNet 0.5, MobileNetV2 1.0, EfficientNet-B0 and Lite0:

``speed`` (default): wall time of build + convert for every precision x format, and the overhead of
    ``edgecv.conversion.quantize`` (verification off: it is extra work the bare converter does not do)
    over calling the converter directly with the same settings and the same calibration array:
    - ``direct_same_route``: the calls edgecv makes (freeze the Keras model, ``from_concrete_functions``,
      ``convert``; tf2onnx + ``quantize_static`` for ONNX). Overhead target: < 10 %.
    - ``direct_from_keras_model`` (TFLite only): what most users write, ``from_keras_model(model)``; edgecv
      is faster than this route on Keras 3 (it avoids the SavedModel round trip).
``quality`` (``--quality``): SQNR, top-1 agreement, max abs error and file size for every precision x
    format with BatchNorm recalibrated on real photos (scikit-image samples, crops and flips), held-out
    photos for verification. Random-weight models are a weak stand-in for trained ones.

Writes ``tools/results/convert_<machine>.json`` (``convert_quality_<machine>.json`` with ``--quality``;
``<machine>`` from ``_machine.machine_tag()``), or ``-o FILE.json``.

Usage: python tools/bench_convert.py [--quality] [--models NAME,...] [--samples N] [--repeats N] [-o FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402

MODELS = ("mobilenet_v1_0.50_224", "mobilenet_v2_1.00_224", "efficientnet_b0", "efficientnet_lite0")
COMBOS = (("tflite", "float32"), ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8"),
          ("onnx", "float32"), ("onnx", "int8"))


from edgecv.builders.batchnorm import recalibrate_batchnorm as recalibrate_bn  # noqa: E402


def _direct_same_route(model, fmt: str, precision: str, calib: np.ndarray) -> bytes:
    from edgecv.conversion import onnx_export, tflite

    if fmt == "tflite":
        return tflite.make_converter(tflite.freeze(model), precision, calib if precision == "int8" else None).convert()
    f32 = onnx_export.export_float(model, 17)
    return f32 if precision == "float32" else onnx_export.quantize_int8(f32, calib)


def _direct_from_keras_model(model, precision: str, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        def rep():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _timed(fn, repeats: int = 1):
    """Best wall time of ``repeats`` runs; the CPU time of this process for that run is in ``_timed.cpu``."""
    best, out, cpu = float("inf"), None, float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    _timed.cpu = cpu
    return best, out


def _partial(rows: list[dict]) -> None:
    """Rows so far, rewritten after each measurement (a long run that is stopped still leaves data)."""
    path = os.environ.get("BENCH_PARTIAL")
    if path:
        Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def speed(models, samples: int, repeats: int, combos) -> list[dict]:
    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.api import quantize
    from edgecv.conversion.calibration import sample_images
    from edgecv.native import native_output_silenced

    rows = []
    for name in models:
        cfg = get_config(name)
        build_s, model = _timed(lambda: create_model(cfg))
        calib = cfg.spec.preprocessing.apply(sample_images(samples, cfg.resolution, seed=0))
        with tempfile.TemporaryDirectory() as tmp:
            npy = Path(tmp) / "calib.npy"
            np.save(npy, calib)
            for fmt, precision in combos:
                # edgecv and the same-route direct call alternate (best of ``repeats`` each), so drift in the
                # machine's state hits both; the slow from_keras_model reference runs last.
                direct_s = edgecv_s = direct_cpu = edgecv_cpu = float("inf")
                for _ in range(repeats):
                    with native_output_silenced():
                        t, content = _timed(lambda: _direct_same_route(model, fmt, precision, calib))
                    if t < direct_s:
                        direct_s, direct_cpu = t, _timed.cpu
                    t, res = _timed(lambda: quantize(model, precision, format=fmt, calib=npy, samples=samples,
                                                     verify=False, output=tmp))
                    if t < edgecv_s:
                        edgecv_s, edgecv_cpu = t, _timed.cpu
                keras_s = None
                if fmt == "tflite":  # once: a reference for scale (several times slower), not the overhead
                    with native_output_silenced():
                        keras_s, _ = _timed(lambda: _direct_from_keras_model(model, precision, calib))
                row = {
                    "model": name, "format": fmt, "precision": precision, "calibration_samples": samples,
                    "build_s": round(build_s, 3), "edgecv_quantize_s": round(edgecv_s, 3),
                    "edgecv_convert_only_s": res.convert_seconds,
                    "build_plus_convert_s": round(build_s + edgecv_s, 3),
                    "direct_same_route_s": round(direct_s, 3),
                    "overhead_vs_same_route_pct": round(100 * (edgecv_s - direct_s) / direct_s, 1),
                    "edgecv_cpu_s": round(edgecv_cpu, 3), "direct_same_route_cpu_s": round(direct_cpu, 3),
                    "overhead_vs_same_route_cpu_pct": round(100 * (edgecv_cpu - direct_cpu) / direct_cpu, 1),
                    "direct_from_keras_model_s": None if keras_s is None else round(keras_s, 3),
                    "overhead_vs_from_keras_model_pct": None if keras_s is None
                    else round(100 * (edgecv_s - keras_s) / keras_s, 1),
                    "file_bytes": res.file_bytes, "direct_file_bytes": len(content),
                }
                rows.append(row)
                _partial(rows)
                print(json.dumps(row), file=sys.stderr)
    return rows


def quality(models, samples: int, verify_samples: int, head: str, combos) -> list[dict]:
    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.api import quantize
    from edgecv.conversion.calibration import sample_images

    rows = []
    for name in models:
        cfg = get_config(name)
        model = create_model(cfg, classifier_activation=None if head == "logits" else "softmax")
        pre = cfg.spec.preprocessing
        recalibrate_bn(model, pre.apply(sample_images(64, cfg.resolution, seed=100)))
        # Calibration and held-out verification photos: a different seed from the BN recalibration.
        x = pre.apply(sample_images(samples + verify_samples, cfg.resolution, seed=7))
        with tempfile.TemporaryDirectory() as tmp:
            npy = Path(tmp) / "calib.npy"
            np.save(npy, x)
            sizes = {}
            for fmt, precision in combos:
                res = quantize(model, precision, format=fmt, calib=npy, samples=samples,
                               verify_samples=verify_samples, output=tmp)
                v = res.verification
                sizes[(fmt, precision)] = res.file_bytes
                row = {"model": name, "format": fmt, "precision": precision, "sqnr_db": v.sqnr_db,
                       "top1_agreement": v.top1_agreement, "max_abs_error": v.max_abs_error,
                       "verify_samples": v.samples, "calibration_samples": samples, "file_bytes": res.file_bytes,
                       "head": head,
                       "size_vs_float32": round(res.file_bytes / sizes[(fmt, "float32")], 4)
                       if (fmt, "float32") in sizes else None,
                       "inputs": [t.dtype for t in res.inputs], "outputs": [t.dtype for t in res.outputs]}
                rows.append(row)
                _partial(rows)
                print(json.dumps(row), file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", action="store_true", help="measure SQNR/top-1 instead of time")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--samples", type=int, default=100, help="calibration samples")
    ap.add_argument("--verify-samples", type=int, default=50)
    ap.add_argument("--head", choices=["softmax", "logits"], default="softmax",
                    help="quality: the classifier output compared (logits: classifier_activation=None)")
    ap.add_argument("--combos", default=",".join(f"{f}:{p}" for f, p in COMBOS), help="FORMAT:PRECISION,...")
    ap.add_argument("--repeats", type=int, default=1,
                    help="speed: best of N for edgecv and the same-route direct call (from_keras_model runs once)")
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    import edgecv
    from edgecv.conversion.records import versions

    env = _machine.environment()  # includes the load average at the start
    t = time.perf_counter()
    combos = [tuple(c.split(":")) for c in args.combos.split(",") if c]
    rows = (quality(models, args.samples, args.verify_samples, args.head, combos) if args.quality
            else speed(models, args.samples, args.repeats, combos))
    env["load_average_end"] = _machine.load_average()
    out = {"benchmark": "convert_quality" if args.quality else "convert_speed", "edgecv": edgecv.__version__,
           "environment": env, "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                                        "python": platform.python_version()},
           "versions": versions(), "repeats": args.repeats, "wall_s": round(time.perf_counter() - t, 1),
           "rows": rows}
    if not args.quality:
        ov = [r["overhead_vs_same_route_pct"] for r in rows]
        ovc = [r["overhead_vs_same_route_cpu_pct"] for r in rows]
        out["overhead_vs_same_route_pct"] = {"median": float(np.median(ov)), "max": float(np.max(ov)),
                                             "target": 10.0}
        out["overhead_vs_same_route_cpu_pct"] = {"median": float(np.median(ovc)), "max": float(np.max(ovc)),
                                                 "target": 10.0}
        out["note"] = ("wall times on a shared 2-core machine are noisy; CPU time of the process "
                       "(process_time) is the steadier comparison")
    from edgecv.fileio import write_json_atomic

    stem = ("convert_quality_" if args.quality else "convert_") + env["machine"]
    path = args.output or Path(__file__).resolve().parent / "results" / f"{stem}.json"
    write_json_atomic(path, out)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
