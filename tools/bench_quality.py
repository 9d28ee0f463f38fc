#!/usr/bin/env python3
"""Quantization quality on real trained models: what each precision costs in test accuracy.

Trains edgecv registry models (MobileNetV2 alpha 0.35, EfficientNet-Lite0, EfficientNet-B0; 10 classes at
32 px) on scikit-learn's handwritten digits (upscaled to RGB 32 px, seeded stratified split: 1347 train,
450 test; nothing downloaded), then converts each with ``edgecv.conversion.quantize`` to TFLite float16,
dynamic, int8 and int16x8 and to ONNX float32 and int8, calibrating on training images only, and runs every artifact
on the test set in its own runtime (LiteRT / ONNX Runtime). Per artifact: test accuracy, drop from the
Keras float model (points), top-1 agreement with it, output SQNR (dB), file size.

int8 (TFLite and ONNX) is also converted with four more seeded draws of calibration images, to show how
much one draw's drop on 450 test images depends on the draw. For EfficientNet-B0 (swish, squeeze-excite) the
int8 TFLite conversion also runs edgecv's per-layer debug report and diagnosis (``debug_layers=True``); the
worst layers it names are then kept in float with ``float_layers=...`` and the test accuracy measured again.

ONNX int8 is made twice: full-range weights (what Arm CPUs and x86 with VNNI compute exactly) and
``reduce_range=True`` (7-bit weights, for x86 without VNNI). On an x86 CPU without VNNI the full-range file is
evaluated as a QDQ reference (ONNX Runtime with graph optimizations off: the arithmetic of a non-saturating
int8 kernel) and also through this CPU's fused kernels, which saturate; both are reported.

Writes ``<out>/quality_<machine>.json`` and ``.md`` (``<machine>``: ``_machine.machine_tag()``). Seeded:
``--compare OLD.json`` prints the largest accuracy difference against an earlier run (the goal is < 0.5 point).

    python tools/bench_quality.py [--out tools/results] [--models mobilenet_v2,lite0,b0] [--compare OLD.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _digits  # noqa: E402
import _machine  # noqa: E402


@dataclass(frozen=True)
class Spec:
    key: str
    registry: str  # registry name; built with classes=10 and the benchmark resolution
    epochs: int
    learning_rate: float
    overrides: dict = field(default_factory=dict)
    debug: bool = False  # run the per-layer debug report and the --float-layers recovery


MODELS = {
    "mobilenet_v2": Spec("mobilenet_v2", "mobilenet_v2_0.35_224", epochs=15, learning_rate=1e-2),
    "lite0": Spec("lite0", "efficientnet_lite0", epochs=15, learning_rate=1e-2),
    "b0": Spec("b0", "efficientnet_b0", epochs=15, learning_rate=3e-3, debug=True),
}
# (format, precision, quantize() options): the artifacts each model is converted to.
ARTIFACTS = (("tflite", "float16", {}), ("tflite", "dynamic", {}), ("tflite", "int8", {}), ("tflite", "int16x8", {}),
             ("onnx", "float32", {}), ("onnx", "int8", {}), ("onnx", "int8", {"reduce_range": True}))
DRAWS = 5  # int8 is also converted with calibration draws (seeds) 1..DRAWS-1: how much the drop depends on them
CALIB_SAMPLES = 200
FLOAT_LAYERS_K = 3  # how many of the debug report's worst layers to keep in float (when none measurably helps)
DEBUG_VERIFY_SAMPLES = 100  # held-out training images for the debug report's kept-in-float figures (16 is noisy)
GAIN_DB = 1.0  # a layer whose float version raises output SQNR by this much is a culprit
GOAL_DROP_POINTS = 1.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def label(row: dict) -> str:
    """How an artifact row is named in tables and comparisons: ``onnx int8 (7-bit weights)`` etc."""
    return f"{row['format']} {row['precision']}" + (" (7-bit weights)" if row.get("reduce_range") else "")


def evaluate(path: str, x: np.ndarray, y: np.ndarray, ref: np.ndarray, float_acc: float,
             qdq_reference: bool = False) -> dict:
    from edgecv.conversion.verify import sqnr_db

    out = _digits.run_on(path, x, qdq_reference=qdq_reference)
    acc = _digits.accuracy(out, y)
    return {"test_accuracy": round(acc, 4), "drop_points": round(100 * (float_acc - acc), 2),
            "top1_agreement": round(float(np.mean(out.argmax(1) == ref.argmax(1))), 4),
            "sqnr_db": round(sqnr_db(ref, out), 2)}


def convert_and_eval(model, fmt: str, precision: str, calib: Path, outdir: Path, data: dict, float_acc: float,
                     seed: int = 0, **kw) -> dict:
    from edgecv.conversion.api import quantize
    from edgecv.conversion.onnx_export import int8_kernels_saturate

    t0 = time.perf_counter()
    res = quantize(model, precision, format=fmt, calib=str(calib), samples=CALIB_SAMPLES, output=str(outdir),
                   seed=seed, **kw)
    wall = time.perf_counter() - t0
    row = {"format": fmt, "precision": precision, "file_bytes": res.file_bytes,
           "convert_seconds": res.convert_seconds, "quantize_call_seconds": round(wall, 2),
           "float_ops": list(res.float_ops), "float_layers": list(res.float_layers),
           "reduce_range": bool(kw.get("reduce_range"))}
    reference = (fmt, precision) == ("onnx", "int8") and not kw.get("reduce_range") and int8_kernels_saturate()
    row["runtime"] = "onnxruntime, QDQ reference (graph optimizations off)" if reference else res.verification.runtime
    row.update(evaluate(res.path, data["x"], data["y"], data["ref"], float_acc, qdq_reference=reference))
    if reference:  # the same file through this CPU's fused int8 kernels (no VNNI: they saturate)
        row["host_kernels"] = evaluate(res.path, data["x"], data["y"], data["ref"], float_acc)
    if res.debug_layers:
        row["verify_sqnr_db"] = res.verification.sqnr_db  # on the verification samples, as the report's figures
        row["verify_samples"] = res.verification.samples
        row["debug_layers"] = [
            {"layer": e.layer, "fused": list(e.fused), "op": e.op, "rmse_over_scale": e.rmse_over_scale,
             "output_sqnr_db_if_float": e.output_sqnr_db_if_float}
            for e in res.debug_layers]
    if res.diagnosis is not None:
        row["diagnosis"] = dataclasses.asdict(res.diagnosis)
    return row


def run_model(spec: Spec, digits: _digits.Digits, workdir: Path, seed: int) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    log(f"{spec.key}: training {spec.registry} ({spec.epochs} epochs)")
    tr = _digits.train(spec.registry, digits, epochs=spec.epochs, learning_rate=spec.learning_rate, seed=seed,
                       **spec.overrides)
    model = tr.model
    model.name = tr.name  # the registry name: the sidecar then records the family's preprocessing
    log(f"{spec.key}: float test accuracy {tr.float_accuracy:.4f} (train {tr.train_seconds:.0f} s)")
    x_test = tr.preprocessing.apply(digits.x_test)
    ref = _digits.keras_predict(model, x_test)
    data = {"x": x_test, "y": digits.y_test, "ref": ref}
    calib = _digits.save_calibration(workdir / f"{tr.name}_calib.npy", tr.preprocessing, digits.x_train)
    out = {"model": tr.name, "registry": spec.registry, "resolution": digits.resolution, "params": tr.params,
           "epochs": tr.epochs, "learning_rate": spec.learning_rate, "float_test_accuracy": round(tr.float_accuracy, 4),
           "build_seconds": round(tr.build_seconds, 2), "train_seconds": round(tr.train_seconds, 1),
           "artifacts": []}
    for fmt, precision, opts in ARTIFACTS:
        name = label({"format": fmt, "precision": precision, **opts})
        log(f"{spec.key}: {name}")
        row = convert_and_eval(model, fmt, precision, calib, workdir / ("7-bit" if opts else ""), data,
                               tr.float_accuracy, **opts)
        log(f"{spec.key}: {name}: accuracy {row['test_accuracy']:.4f} drop {row['drop_points']:+.2f} "
            f"agreement {row['top1_agreement']:.4f} SQNR {row['sqnr_db']:.1f} dB")
        out["artifacts"].append(row)
    # The same int8 conversions with other seeded draws of the calibration images: one draw's drop on 450 test
    # images moves by a few images with the draw.
    for fmt in ("tflite", "onnx"):
        draws = [dict(seed=0, **{k: a[k] for k in ("test_accuracy", "drop_points", "top1_agreement", "sqnr_db")})
                 for a in out["artifacts"] if (a["format"], a["precision"], a["reduce_range"]) == (fmt, "int8", False)]
        for s in range(1, DRAWS):
            r = convert_and_eval(model, fmt, "int8", calib, workdir / "draws", data, tr.float_accuracy, seed=s)
            draws.append({"seed": s, **{k: r[k] for k in ("test_accuracy", "drop_points", "top1_agreement",
                                                          "sqnr_db")}})
        drops = [d["drop_points"] for d in draws]
        log(f"{spec.key}: {fmt} int8 over {len(draws)} calibration draws: drop {min(drops):+.2f}..{max(drops):+.2f}, "
            f"mean {np.mean(drops):+.2f}")
        out[f"{fmt}_int8_draws"] = {"draws": draws, "mean_drop_points": round(float(np.mean(drops)), 2),
                                    "min_drop_points": min(drops), "max_drop_points": max(drops),
                                    "mean_sqnr_db": round(float(np.mean([d["sqnr_db"] for d in draws])), 2)}
    if spec.debug:
        # The debug workflow a user follows: --debug-layers (with more held-out samples than the default 16, whose
        # kept-in-float figures are noisy), then --float-layers on what it names, with the same options, so both
        # conversions calibrate on the same draw of images.
        kw = {"verify_samples": DEBUG_VERIFY_SAMPLES}
        log(f"{spec.key}: tflite int8 with the per-layer debug report ({DEBUG_VERIFY_SAMPLES} held out)")
        dbg = convert_and_eval(model, "tflite", "int8", calib, workdir / "debug", data, tr.float_accuracy,
                               debug_layers=True, **kw)
        out["int8_debug"] = dbg
        # The culprits: the layers whose float version measurably raises the output SQNR, most first; when none
        # does, the report's three worst layers (what a user would try from the steps column alone).
        gains = {e["layer"]: e["output_sqnr_db_if_float"] - dbg["verify_sqnr_db"] for e in dbg.get("debug_layers", ())
                 if e.get("output_sqnr_db_if_float") is not None}
        culprits = sorted((k for k, g in gains.items() if g >= GAIN_DB), key=gains.get, reverse=True)
        if not culprits:
            for e in dbg.get("debug_layers", ()):
                if e["layer"] not in culprits:
                    culprits.append(e["layer"])
            culprits = culprits[:FLOAT_LAYERS_K]
        log(f"{spec.key}: int8 with --float-layers {','.join(culprits)}")
        rec = convert_and_eval(model, "tflite", "int8", calib, workdir / "float_layers", data, tr.float_accuracy,
                               float_layers=culprits, **kw)
        log(f"{spec.key}: int8 + float layers: accuracy {rec['test_accuracy']:.4f} drop "
            f"{rec['drop_points']:+.2f} SQNR {rec['sqnr_db']:.1f} dB (debug run: {dbg['test_accuracy']:.4f}, "
            f"{dbg['sqnr_db']:.1f} dB)")
        out["int8_float_layers"] = rec
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(time.process_time() - c0, 1)
    return out


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"Digits (scikit-learn, 8x8 upscaled to {result['resolution']} px RGB; "
             f"{result['train_images']} train / {result['test_images']} test images, seed {result['seed']}), "
             f"calibration on {CALIB_SAMPLES} training images. Machine `{env['machine']}`, {env['date_utc']}.",
             "",
             "| model | float acc. | artifact | test acc. | drop (points) | top-1 agreement | SQNR (dB) | size (KB) |",
             "|---|---|---|---|---|---|---|---|"]
    notes = False
    for m in result["models"]:
        rows = list(m["artifacts"])
        if "int8_debug" in m:  # the debug workflow: its own calibration draw (more images held out)
            n = m["int8_debug"].get("verify_samples", "")
            rows.append(dict(m["int8_debug"], precision=f"int8 (debug run, {n} held out)"))
            rows.append(dict(m["int8_float_layers"], precision=f"int8 (debug run, {n} held out) + float " + ",".join(
                m["int8_float_layers"]["float_layers"])))
        for i, a in enumerate(rows):
            name = label(a) + (" [QDQ reference]" if "host_kernels" in a else "")
            lines.append(f"| {m['model'] if i == 0 else ''} | {100 * m['float_test_accuracy']:.1f}% "
                         f"| {name} | {100 * a['test_accuracy']:.1f}% "
                         f"| {a['drop_points']:+.1f} | {100 * a['top1_agreement']:.1f}% | {a['sqnr_db']:.1f} "
                         f"| {a['file_bytes'] / 1024:.0f} |")
            if "host_kernels" in a:
                h, notes = a["host_kernels"], True
                lines.append(f"| | | {label(a)} [this CPU's kernels] | {100 * h['test_accuracy']:.1f}% "
                             f"| {h['drop_points']:+.1f} | {100 * h['top1_agreement']:.1f}% | {h['sqnr_db']:.1f} | |")
    if notes:
        lines += ["", "[QDQ reference]: ONNX Runtime with graph optimizations off, the arithmetic of Arm and VNNI "
                      "CPUs; [this CPU's kernels]: the same file through this x86 CPU's fused int8 kernels (no VNNI: "
                      "they saturate on full-range weights); 7-bit weights: `--reduce-range`, for x86 without VNNI."]
    lines += ["", f"int8 over {DRAWS} seeded calibration draws of {CALIB_SAMPLES} training images (drop in points: "
                  "min..max, mean; mean output SQNR):"]
    for m in result["models"]:
        parts = []
        for fmt in ("tflite", "onnx"):
            d = m.get(f"{fmt}_int8_draws")
            if d:
                parts.append(f"{fmt} {d['min_drop_points']:+.1f}..{d['max_drop_points']:+.1f}, mean "
                             f"{d['mean_drop_points']:+.2f}, {d['mean_sqnr_db']:.1f} dB")
        if parts:
            lines.append(f"- {m['model']}: " + "; ".join(parts))
    for m in result["models"]:
        art = m.get("int8_debug") or {}
        dbg = art.get("debug_layers")
        if dbg:
            base, n = art["verify_sqnr_db"], art["verify_samples"]

            def item(e: dict) -> str:
                gain = e.get("output_sqnr_db_if_float")
                return f"`{e['layer']}` {e['rmse_over_scale']:.2f}" + (
                    "" if gain is None else f" (kept in float: output {gain:.1f} dB)")

            lines += ["", f"Per-layer int8 error of {m['model']} (edgecv debug report, worst first, "
                          f"RMSE in quantization steps; output SQNR on {n} held-out training images: {base:.1f} dB as "
                          "converted, and with each of the three worst layers kept in float): "
                      + ", ".join(item(e) for e in dbg[:6])]
            if art.get("diagnosis"):
                lines += ["", f"Diagnosis ({art['diagnosis']['culprit']}): {art['diagnosis']['advice']}"]
    lines += ["", f"Total wall time {result['wall_seconds']:.0f} s, CPU {result['cpu_seconds']:.0f} s "
                  f"(load average at start {env.get('load_average_start')})."]
    return "\n".join(lines) + "\n"


def compare(new: dict, old_path: Path) -> dict:
    old = json.loads(old_path.read_text())
    diffs = []
    olds = {m["model"]: m for m in old["models"]}
    for m in new["models"]:
        o = olds.get(m["model"])
        if not o:
            continue
        diffs.append(("float", m["model"], abs(m["float_test_accuracy"] - o["float_test_accuracy"])))
        oa = {label(a): a for a in o["artifacts"]}
        for a in m["artifacts"]:
            if label(a) in oa:
                diffs.append((label(a), m["model"], abs(a["test_accuracy"] - oa[label(a)]["test_accuracy"])))
    worst = max(diffs, key=lambda d: d[2]) if diffs else None
    return {"against": str(old_path), "compared": len(diffs),
            "max_abs_accuracy_diff_points": round(100 * worst[2], 2) if worst else None,
            "worst": {"artifact": worst[0], "model": worst[1]} if worst else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    ap.add_argument("--compare", default=None, help="an earlier quality.json: report the largest accuracy change")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad:
        print(f"bench_quality: error: --models: unknown {bad[0]!r}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    t0, c0 = time.perf_counter(), time.process_time()
    env = _machine.environment()
    digits = _digits.load_digits(args.resolution, seed=args.seed)
    result = {"benchmark": "quality", "environment": env, "dataset": "sklearn.datasets.load_digits",
              "resolution": args.resolution, "seed": args.seed, "train_images": len(digits.x_train),
              "test_images": len(digits.x_test), "calibration_samples": CALIB_SAMPLES,
              "goal": f"int8 drop <= {GOAL_DROP_POINTS} point for MobileNetV2 and Lite0", "models": []}
    with tempfile.TemporaryDirectory(prefix="edgecv-quality-") as tmp:
        for k in keys:
            spec = MODELS[k]
            if args.epochs:
                spec = Spec(spec.key, spec.registry, args.epochs, spec.learning_rate, spec.overrides, spec.debug)
            result["models"].append(run_model(spec, digits, Path(tmp), args.seed))
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = round(time.process_time() - c0 + children.ru_utime + children.ru_stime, 1)
    env["load_average_end"] = _machine.load_average()
    if args.compare:
        result["reproducibility"] = compare(result, Path(args.compare))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from edgecv.fileio import write_json_atomic, write_text_atomic

    stem = f"quality_{env['machine']}"
    write_json_atomic(out / f"{stem}.json", result)
    md = markdown(result)
    write_text_atomic(out / f"{stem}.md", md)
    print(md)
    if "reproducibility" in result:
        print(json.dumps(result["reproducibility"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
