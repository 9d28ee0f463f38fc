#!/usr/bin/env python3
"""Performance benchmark: where edgecv is fast or slow on this machine.

For each model (default: MobileNetV2 1.0-224, EfficientNet-Lite0, EfficientNet-B0; 1000 classes, registry
architectures, random weights with trained-looking BatchNorm statistics: latency does not depend on the
weights' values, but an identity BatchNorm leaves layers whose output is always zero, which int16x8 cannot
prepare) it records

- build wall time (``create_model``) and convert wall time per format and precision (TFLite float32,
  float16, dynamic, int8, int16x8; ONNX float32, int8) through ``edgecv.conversion.quantize`` (int8 calibrated on
  ``--calib-samples`` scikit-image photos; verification off: it is timed by the quality benchmark);
- host latency p50 (and p90) with ``edgecv.profiling.profile`` on LiteRT (float32, float16, dynamic, int8,
  int16x8) and ONNX Runtime (float32, int8), at 1 and 2 threads, and the runner's peak RSS;
- ``edgecv --help`` wall time (fresh processes, best and median of ``--help-runs``);
- the profiler's overhead against a bare loop: a fresh process that only loads the interpreter and times
  ``invoke()`` (same model, same threads), its p50 against ``profile()``'s p50, and ``profile()``'s total wall
  time against the bare process's.

The results are written to ``<out>/perf_<machine>.json`` (and ``.md``) where ``<machine>`` is the CPU model,
the core count and a hash of the host name, so figures from different machines never mix.

    python tools/bench_perf.py [--out tools/results] [--models mobilenet_v2_1.00_224,...] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _machine  # noqa: E402
from helpers.weights import randomize_weights  # noqa: E402  (shared with the tests)

DEFAULT_MODELS = ("mobilenet_v2_1.00_224", "efficientnet_lite0", "efficientnet_b0")
ARTIFACTS = (("tflite", "float32"), ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8"),
             ("tflite", "int16x8"), ("onnx", "float32"), ("onnx", "int8"))

BARE_LOOP = r"""
import json, sys, time
import numpy as np
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if path.endswith(".tflite"):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    x = np.zeros(d["shape"], d["dtype"])
    def run():
        it.set_tensor(d["index"], x)
        it.invoke()
