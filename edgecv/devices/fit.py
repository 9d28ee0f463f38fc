"""Fitting the latency model's coefficients on measured anchors (non-negative least squares).

The model (``edgecv.devices.model``) is linear in the inverse efficiencies ``1/e`` and the per-op overhead
once the thread efficiency ``p`` and which ops are bandwidth-bound are fixed. The fit therefore:

1. scans ``p`` on a grid (with a penalty pulling it to its prior);
2. for each ``p``, alternates NNLS (``scipy.optimize.nnls``) on the compute-bound terms with re-deciding
   which ops sit on the bandwidth roof, until the split is stable;
3. adds one pseudo-observation per coefficient, ``lam * x_k / prior_k = lam``, so that coefficients the
   anchors cannot identify (int8 on a device with only fp32 anchors, depthwise from two models) stay at
   their prior. Rows are divided by the measured latency: the fit minimises relative error.

Priors: a device's prior is the weighted geometric mean of the coefficients fitted on the *other*
anchored devices (first fitted against generic priors), weighting similar devices more (same core
type in-order/out-of-order, same kind of board, same runtime family). A device with no anchors uses its
prior as is ("spec-only": peak throughput from its clusters times efficiencies seen on similar cores).
Leave-one-out re-fits a device without one anchor (its prior never sees its own anchors).

Needs numpy and scipy (installed with scikit-learn); only the calibration tool and tests fit,
``predict_profile`` reads the stored coefficients.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from edgecv.devices.model import Params, compute_dtype, op_terms
from edgecv.devices.profile import DeviceProfile
from edgecv.errors import EdgecvError

# Generic priors (level 0): fractions of per-core peak, bytes/cycle, overhead in cycles, p.
# From device_research.md section 3: dense conv ~35-60 % of fp32 peak, depthwise ~6-11 %, int8 dense
# about the same fraction of a no-dotprod int8 peak (2x fp32 MACs), per-op overhead tens of microseconds.
GENERIC = Params(conv_fp32=0.45, dw_fp32=0.12, conv_int8=0.45, dw_int8=0.10, elementwise=2.0,
                 overhead_s=30e3, thread_efficiency=0.7)  # overhead in cycles here (scaled by clock)
# int8 GEMM with sdot/udot reaches this many times the int8 MAC rate of the no-dotprod kernels
# (prior, to be replaced by anchors from real targets; XNNPACK picks neondot kernels when available).
DOTPROD_GAIN = 1.5
LAMBDA = 0.3  # weight of the prior pseudo-observations (relative units)
LAMBDA_P = 0.5  # weight of the thread-efficiency prior, per 0.25 of deviation
P_GRID = tuple(round(0.1 + 0.025 * i, 3) for i in range(37))  # 0.1 .. 1.0


@dataclass(frozen=True)
class Measurement:
    device: str
    runtime: str
    model: str  # registry name
    precision: str  # float32 | float16 | int8
    threads: int
    latency_ms: float
    note: str = ""
    source: str = ""
    arith: str = ""  # "float16" when the runtime computed in fp16 (ncnn on fp16-capable cores)


def runtime_family(runtime: str) -> str:
    r = runtime.lower()
    if "xnnpack" in r:
        return "xnnpack"
    if "ncnn" in r:
        return "ncnn"
    if "onnx" in r:
        return "onnxruntime"
    return "tflite-builtin"


def read_measurements(path: str | Path) -> list[Measurement]:
    """Rows of a CSV in published_latency.csv's format (device, runtime, model, width, resolution,
    precision, threads, latency_ms, note, source). Errors name the file, line and column."""
    from edgecv.devices.features import anchor_model_name

    path = Path(path)
    need = ("device", "runtime", "model", "width", "resolution", "precision", "threads", "latency_ms")
    out = []
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise EdgecvError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        rd = csv.DictReader(fh)
        missing = [c for c in need if c not in (rd.fieldnames or [])]
        if missing:
            raise EdgecvError(f"{path}: missing column(s) {', '.join(missing)}. Received header: {rd.fieldnames}")
        for line, row in enumerate(rd, start=2):
            try:
                prec = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
                        "int8": "int8", "uint8": "int8"}[row["precision"].strip().lower()]
            except KeyError:
                raise EdgecvError(f"{path}:{line}: precision: expected float32, float16 or int8. "
                                  f"Received: {row['precision']!r}") from None
            try:
                threads = int(row["threads"])
                ms = float(row["latency_ms"])
                if threads < 1 or not (ms > 0 and math.isfinite(ms)):
                    raise ValueError
            except (TypeError, ValueError):
                raise EdgecvError(f"{path}:{line}: threads/latency_ms: expected an integer >= 1 and a number > 0. "
                                  f"Received: {row['threads']!r}, {row['latency_ms']!r}") from None
            try:
                model = anchor_model_name(row["model"], row["width"], row["resolution"])
            except (ValueError, TypeError) as exc:
                raise EdgecvError(f"{path}:{line}: model: {exc}") from None
            note = (row.get("note") or "").strip()
            out.append(Measurement(device=row["device"].strip(), runtime=row["runtime"].strip(), model=model,
                                   precision=prec, threads=threads, latency_ms=ms, note=note,
                                   source=(row.get("source") or "").strip(),
                                   arith=(row.get("arith") or "").strip()))
    return out


# --- one device ------------------------------------------------------------------------------------

@dataclass
class _Anchor:
    m: Measurement
    k: "object"  # numpy arrays
    work: "object"
    g1: "object"
    grest: "object"
    gmin: "object"
    n: "object"
    mem: "object"
    slow: "object"
    n_ops: int
    t: float


def _anchor_terms(dev: DeviceProfile, m: Measurement):
    import numpy as np

    from edgecv.devices.features import anchor_static

    # fp16 arithmetic (ncnn) also stores activations and weights in fp16; TFLite float16 files run fp32
    dtype = "float16_storage" if (m.arith == "float16" and m.precision != "int8") else m.precision
    static = anchor_static(m.model, dtype)
    threads = min(m.threads, dev.cores)
    terms = op_terms(static.ops, dev, threads, fp16_arith=(m.arith == "float16"))
    arr = lambda attr, dt=float: np.array([getattr(t, attr) for t in terms], dtype=dt)  # noqa: E731
    return _Anchor(m, arr("k", int), arr("work"), arr("g1"), arr("grest"), arr("gmin"), arr("n"), arr("mem_s"),
                   arr("slowdown"), len(terms), m.latency_ms / 1e3)


def _rate(a: _Anchor, p: float):
    import numpy as np

    return np.minimum(a.g1 + p * a.grest, (1 + p * (a.n - 1)) * a.gmin)


def _predict(a: _Anchor, x, tau: float, p: float) -> float:
    import numpy as np

    compute = a.work * x[a.k] / _rate(a, p)
    return float(np.sum(np.maximum(compute, a.mem) * a.slow) + a.n_ops * tau)


def params_to_x(pr: Params):
    import numpy as np

    return np.array([1.0 / e for e in pr.efficiencies()])


def fit_params(anchors: list[_Anchor], prior: Params, lam: float = LAMBDA, lam_p: float = LAMBDA_P) -> Params:
    """NNLS fit of one device's coefficients on its anchors, pulled towards ``prior``."""
    import numpy as np
    from scipy.optimize import nnls

    x_prior = params_to_x(prior)
    x_prior[:4] = np.maximum(x_prior[:4], 1.0)  # a prior above peak is clipped to the peak
    if not anchors:
        return prior
    best = None
    for p in P_GRID:
        x, tau = x_prior.copy(), prior.overhead_s
        bound = None
        for _ in range(12):
            rows, rhs = [], []
            new_bound = []
            for a in anchors:
                rate = _rate(a, p)
                compute = a.work * x[a.k] / rate
                cb = compute >= a.mem  # compute-bound ops
                new_bound.append(cb)
                row = np.zeros(6)
                coef = np.where(cb, a.work * a.slow / rate, 0.0)
                np.add.at(row, a.k, coef)
                row[5] = a.n_ops
                const = float(np.sum(np.where(cb, 0.0, a.mem * a.slow)))
                rows.append(row / a.t)
                rhs.append((a.t - const) / a.t)
            for j in range(5):
                r = np.zeros(6)
                r[j] = lam / x_prior[j]
                rows.append(r)
                rhs.append(lam)
            r = np.zeros(6)
            r[5] = lam / max(prior.overhead_s, 1e-9)
            rows.append(r)
            rhs.append(lam)
            # efficiencies of the compute classes cannot exceed the peak: x_k = 1/e_k = 1 + y_k, y_k >= 0
            A, b = np.array(rows), np.array(rhs)
            b = b - A[:, :4].sum(axis=1)
            sol, _ = nnls(A, b)
            x = np.concatenate([1.0 + sol[:4], [max(sol[4], 1e-3)]])
            tau = float(sol[5])
            if bound is not None and all(np.array_equal(b0, b1) for b0, b1 in zip(bound, new_bound)):
                break
            bound = new_bound
        # objective: relative squared errors + prior penalties (same weights as in the solve)
        res = [(_predict(a, x, tau, p) - a.t) / a.t for a in anchors]
        obj = (sum(r * r for r in res) + sum((lam * (x[j] / x_prior[j] - 1)) ** 2 for j in range(5))
               + (lam * (tau / max(prior.overhead_s, 1e-9) - 1)) ** 2
               + (lam_p * (p - prior.thread_efficiency) / 0.25) ** 2)
        if best is None or obj < best[0]:
            best = (obj, x, tau, p)
    _, x, tau, p = best
    return Params(*(float(1.0 / v) for v in x), overhead_s=tau, thread_efficiency=p)


