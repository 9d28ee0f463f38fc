"""Keras -> TFLite: float32, float16, dynamic-range, full-integer int8 and int16x8 (imports TensorFlow).

Route: the Keras model is traced once into a concrete function with batch 1 and its variables frozen
into constants, then handed to ``tf.lite.TFLiteConverter.from_concrete_functions``. This gives the
same flatbuffer as ``from_keras_model`` (same MLIR converter and quantizer) about 5-10x faster, since
``from_keras_model`` on Keras 3 first writes and reloads a SavedModel.

int8 is full-integer: per-channel weights (the converter's default), int8 activations, input/output
``int8``, ``uint8`` or ``float32``. TensorFlow silently leaves ops without an int8 kernel in float even
with ``TFLITE_BUILTINS_INT8``; :func:`edgecv.conversion.verify.float_ops` finds them afterwards.
int16x8 is TFLite's full-integer mode with 16-bit activations and 8-bit weights
(``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``; input/output ``int16`` or ``float32``):
for models whose int8 loss is spread over many activations rather than a few layers. XNNPACK has no
int16 kernels, so LiteRT runs it on its built-in kernels (slower than int8; measure it).
Selective quantization (``float_layers``) calibrates once (``_experimental_calibrate_only``) and
quantizes with ``denylisted_nodes``: the same two calls the converter makes, plus the deny list.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgecv.formats import CALIBRATED, IO_TYPES  # noqa: E402,F401 - CALIBRATED: the precisions that need calibration data


@dataclass(frozen=True)
class LayerError:
    """One int8 layer's error against float, from TensorFlow's quantization debugger."""

    layer: str  # the Keras layer name (the first fused layer with weights, in model order)
    fused: tuple[str, ...]  # all Keras layers folded into this op (conv, bn, activation)
    op: str  # TFLite op type
    rmse_over_scale: float  # RMS error in quantization steps (0.29 for ideal rounding)
    max_abs_error: float
    mean_error: float
    scale: float
    # Output SQNR (dB, against Keras on the verification samples) of the same int8 conversion with this layer
    # also kept in float: what --float-layers on it gives back. Measured for the worst few layers; else None.
    output_sqnr_db_if_float: float | None = None


def freeze(model, batch: int | None = 1):
    """Trace ``model`` (inference mode) into a concrete function with constant weights."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(autograph=False)
    def serve(x):
        return model(x, training=False)

    shape = [batch, *model.input_shape[1:]]
    spec = tf.TensorSpec(shape, tf.float32, name="input")
    return convert_variables_to_constants_v2(serve.get_concrete_function(spec))


def _dataset(calib: np.ndarray, advance: Callable[[int], None]):
    def gen():
        for i in range(len(calib)):
            advance(1)
            yield [calib[i:i + 1]]

    return gen


