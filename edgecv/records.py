"""Small typed records shared across the pipeline (profiling, prediction, reports).

The JSON schema of ``edgecv profile --json`` is ``ProfileResult.to_dict()``; docs/guide.md lists its keys.
Keep field names stable: sweeps, reports and saved anchors read them. Every record here is frozen and has one
``to_dict``/``from_dict`` pair; ``from_dict`` ignores keys it does not know, so records written by other versions
load.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

def jsonable(obj: Any) -> Any:
    """``obj`` as JSON types: records (dataclasses) as objects, tuples as arrays, numpy scalars as numbers,
    mapping keys as strings. The one converter behind every record's and command's JSON output."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if getattr(obj, "shape", None) == () and callable(getattr(obj, "item", None)):  # numpy scalars, 0-d arrays
        return obj.item()
    return obj


# Op classes the static analysis assigns and the device predictor prices separately.
OP_CLASSES = ("conv", "pointwise", "depthwise", "fc", "elementwise", "pool", "other")


@dataclass(frozen=True)
class OpStat:
    """One operator of a deployed graph (TFLite or ONNX), in execution order."""

    index: int
    type: str  # runtime op name: CONV_2D, DEPTHWISE_CONV_2D, Conv, QLinearConv, ...
    op_class: str  # one of OP_CLASSES
    dtype: str  # compute dtype: float32, float16, int8, uint8
    output_shape: tuple[int, ...]
    macs: int  # multiply-accumulates, counted as the MobileNet papers do (0 for elementwise/pool)
    params: int  # elements of constant weight/bias tensors this op consumes
    weight_bytes: int
    activation_bytes: int  # bytes of this op's (non-constant) output tensors
    input_bytes: int = 0  # bytes of this op's non-constant inputs (for the bandwidth bound)
    name: str = ""  # a name from the graph (output tensor name), for reports
    # TFLite: True if the installed LiteRT's XNNPACK delegate takes this op, False if it runs on TFLite's
    # built-in kernels; None when unknown (ONNX graphs, ops listed from a Keras model)
    delegated: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OpStat":
        """The inverse of ``to_dict`` (unknown keys ignored)."""
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        kw["output_shape"] = tuple(kw.get("output_shape") or ())
        return cls(**kw)


@dataclass(frozen=True)
class LatencyStats:
    """Timed runs in ms. A statistic the measuring tool does not report is None (Android's benchmark_model prints
    no p90/p99, older releases no median); a prediction has ``runs`` 0 and every statistic equal."""

    mean: float
    std: float | None
    min: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    runs: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyStats":
        """The inverse of ``to_dict`` (unknown keys ignored)."""
        return cls(**_known(cls, d))


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The items of ``d`` that name a field of ``cls`` (records written by other versions load)."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in (d or {}).items() if k in names}


def _str_tuple(v: Any) -> tuple[str, ...] | None:
    return None if v is None else tuple(str(x) for x in v)


MAX_CPUS = 4096  # a core index beyond this is not a CPU list


def cpu_indices(v: Any) -> tuple[int, ...] | None:
    """A CPU list as sorted core indices: ``[2, 3]`` (the runner's), ``"2-3"`` or ``"0,2"`` (a ``--cpus`` value) ->
    ``(2, 3)``; None when absent or not a CPU list."""
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)):
        return tuple(sorted(int(x) for x in v))
    out: set[int] = set()
    try:
        for part in str(v).split(","):
            lo, sep, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if sep else int(lo)
            if not 0 <= lo <= hi < MAX_CPUS:
                return None
            out.update(range(lo, hi + 1))
    except ValueError:
        return None
    return tuple(sorted(out)) or None


