"""Keras -> ONNX: float32 through tf2onnx, int8 as QDQ through ONNX Runtime's static quantization.

float32: ``tf2onnx.convert.from_function`` on the traced model (input ``input``, NHWC, dynamic batch),
opset 13 and up (default 17). int8: ``quant_pre_process`` (shape inference and graph optimization),
then ``quantize_static`` with QDQ format, per-channel signed int8 weights and signed int8 activations
(MinMax calibration on the same samples as TFLite). Inputs and outputs stay float32.

Full-range int8 weights are what Arm CPUs (sdot/smull, int32 accumulation) and x86 with VNNI compute
exactly. On x86-64 without VNNI (AVX2/AVX-512F only), ONNX Runtime's u8s8 kernels multiply with
VPMADDUBSW, which sums pairs of u8*s8 products into int16 and saturates: measured on digits-trained
MobileNetV2 0.35, SQNR 29.1 dB with the QDQ graph evaluated as written against 8.0 dB with the fused
kernels (73% vs 84% test accuracy). ``reduce_range=True`` (7-bit weights, ORT's documented remedy)
avoids it (24.4 dB) at some precision cost: use it for x86 targets without VNNI.
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

MIN_OPSET = 13
MAX_OPSET = 18  # the newest opset tf2onnx 1.17 emits


def export_float(model, opset: int = 17) -> bytes:
    """The float32 ONNX model (serialized) for a Keras model, input ``input`` and output ``output``.

    The model is frozen first (all variables become constants): converting the unfrozen function
    leaves some non-trainable variables (the mean/variance of Keras' Normalization layer in
    EfficientNet) as extra graph inputs.
    """
    import tensorflow as tf
    import tf2onnx

    from edgecv.conversion.tflite import freeze

    with _grouped_conv_without_xla():
        frozen = freeze(model, batch=None)
    inp = [t.name for t in frozen.inputs if t.dtype == tf.float32]
    out = [t.name for t in frozen.outputs]
    proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inp, output_names=out,
                                              opset=opset)
    renames = {inp[0]: "input"}
    if len(out) == 1:
        renames[out[0]] = "output"
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
    for vi in (*proto.graph.input, *proto.graph.output):
        if vi.name in renames:
            vi.name = renames[vi.name]
    _erfc_as_erf(proto)
    return proto.SerializeToString()


def _erfc_as_erf(proto) -> None:
    """tf2onnx passes TensorFlow's ``Erfc`` (exact GELU in Keras 3: ConvNeXt) through as an op ONNX does not
    have; rewrite each as ``1 - Erf(x)``."""
    import onnx
    from onnx import helper, numpy_helper

    nodes = list(proto.graph.node)
    if not any(n.op_type == "Erfc" and n.domain in ("", "ai.onnx") for n in nodes):
        return
    one = "edgecv_erfc_one"
    proto.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
    out = []
    for n in nodes:
        if n.op_type == "Erfc" and n.domain in ("", "ai.onnx"):
            erf = f"{n.name}_erf"
            out.append(helper.make_node("Erf", [n.input[0]], [erf], name=f"{n.name}/Erf"))
            out.append(helper.make_node("Sub", [one, erf], [n.output[0]], name=f"{n.name}/OneMinus"))
        else:
            out.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(out)
    onnx.checker.check_model(proto)


@contextlib.contextmanager
def _grouped_conv_without_xla():
    """Trace grouped convolutions (``Conv2D(groups>1)``: ConvNeXt's depthwise layers) as plain TensorFlow Conv2D.

    Keras' TensorFlow backend runs them in an XLA-compiled function (TensorFlow's CPU kernel lacks groups);
    tf2onnx cannot convert that call and leaves a ``StatefulPartitionedCall`` node no runtime knows. The plain op
    is only traced here, never run, and tf2onnx converts it to a Conv with ``group``."""
    try:
        from keras.src import backend as kbackend
        from keras.src.backend.tensorflow import nn as knn
    except ImportError:  # another Keras layout: trace as Keras does
        yield
        return
    import tensorflow as tf

    orig = knn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        if (kbackend.standardize_data_format(data_format) == "channels_last" and len(inputs.shape) == 4
                and inputs.shape[-1] is not None and inputs.shape[-1] != kernel.shape[-2]):
            return tf.nn.convolution(inputs, kernel, strides, padding.upper(), data_format="NHWC",
                                     dilations=dilation_rate)
        return orig(inputs, kernel, strides, padding, data_format, dilation_rate)

    knn.conv = conv
    try:
        yield
    finally:
        knn.conv = orig


def int8_kernels_saturate(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU can saturate on full-range int8 weights.

    True on x86-64 without VNNI (no dot-product feature, ``avx512_vnni`` / ``avx_vnni``, in the flags read by
    :mod:`edgecv.profiling.cpu_probe`; assumed absent where the flags cannot be read), False elsewhere (Arm
    accumulates int8 products in int32).
    """
    from edgecv.profiling import cpu_probe

    machine = platform.machine()
    if machine.lower() not in cpu_probe.X86_MACHINES:
        return False
    text = cpu_probe.read_text(str(cpuinfo))
    if text is None:
        return True
    isa = cpu_probe.isa_features(cpu_probe.cpu_flags(cpu_probe.parse_cpuinfo(text)), machine)
    return not cpu_probe.has_dotprod([f for f, have in isa.items() if have])


def quantize_int8(float_model: bytes, calib: np.ndarray, advance: Callable[[int], None] = lambda n=1: None,
                  reduce_range: bool = False) -> bytes:
    """QDQ int8 (per-channel signed weights, signed activations) from a float32 ONNX model.

    ``reduce_range`` quantizes weights to 7 bits (-64..63), for x86 CPUs without VNNI (see the module doc).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.name, self.i = name, 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            self.i += 1
            advance(1)
            return {self.name: calib[self.i - 1:self.i]}

        def rewind(self):
            self.i = 0

    import onnx

    proto = onnx.load_from_string(float_model)
    name = proto.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgecv-onnx-") as tmp:
        src, pre, out = (Path(tmp) / f for f in ("float.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(float_model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=reduce_range)
        return out.read_bytes()


def qdq_summary(model_bytes: bytes) -> dict:
    """Counts of QuantizeLinear/DequantizeLinear nodes and of int8 weight initializers."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    ops = [n.op_type for n in proto.graph.node]
    int8_inits = sum(1 for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 1)
    return {"opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
            "nodes": len(ops), "quantize_linear": ops.count("QuantizeLinear"),
            "dequantize_linear": ops.count("DequantizeLinear"), "int8_weight_tensors": int8_inits}

