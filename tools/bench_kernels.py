"""Calibrate the device predictor on this host and check it on a corpus.

Calibration (written to ``edgecv/devices/kernel_calibration.json`` with the machine fingerprint and date), from
models and probes that are NOT in the check corpus:

- ``host.coefficients``: the latency model's per-class efficiencies on this CPU (dense/pointwise and depthwise
  convolutions, float32 and int8 on XNNPACK), fitted by non-negative least squares on relative error to the
  XNNPACK latency of MobileNet (V1) and MobileNetV2 at widths and sizes outside the corpus; the per-op overhead
  from a chain of tiny ADDs (64 against 8 ops); the elementwise bytes per cycle from chains of ADD and MUL on
  28x28x32 (16 against 4 pairs, float32; the model has one elementwise rate in bytes per cycle). The host
  prediction uses them only when the running CPU matches the fingerprint.
- ``builtin_op_cycles_per_byte``: TFLite's built-in int8 HARD_SWISH kernel (the one fallback op with real
  work in the corpus families), from a chain of 16 against 4 hard-swishes on built-in kernels.
- ``partition_cycles``: one delegate partition boundary with the shape bookkeeping around it (SHAPE,
  STRIDED_SLICE, PACK, RESHAPE on a few values, as Keras' Reshape writes them), from an int8 chain of 16 x
  (1x1 conv -> global mean -> Reshape) against the same chain with keepdims (no reshape, one partition).
- ``builtin_slowdown[dtype]``: median built-in / XNNPACK whole-graph latency of the calibration models (fallback
  ops without a per-op figure).

Check (``tools/results/bench_kernels.json`` and the table printed for docs/prediction.md): the measured host
int8/float32 latency ratio (1 thread, fastest of interleaved float32/int8 rounds) against the ratio the
predictor gives with the same delegate split. ``uptime`` is recorded at start and end.

    python tools/bench_kernels.py [--models MobileNetV3Small:128,...] [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
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
CALIBRATION_MODELS = "MobileNet:128:0.5,MobileNet:160:1.0,MobileNetV2:128:0.5,MobileNetV2:160:0.75"
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


def host_ghz() -> float:
    from edgecv.devices.profile import load_profile

    return load_profile("host").cores_by_speed()[0].freq_ghz or 1.0


def keras_model(spec: str):
    import keras

    name, size, *alpha = spec.split(":")
    kw = {"alpha": float(alpha[0])} if alpha else {}
    return getattr(keras.applications, name)(weights=None, input_shape=(int(size), int(size), 3), **kw)


def interleaved(contents: dict, rounds: int, delegate: bool = True, slice_s: float = 0.4) -> dict:
    """Fastest run of each content over ``rounds`` interleaved slices (resists load that comes and goes)."""
    best = {k: float("inf") for k in contents}
    for _ in range(rounds):
        for k, c in contents.items():
            best[k] = min(best[k], time_ms(c, delegate, slice_s))
    return best


def prepare(spec: str, tmp: str) -> dict:
    import keras

    from edgecv.profiling.static import analyze_in_process

    model = keras_model(spec)
    out = {"spec": spec}
    for kind in ("float32", "int8"):
        content = convert(model, kind)
        path = os.path.join(tmp, f"{spec.replace(':', '_')}_{kind}.tflite")
        with open(path, "wb") as fh:
            fh.write(content)
        sa = analyze_in_process(path)
        fallback: dict[str, int] = {}
        for o in sa.ops:
            if o.delegated is False:
                fallback[f"{o.type} {o.dtype}"] = fallback.get(f"{o.type} {o.dtype}", 0) + 1
        out[kind] = {"content": content, "path": path, "ops": sa.ops, "partitions": sa.delegate_partitions,
                     "fallback_ops": fallback}
    keras.backend.clear_session()
    return out


def save_probe(model, tmp: str, name: str, kind: str = "int8") -> tuple[bytes, int]:
    from edgecv.profiling.static import analyze_in_process

    content = convert(model, kind)
    path = os.path.join(tmp, f"probe_{name}.tflite")
    with open(path, "wb") as fh:
        fh.write(content)
    return content, analyze_in_process(path).delegate_partitions


def probes(tmp: str, rounds: int) -> dict:
    """Per-op overhead, built-in HARD_SWISH int8 and partition-boundary probes (see the module docstring)."""
    import keras

    ghz = host_ghz()
    res: dict = {}
    # per-op overhead: chains of tiny float32 ADDs (each delegated)
    c = {}
    for n in (8, 64):
        inp = keras.Input((1, 1, 8))
        x = inp
        for _ in range(n):
            x = keras.layers.Add()([x, inp])
        c[n], _ = save_probe(keras.Model(inp, x), tmp, f"add{n}", "float32")
        keras.backend.clear_session()
    t = interleaved(c, rounds)
    res["overhead_us_per_op"] = round(max((t[64] - t[8]) / 56 * 1e3, 0.0), 4)
    # elementwise rate on XNNPACK: 16 against 4 x (ADD, MUL) on 28x28x32, float32 (int8 MUL chains are split)
    from edgecv.profiling.static import analyze_in_process

    c, nbytes = {}, {}
    for kind in ("float32",):
        for n in (4, 16):
            inp = keras.Input((28, 28, 32))
            x = inp
            for _ in range(n):
                x = keras.layers.Multiply()([keras.layers.Add()([x, inp]), inp])
            c[(kind, n)], _ = save_probe(keras.Model(inp, x), tmp, f"ew_{kind}{n}", kind)
            ops = analyze_in_process(os.path.join(tmp, f"probe_ew_{kind}{n}.tflite")).ops
            nbytes[(kind, n)] = sum(o.input_bytes + o.activation_bytes + o.weight_bytes for o in ops
                                    if o.op_class in ("elementwise", "other"))
            keras.backend.clear_session()
    t = interleaved(c, rounds)
    dbytes = nbytes[("float32", 16)] - nbytes[("float32", 4)]
    dt = (t[("float32", 16)] - t[("float32", 4)]) * 1e-3
    res["elementwise_bytes_per_cycle"] = round(dbytes / max(dt * ghz * 1e9, 1e-9), 4)
    res["elementwise_probe_ms"] = {f"{k} {n}": round(v, 4) for (k, n), v in t.items()}
    # built-in int8 HARD_SWISH on 28x28x32: 16 against 4 in a chain, built-in kernels only
    c = {}
    for n in (4, 16):
        inp = keras.Input((28, 28, 32))
        x = inp
        for _ in range(n):
            x = keras.layers.Activation("hard_swish")(x)
        c[n], _ = save_probe(keras.Model(inp, x), tmp, f"hs{n}")
        keras.backend.clear_session()
    t = interleaved(c, rounds, delegate=False)
    per_op_s = max(t[16] - t[4], 0.0) / 12 * 1e-3 - res["overhead_us_per_op"] * 1e-6
    res["hard_swish_int8_builtin_us"] = round(per_op_s * 1e6, 3)
    res["builtin_op_cycles_per_byte"] = {"HARD_SWISH int8": round(max(per_op_s, 0.0) * ghz * 1e9 / (2 * 28 * 28 * 32), 4)}
    # partition boundaries: 16 x (1x1 conv -> mean -> Reshape) against keepdims means (no reshape)
    c, parts = {}, {}
    for kind in ("keepdims", "reshape"):
        inp = keras.Input((7, 7, 32))
        x = inp
        for _ in range(16):
            x = keras.layers.Conv2D(32, 1)(x)
            if kind == "keepdims":
                x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
            else:
                x = keras.layers.Reshape((1, 1, 32))(keras.layers.GlobalAveragePooling2D()(x))
        c[kind], parts[kind] = save_probe(keras.Model(inp, x), tmp, f"part_{kind}")
        keras.backend.clear_session()
    t = interleaved(c, rounds)
    extra = max((parts["reshape"] or 1) - (parts["keepdims"] or 1), 1)
    per_ms = (t["reshape"] - t["keepdims"]) / extra
    res["partition_probe"] = {"ms": t, "partitions": parts}
    res["partition_cycles"] = round(max(per_ms, 0.0) * 1e-3 * ghz * 1e9)
    print(f"probes: {res}", file=sys.stderr, flush=True)
    return res


def fit_host(rows: list[dict], overhead_us: float, elementwise: float) -> dict:
    """Per-class efficiencies per dtype by NNLS on relative error (see the module docstring)."""
    from scipy.optimize import nnls

    from edgecv.devices import model as m
    from edgecv.devices.profile import load_profile

    dev = load_profile("host")
    prior = m.Params.from_coefficients(dev.prediction)
    params = dataclasses.replace(prior, overhead_s=overhead_us * 1e-6)
    params = dataclasses.replace(params, elementwise=elementwise)
    coeffs = {"elementwise_bytes_per_cycle": elementwise, "overhead_us_per_op": round(overhead_us, 4)}
    for kind, suffix in (("float32", "fp32"), ("int8", "int8")):
        a, b = [], []
        for r in rows:
            terms = m.op_terms(r[kind]["ops"], dev, 1)
            conv = [t for t in terms if t.k in (0, 2) and t.fixed_s is None]
            dw = [t for t in terms if t.k in (1, 3) and t.fixed_s is None]
            rest = [t for t in terms if t not in conv and t not in dw]
            rest_s = m.latency_s(rest, params) + len(conv + dw) * params.overhead_s
            meas = r[kind]["xnnpack_ms"] * 1e-3
            # compute time at efficiency 1 for each class; time = sum(work / G) / e (compute-bound on the host)
            x_conv = sum(t.work / t.g1 * t.slowdown for t in conv)
            x_dw = sum(t.work / t.g1 * t.slowdown for t in dw)
            a.append([x_conv / meas, x_dw / meas])
            b.append(max(meas - rest_s, 0.0) / meas)
        inv, _ = nnls(np.array(a), np.array(b))
        coeffs[f"conv_{suffix}_peak_fraction"] = round(float(1 / inv[0]), 4) if inv[0] > 0 else 1.0
        coeffs[f"dw_{suffix}_peak_fraction"] = round(float(1 / inv[1]), 4) if inv[1] > 0 else 1.0
    return coeffs


def predicted_ms(ops, partitions, cal: dict) -> float:
    """The predictor's host latency with calibration ``cal`` (1 thread)."""
    from edgecv.devices import model as m
    from edgecv.devices.predict import predict_ops_ms
    from edgecv.devices.profile import load_profile

    saved = m.kernel_calibration
    m.kernel_calibration = lambda: cal  # noqa: E731 (the candidate table, not the shipped one)
    try:
        total, _ = predict_ops_ms(ops, load_profile("host"), 1, partitions)
    finally:
        m.kernel_calibration = saved
    return total


