"""The latency model: per-op roofline with fitted per-class efficiencies, per-op overhead, thread scaling.

For a device with cores sorted fastest first (peaks ``P_d(core)`` in MAC/s for compute dtype ``d``) and
``n`` threads on the ``n`` fastest cores::

    G_d(n)  = min(P_d(core_1) + p * sum_{i=2..n} P_d(core_i),    # p: thread_efficiency
                  (1 + p*(n-1)) * min_{i<=n} P_d(core_i))       # work split evenly: slowest core paces
    F(n)    = the same with clocks f(core_i) in Hz
    t(op)   = max(MACs / (e[class, d] * G_d(n)),  bytes / BW)  + tau     conv, pointwise, fc, depthwise
    t(op)   = max(bytes / (beta * F(n)),          bytes / BW)  + tau     elementwise, pooling, other
    latency = sum over ops of t(op)

``bytes`` = the op's input + output activations + weights; ``BW`` the device's sustained DRAM bandwidth (the
roof applies only to ops whose bytes exceed the last-level cache: L3, else the largest L2);
``e[class, d]`` the fraction of peak dense convolutions (conv, pointwise, fully connected) and depthwise
convolutions reach in fp32 and int8; ``beta`` the elementwise bytes per cycle; ``tau`` a per-op overhead.
No TensorFlow, no numpy here: this runs on the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgecv.devices.profile import Coefficients, DeviceProfile
from edgecv.records import OpStat

# index of each (group, dtype) in the parameter vector; group of each op class
PARAM_NAMES = ("conv_fp32", "dw_fp32", "conv_int8", "dw_int8", "elementwise")
GROUP = {"conv": "conv", "pointwise": "conv", "fc": "conv", "depthwise": "dw",
         "elementwise": "ew", "pool": "ew", "other": "ew"}

# Which ops XNNPACK takes comes from the installed LiteRT itself: the static analysis of a .tflite file asks
# it (``OpStat.delegated``). This list is used only for ops listed from a Keras model, with no file to ask
# (the device anchors' features): TFLite builtin ops the XNNPACK delegate takes in float32
# (tensorflow/lite/delegates/xnnpack/README.md). Names not in TFLite's upper-case style are not checked.
XNNPACK_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CEIL CONCATENATION CONV_2D COS DEPTH_TO_SPACE DEPTHWISE_CONV_2D
DEQUANTIZE DIV ELU EXP FLOOR FULLY_CONNECTED GELU HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D MAXIMUM MEAN
MINIMUM MUL NEG PAD PRELU QUANTIZE RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR ROUND RSQRT SIN SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV
""".split())
# Ops that fall back to TFLite's built-in kernels are priced this many times slower when the kernel
# calibration table (``kernel_calibration.json``, written by ``tools/bench_kernels.py``) has no figure
# (prior: the built-in kernels are 4-8x slower than XNNPACK on whole models, toolchain.md).
FALLBACK_SLOWDOWN = 3.0
CALIBRATION_FILE = Path(__file__).with_name("kernel_calibration.json")


@lru_cache(maxsize=1)
def kernel_calibration() -> dict:
    """The host measurements of TFLite's built-in kernels against XNNPACK (``tools/bench_kernels.py``):
    ``builtin_slowdown`` per compute dtype and op group, ``partition_cycles`` per delegate partition."""
    import json

    try:
        return json.loads(CALIBRATION_FILE.read_text())
    except (OSError, ValueError):
        return {}


def builtin_slowdown(op_class: str, dtype: str) -> float:
    """How many times slower an op of ``op_class`` computing in ``dtype`` runs on TFLite's built-in kernels
    than on XNNPACK (host measurement; FALLBACK_SLOWDOWN without a table)."""
    table = kernel_calibration().get("builtin_slowdown", {})
    group = GROUP.get(op_class, "ew")
    d = table.get(dtype) or table.get("float32") or {}
    return float(d.get(group) or d.get("all") or FALLBACK_SLOWDOWN)


def builtin_op_seconds(op: OpStat, dtype: str, dev: DeviceProfile) -> float | None:
    """Host-measured time of ``op`` on TFLite's built-in kernels (``builtin_op_cycles_per_byte`` of the
    calibration: cycles per input + output byte of that op type and compute dtype, at the device's fastest
    clock), or None when the calibration has no figure for that op."""
    cpb = kernel_calibration().get("builtin_op_cycles_per_byte", {}).get(f"{op.type} {dtype}")
    if not cpb:
        return None
    ghz = dev.cores_by_speed()[0].freq_ghz or 1.0
    return float(cpb) * (op.input_bytes + op.activation_bytes) / (ghz * 1e9)