# --- priors across devices -----------------------------------------------------------------------

def _similarity(a: DeviceProfile, b: DeviceProfile) -> float:
    w = 1.0
    w *= 3.0 if a.core_group == b.core_group else 1.0
    w *= 3.0 if a.kind == b.kind else 1.0
    w *= 2.0 if runtime_family(a.runtime) == runtime_family(b.runtime) else 1.0
    return w


def _int8_rate(dev: DeviceProfile, e_int8: float) -> float:
    """int8 MAC rate as a multiple of the fp32 MAC peak (device-independent across core widths)."""
    c = dev.cores_by_speed()[0]
    return e_int8 * c.peak_gmacs("int8") / c.peak_gmacs("float32")


def transfer(src: Params, src_dev: DeviceProfile, dst_dev: DeviceProfile) -> Params:
    """Express ``src_dev``'s coefficients as a prior for ``dst_dev``: same fractions of peak, the per-op
    overhead in cycles of the fastest core, and the int8 rate relative to fp32 (with the dot-product gain
    when the target has sdot and the source does not)."""
    s0, d0 = src_dev.cores_by_speed()[0], dst_dev.cores_by_speed()[0]
    gain = DOTPROD_GAIN if (dst_dev.dotprod and not src_dev.dotprod) else (
        1 / DOTPROD_GAIN if (src_dev.dotprod and not dst_dev.dotprod) else 1.0)
    dst_ratio = d0.peak_gmacs("int8") / d0.peak_gmacs("float32")
    conv_int8 = _int8_rate(src_dev, src.conv_int8) * gain / dst_ratio
    dw_int8 = _int8_rate(src_dev, src.dw_int8) / dst_ratio
    return replace(src, conv_int8=conv_int8, dw_int8=dw_int8,
                   overhead_s=src.overhead_s * s0.freq_ghz / d0.freq_ghz)