def _some(rec: Any, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """``rec``'s fields as JSON types, in field order: the ``always`` fields (null when unknown) as soon as one of
    them is known, every other field only when it is known (not None). The one writer of the open-ended blocks
    (``runtime``, ``env``, ``target``): their JSON has the keys the producers wrote before they were records."""
    known = {f.name: getattr(rec, f.name) for f in fields(rec) if not _unset(f, getattr(rec, f.name))}
    out = {}
    for f in fields(rec):
        if f.name in known or (f.name in always and any(k in known for k in always)):
            out[f.name] = jsonable(getattr(rec, f.name))
    return out


def _unset(f: Any, v: Any) -> bool:
    """A field holding nothing: None, or the empty container it defaults to."""
    if v is None:
        return True
    empty = f.default_factory() if f.default_factory is not MISSING else f.default
    return isinstance(empty, (dict, tuple)) and not empty and v == empty


@dataclass(frozen=True)
class RuntimeInfo:
    """What ran the model (``ProfileResult.runtime``): ``name`` (litert, onnxruntime, tflite_runtime,
    tflite-benchmark_model; tflite for a prediction), ``version``, ``threads``, ``delegate`` and the run's settings.
    Empty for a static profile (``converted_from`` only for a ``.keras`` file)."""

    name: str | None = None
    version: str | None = None
    threads: int | None = None
    delegate: str | None = None  # xnnpack, CPUExecutionProvider, default, ...
    warmup_runs: int | None = None
    min_time_s: float | None = None
    cpus: tuple[int, ...] | None = None  # cores the measurement was pinned to (--cpus)
    converted_from: str | None = None  # keras: a .keras file run as a float32 .tflite
    predictor: str | None = None  # predicted mode: the model that made the prediction
    # Android's benchmark_model: its own summary figures
    warmup_avg_ms: float | None = None
    max_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    memory_note: str | None = None

    def __post_init__(self) -> None:
        if self.cpus is not None and not (isinstance(self.cpus, tuple) and all(isinstance(c, int) for c in self.cpus)):
            object.__setattr__(self, "cpus", cpu_indices(self.cpus))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        return _some(self, ("name", "version", "threads", "delegate"))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RuntimeInfo":
        """The inverse of ``to_dict`` (unknown keys ignored; ``cpus`` also as a ``--cpus`` string)."""
        return cls(**_known(cls, d or {}))


@dataclass(frozen=True)
class InputInfo:
    """One model input as the runner fed it."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputInfo":
        kw = _known(cls, d)
        return cls(name=str(kw.get("name", "")), shape=tuple(kw.get("shape") or ()), dtype=str(kw.get("dtype", "")))


# the host fingerprint's keys: written together (null when unknown) whenever an environment was recorded
_ENV_ALWAYS = ("machine", "cpu_model", "board", "core", "cpu_part", "hardware", "isa", "features", "cores",
               "cores_available", "os", "kernel", "python", "numpy", "governor", "cpu_mhz", "cpu_max_mhz")


@dataclass(frozen=True)
class EnvInfo:
    """Where the model ran (``ProfileResult.env``): the CPU fingerprint of ``edgecv.profiling.cpu_probe``, the OS and
    the sensors at the end of the run; on a target also its URI and the inputs it ran; over ADB the phone's
    properties. Empty for static and predicted results."""

    machine: str | None = None  # aarch64, armv7l, x86_64
    cpu_model: str | None = None
    board: str | None = None  # Raspberry Pi 4 Model B Rev 1.4, or the phone's ro.product.board
    core: str | None = None  # Cortex-A72, "4x Cortex-A55 + 4x Cortex-X1", or the x86 model name
    cpu_part: str | None = None
    hardware: str | None = None
    isa: dict[str, bool] = field(default_factory=dict)  # cpu_probe.ISA_NAMES: neon, asimddp, asimdhp, i8mm / avx2, ...
    features: tuple[str, ...] = ()  # the ISA features present
    cores: int | None = None
    cores_available: int | None = None
    os: str | None = None
    kernel: str | None = None
    python: str | None = None
    numpy: str | None = None
    governor: str | None = None
    cpu_mhz: float | None = None
    cpu_max_mhz: float | None = None
    temp_c: dict[str, float] | None = None  # thermal zone -> deg C after the run
    temp_c_before: dict[str, float] | None = None
    throttled: str | None = None  # Raspberry Pi firmware flags, e.g. 0x50005
    throttled_now: tuple[str, ...] | None = None
    sensors_unavailable: tuple[str, ...] | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    target: str | None = None  # measured on a target: its URI
    inputs: tuple[InputInfo, ...] | None = None  # measured over SSH: the inputs the runner fed
    # Android (adb): device properties
    serial: str | None = None
    model: str | None = None
    manufacturer: str | None = None
    android: str | None = None
    sdk: str | None = None
    soc: str | None = None
    abi: str | None = None

    def __post_init__(self) -> None:
        for name in ("features", "throttled_now", "sensors_unavailable"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, tuple):
                object.__setattr__(self, name, _str_tuple(v))
        if self.inputs is not None and not (isinstance(self.inputs, tuple)
                                            and all(isinstance(i, InputInfo) for i in self.inputs)):
            object.__setattr__(self, "inputs", tuple(i if isinstance(i, InputInfo) else InputInfo.from_dict(i)
                                                     for i in self.inputs))

    def __bool__(self) -> bool:
        return any(not _unset(f, getattr(self, f.name)) for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        return _some(self, _ENV_ALWAYS)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "EnvInfo":
        """The inverse of ``to_dict`` (unknown keys ignored)."""
        kw = _known(cls, d or {})
        if kw.get("isa") is None:
            kw.pop("isa", None)
        if kw.get("features") is None:
            kw.pop("features", None)
        return cls(**kw)


@dataclass(frozen=True)
class NumericsMetrics:
    """Outputs compared with a reference's (``edgecv.targets.numerics.metrics``)."""

    sqnr_db: float | None  # None: bit-exact
    bit_exact: bool
    top1_agreement: float
    max_abs_error: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NumericsMetrics":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class VerifyReport:
    """``--verify``: the target's outputs for held-out samples compared with the host's (and a reference's)."""

    samples: int
    images: str  # where the samples came from
    preprocessing: str
    host_runtime: str
    target_runtime: str
    vs_host: NumericsMetrics
    diverges: bool
    reference: str | None = None  # a second reference run on the host (the sidecar's source model)
    vs_reference: NumericsMetrics | None = None
    host_vs_reference: NumericsMetrics | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.warnings, tuple):
            object.__setattr__(self, "warnings", _str_tuple(self.warnings))

    def to_dict(self) -> dict[str, Any]:
        d = _some(self)
        d["warnings"] = list(self.warnings)  # always written, also when empty
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VerifyReport":
        kw = _known(cls, d)
        for k in ("vs_host", "vs_reference", "host_vs_reference"):
            if isinstance(kw.get(k), dict):
                kw[k] = NumericsMetrics.from_dict(kw[k])
        kw["warnings"] = tuple(kw.get("warnings") or ())
        return cls(**kw)