def make_converter(frozen, precision: str, calib: np.ndarray | None = None, io_type: str = "int8",
                   allow_float: bool = False, advance: Callable[[int], None] = lambda n=1: None):
    """The TFLite converter configured for ``precision`` (what a user would write by hand)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if precision == "float32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif precision in CALIBRATED:
        if calib is None:
            raise ValueError(f"{precision} needs calibration data")
        conv.representative_dataset = _dataset(calib, advance)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8"
               else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if allow_float:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        conv.target_spec.supported_ops = ops
        conv.inference_input_type = getattr(tf, io_type)
        conv.inference_output_type = getattr(tf, io_type)
    elif precision != "dynamic":
        raise ValueError(f"unknown precision {precision!r}")
    return conv


def convert(frozen, precision: str, calib: np.ndarray | None = None, io_type: str = "int8",
            allow_float: bool = False, float_layers: Sequence[str] = (), layer_names: Sequence[str] = (),
            advance: Callable[[int], None] = lambda n=1: None) -> bytes:
    """Convert a frozen function to a .tflite flatbuffer; ``float_layers`` (Keras names) stay float."""
    if precision != "int8" or not float_layers:
        return make_converter(frozen, precision, calib, io_type, allow_float, advance).convert()
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    from edgecv.conversion.verify import tflite_ops

    conv = make_converter(frozen, precision, calib, io_type, True, advance)
    conv._experimental_calibrate_only = True  # noqa: SLF001 - the quantization debugger's own route
    calibrated = conv.convert()
    nodes = nodes_for_layers([op.output_name for op in tflite_ops(calibrated)], float_layers, layer_names)
    return tfl_convert.mlir_quantize(
        calibrated, disable_per_channel=False, fully_quantize=True,
        input_data_type=getattr(tf, io_type), output_data_type=getattr(tf, io_type),
        denylisted_nodes=nodes)


# --- names: TFLite tensor names -> Keras layer names -----------------------------------------------

_SUFFIX = re.compile(r"_\d+$")


def layers_in_name(tensor_name: str, layer_names: Sequence[str]) -> list[str]:
    """Keras layers mentioned in a TFLite tensor name, in model order.

    Names look like ``model_1/conv_pw_13_relu_1/Relu6;model_1/conv_pw_13_1/convolution``: each ``;``
    part is a fused op's origin; its second path component is the layer, with a tracing suffix ``_N``.
    """
    known = {n: i for i, n in enumerate(layer_names)}
    found: set[str] = set()
    for part in tensor_name.split(";"):
        segs = part.split("/")
        for seg in segs[1:2] if len(segs) > 1 else segs[:1]:
            if seg in known:
                found.add(seg)
            else:
                base = _SUFFIX.sub("", seg)
                if base in known:
                    found.add(base)
    return sorted(found, key=known.__getitem__)


def nodes_for_layers(node_names: Sequence[str], wanted: Sequence[str], layer_names: Sequence[str]) -> list[str]:
    """Tensor names of the ops that belong to (or fuse) any of the ``wanted`` Keras layers."""
    from edgecv.errors import EdgecvError, suggest

    unknown = [w for w in wanted if w not in layer_names]
    if unknown:
        raise EdgecvError(f"--float-layers: no layer named {unknown[0]!r} in this model."
                          f"{suggest(unknown[0], layer_names)}")
    nodes, hit = [], set()
    for name in node_names:
        ls = set(layers_in_name(name, layer_names)) & set(wanted)
        if ls:
            nodes.append(name)
            hit |= ls
    missing = [w for w in wanted if w not in hit]
    if missing:
        raise EdgecvError(f"--float-layers: layer {missing[0]!r} has no op of its own in the converted graph "
                          "(an identity at inference, or folded into a neighbour); name the conv layer")
    return nodes


def debug_layers(frozen, calib: np.ndarray, debug: np.ndarray, io_type: str, layer_names: Sequence[str],
                 weighted: Sequence[str] = (), top: int = 10) -> tuple[LayerError, ...]:
    """Per-layer int8 error (TensorFlow's QuantizationDebugger), worst first, named by Keras layer.

    A fused op (pad + conv + BN + activation) is named by its first layer with weights (``weighted``).
    The report covers every layer at int8, including any kept in float with ``float_layers``.
    """
    import tensorflow as tf

    conv = make_converter(frozen, "int8", calib, io_type, allow_float=False)

    def dataset():
        for i in range(len(debug)):
            yield [debug[i:i + 1]]

    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=dataset)
    dbg.run()
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"])
        names = layers_in_name(r["tensor_name"], layer_names)
        if not names or scale <= 0:
            continue
        main = next((n for n in names if n in weighted), names[0])
        rows.append(LayerError(
            layer=main, fused=tuple(names), op=r["op_name"],
            rmse_over_scale=round(float(np.sqrt(float(r["mean_squared_error"]))) / scale, 4),
            max_abs_error=float(r["max_abs_error"]), mean_error=float(r["mean_error"]), scale=scale))
    rows.sort(key=lambda e: e.rmse_over_scale, reverse=True)
    return tuple(rows[:top])
