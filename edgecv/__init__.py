"""edgecv: from a mobile CNN architecture to a quantized model measured on its target device.

The public API is imported lazily so that ``import edgecv`` (and ``edgecv --help``) never pulls in
TensorFlow. Builders need the ``[build]`` extra; profiling a .tflite/.onnx file needs only the core.
"""

from __future__ import annotations

from edgecv.lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "list_models": "edgecv.builders.registry",
    "create_model": "edgecv.builders.registry",
    "get_config": "edgecv.builders.registry",
    "model_cost": "edgecv.builders.cost",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["__version__", *_LAZY]
