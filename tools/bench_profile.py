#!/usr/bin/env python3
"""Benchmark: does ``edgecv profile`` report the latency the runtime really has?

For each model (by default MobileNetV2 1.0-224 as float32 and as full-integer int8 TFLite, built and
converted here), in the same run and with the same threads, it measures the median latency three ways:

1. ``edgecv.profiling.profile`` (the runner in a child process),
2. a bare LiteRT interpreter loop in a fresh process (``Interpreter(num_threads)``, ``invoke()`` timed),
3. ai-edge-litert's own ``litert-benchmark`` command,

interleaved over ``--rounds`` rounds (the machine's noise comes in bursts: the best median of each method is
kept, and every round is recorded). It checks edgecv's median is within 10% of the other two, and prints the
int8 and float32 latencies side by side with their ratio. Writes JSON (``--output``, default
``tools/results/profile_<machine>.json``) and prints it.

    python tools/bench_profile.py [--threads N] [--rounds 5] [--runs 50] [--float32 F.tflite --int8 I.tflite]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.10

BARE_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
rng = np.random.default_rng(0)
if np.dtype(d["dtype"]).kind == "f":
    x = rng.uniform(-1, 1, d["shape"]).astype(d["dtype"])
else:
    x = rng.integers(-128, 128, d["shape"]).astype(d["dtype"])
it.set_tensor(d["index"], x)
for _ in range(warmup + 1):
    it.invoke()
t = []
for _ in range(runs):
    t0 = time.perf_counter()
    it.invoke()
    t.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"median_ms": float(np.median(t)), "mean_ms": float(np.mean(t)), "runs": runs}))
"""


