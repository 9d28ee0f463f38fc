"""Small typed records shared across the pipeline (profiling, prediction, reports).

The JSON schema of ``edgecv profile --json`` is ``ProfileResult`` flattened with ``to_dict()``;
the README documents it. Keep field names stable: sweeps, reports and saved anchors read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
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
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyStats":
        """The inverse of ``to_dict`` (unknown keys ignored)."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Prediction:
    """A device prediction (``edgecv profile MODEL --device ID``): ``ProfileResult.prediction`` in predicted mode.

    Reads like the JSON object it is written as (``pred["latency_ms"]``, ``pred.get("warnings")``)."""

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

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.__dataclass_fields__ else default

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Prediction":
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in names}
        kw["warnings"] = tuple(kw.get("warnings") or ())
        return cls(**kw)


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
    runtime: dict[str, Any] = field(default_factory=dict)  # name, version, threads, delegate
    ops: tuple[OpStat, ...] = ()
    env: dict[str, Any] = field(default_factory=dict)
    # predicted mode: a Prediction; a measurement compared with a device (--compare-device): that comparison
    prediction: Prediction | dict[str, Any] | None = None
    # from the static analysis: op types it does not know (not counted) and one line per approximation
    unknown_ops: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    delegate_partitions: int | None = None  # TFLite: XNNPACK partitions in the installed LiteRT (None: unknown)
    # measured on a target (edgecv.targets): "verify" (on-target numerics vs the host), "sustained" (--duration
    # series), "op_timings" (measured per-op times mapped to the static ops and classes); empty otherwise
    target: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # lists given by callers (or read from JSON) become tuples, so the record cannot change under a reader
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))
        if not isinstance(self.notes, tuple):
            object.__setattr__(self, "notes", tuple(self.notes))

    def with_measurement(self, latency_ms: LatencyStats | None, *, init_ms: float | None,
                         first_inference_ms: float | None, peak_rss_bytes: int | None,
                         rss_growth_bytes: int | None, runtime: dict[str, Any],
                         env: dict[str, Any]) -> "ProfileResult":
        """A copy with the measured fields set (host or target)."""
        return replace(self, latency_ms=latency_ms, init_ms=init_ms, first_inference_ms=first_inference_ms,
                       peak_rss_bytes=peak_rss_bytes, rss_growth_bytes=rss_growth_bytes, runtime=dict(runtime),
                       env=dict(env))

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
        d = asdict(self)
        d["ops"] = list(d["ops"])  # JSON arrays, as before the record was frozen
        d["notes"] = list(d["notes"])
        if isinstance(self.prediction, Prediction):
            d["prediction"] = self.prediction.to_dict()
        if not with_ops:
            d.pop("ops")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        """The inverse of ``to_dict`` (unknown keys ignored: records written by other versions load)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["ops"] = tuple(OpStat.from_dict(o) for o in d.get("ops") or [])
        kw["notes"] = tuple(kw.get("notes") or ())
        if kw.get("latency_ms"):
            kw["latency_ms"] = LatencyStats.from_dict(kw["latency_ms"])
        p = kw.get("prediction")
        if isinstance(p, dict) and d.get("mode") == "predicted" and "latency_ms" in p and "fits_ram" in p:
            kw["prediction"] = Prediction.from_dict(p)
        return cls(**kw)
