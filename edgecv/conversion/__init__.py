"""Conversion: Keras -> TFLite (float32, float16, dynamic, int8) and ONNX (float32, int8 QDQ).

Calibrated on real images, verified against the Keras model in the artifact's own runtime.
``from edgecv.conversion import quantize`` imports nothing heavy; TensorFlow loads when a conversion runs.
"""

from __future__ import annotations

from edgecv.lazy import lazy_attributes

_LAZY = {
    "quantize": "edgecv.conversion.api",
    "QuantizeOptions": "edgecv.conversion.options",
    "ConversionResult": "edgecv.conversion.records",
    "Verification": "edgecv.conversion.records",
    "FORMATS": "edgecv.formats",
    "PRECISIONS": "edgecv.formats",
    "load_calibration": "edgecv.conversion.calibration",
    "sample_images": "edgecv.conversion.calibration",
    "CalibrationSummary": "edgecv.conversion.calibration",
    "sqnr_db": "edgecv.conversion.verify",
    "run_artifact": "edgecv.conversion.verify",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = list(_LAZY)
