"""``--debug-layers``: where an int8 model's output error comes from (layers, activations or weights).

TensorFlow's quantization debugger ranks the layers; more conversions of the same model with the same
calibration then measure what keeping the worst layers in float, or 16-bit activations (int16x8), gives back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgecv.conversion.calibration import CalibrationData
from edgecv.conversion.options import QuantizeOptions
from edgecv.conversion.progress import Reporter
from edgecv.conversion.records import Diagnosis, Verification
from edgecv.conversion.verify import compare, run_artifact
from edgecv.errors import EdgecvError
from edgecv.native import native_output_silenced


def debug_report(km, data: CalibrationData, ref: np.ndarray | None, verification: Verification | None,
                 io_type: str, opts: QuantizeOptions, reporter: Reporter) -> tuple[tuple, Diagnosis | None]:
    """The worst int8 layers (with, when verified, the output SQNR of each of the worst kept in float) and the
    diagnosis (``None`` without verification samples). Of ``opts`` it reads the float fallback and float layers."""
    from edgecv.conversion.tflite import debug_layers as run_debugger
    from edgecv.conversion.tflite import freeze

    diagnosis = None
    with reporter.task("per-layer quantization error (TensorFlow QuantizationDebugger)"):
        with native_output_silenced():
            dbg_x = data.holdout if len(data.holdout) else data.calib[:8]
            frozen = freeze(km)
            layer_report = run_debugger(frozen, data.calib, dbg_x, io_type,
                                        [layer.name for layer in km.layers],
                                        weighted=[layer.name for layer in km.layers if layer.weights])
    if ref is not None and len(data.holdout):
        with reporter.task(f"output SQNR with each of the {DEBUG_SENSITIVITY_TOP} worst layers in float",
                           total=DEBUG_SENSITIVITY_TOP) as advance:
            layer_report = _float_one_sensitivity(frozen, [layer.name for layer in km.layers], layer_report,
                                                  data, ref, io_type, opts.allow_float_fallback,
                                                  opts.float_layers, advance)
        assert verification is not None
        with reporter.task("output SQNR with 16-bit activations (int16x8)", total=1) as adv:
            diagnosis = _diagnose(frozen, layer_report, verification.sqnr_db, data, ref,
                                  opts.allow_float_fallback, adv)
    return layer_report, diagnosis


def _holdout_sqnr(content: bytes, path: Path, data: CalibrationData, ref: np.ndarray) -> float:
    """Output SQNR against Keras (``ref``) of one more conversion, run on the held-out samples."""
    path.write_bytes(content)
    return compare(ref, run_artifact(path, data.holdout).output).sqnr_db


DEBUG_SENSITIVITY_TOP = 3  # how many of the debug report's worst layers are converted again with that layer float


def _float_one_sensitivity(frozen, names: list[str], report: tuple, data: CalibrationData, ref: np.ndarray,
                           io_type: str, allow_float: bool, float_layers: tuple[str, ...], advance) -> tuple:
    """The debug report with, for its worst ``DEBUG_SENSITIVITY_TOP`` layers, the output SQNR of the int8
    conversion with that layer (and ``float_layers``) kept in float.

    A layer's own error in quantization steps says how coarse its tensor is, not how much the output moves:
    a squeeze-excite vector with a tiny scale ranks first and may not matter. This measures what keeping it in
    float gives back, the way a user would try it (one more conversion and run per layer)."""
    import tempfile

    from edgecv.conversion import tflite

    measured: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="edgecv-sensitivity-") as tmp:
        for e in report:
            if e.layer in measured or e.layer in float_layers or len(measured) >= DEBUG_SENSITIVITY_TOP:
                continue
            try:
                with native_output_silenced():
                    content = tflite.convert(frozen, "int8", data.calib, io_type, allow_float,
                                             (*float_layers, e.layer), names)
            except EdgecvError:  # the layer has no op of its own to keep in float
                measured[e.layer] = None
                advance()
                continue
            measured[e.layer] = _holdout_sqnr(content, Path(tmp) / f"{len(measured)}.tflite", data, ref)
            advance()
    return tuple(dataclasses.replace(e, output_sqnr_db_if_float=measured.get(e.layer)) for e in report)


DEBUG_MIN_GAIN_DB = 1.0  # a layer whose float version gives back less than this is not a culprit


DEBUG_ACTIVATION_GAIN_DB = 3.0  # 16-bit activations giving back this much: the activations are the culprit


def _diagnose(frozen, report: tuple, int8_db: float, data: CalibrationData, ref: np.ndarray, allow_float: bool,
              advance) -> Diagnosis:
    """Layers, activations or weights: which part of int8 quantization costs the output SQNR."""
    import tempfile

    from edgecv.conversion import tflite

    gains = [(e.output_sqnr_db_if_float - int8_db, e.layer) for e in report
             if e.output_sqnr_db_if_float is not None]
    best_gain, best_layer = max(gains) if gains else (None, None)
    a16 = None
    with tempfile.TemporaryDirectory(prefix="edgecv-diagnosis-") as tmp:
        try:
            with native_output_silenced():
                content = tflite.convert(frozen, "int16x8", data.calib, "int16", allow_float)
            a16 = _holdout_sqnr(content, Path(tmp) / "int16x8.tflite", data, ref)
        except Exception:  # noqa: BLE001 - no int16 kernel for an op, or LiteRT cannot prepare it: said below
            pass
        advance()
    best = "" if best_gain is None else f" (best: {best_layer}, {round(best_gain, 1) + 0.0:+.1f} dB)"
    if best_gain is not None and best_gain >= DEBUG_MIN_GAIN_DB:
        culprit = "layers"
        advice = (f"{best_layer} in float gives back {best_gain:.1f} dB of output SQNR "
                  f"({int8_db:.1f} -> {int8_db + best_gain:.1f} dB): try --float-layers {best_layer}")
    elif a16 is None:
        culprit = "none"
        advice = (f"no single layer accounts for the error{best}; this model has no int16x8 conversion to "
                  f"tell activations from weights")
    elif a16 - int8_db >= DEBUG_ACTIVATION_GAIN_DB:
        culprit = "activations"
        advice = (f"no single layer accounts for the error: keeping the worst ones in float gives back less than "
                  f"{DEBUG_MIN_GAIN_DB:g} dB{best}, so --float-layers will not recover it; the loss is spread over "
                  f"the int8 activations: with the same int8 weights, 16-bit activations (--precision int16x8) "
                  f"give {a16:.1f} dB against int8's {int8_db:.1f} dB. int16x8 has no XNNPACK kernels (LiteRT "
                  f"runs it many times slower than int8: measure it); otherwise keep the activations in float "
                  f"(float16/float32) or use an architecture built for int8 (EfficientNet-Lite)")
    else:
        culprit = "weights"
        advice = (f"no single layer accounts for the error{best}, and 16-bit activations give {a16:.1f} dB against "
                  f"int8's {int8_db:.1f} dB: the int8 weights (and int8 input/output) carry it")
    r = lambda v: None if v is None else round(float(v), 2)  # noqa: E731
    return Diagnosis(int8_sqnr_db=r(int8_db), best_float_layer=best_layer, best_float_layer_gain_db=r(best_gain),
                     int16x8_sqnr_db=r(a16), culprit=culprit, advice=advice)
