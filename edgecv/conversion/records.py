"""The records of a conversion: what :func:`edgecv.conversion.quantize` returns and writes as the sidecar JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecv.conversion.calibration import CalibrationSummary
from edgecv.conversion.verify import TensorInfo
from edgecv.records import jsonable


@dataclass(frozen=True)
class Verification:
    """The artifact against the Keras model on held-out samples."""

    sqnr_db: float
    top1_agreement: float | None
    max_abs_error: float
    samples: int
    data: str  # where the samples came from (held-out --calib samples, builtin photos, ...)
    runtime: str  # "litert 2.3.0" | "onnxruntime 1.32.0"
    passed: bool
    failed_gates: tuple[str, ...] = ()
    min_sqnr_db: float | None = None
    min_top1_agreement: float | None = None
    # ONNX int8 verified as a QDQ reference on an x86 CPU without VNNI: the same samples through this CPU's
    # fused int8 kernels, which saturate on full-range weights (see edgecv.conversion.onnx_export).
    host_kernels_sqnr_db: float | None = None
    host_kernels_top1_agreement: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    """Where an int8 model's output error comes from (``--debug-layers``), on the verification samples.

    More conversions of the same model with the same calibration pin it down: the worst layers kept in float
    one at a time (the report's kept-in-float column), and 16-bit activations with the same int8 weights
    (int16x8): what is left at int16x8 is the weights' (and the int8 input/output's)."""

    int8_sqnr_db: float
    best_float_layer: str | None  # the report's layer whose float version gives the most back
    best_float_layer_gain_db: float | None  # its output SQNR minus int8's
    int16x8_sqnr_db: float | None  # None when the model has no int16x8 conversion
    culprit: str  # "layers" | "activations" | "weights" | "none"
    advice: str  # one sentence for the user


@dataclass(frozen=True)
class ConversionResult:
    model: str  # model name (registry name or the Keras model's name)
    source: str  # what MODEL was: a registry name or a .keras path
    format: str  # tflite | onnx
    precision: str  # int8 | int16x8 | float16 | dynamic | float32
    path: str  # the artifact
    sidecar: str  # <artifact>.json
    status: str  # "ok" | "failed" (a verification gate was not met; the artifact is kept)
    file_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    preprocessing: dict[str, Any]
    calibration: CalibrationSummary | None  # None for precisions that need no calibration
    verification: Verification | None  # None with verify=False
    convert_seconds: float
    total_seconds: float
    float_ops: tuple[str, ...] = ()  # int8 TFLite ops left in float ("TYPE (layer)")
    float_layers: tuple[str, ...] = ()
    debug_layers: tuple[Any, ...] = ()  # tflite.LayerError, worst first
    diagnosis: Diagnosis | None = None  # with --debug-layers: layers, activations or weights
    graph: dict[str, Any] = field(default_factory=dict)  # ONNX: opset and QDQ counts; TFLite: op counts
    versions: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)




def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import edgecv

    out = {"edgecv": edgecv.__version__}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "onnxruntime", "onnx", "tf2onnx",
                 "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