@dataclass(frozen=True)
class SustainedInterval:
    """One interval of a sustained run: its runs, p50/p90 and the sensors read at its end."""

    t_s: float
    runs: int
    p50_ms: float
    p90_ms: float
    temp_c: dict[str, float] | None = None
    cpu_mhz: float | None = None
    throttled: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SustainedInterval":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class SustainedRun:
    """``--duration``: the series of a sustained run, burst (first interval) vs steady state (second half)."""

    duration_s: float
    interval_s: float
    intervals: tuple[SustainedInterval, ...]
    burst_p50_ms: float
    steady_p50_ms: float
    slowdown_pct: float
    unavailable: tuple[str, ...] = ()  # sensors the target lacks

    def __post_init__(self) -> None:
        if not isinstance(self.unavailable, tuple):
            object.__setattr__(self, "unavailable", _str_tuple(self.unavailable))
        if not isinstance(self.intervals, tuple):
            object.__setattr__(self, "intervals", tuple(self.intervals))

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SustainedRun":
        kw = _known(cls, d)
        kw["intervals"] = tuple(SustainedInterval.from_dict(i) for i in kw.get("intervals") or ())
        kw["unavailable"] = tuple(kw.get("unavailable") or ())
        return cls(**kw)


@dataclass(frozen=True)
class OpTiming:
    """One measured op (``--ops`` on a target), mapped to a static op when it could be."""

    name: str
    type: str
    avg_ms: float
    op_class: str  # a static op's class, or "delegated" / "unmapped"
    static_index: int | None = None
    macs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OpTiming":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class OpTimings:
    """``--ops`` on a target: measured per-op times mapped to the static ops and classes, or why there are none
    (``available`` False, ``reason``); with ``--compare-device`` the device's predicted time per class."""

    available: bool
    reason: str | None = None  # why there are no per-op times
    source: str | None = None  # the profiler that measured them
    runs: int | None = None
    ops: tuple[OpTiming, ...] = ()
    by_class_ms: dict[str, float] = field(default_factory=dict)
    mapped: int | None = None  # measured ops mapped to a static op
    measured: int | None = None
    static_ops: int | None = None
    predicted_device: str | None = None
    predicted_by_class_ms: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))

    def to_dict(self) -> dict[str, Any]:
        always = ("available", "source", "runs", "ops", "by_class_ms", "mapped", "measured", "static_ops") \
            if self.available else ("available", "ops", "by_class_ms")
        d = _some(self, always)
        for k in always:  # an empty list or map is written too
            d[k] = jsonable(getattr(self, k))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OpTimings":
        kw = _known(cls, d)
        kw["available"] = bool(kw.get("available"))
        kw["ops"] = tuple(OpTiming.from_dict(o) for o in kw.get("ops") or ())
        kw["by_class_ms"] = dict(kw.get("by_class_ms") or {})
        return cls(**kw)