def pooled_prior(dst: DeviceProfile, fitted: dict[str, tuple[DeviceProfile, Params]]) -> Params:
    """Weighted geometric mean of other devices' coefficients, transferred to ``dst``."""
    items = [(transfer(pr, dev, dst), _similarity(dev, dst)) for did, (dev, pr) in fitted.items() if did != dst.id]
    if not items:
        return generic_prior(dst)
    wsum = sum(w for _, w in items)

    def gmean(attr):
        return math.exp(sum(w * math.log(max(getattr(p, attr), 1e-12)) for p, w in items) / wsum)

    p = sum(w * pr.thread_efficiency for pr, w in items) / wsum
    return Params(gmean("conv_fp32"), gmean("dw_fp32"), gmean("conv_int8"), gmean("dw_int8"),
                  gmean("elementwise"), gmean("overhead_s"), p)


def generic_prior(dev: DeviceProfile) -> Params:
    f = dev.cores_by_speed()[0].freq_ghz * 1e9
    pr = replace(GENERIC, overhead_s=GENERIC.overhead_s / f)
    if dev.dotprod:  # GENERIC int8 is a fraction of a no-dotprod int8 peak (2x fp32 MACs)
        c = dev.cores_by_speed()[0]
        ratio = c.peak_gmacs("int8") / c.peak_gmacs("float32")
        pr = replace(pr, conv_int8=GENERIC.conv_int8 * 2 * DOTPROD_GAIN / ratio)
    return pr


