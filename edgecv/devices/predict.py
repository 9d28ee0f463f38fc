"""``predict_profile``: latency, memory and fit-to-device of a statically analysed model on a device profile.

Called by ``edgecv profile MODEL --device rpi4``. Pure Python over the profile's stored coefficients: no
TensorFlow, no numpy, no scipy.
"""

from __future__ import annotations

import dataclasses

from edgecv.devices.model import (builtin_slowdown, compute_dtype, default_threads, device_params, falls_back,
                                  host_calibration, latency_s, op_terms, partition_seconds)
from edgecv.devices.profile import DeviceProfile, load_profile
from edgecv.errors import EdgecvError
from edgecv.records import LatencyStats, OpStat, Prediction, ProfileResult, RuntimeInfo

MIB = 2**20
SMALL_TENSOR_BYTES = 4096


def _check_threads(threads, dev: DeviceProfile, warnings: list[str]) -> int:
    if threads is None:
        return default_threads(dev)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EdgecvError(f"--threads: expected an integer >= 1. Received: {threads!r}")
    if threads > dev.cores:
        warnings.append(f"--threads {threads} is more than the {dev.cores} cores of {dev.id}; "
                        f"predicting with {dev.cores} threads")
        return dev.cores
    return threads


def _check_budget(budget_ms) -> float | None:
    if budget_ms is None:
        return None
    from edgecv.validate import positive_float

    return positive_float("--budget-ms", budget_ms, unit="milliseconds")


def _precision(static: ProfileResult) -> str:
    p = (static.precision or "").lower()
    if p:
        return p
    dts = {o.dtype for o in static.ops}
    return dts.pop() if len(dts) == 1 else "mixed"


def predict_ops_ms(ops: list[OpStat], dev: DeviceProfile, threads: int,
                   partitions: int | None = None) -> tuple[float, list[float]]:
    """Predicted total and per-op latency in ms (per-op includes the per-op overhead; the total adds the cost
    of the XNNPACK delegate's extra partitions)."""
    params = device_params(dev)
    terms = op_terms(ops, dev, threads)
    per_op = [latency_s([t], params) * 1e3 for t in terms]
    return sum(per_op) + partition_seconds(dev, partitions) * 1e3, per_op