def uptime() -> str:
    try:
        return open("/proc/loadavg").read().strip()
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=CORPUS, help="Name:size,... of keras.applications models to check")
    ap.add_argument("--calibration-models", default=CALIBRATION_MODELS,
                    help="Name:size[:alpha],... models the host coefficients are fitted on (not in --models)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per model")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not write the calibration JSON")
    args = ap.parse_args(argv)
    corpus = [s for s in args.models.split(",") if s]
    calib = [s for s in args.calibration_models.split(",") if s]
    overlap = set(corpus) & set(calib)
    if overlap:
        print(f"--calibration-models: {sorted(overlap)} also in --models", file=sys.stderr)
        return 2
    import ai_edge_litert

    from edgecv.profiling import cpu_probe

    load_start = uptime()
    with tempfile.TemporaryDirectory(prefix="edgecv-bench-kernels-") as tmp:
        pr = probes(tmp, args.rounds)
        crows = []
        for spec in calib:
            r = prepare(spec, tmp)
            t = interleaved({k: r[k]["content"] for k in ("float32", "int8")}, args.rounds)
            tb = interleaved({k: r[k]["content"] for k in ("float32", "int8")}, 2, delegate=False)
            for k in ("float32", "int8"):
                r[k]["xnnpack_ms"], r[k]["builtin_ms"] = t[k], tb[k]
            print(f"calibration {spec}: " + ", ".join(f"{k} {t[k]:.3f} ms (built-in {tb[k]:.3f})" for k in t),
                  file=sys.stderr, flush=True)
            crows.append(r)
        machine = cpu_probe.fingerprint()
        slow = {k: {"all": round(statistics.median(x[k]["builtin_ms"] / x[k]["xnnpack_ms"] for x in crows), 3)}
                for k in ("float32", "int8")}
        cal = {"builtin_slowdown": slow, "partition_cycles": pr["partition_cycles"],
               "builtin_op_cycles_per_byte": pr["builtin_op_cycles_per_byte"]}
        m_saved = None
        from edgecv.devices import model as m

        m_saved, m.kernel_calibration = m.kernel_calibration, (lambda: cal)  # noqa: E731 (fit with this table)
        try:
            coeffs = fit_host(crows, pr["overhead_us_per_op"], pr["elementwise_bytes_per_cycle"])
        finally:
            m.kernel_calibration = m_saved
        cal["host"] = {"date": datetime.date.today().isoformat(), "models": calib, "coefficients": coeffs,
                       "fit": [{"model": x["spec"], **{f"{k}_ms": round(x[k]["xnnpack_ms"], 4)
                                                      for k in ("float32", "int8")}} for x in crows]}
        print(f"host coefficients: {coeffs}", file=sys.stderr, flush=True)
        full = {"date": datetime.date.today().isoformat(), "machine": machine, "cores_used": 1,
                "host_ghz": host_ghz(), "litert": getattr(ai_edge_litert, "__version__", "?"),
                "written_by": "tools/bench_kernels.py", "probes": pr, **cal}
        for x in crows:
            x["fit_predicted"] = {k: predicted_ms(x[k]["ops"], x[k]["partitions"], full) for k in ("float32", "int8")}
        full["host"]["fit"] = [{"model": x["spec"], **{f"{k}_ms": round(x[k]["xnnpack_ms"], 4) for k in ("float32", "int8")},
                                **{f"predicted_{k}_ms": round(float(x["fit_predicted"][k]), 4) for k in ("float32", "int8")}}
                               for x in crows]
        table = []
        for spec in corpus:
            x = prepare(spec, tmp)
            t = interleaved({k: x[k]["content"] for k in ("float32", "int8")}, args.rounds)
            measured = t["int8"] / t["float32"]
            pf = float(predicted_ms(x["float32"]["ops"], x["float32"]["partitions"], full))
            pi = float(predicted_ms(x["int8"]["ops"], x["int8"]["partitions"], full))
            predicted = pi / pf
            row = {"model": spec.replace(":", " "), "measured_int8_over_float32": round(measured, 3),
                   "predicted_int8_over_float32": round(predicted, 3), "error": round(predicted / measured - 1, 3),
                   "same_direction": bool((measured < 1) == (predicted < 1)),
                   "int8_partitions": x["int8"]["partitions"], "int8_fallback_ops": x["int8"]["fallback_ops"],
                   "float32_ms": round(t["float32"], 3), "int8_ms": round(t["int8"], 3),
                   "predicted_float32_ms": round(pf, 3), "predicted_int8_ms": round(pi, 3)}
            print(row, file=sys.stderr, flush=True)
            table.append(row)
    load_end = uptime()
    within = sum(abs(r["error"]) <= 0.35 for r in table)
    print(json.dumps({k: v for k, v in full.items() if k != "machine"}, indent=1))
    print(f"| model | measured int8/fp32 | predicted | error | int8 partitions | int8 ops on built-in kernels |")
    print("|---|---|---|---|---|---|")
    for r in table:
        fb = ", ".join(f"{k} x{v}" for k, v in r["int8_fallback_ops"].items()) or "-"
        print(f"| {r['model']} | {r['measured_int8_over_float32']:.2f} | {r['predicted_int8_over_float32']:.2f} | "
              f"{r['error']:+.0%} | {r['int8_partitions']} | {fb} |")
    print(f"same direction: {sum(r['same_direction'] for r in table)}/{len(table)}; within 35%: "
          f"{within}/{len(table)}; load {load_start} -> {load_end}")
    if not args.no_write:
        from edgecv.fileio import write_text_atomic

        write_text_atomic(CALIBRATION, json.dumps(full, indent=1) + "\n")
        RESULTS.parent.mkdir(exist_ok=True)
        write_text_atomic(RESULTS, json.dumps({**{k: v for k, v in full.items()}, "loadavg_start": load_start,
                                               "loadavg_end": load_end, "rounds": args.rounds,
                                               "corpus": corpus, "table": table,
                                               "same_direction": sum(r["same_direction"] for r in table),
                                               "within_35_percent": within}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