def build_models(out: Path) -> dict[str, str]:
    """MobileNetV2 1.0-224 as float32 and full-integer int8 TFLite (calibrated on scikit-image photos)."""
    paths = {"float32": out / "mobilenet_v2_1.00_224_float32.tflite", "int8": out / "mobilenet_v2_1.00_224_int8.tflite"}
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from edgecv.builders.registry import create_model

    model = create_model("mobilenet_v2_1.00_224")
    if not paths["float32"].exists():
        paths["float32"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    if not paths["int8"].exists():
        try:
            from skimage import data
            from skimage.transform import resize

            imgs = [resize(getattr(data, n)(), (224, 224), preserve_range=True) for n in ("astronaut", "coffee", "chelsea")]
            calib = [(np.asarray(i, np.float32)[None] / 127.5 - 1.0) for i in imgs]
        except ImportError:
            rng = np.random.default_rng(0)
            calib = [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32) for _ in range(3)]
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([c] for c in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        paths["int8"].write_bytes(conv.convert())
    return {k: str(v) for k, v in paths.items()}


def edgecv_median(path: str, threads: int, warmup: int, runs: int) -> dict:
    from edgecv.profiling import profile

    r = profile(path, threads=threads, warmup_runs=warmup, runs=runs, min_time_s=0)
    return {"median_ms": r.latency_ms.p50, "mean_ms": r.latency_ms.mean, "runs": r.latency_ms.runs,
            "delegate": r.runtime.delegate, "peak_rss_bytes": r.peak_rss_bytes,
            "peak_activation_bytes": r.peak_activation_bytes, "macs": r.macs, "params": r.params,
            "env": r.env.to_dict()}


def bare_median(path: str, threads: int, warmup: int, runs: int) -> dict:
    res = subprocess.run([sys.executable, "-c", BARE_LOOP, path, str(threads), str(warmup), str(runs)],
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"bare loop failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def litert_benchmark_median(path: str, threads: int, warmup: int, runs: int) -> dict | None:
    exe = shutil.which("litert-benchmark")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        res = subprocess.run([exe, "--model", path, "--num_threads", str(threads), "--num_runs", str(runs),
                              "--warmup_runs", str(warmup), "--result_json", out],
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"litert-benchmark failed: {res.stderr.strip().splitlines()[-1:]}")
        with open(out, encoding="utf-8") as fh:
            lat = json.load(fh)["latency"]
    return {"median_ms": lat["median_ms"], "mean_ms": lat["avg_ms"], "runs": lat["num_runs"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="default: all available cores")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--float32", help="a float32 .tflite (default: MobileNetV2 1.0-224 built here)")
    p.add_argument("--int8", help="an int8 .tflite (default: MobileNetV2 1.0-224 built here)")
    p.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "edgecv_bench_profile"))
    p.add_argument("--output", default=None,
                   help="default: tools/results/profile_<machine>.json (see _machine.machine_tag())")
    a = p.parse_args(argv)
    from edgecv.profiling.api import default_threads

    threads = a.threads or default_threads()
    if a.float32 and a.int8:
        models = {"float32": a.float32, "int8": a.int8}
    else:
        os.makedirs(a.model_dir, exist_ok=True)
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)  # TensorFlow's converter prints on stdout; keep stdout for the JSON report
        try:
            models = build_models(Path(a.model_dir))
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    methods = {"edgecv": edgecv_median, "bare_interpreter": bare_median, "litert_benchmark": litert_benchmark_median}
    rounds: dict[str, dict[str, list]] = {m: {k: [] for k in methods} for m in models}
    extra = {}
    t0 = time.time()
    for r in range(a.rounds):
        for prec, path in models.items():
            for name, fn in methods.items():
                res = fn(path, threads, a.warmup_runs, a.runs)
                if res is None:
                    continue
                if name == "edgecv":
                    extra[prec] = {k: res.pop(k) for k in ("delegate", "peak_rss_bytes", "peak_activation_bytes",
                                                          "macs", "params", "env")}
                rounds[prec][name].append(res["median_ms"])
                print(f"round {r + 1}/{a.rounds} {prec:8s} {name:17s} median {res['median_ms']:7.2f} ms",
                      file=sys.stderr, flush=True)
    report = {"threads": threads, "rounds": a.rounds, "runs_per_round": a.runs, "warmup_runs": a.warmup_runs,
              "tolerance": TOLERANCE, "seconds": round(time.time() - t0, 1), "models": {}, "env": None}
    ok = True
    for prec, path in models.items():
        best = {name: min(v) for name, v in rounds[prec].items() if v}
        entry = {"path": path, "best_median_ms": best, "median_of_round_medians_ms":
                 {name: statistics.median(v) for name, v in rounds[prec].items() if v},
                 "round_medians_ms": rounds[prec], **{k: v for k, v in extra[prec].items() if k != "env"}}
        for other in ("bare_interpreter", "litert_benchmark"):
            if other in best:
                ratio = best["edgecv"] / best[other]
                entry[f"edgecv_vs_{other}"] = round(ratio, 4)
                entry[f"within_10pct_of_{other}"] = abs(ratio - 1) <= TOLERANCE
                ok &= entry[f"within_10pct_of_{other}"]
        report["models"][prec] = entry
        report["env"] = extra[prec]["env"]
    if {"int8", "float32"} <= set(report["models"]):
        i8 = report["models"]["int8"]["best_median_ms"]["edgecv"]
        f32 = report["models"]["float32"]["best_median_ms"]["edgecv"]
        report["int8_vs_float32"] = {"int8_ms": round(i8, 3), "float32_ms": round(f32, 3),
                                     "int8_over_float32": round(i8 / f32, 3), "speedup_int8": round(f32 / i8, 3)}
    report["all_within_10pct"] = bool(ok)
    from edgecv.fileio import write_json_atomic

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _machine

    report["machine"] = _machine.environment()
    write_json_atomic(a.output or Path(__file__).resolve().parent / "results"
                      / f"profile_{_machine.machine_tag()}.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "env"}, indent=2))
    if "int8_vs_float32" in report:
        s = report["int8_vs_float32"]
        print(f"MobileNetV2 1.0-224, {threads} threads, LiteRT+XNNPACK: int8 {s['int8_ms']:.2f} ms | "
              f"float32 {s['float32_ms']:.2f} ms | int8/float32 = {s['int8_over_float32']:.2f}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