HOST_MATCH_KEYS = ("machine", "cpu_model", "features")


def host_calibration(dev: DeviceProfile) -> dict | None:
    """The calibration's host coefficients (``host.coefficients``, measured by ``tools/bench_kernels.py`` on
    models outside the check corpus) when ``dev`` is the host and its CPU matches the calibration's
    fingerprint (machine, CPU model, ISA features); None otherwise (the host profile's priors apply)."""
    cal = kernel_calibration()
    host = cal.get("host") or {}
    if dev.kind != "host" or not host.get("coefficients"):
        return None
    return host if _host_matches(_machine_key(cal.get("machine") or {})) else None


def _machine_key(fp: dict) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(fp.items()) if k in HOST_MATCH_KEYS)


@lru_cache(maxsize=4)
def _host_matches(key: tuple) -> bool:
    from edgecv.profiling.cpu_probe import fingerprint

    return _machine_key(fingerprint()) == key


def device_params(dev: DeviceProfile) -> Params:
    """The latency model's coefficients for ``dev``: the host calibration on a matching host, else the
    profile's ``[prediction]``."""
    host = host_calibration(dev)
    if host:
        c = host["coefficients"]
        return Params(c["conv_fp32_peak_fraction"], c["dw_fp32_peak_fraction"], c["conv_int8_peak_fraction"],
                      c["dw_int8_peak_fraction"], c["elementwise_bytes_per_cycle"], c["overhead_us_per_op"] * 1e-6,
                      dev.prediction.thread_efficiency)
    return Params.from_coefficients(dev.prediction)


def partition_seconds(dev: DeviceProfile, partitions: int | None) -> float:
    """The cost of the delegate's partitions beyond the first (a switch between XNNPACK and the built-in
    kernels each), from the calibrated cycles per partition at the device's fastest clock."""
    cycles = float(kernel_calibration().get("partition_cycles") or 0.0)
    if not partitions or partitions <= 1 or not cycles:
        return 0.0
    ghz = dev.cores_by_speed()[0].freq_ghz or 1.0
    return (partitions - 1) * cycles / (ghz * 1e9)


def falls_back(op: OpStat) -> bool:
    """True if ``op`` runs on TFLite's built-in kernels: as the installed LiteRT says for a .tflite file
    (``op.delegated``), else (ops listed from a Keras model) by the float32 list above."""
    if op.delegated is not None:
        return not op.delegated
    return bool(_tflite_name(op.type)) and op.type not in XNNPACK_OPS


@dataclass(frozen=True)
class Params:
    """Model coefficients as the fit sees them (fractions of peak, bytes/cycle, seconds, p)."""

    conv_fp32: float
    dw_fp32: float
    conv_int8: float
    dw_int8: float
    elementwise: float  # bytes per cycle per core
    overhead_s: float
    thread_efficiency: float

    def efficiencies(self) -> tuple[float, ...]:
        return (self.conv_fp32, self.dw_fp32, self.conv_int8, self.dw_int8, self.elementwise)

    @classmethod
    def from_coefficients(cls, c: Coefficients) -> "Params":
        return cls(c.conv_fp32_peak_fraction, c.dw_fp32_peak_fraction, c.conv_int8_peak_fraction,
                   c.dw_int8_peak_fraction, c.elementwise_bytes_per_cycle, c.overhead_us_per_op * 1e-6,
                   c.thread_efficiency)


def compute_dtype(op_dtype: str, fp16_arith: bool = False) -> str:
    """The dtype an op computes in on a CPU: int8/uint8 -> int8; float16 -> float32 unless the runtime
    runs fp16 arithmetic (TFLite on CPU does not: it dequantizes fp16 weights to fp32)."""
    d = (op_dtype or "float32").lower()
    if d in ("int8", "uint8", "qint8", "quint8"):
        return "int8"
    if fp16_arith and d in ("float32", "float16", "float16_storage"):
        return "float16"
    return "float32"


