"""Calibrate the device predictor's price of ops XNNPACK does not take, and check it on a corpus.

For each keras.applications model (weights=None; timing does not depend on the weights) at a small input size,
in float32 and full-integer int8 TFLite:

1. the static analysis asks the installed LiteRT which ops its XNNPACK delegate takes and how many partitions
   it makes (``OpStat.delegated``, ``delegate_partitions``);
2. the host latency is measured with XNNPACK (the default) and with TFLite's built-in kernels only
   (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), one thread, the fastest of repeated runs (robust to other work on
   the machine).

Calibration (written to ``edgecv/devices/kernel_calibration.json`` with the machine and date):

- ``builtin_slowdown[dtype]``: median over the corpus of built-in / XNNPACK latency for the whole graph
  (every op of the graph on each engine), per compute dtype;
- ``partition_cycles``: what one op left to the built-in kernels costs with the partition switch around it, in
  host cycles: an int8 chain of 16 x (1x1 conv -> hard-swish) against the same chain with ReLU (which XNNPACK
  takes whole), the time difference per extra partition.

Check (``tools/results/bench_kernels.json`` and the table printed for docs/prediction.md): the measured host
int8/float32 latency ratio against the ratio the predictor gives with the same delegate split, the host
device profile and the calibration (fitted on the probe and on whole-graph built-in/XNNPACK ratios, not on the
ratios checked).

    python tools/bench_kernels.py [--models MobileNetV3Small:128,...] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "edgecv" / "devices" / "kernel_calibration.json"
RESULTS = ROOT / "tools" / "results" / "bench_kernels.json"
CORPUS = "MobileNetV3Small:128,MobileNetV3Large:128,MobileNetV2:96,EfficientNetV2B0:128,ResNet50:64,EfficientNetB0:96"


def convert(model, kind: str) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    shape = (1,) + tuple(int(d) for d in model.inputs[0].shape[1:])
    if kind == "int8":
        def rep():
            rng = np.random.default_rng(0)
            for _ in range(4):
                yield [rng.uniform(0, 255, shape).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def time_ms(content: bytes, delegate: bool, min_time_s: float = 1.5) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {} if delegate else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=content, num_threads=1, **kw)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(3):
        it.invoke()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time_s or len(times) < 5:
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def measure(name: str, size: int, tmp: str) -> dict:
    import keras

    from edgecv.profiling.static import analyze_in_process

    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    row = {"model": name, "size": size}
    for kind in ("float32", "int8"):
        content = convert(model, kind)
        path = os.path.join(tmp, f"{name}_{kind}.tflite")
        with open(path, "wb") as fh:
            fh.write(content)
        sa = analyze_in_process(path)
        fallback: dict[str, int] = {}
        for o in sa.ops:
            if o.delegated is False:
                fallback[f"{o.type} {o.dtype}"] = fallback.get(f"{o.type} {o.dtype}", 0) + 1
        row[kind] = {"xnnpack_ms": time_ms(content, True), "builtin_ms": time_ms(content, False),
                     "partitions": sa.delegate_partitions, "fallback_ops": fallback, "path": path}
        print(f"{name} {size} {kind}: {row[kind]['xnnpack_ms']:.2f} ms XNNPACK, {row[kind]['builtin_ms']:.2f} ms "
              f"built-in, {sa.delegate_partitions} partitions, fallback {fallback}", file=sys.stderr, flush=True)
    keras.backend.clear_session()
    return row


def partition_probe(tmp: str, blocks: int = 16) -> dict:
    """int8 chains of ``blocks`` x (1x1 conv 32 -> activation) on 28x28x32: with ReLU XNNPACK takes the whole graph,
    with hard-swish each activation stays on the built-in kernels and splits the graph. The difference per extra
    partition is what one fallback op with its partition switch costs, in host cycles."""
    import keras

    from edgecv.profiling.static import analyze_in_process

    res = {}
    for act in ("relu", "hard_swish"):
        inp = keras.Input((28, 28, 32))
        x = inp
        for _ in range(blocks):
            x = keras.layers.Activation(act)(keras.layers.Conv2D(32, 1)(x))
        content = convert(keras.Model(inp, x), "int8")
        path = os.path.join(tmp, f"probe_{act}.tflite")
        with open(path, "wb") as fh:
            fh.write(content)
        res[act] = {"xnnpack_ms": time_ms(content, True, 3.0), "partitions": analyze_in_process(path).delegate_partitions}
        keras.backend.clear_session()
    extra = res["hard_swish"]["partitions"] - res["relu"]["partitions"]
    per_ms = (res["hard_swish"]["xnnpack_ms"] - res["relu"]["xnnpack_ms"]) / max(extra, 1)
    res["cycles_per_partition"] = round(max(per_ms, 0.0) * 1e-3 * host_ghz() * 1e9)
    print(f"partition probe: {res}", file=sys.stderr, flush=True)
    return res


def host_ghz() -> float:
    from edgecv.devices.profile import load_profile

    return load_profile("host").cores_by_speed()[0].freq_ghz or 1.0


def predicted_ms(path: str, cal: dict) -> float:
    """The predictor's host latency for ``path`` with calibration ``cal`` (1 thread)."""
    from edgecv.devices import model as m
    from edgecv.devices.predict import predict_ops_ms
    from edgecv.devices.profile import load_profile
    from edgecv.profiling.static import analyze_in_process

    sa = analyze_in_process(path)
    saved = m.kernel_calibration
    m.kernel_calibration = lambda: cal  # noqa: E731 (the candidate table, not the shipped one)
    try:
        total, _ = predict_ops_ms(sa.ops, load_profile("host"), 1, sa.delegate_partitions)
    finally:
        m.kernel_calibration = saved
    return total