@dataclass(frozen=True)
class TargetDetails:
    """What else a target measurement recorded (``ProfileResult.target``); each part None when not asked for."""

    verify: VerifyReport | None = None  # --verify
    sustained: SustainedRun | None = None  # --duration
    op_timings: OpTimings | None = None  # --ops

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TargetDetails":
        d = d or {}
        return cls(verify=VerifyReport.from_dict(d["verify"]) if isinstance(d.get("verify"), dict) else None,
                   sustained=SustainedRun.from_dict(d["sustained"]) if isinstance(d.get("sustained"), dict) else None,
                   op_timings=OpTimings.from_dict(d["op_timings"]) if isinstance(d.get("op_timings"), dict)
                   else None)


@dataclass(frozen=True)
class Prediction:
    """A device prediction (``edgecv profile MODEL --device ID``): ``ProfileResult.prediction`` in predicted mode,
    and the prediction inside a ``DeviceComparison``."""

    latency_ms: float
    band_low_ms: float
    band_high_ms: float
    band_fraction: float
    fps: float
    peak_memory_bytes: int
    arena_bytes: int
    weights_in_memory_bytes: int
    runtime_baseline_bytes: int
    ram_bytes: int
    usable_ram_bytes: int
    fits_ram: bool
    budget_ms: float | None
    meets_budget: bool | None
    threads: int
    energy_mj_per_inference: float | None
    compute_dtype: str
    latency_by_class_ms: dict[str, float]
    coefficients_method: str
    coefficients_runtime: str
    warnings: tuple[str, ...] = ()
    delegate_partitions: int | None = None  # XNNPACK partitions of the file in the installed LiteRT
    fallback_ops: dict[str, int] = field(default_factory=dict)  # "HARD_SWISH int8" -> ops on built-in kernels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d

    def __post_init__(self) -> None:
        if not isinstance(self.warnings, tuple):
            object.__setattr__(self, "warnings", _str_tuple(self.warnings))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Prediction":
        """The inverse of ``to_dict`` (unknown keys ignored)."""
        kw = _known(cls, d)
        kw["warnings"] = tuple(kw.get("warnings") or ())
        return cls(**kw)

    @classmethod
    def is_complete(cls, d: Any) -> bool:
        """Whether the object ``d`` holds every field a Prediction needs (a block ``from_dict`` can read)."""
        return isinstance(d, dict) and all(f.name in d for f in fields(cls)
                                           if f.default is MISSING and f.default_factory is MISSING)


