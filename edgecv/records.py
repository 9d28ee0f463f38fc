"""Small typed records shared across the pipeline (profiling, prediction, reports).

The JSON schema of ``edgecv profile --json`` is ``ProfileResult`` flattened with ``to_dict()``;
the README documents it. Keep field names stable: sweeps, reports and saved anchors read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class LatencyStats:
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    runs: int


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
    prediction: dict[str, Any] | None = None  # band, fits_ram, meets_budget, fps, warnings (predicted)
    # measured on a target (edgecv.targets): "verify" (on-target numerics vs the host), "sustained" (--duration
    # series), "op_timings" (measured per-op times mapped to the static ops and classes); empty otherwise
    target: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, with_ops: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_ops:
            d.pop("ops")
        return d