def calibrate(rows: list[dict], probe: dict) -> dict:
    slow = {}
    for kind in ("float32", "int8"):  # graphs XNNPACK takes whole (int8: but the final SOFTMAX)
        r = [x[kind]["builtin_ms"] / x[kind]["xnnpack_ms"] for x in rows if (x[kind]["partitions"] or 0) <= 2]
        slow[kind] = {"all": round(statistics.median(r), 3) if r else 3.0}
    return {"builtin_slowdown": slow, "partition_cycles": probe["cycles_per_partition"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=CORPUS, help="Name:size,... of keras.applications models")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not write the calibration JSON")
    args = ap.parse_args(argv)
    corpus = [(s.split(":")[0], int(s.split(":")[1])) for s in args.models.split(",") if s]
    from edgecv.profiling import cpu_probe

    with tempfile.TemporaryDirectory(prefix="edgecv-bench-kernels-") as tmp:
        probe = partition_probe(tmp)
        rows = [measure(n, s, tmp) for n, s in corpus]
        cal = calibrate(rows, probe)
        table = []
        for x in rows:
            loo = cal  # fitted on the probe and whole-graph ratios, not on the int8/float32 ratios checked here
            measured = x["int8"]["xnnpack_ms"] / x["float32"]["xnnpack_ms"]
            predicted = predicted_ms(x["int8"]["path"], loo) / predicted_ms(x["float32"]["path"], loo)
            table.append({"model": f"{x['model']} {x['size']}", "measured_int8_over_float32": round(measured, 3),
                          "predicted_int8_over_float32": round(predicted, 3),
                          "error": round(predicted / measured - 1, 3),
                          "same_direction": (measured < 1) == (predicted < 1),
                          "int8_partitions": x["int8"]["partitions"], "int8_fallback_ops": x["int8"]["fallback_ops"],
                          **{f"{k}_{e}_ms": round(x[k][f"{e}_ms"], 3) for k in ("float32", "int8")
                             for e in ("xnnpack", "builtin")}})
    import ai_edge_litert

    machine = cpu_probe.fingerprint(open("/proc/cpuinfo").read()) if os.path.exists("/proc/cpuinfo") else {}
    meta = {"date": datetime.date.today().isoformat(), "machine": machine, "cores_used": 1, "probe": probe,
            "host_ghz": host_ghz(), "litert": getattr(ai_edge_litert, "__version__", "?"),
            "corpus": [f"{n}:{s}" for n, s in corpus], "written_by": "tools/bench_kernels.py"}
    out = {**meta, **cal}
    print(json.dumps(out, indent=1))
    print("| model | measured int8/fp32 | predicted | error | int8 partitions | int8 ops on built-in kernels |")
    print("|---|---|---|---|---|---|")
    for r in table:
        fb = ", ".join(f"{k} x{v}" for k, v in r["int8_fallback_ops"].items()) or "-"
        print(f"| {r['model']} | {r['measured_int8_over_float32']:.2f} | {r['predicted_int8_over_float32']:.2f} | "
              f"{r['error']:+.0%} | {r['int8_partitions']} | {fb} |")
    if not args.no_write:
        from edgecv.fileio import write_text_atomic

        write_text_atomic(CALIBRATION, json.dumps(out, indent=1) + "\n")
        RESULTS.parent.mkdir(exist_ok=True)
        write_text_atomic(RESULTS, json.dumps({**meta, "calibration": cal, "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