def thread_scale(dev: DeviceProfile, threads: int, dtype: str) -> tuple[float, float, float, int]:
    """(first core, sum of the other used cores, slowest used core, threads) of peak MAC/s for ``dtype``
    (or Hz when dtype='hz'); ``effective_rate`` combines them with the thread efficiency."""
    cores = dev.cores_by_speed()[:threads]

    def one(c):
        if dtype == "hz":
            return c.freq_ghz * 1e9
        d = dtype if (dtype != "float16" or c.fp16_arith) else "float32"
        return c.peak_gmacs(d) * 1e9

    vals = [one(c) for c in cores]
    return vals[0], sum(vals[1:]), min(vals), len(vals)


def effective_rate(g1: float, grest: float, gmin: float, n: int, p: float) -> float:
    return min(g1 + p * grest, (1 + p * (n - 1)) * gmin)


def default_threads(dev: DeviceProfile) -> int:
    """Threads used when none are given: the out-of-order (big and prime) cores, or all cores when every
    core is an in-order one (all cores of a Raspberry Pi; the big cores of a phone)."""
    from edgecv.devices.profile import is_little

    big = sum(c.count for c in dev.clusters if not is_little(c))
    return big or dev.cores


@dataclass(frozen=True)
class OpTerm:
    """One op's contribution: time = max(work / (e[k] * G(n)), mem_s) * slowdown + overhead."""

    k: int  # parameter index (PARAM_NAMES)
    work: float  # MACs (conv/dw) or bytes (elementwise)
    g1: float
    grest: float
    gmin: float
    n: int
    mem_s: float
    slowdown: float = 1.0
    fixed_s: float | None = None  # measured built-in kernel time (replaces the roofline and slowdown)


def op_terms(ops: list[OpStat], dev: DeviceProfile, threads: int, fp16_arith: bool = False,
             check_xnnpack: bool = True) -> list[OpTerm]:
    bw = dev.memory.bandwidth_gbs * 1e9
    llc = last_level_cache_bytes(dev)
    scales: dict[str, tuple[float, float, float, int]] = {}
    out = []
    for op in ops:
        group = GROUP.get(op.op_class, "ew")
        d = compute_dtype(op.dtype, fp16_arith)
        nbytes = float(op.input_bytes + op.activation_bytes + op.weight_bytes)
        if group == "ew":
            k, work, sd = 4, nbytes, "hz"
        else:
            k = (0 if group == "conv" else 1) + (2 if d == "int8" else 0)
            work, sd = float(op.macs), d
        if sd not in scales:
            scales[sd] = thread_scale(dev, threads, sd)
        g1, grest, gmin, n = scales[sd]
        fb = check_xnnpack and falls_back(op)
        slow = builtin_slowdown(op.op_class, d) if fb else 1.0
        fixed = builtin_op_seconds(op, d, dev) if fb else None
        # the DRAM roof applies to ops whose working set does not fit in the last-level cache
        out.append(OpTerm(k, work, g1, grest, gmin, n, nbytes / bw if nbytes > llc else 0.0, slow, fixed))
    return out


def last_level_cache_bytes(dev: DeviceProfile) -> int:
    """L3 if the device has one, else the largest L2 (shared on the Raspberry Pis)."""
    return 1024 * (dev.memory.l3_kib or max((c.l2_kib for c in dev.clusters), default=0))


def _tflite_name(t: str) -> bool:
    return bool(t) and t.upper() == t and t.replace("_", "").replace("2D", "").isalnum()


def latency_s(terms: list[OpTerm], params: Params) -> float:
    x = params.efficiencies()
    p = params.thread_efficiency
    total = 0.0
    for t in terms:
        if t.fixed_s is not None:
            total += t.fixed_s + params.overhead_s
            continue
        eff = x[t.k]
        compute = t.work / (eff * effective_rate(t.g1, t.grest, t.gmin, t.n, p)) if t.work else 0.0
        total += max(compute, t.mem_s) * t.slowdown + params.overhead_s
    return total


def predict_latency_s(ops: list[OpStat], dev: DeviceProfile, threads: int, params: Params | None = None,
                      fp16_arith: bool = False, partitions: int | None = None) -> float:
    """Predicted latency in seconds of ``ops`` on ``dev`` with ``threads`` threads (``partitions``: the
    XNNPACK delegate's partitions, each beyond the first priced by ``partition_seconds``)."""
    params = params or device_params(dev)
    return latency_s(op_terms(ops, dev, threads, fp16_arith), params) + partition_seconds(dev, partitions)
