"""Small typed records shared across the pipeline (profiling, prediction, reports).

The JSON schema of ``edgecv profile --json`` is ``ProfileResult`` flattened with ``to_dict()``;
the README documents it. Keep field names stable: sweeps, reports and saved anchors read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

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


@dataclass(frozen=True)
class LatencyStats:
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    runs: int


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


@dataclass
class ProfileResult:
    model: str  # file path (or name)
    format: str  # tflite | onnx
    precision: str  # float32 | float16 | int8 | dynamic | mixed
    mode: str  # measured | predicted
    device: str  # host | rpi4 | ssh://pi@host | adb:SERIAL ...
    macs: int
    params: int
    weights_bytes: int
    file_bytes: int
    peak_activation_bytes: int
    latency_ms: LatencyStats | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_bytes: int | None = None
    rss_growth_bytes: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # name, version, threads, delegate
    ops: list[OpStat] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    # predicted mode: a Prediction; a measurement compared with a device (--compare-device): that comparison
    prediction: Prediction | dict[str, Any] | None = None
    # from the static analysis: op types it does not know (not counted) and one line per approximation
    unknown_ops: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    delegate_partitions: int | None = None  # TFLite: XNNPACK partitions in the installed LiteRT (None: unknown)
    # measured on a target (edgecv.targets): "verify" (on-target numerics vs the host), "sustained" (--duration
    # series), "op_timings" (measured per-op times mapped to the static ops and classes); empty otherwise
    target: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_static(cls, sa: Any, model: str, mode: str = "static", device: str = "none") -> "ProfileResult":
        """The one constructor of a result from a static analysis (``edgecv.profiling.static.StaticAnalysis``):
        counts and per-op stats; ``mode``/``device`` say whether a measurement or a prediction fills the rest."""
        return cls(model=model, format=sa.format, precision=sa.precision, mode=mode, device=device, macs=sa.macs,
                   params=sa.params, weights_bytes=sa.weights_bytes, file_bytes=sa.file_bytes,
                   peak_activation_bytes=sa.peak_activation_bytes, ops=list(sa.ops),
                   unknown_ops=dict(getattr(sa, "unknown_ops", {}) or {}), notes=list(getattr(sa, "notes", []) or []),
                   delegate_partitions=getattr(sa, "delegate_partitions", None))

    def to_dict(self, with_ops: bool = True) -> dict[str, Any]:
        d = asdict(self)
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
        kw["ops"] = [OpStat(**{k: v for k, v in {**o, "output_shape": tuple(o["output_shape"])}.items()
                               if k in OpStat.__dataclass_fields__}) for o in d.get("ops") or []]
        if kw.get("latency_ms"):
            kw["latency_ms"] = LatencyStats(**kw["latency_ms"])
        p = kw.get("prediction")
        if isinstance(p, dict) and d.get("mode") == "predicted" and "latency_ms" in p and "fits_ram" in p:
            kw["prediction"] = Prediction.from_dict(p)
        return cls(**kw)