else:
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    s = ort.InferenceSession(path, sess_options=o, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = {i.name: np.zeros([1 if not isinstance(v, int) else v for v in i.shape], np.float32)}
    def run():
        s.run(None, x)
for _ in range(warmup):
    run()
ts = []
for _ in range(runs):
    t = time.perf_counter()
    run()
    ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
print(json.dumps({"p50_ms": ts[len(ts) // 2], "runs": runs}))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def help_wall(runs: int) -> dict:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgecv", "--help"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"edgecv --help failed: {proc.stderr.strip()[-200:]}")
    return {"runs": runs, "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}


def calibration_file(workdir: Path, resolution: int, samples: int, pre) -> Path:
    from edgecv.conversion.calibration import sample_images

    path = workdir / f"calib_{resolution}_{pre.in_model}.npy"
    if not path.exists():
        np.save(path, pre.apply(sample_images(samples, resolution, seed=0)).astype(np.float32))
    return path


def convert_model(name: str, workdir: Path, calib_samples: int) -> tuple[dict, dict[tuple[str, str], str]]:
    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.api import quantize
    from edgecv.conversion.tflite import CALIBRATED

    cfg = get_config(name)
    t = time.perf_counter()
    model = create_model(cfg)
    build_s = time.perf_counter() - t
    # weights=None leaves BatchNorm at identity and biases at zero; trained-looking statistics keep every layer's
    # output range non-zero, as in a deployed model (int16x8 cannot be prepared with a layer that is always zero)
    randomize_weights(model)
    calib = calibration_file(workdir, cfg.resolution, calib_samples, cfg.spec.preprocessing)
    row = {"model": name, "resolution": cfg.resolution, "params": int(model.count_params()),
           "build_seconds": round(build_s, 2), "convert": []}
    paths = {}
    for fmt, precision in ARTIFACTS:
        t = time.perf_counter()
        res = quantize(model, precision, format=fmt, calib=str(calib) if precision in CALIBRATED else None,
                       samples=calib_samples, output=str(workdir / name), verify=False)
        wall = time.perf_counter() - t
        paths[(fmt, precision)] = res.path
        row["convert"].append({"format": fmt, "precision": precision, "convert_seconds": res.convert_seconds,
                               "quantize_call_seconds": round(wall, 2), "file_bytes": res.file_bytes})
        log(f"{name}: {fmt} {precision} converted in {wall:.1f} s ({res.file_bytes / 1e6:.1f} MB)")
    del model
    return row, paths


def measure(path: str, threads: int, runs: int, min_time_s: float, repeats: int = 1) -> dict:
    """``profile()`` ``repeats`` times; the run with the best p50 is kept (the machine's noise comes in bursts)."""
    from edgecv.profiling.api import profile

    best, wall, p50s = None, 0.0, []
    for _ in range(repeats):
        t = time.perf_counter()
        r = profile(path, threads=threads, warmup_runs=5, runs=runs, min_time_s=min_time_s)
        wall = time.perf_counter() - t
        p50s.append(round(r.latency_ms.p50, 3))
        if best is None or r.latency_ms.p50 < best.latency_ms.p50:
            best = r
    r = best
    lat = r.latency_ms
    return {"p50_ms": round(lat.p50, 3), "p90_ms": round(lat.p90, 3), "min_ms": round(lat.min, 3), "runs": lat.runs,
            "peak_rss_mb": round(r.peak_rss_bytes / 2**20, 1) if r.peak_rss_bytes else None,
            "init_ms": round(r.init_ms, 1) if r.init_ms is not None else None,
            "profile_call_seconds": round(wall, 2), "runtime": r.runtime.name, "p50_ms_each_repeat": p50s}


def bare_loop(path: str, threads: int, runs: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BARE_LOOP, path, str(threads), "5", str(runs)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"bare loop failed on {path}: {proc.stderr.strip()[-300:]}")
    rep = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    rep["process_seconds"] = round(wall, 2)
    rep["p50_ms"] = round(rep["p50_ms"], 3)
    return rep


def markdown(res: dict) -> str:
    env = res["environment"]
    th = res["threads"]
    lines = [f"Machine `{env['machine']}` ({env['cpu']}, {env['cores']} cores), {env['date_utc']}, load average "
             f"{env.get('load_average_start')} at start, {env.get('load_average_end')} at end.", "",
             "| model | build (s) | artifact | convert (s) | size (MB) | "
             + " | ".join(f"p50 {t} thr (ms)" for t in th) + " | peak RSS (MB) |",
             "|---|---|---|---|---|" + "---|" * len(th) + "---|"]
    for m in res["models"]:
        for i, c in enumerate(m["convert"]):
            lat = {(x["threads"]): x for x in m["latency"] if x["format"] == c["format"]
                   and x["precision"] == c["precision"]}
            cells = " | ".join(f"{lat[t]['p50_ms']:.2f}" if t in lat else "" for t in th)
            rss = max((x["peak_rss_mb"] or 0) for x in lat.values()) if lat else 0
            lines.append(f"| {m['model'] if i == 0 else ''} | {m['build_seconds'] if i == 0 else ''} "
                         f"| {c['format']} {c['precision']} | {c['quantize_call_seconds']:.1f} "
                         f"| {c['file_bytes'] / 1e6:.2f} | {cells} | {rss:.0f} |")
    h = res["edgecv_help"]
    lines += ["", f"`edgecv --help`: best {h['best_s']:.2f} s, median {h['median_s']:.2f} s over {h['runs']} runs."]
    for o in res["profiler_overhead"]:
        lines.append(f"Profiler vs bare loop ({Path(o['artifact']).name}, {o['threads']} thr): p50 "
                     f"{o['profile_p50_ms']:.2f} vs {o['bare_p50_ms']:.2f} ms ({o['p50_overhead_pct']:+.1f}%); "
                     f"whole call {o['profile_call_seconds']:.1f} s vs bare process {o['bare_process_seconds']:.1f} s.")
    lines.append(f"Total wall time {res['wall_seconds']:.0f} s, CPU {res['cpu_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--runs", type=int, default=30, help="minimum timed runs per latency")
    ap.add_argument("--min-time-s", type=float, default=1.0, help="minimum timed seconds per latency")
    ap.add_argument("--calib-samples", type=int, default=32, help="int8 calibration images (scikit-image photos)")
    ap.add_argument("--repeats", type=int, default=2, help="profile each artifact this many times, keep the best p50")
    ap.add_argument("--help-runs", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")]
        if any(t < 1 for t in threads):
            raise ValueError
    except ValueError:
        print(f"bench_perf: error: --threads: expected integers >= 1. Received: {args.threads!r}", file=sys.stderr)
        return 2
    from edgecv.builders.registry import get_config

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        get_config(m)  # an unknown name fails here, before any work
    t0, c0 = time.perf_counter(), time.process_time()
    env = _machine.environment()
    res = {"benchmark": "perf", "environment": env, "threads": threads, "runs": args.runs, "repeats": args.repeats,
           "min_time_s": args.min_time_s, "calibration_samples": args.calib_samples, "models": [],
           "profiler_overhead": []}
    log("edgecv --help")
    res["edgecv_help"] = help_wall(args.help_runs)
    with tempfile.TemporaryDirectory(prefix="edgecv-perf-") as tmp:
        work = Path(tmp)
        all_paths = {}
        for name in models:
            row, paths = convert_model(name, work, args.calib_samples)
            all_paths[name] = paths
            res["models"].append(row)
        for row in res["models"]:
            row["latency"] = []
            for (fmt, precision), path in all_paths[row["model"]].items():
                for t in threads:
                    m = measure(path, t, args.runs, args.min_time_s, args.repeats)
                    m.update(format=fmt, precision=precision, threads=t)
                    row["latency"].append(m)
                    log(f"{row['model']}: {fmt} {precision} {t} thr: p50 {m['p50_ms']:.2f} ms, "
                        f"peak RSS {m['peak_rss_mb']} MB")
        first = models[0]
        for key in (("tflite", "float32"), ("tflite", "int8"), ("onnx", "float32")):
            path = all_paths[first][key]
            t = max(threads)
            profs, bares = [], []
            for _ in range(max(2, args.repeats)):  # interleaved: a burst of load hits both methods alike
                profs.append(measure(path, t, args.runs, args.min_time_s))
                bares.append(bare_loop(path, t, max(args.runs, profs[-1]["runs"])))
            prof = min(profs, key=lambda m: m["p50_ms"])
            bare = min(bares, key=lambda m: m["p50_ms"])
            res["profiler_overhead"].append({
                "artifact": Path(path).name, "format": key[0], "precision": key[1], "threads": t,
                "profile_p50_ms": prof["p50_ms"], "bare_p50_ms": bare["p50_ms"],
                "p50_overhead_pct": round(100 * (prof["p50_ms"] / bare["p50_ms"] - 1), 1),
                "profile_call_seconds": prof["profile_call_seconds"], "bare_process_seconds": bare["process_seconds"],
                "runs": bare["runs"]})
            log(f"profiler overhead {key}: {res['profiler_overhead'][-1]['p50_overhead_pct']:+.1f}% p50")
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu_seconds"] = round(time.process_time() - c0 + ch.ru_utime + ch.ru_stime, 1)
    env["load_average_end"] = _machine.load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from edgecv.fileio import write_json_atomic

    stem = f"perf_{_machine.machine_tag()}"
    write_json_atomic(out / f"{stem}.json", res)
    md = markdown(res)
    (out / f"{stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