# --- the whole calibration -----------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceFit:
    device: str
    method: str  # nnls | prior
    runtime: str
    params: Params
    prior: Params
    anchors: tuple[Measurement, ...]
    loo_ape: tuple[float, ...]  # one per anchor (empty with < 2 anchors)
    loo_pred_ms: tuple[float, ...]
    prior_ape: tuple[float, ...]  # anchors predicted from the prior alone (leave-device-out)
    prior_pred_ms: tuple[float, ...]

    @property
    def loo_mdape(self) -> float | None:
        return statistics.median(self.loo_ape) if self.loo_ape else None

    @property
    def prior_mdape(self) -> float | None:
        return statistics.median(self.prior_ape) if self.prior_ape else None


def select_anchors(dev: DeviceProfile, rows: list[Measurement]) -> list[Measurement]:
    """The device's rows of one runtime family: the profile's, else the most common."""
    mine = [m for m in rows if m.device == dev.id]
    if not mine:
        return []
    fams = [runtime_family(m.runtime) for m in mine]
    want = runtime_family(dev.runtime) if runtime_family(dev.runtime) in fams else max(set(fams), key=fams.count)
    return [m for m in mine if runtime_family(m.runtime) == want]


def calibrate(profiles: list[DeviceProfile], rows: list[Measurement], lam: float = LAMBDA) -> dict[str, DeviceFit]:
    """Fit every profile: NNLS on its anchors with pooled priors; leave-one-out and prior-only errors."""
    by_id = {p.id: p for p in profiles}
    anchors = {p.id: select_anchors(p, rows) for p in profiles}
    terms = {did: [_anchor_terms(by_id[did], m) for m in ms] for did, ms in anchors.items()}
    level0 = {did: (by_id[did], fit_params(terms[did], generic_prior(by_id[did]), lam))
              for did in by_id if terms[did]}
    fits = {}
    for dev in profiles:
        prior = pooled_prior(dev, level0)
        ts = terms[dev.id]
        params = fit_params(ts, prior, lam) if ts else prior
        loo_ape, loo_pred = [], []
        if len(ts) >= 2:
            for i, a in enumerate(ts):
                pr_i = fit_params(ts[:i] + ts[i + 1:], prior, lam)
                pred = _predict(a, params_to_x(pr_i), pr_i.overhead_s, pr_i.thread_efficiency)
                loo_pred.append(pred * 1e3)
                loo_ape.append(abs(pred - a.t) / a.t)
        prior_pred = [_predict(a, params_to_x(prior), prior.overhead_s, prior.thread_efficiency) for a in ts]
        fits[dev.id] = DeviceFit(
            device=dev.id, method="nnls" if ts else "prior",
            runtime=ts[0].m.runtime if ts else dev.runtime, params=params, prior=prior,
            anchors=tuple(a.m for a in ts), loo_ape=tuple(loo_ape), loo_pred_ms=tuple(loo_pred),
            prior_ape=tuple(abs(p - a.t) / a.t for p, a in zip(prior_pred, ts)),
            prior_pred_ms=tuple(p * 1e3 for p in prior_pred))
    return fits


def spec_only_band(fits: dict[str, DeviceFit]) -> float:
    """Median APE of anchors predicted from priors alone (leave-device-out): the band of spec-only devices."""
    apes = [e for f in fits.values() for e in f.prior_ape]
    return statistics.median(apes) if apes else 0.5


def predict_measurement(dev: DeviceProfile, params: Params, m: Measurement) -> float:
    """Predicted latency in ms of a measurement's model/precision/threads on ``dev`` with ``params``."""
    a = _anchor_terms(dev, m)
    return _predict(a, params_to_x(params), params.overhead_s, params.thread_efficiency) * 1e3


def compute_dtype_of(m: Measurement) -> str:
    return compute_dtype(m.precision, m.arith == "float16")