@dataclass(frozen=True)
class DeviceComparison:
    """A target measurement compared with a device's prediction (``edgecv profile --target ... --compare-device
    rpi4``): ``ProfileResult.comparison``. ``error_pct`` is (predicted - measured) / measured in percent."""

    device: str  # the device profile id the prediction is for
    measured_ms: float | None  # the measurement's median (mean when no median)
    predicted_ms: float | None
    error_pct: float | None = None
    ratio_measured_to_predicted: float | None = None
    within_band: bool | None = None  # the measurement inside the prediction's band
    prediction: Prediction | None = None  # None only in records written before the prediction was kept whole

    @classmethod
    def of(cls, device: str, measured_ms: float | None, prediction: Prediction | None,
           predicted_ms: float | None = None) -> "DeviceComparison":
        """The one constructor from a measurement and a prediction: the errors and the band check. ``predicted_ms``
        defaults to the prediction's latency."""
        pred = predicted_ms if predicted_ms is not None else prediction.latency_ms if prediction is not None else None
        err = ratio = within = None
        if measured_ms and pred:
            err = 100.0 * (pred - measured_ms) / measured_ms
            ratio = measured_ms / pred
        if measured_ms is not None and prediction is not None:
            within = bool(prediction.band_low_ms <= measured_ms <= prediction.band_high_ms)
        return cls(device=device, measured_ms=measured_ms, predicted_ms=pred, error_pct=err,
                   ratio_measured_to_predicted=ratio, within_band=within, prediction=prediction)

    def to_dict(self) -> dict[str, Any]:
        """One flat object: the comparison's fields, then the prediction's (``band_low_ms``, ``fits_ram``, ``fps``,
        ``warnings``, ... as the ``prediction`` object of a predicted result)."""
        d: dict[str, Any] = {"device": self.device, "measured_ms": self.measured_ms, "predicted_ms": self.predicted_ms}
        for k in ("error_pct", "ratio_measured_to_predicted", "within_band"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.prediction is not None:
            d.update({k: v for k, v in self.prediction.to_dict().items() if k not in d})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeviceComparison":
        """The inverse of ``to_dict`` (unknown keys ignored; an older block without the whole prediction loads with
        ``prediction`` None)."""
        kw = {k: v for k, v in _known(cls, d).items() if k != "prediction"}
        kw.setdefault("device", "")
        kw.setdefault("measured_ms", None)
        kw.setdefault("predicted_ms", None)
        return cls(**kw, prediction=Prediction.from_dict(d) if Prediction.is_complete(d) else None)


@dataclass(frozen=True)
class MeasuredTop1:
    """One artifact's accuracy on the user's labelled data (percent), as ``results.json`` records it."""

    top1: float
    top5: float | None
    samples: int
    data: str  # the --eval-data path
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> MeasuredTop1 | None:
        """The record of a JSON object (a cache file, an entry of ``results.json``'s ``measured``), or None when
        it is not one (a damaged or foreign file)."""
        from edgecv.validate import is_int, is_number

        if not isinstance(d, dict):
            return None
        top1, top5, samples = d.get("top1"), d.get("top5"), d.get("samples")
        if not (is_number(top1) and (top5 is None or is_number(top5)) and is_int(samples)):
            return None
        return cls(top1=float(top1), top5=None if top5 is None else float(top5), samples=samples,
                   data=str(d.get("data", "")), runtime=str(d.get("runtime", "")))


@dataclass(frozen=True)
class ProfileResult:
    """The result of ``edgecv profile`` (static, measured or predicted). Frozen: build a changed copy with
    ``dataclasses.replace`` or ``with_measurement``. The counts are None only for a target measurement made
    without the static analysis (its MACs are unknown)."""

    model: str  # file path (or name)
    format: str  # tflite | onnx | keras
    precision: str  # float32 | float16 | int8 | dynamic | mixed | unknown
    mode: str  # static | measured | predicted
    device: str  # none | host | rpi4 | ssh://pi@host | adb:SERIAL ...
    macs: int | None
    params: int | None
    weights_bytes: int | None
    file_bytes: int
    peak_activation_bytes: int | None
    latency_ms: LatencyStats | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_bytes: int | None = None
    rss_growth_bytes: int | None = None
    runtime: RuntimeInfo = field(default_factory=RuntimeInfo)  # name, version, threads, delegate, settings
    ops: tuple[OpStat, ...] = ()
    env: EnvInfo = field(default_factory=EnvInfo)  # where it ran (empty for static and predicted results)
    prediction: Prediction | None = None  # predicted mode (--device)
    # from the static analysis: op types it does not know (not counted) and one line per approximation
    unknown_ops: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    delegate_partitions: int | None = None  # TFLite: XNNPACK partitions in the installed LiteRT (None: unknown)
    # measured on a target (edgecv.targets): --verify, --duration and --ops details; empty otherwise
    target: TargetDetails = field(default_factory=TargetDetails)
    # a target measurement compared with a device's prediction (--compare-device); written as the JSON object's
    # "prediction" (the key it always had), read back from there
    comparison: DeviceComparison | None = None

    def __post_init__(self) -> None:
        # lists given by callers (or read from JSON) become tuples, so the record cannot change under a reader
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))
        if not isinstance(self.notes, tuple):
            object.__setattr__(self, "notes", tuple(self.notes))

    def with_measurement(self, latency_ms: LatencyStats | None, *, init_ms: float | None,
                         first_inference_ms: float | None, peak_rss_bytes: int | None,
                         rss_growth_bytes: int | None, runtime: RuntimeInfo, env: EnvInfo) -> "ProfileResult":
        """A copy with the measured fields set (host or target)."""
        return replace(self, latency_ms=latency_ms, init_ms=init_ms, first_inference_ms=first_inference_ms,
                       peak_rss_bytes=peak_rss_bytes, rss_growth_bytes=rss_growth_bytes, runtime=runtime, env=env)

    @classmethod
    def from_static(cls, sa: Any, model: str, mode: str = "static", device: str = "none") -> "ProfileResult":
        """The one constructor of a result from a static analysis (``edgecv.profiling.static.StaticAnalysis``):
        counts and per-op stats; ``mode``/``device`` say whether a measurement or a prediction fills the rest."""
        return cls(model=model, format=sa.format, precision=sa.precision, mode=mode, device=device, macs=sa.macs,
                   params=sa.params, weights_bytes=sa.weights_bytes, file_bytes=sa.file_bytes,
                   peak_activation_bytes=sa.peak_activation_bytes, ops=tuple(sa.ops),
                   unknown_ops=dict(getattr(sa, "unknown_ops", {}) or {}), notes=tuple(getattr(sa, "notes", ()) or ()),
                   delegate_partitions=getattr(sa, "delegate_partitions", None))

    def to_dict(self, with_ops: bool = True) -> dict[str, Any]:
        """The ``edgecv profile --json`` object (docs/guide.md lists its keys)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "comparison":
                continue
            if f.name == "prediction" and self.comparison is not None:
                v = self.comparison
            if f.name == "ops" and not with_ops:
                continue
            d[f.name] = v.to_dict() if hasattr(v, "to_dict") else jsonable(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        """The inverse of ``to_dict`` (unknown keys ignored: records written by other versions load)."""
        kw = _known(cls, d)
        kw["ops"] = tuple(OpStat.from_dict(o) for o in d.get("ops") or [])
        kw["notes"] = tuple(kw.get("notes") or ())
        if kw.get("latency_ms"):
            kw["latency_ms"] = LatencyStats.from_dict(kw["latency_ms"])
        kw["runtime"] = RuntimeInfo.from_dict(kw.get("runtime") if isinstance(kw.get("runtime"), dict) else None)
        kw["env"] = EnvInfo.from_dict(kw.get("env") if isinstance(kw.get("env"), dict) else None)
        kw["target"] = TargetDetails.from_dict(kw.get("target") if isinstance(kw.get("target"), dict) else None)
        kw.pop("comparison", None)
        p = kw.pop("prediction", None)
        if isinstance(p, dict) and d.get("mode") == "predicted" and Prediction.is_complete(p):
            kw["prediction"] = Prediction.from_dict(p)
        elif isinstance(p, dict) and d.get("mode") != "predicted" and ("measured_ms" in p or "device" in p):
            kw["comparison"] = DeviceComparison.from_dict(p)  # --compare-device: the comparison under its old key
        return cls(**kw)