def fallback_ops(ops: list[OpStat]) -> dict[str, int]:
    """``{"HARD_SWISH int8": 18, ...}``: ops left to TFLite's built-in kernels, by type and compute dtype
    (shape bookkeeping on a few values, below SMALL_TENSOR_BYTES, left out)."""
    out: dict[str, int] = {}
    for o in ops:
        if falls_back(o) and o.input_bytes + o.activation_bytes >= SMALL_TENSOR_BYTES:
            key = f"{o.type} {compute_dtype(o.dtype) if o.dtype != 'int16' else 'int16'}"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def predict_profile(static: ProfileResult, device: str | DeviceProfile, threads: int | None = None,
                    budget_ms: float | None = None) -> ProfileResult:
    """Predict ``static`` (the profiler's graph analysis: ops and totals) on ``device``.

    Returns a copy with ``mode="predicted"``, ``device`` set, ``latency_ms`` (all statistics equal the
    prediction; ``runs=0``) and ``prediction`` = {latency_ms, band_low_ms, band_high_ms, fps,
    peak_memory_bytes, fits_ram, meets_budget, threads, warnings, ...}.
    """
    dev = device if isinstance(device, DeviceProfile) else load_profile(device)
    warnings: list[str] = []
    n = _check_threads(threads, dev, warnings)
    budget = _check_budget(budget_ms)
    ops = list(static.ops or [])
    if not ops:
        raise EdgecvError(f"{static.model}: the static analysis found no operators to price; "
                          "cannot predict latency")
    precision = _precision(static)
    coeffs = dev.prediction

    partitions = getattr(static, "delegate_partitions", None)
    total_ms, per_op = predict_ops_ms(ops, dev, n, partitions)
    band = coeffs.loo_mdape
    low, high = total_ms / (1 + band), total_ms * (1 + band)

    # --- warnings a user needs before deploying ---------------------------------------------------
    dtypes = {(o.dtype or "").lower() for o in ops}
    if "float16" in dtypes or precision == "float16":
        warnings.append("float16 model: TFLite runs it as float32 on the CPU (fp16 weights are dequantized at "
                        "load), so it is predicted at float32 speed with float32 weights in memory")
    if "int16" in dtypes or precision == "int16x8":
        warnings.append("int16x8 model (16-bit activations): XNNPACK has no int16 kernels and no published "
                        "latency calibrates TFLite's built-in int16 kernels, so it is priced as float32 on XNNPACK, "
                        "which the built-in kernels do not reach: measure it on the target (--target)")
    has_int8 = any(compute_dtype(d) == "int8" for d in dtypes)
    if has_int8 and not dev.dotprod:
        f32_ms, _ = predict_ops_ms([dataclasses.replace(o, dtype="float32") for o in ops], dev, n, partitions)
        warnings.append(f"int8 without dot-product instructions (no asimddp on {dev.cores_by_speed()[0].core}): "
                        f"int8 gains less, predicted {f32_ms / total_ms:.1f}x faster than float32 here "
                        "(cores with sdot reach about 1.5x more int8 throughput)")
    # shape bookkeeping (SHAPE, PACK on a few int32 values) is priced but not worth a warning
    fallback = fallback_ops(ops)
    if fallback:
        what = "; ".join(f"{k}: {v} op{'s' if v > 1 else ''} on built-in kernels" for k, v in fallback.items())
        slow = ", ".join(sorted({f"{builtin_slowdown('elementwise', k.split()[1]):.1f}x" for k in fallback}))
        split = f"; XNNPACK splits the graph into {partitions} partitions" if partitions and partitions > 1 else ""
        src = "as the installed LiteRT delegates this file" if any(o.delegated is not None for o in ops) \
            else "by XNNPACK's float32 op list (no .tflite file to ask)"
        warnings.append(f"not taken by the XNNPACK delegate ({src}): {what}{split}; priced from host measurements "
                        f"of TFLite's built-in kernels ({slow} slower) plus each partition switch")
    host_cal = host_calibration(dev)
    if dev.kind == "host" and not host_cal:
        warnings.append("host: no kernel calibration matches this CPU, so the coefficients are priors from ARM "
                        "boards; measure this machine instead (`edgecv profile MODEL` without --device)")
    elif host_cal:
        warnings.append(f"host: coefficients measured on this CPU ({host_cal.get('date', '?')}, "
                        f"tools/bench_kernels.py) on {', '.join(host_cal.get('models', [])) or 'probe models'}")
    if coeffs.method == "prior" and not host_cal:
        warnings.append(f"{dev.id} has no published measurements to fit: coefficients are priors from its spec "
                        f"and similar devices (band +/-{band:.0%})")
    if coeffs.runtime and "xnnpack" not in coeffs.runtime.lower():
        warnings.append(f"{dev.id}'s coefficients were fitted on {coeffs.runtime} measurements, not TFLite with "
                        "XNNPACK; today's runtime may be faster")

    # --- memory ---------------------------------------------------------------------------------
    weights = int(static.weights_bytes or sum(o.weight_bytes for o in ops))
    if "float16" in dtypes or precision == "float16":
        weights *= 2  # dequantized to float32 at load
    arena = int(static.peak_activation_bytes or max((o.input_bytes + o.activation_bytes for o in ops), default=0))
    baseline = int(dev.memory.runtime_baseline_mib * MIB)
    peak = arena + weights + baseline
    fits = peak <= dev.usable_ram_bytes
    if not fits:
        warnings.append(f"does not fit in RAM: predicted peak memory {peak / MIB:,.0f} MiB > "
                        f"{dev.usable_ram_bytes / MIB:,.0f} MiB usable on the smallest {dev.id} "
                        f"({min(dev.memory.ram_gib):g} GiB, {dev.memory.os_reserved_mib:g} MiB kept by the OS)")
    meets = None if budget is None else total_ms <= budget
    # energy per inference = board power while busy x latency (device_research.md section 5)
    energy_mj = None if dev.power.active_w is None else round(dev.power.active_w * total_ms, 3)

    lat = LatencyStats(mean=total_ms, std=0.0, min=total_ms, p50=total_ms, p90=total_ms, p99=total_ms, runs=0)
    by_class: dict[str, float] = {}
    for o, t in zip(ops, per_op):
        by_class[o.op_class] = by_class.get(o.op_class, 0.0) + t
    prediction = Prediction.from_dict({
        "latency_ms": round(total_ms, 4),
        "band_low_ms": round(low, 4),
        "band_high_ms": round(high, 4),
        "band_fraction": band,
        "fps": round(1000.0 / total_ms, 3),
        "peak_memory_bytes": peak,
        "arena_bytes": arena,
        "weights_in_memory_bytes": weights,
        "runtime_baseline_bytes": baseline,
        "ram_bytes": dev.ram_bytes,
        "usable_ram_bytes": dev.usable_ram_bytes,
        "fits_ram": fits,
        "budget_ms": budget,
        "meets_budget": meets,
        "threads": n,
        "energy_mj_per_inference": energy_mj,
        "compute_dtype": "int8" if has_int8 else "float32",
        "delegate_partitions": partitions,
        "fallback_ops": fallback,
        "latency_by_class_ms": {k: round(v, 4) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "coefficients_method": coeffs.method,
        "coefficients_runtime": coeffs.runtime,
        "warnings": warnings,
    })
    runtime = RuntimeInfo(name="tflite", version="(predicted)", delegate="xnnpack", threads=n,
                          predictor="edgecv.devices roofline v1")
    return dataclasses.replace(static, mode="predicted", device=dev.id, latency_ms=lat, runtime=runtime,
                               prediction=prediction)


def prediction_rows(pred: Prediction) -> list[tuple[str, str]]:
    """Human-readable (label, text) rows of a ``ProfileResult.prediction`` for CLI tables."""
    mib = lambda b: f"{b / MIB:,.1f} MiB"  # noqa: E731
    rows = [("predicted latency", f"{pred.latency_ms:.2f} ms (band {pred.band_low_ms:.2f}-"
                                  f"{pred.band_high_ms:.2f} ms, +/-{pred.band_fraction:.0%}), "
                                  f"{pred.fps:.1f} FPS, {pred.threads} threads"),
            ("predicted peak memory", f"{mib(pred.peak_memory_bytes)} = arena {mib(pred.arena_bytes)} + weights "
                                      f"{mib(pred.weights_in_memory_bytes)} + runtime "
                                      f"{mib(pred.runtime_baseline_bytes)}"),
            ("fits RAM", f"{'yes' if pred.fits_ram else 'NO'} ({mib(pred.usable_ram_bytes)} usable of "
                         f"{mib(pred.ram_bytes)})")]
    if pred.energy_mj_per_inference is not None:
        rows.append(("energy", f"{pred.energy_mj_per_inference:.1f} mJ per inference (board power x latency)"))
    if pred.budget_ms is not None:
        rows.append(("budget", f"{pred.budget_ms:g} ms: {'met' if pred.meets_budget else 'NOT met'}"))
    rows.append(("coefficients", f"{pred.coefficients_method} ({pred.coefficients_runtime})"))
    for w in pred.warnings:
        rows.append(("warning", w))
    return rows
