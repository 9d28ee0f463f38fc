"""Static analysis of deployed graphs against independent references.

- The builder's analytic cost pass (``model_cost``) on the Keras model, for the TFLite graph made by
  ``tf.lite.TFLiteConverter`` and the ONNX graph made by ``tf2onnx``: MACs within 1%, parameters equal to
  the deployed count (BatchNorm folded).
- The hand-computed liveness peaks of ``device_research.md`` section 4 (MobileNetV2 1.0 int8: 1,505,280 B).
- Small ONNX graphs written by hand with ``onnx.helper``, whose counts and peaks are computed on paper here.

Models get random (non-zero) BatchNorm statistics and biases first, as trained models have: a converter
drops an all-zero bias, which a ``weights=None`` model has everywhere.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.profiling.static import analyze, analyze_in_process

from helpers.static_models import convert_both  # shared with tools/check_counts.py
from helpers.weights import randomize_weights

# One model per MobileNet feature: V1 (1x1 Conv2D classifier), V2 (residuals, ZeroPadding).
REPRESENTATIVE = ["mobilenet_v1_0.25_128", "mobilenet_v2_0.35_96"]
# Slow set: B0 (SE blocks with biased 1x1 convs, swish, Rescaling + Normalization that must count 0
# parameters; its conversion alone raised the pytest process by 1.8 GB), the largest widths and resolutions of
# the MobileNets and the Lite family (converting all 59 registered models in both formats takes over an hour
# on 2 cores; it was run once outside the suite).
SLOW = ["efficientnet_b0", "mobilenet_v1_1.00_224", "mobilenet_v2_1.40_224", "efficientnet_lite0", "efficientnet_lite4"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``converted(name) -> (cost, tflite_path, onnx_path)``, each model converted once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = convert_both(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _check_counts(name, converted):
    cost, tfl, onx = converted(name)
    for path in (tfl, onx):
        sa = analyze(path)
        assert abs(sa.macs - cost.macs) <= 0.01 * cost.macs, (path, sa.macs, cost.macs)
        assert sa.params == cost.params_deployed, (path, sa.params, cost.params_deployed, cost.params)
        assert sa.params < cost.params  # BatchNorm's four vectors are gone
        # the same architecture in two formats: the same MAC-bearing ops
        mac_ops = [o for o in sa.ops if o.macs > 0]
        assert len(mac_ops) == sum(1 for lc in cost.layers if lc.macs > 0)
        assert sa.weights_bytes <= sa.file_bytes
        assert sa.weights_bytes >= 4 * sa.params  # float32 weights and biases at least


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_counts_agree_with_builder(name, converted):
    _check_counts(name, converted)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_counts_agree_with_builder_large(name, converted):
    _check_counts(name, converted)


def _tflite(model, kind: str, path) -> str:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind in ("int8", "int16x8"):
        size = model.inputs[0].shape[1]

        def rep():
            rng = np.random.default_rng(0)
            for _ in range(2):
                yield [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if kind == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = tf.int8 if kind == "int8" else tf.int16
        conv.inference_output_type = conv.inference_input_type
    elif kind == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    with open(path, "wb") as fh:
        fh.write(conv.convert())
    return str(path)


@pytest.fixture(scope="module")
def mobilenet_v2_224_int8(tmp_path_factory):
    """MobileNetV2 1.0-224 full-integer int8 (int8 input/output), the model of the hand figures."""
    from edgecv.builders.registry import create_model

    model = create_model("mobilenet_v2_1.00_224")
    randomize_weights(model)
    return _tflite(model, "int8", tmp_path_factory.mktemp("mnv2") / "mnv2_int8.tflite")


@pytest.fixture(scope="module")
def small_three_precisions(tmp_path_factory):
    """MobileNetV2 0.35-96 in float32, float16, int8 and int16x8 TFLite."""
    from edgecv.builders.registry import create_model

    model = create_model("mobilenet_v2_0.35_96")
    randomize_weights(model)
    out = tmp_path_factory.mktemp("mnv2s")
    return {k: _tflite(model, k, out / f"{k}.tflite") for k in ("float32", "float16", "int8", "int16x8")}


def test_liveness_peak_matches_hand_figures(mobilenet_v2_224_int8):
    """device_research.md section 4: MobileNetV2 1.0 int8 1,505,280 B (block-2 depthwise: 112x112x96 in +
    56x56x96 out); fp32 5.74 MiB, four times as many bytes."""
    research = Path(__file__).resolve().parents[3] / "shared" / "reference" / "device_research.md"
    if research.is_file():  # beside a checkout with ../shared: the figures below are the research notes' own
        text = research.read_text(encoding="utf-8")
        assert "1,505,280 B" in text and "5.74 MiB" in text
    int8 = analyze(mobilenet_v2_224_int8)
    assert int8.peak_activation_bytes == 1_505_280 == 112 * 112 * 96 + 56 * 56 * 96
    peak_op = int8.ops[int8.peak_op_index]
    assert peak_op.type == "DEPTHWISE_CONV_2D" and peak_op.output_shape == (1, 56, 56, 96)
    assert round(4 * int8.peak_activation_bytes / 2**20, 2) == 5.74
    conv = int8.ops[0]
    assert conv.type == "CONV_2D" and conv.weight_bytes == 3 * 3 * 3 * 32 * 1 + 32 * 4  # int8 kernel + int32 bias
    assert conv.activation_bytes == 112 * 112 * 32 and conv.input_bytes == 224 * 224 * 3


@pytest.mark.slow  # four conversions of their own (~60 s): CI's slow run
def test_precisions_and_dtypes(small_three_precisions):
    fp32, fp16, int8 = (analyze(small_three_precisions[k]) for k in ("float32", "float16", "int8"))
    assert (fp32.precision, fp16.precision, int8.precision) == ("float32", "float16", "int8")
    # the same network: same MACs and parameters whatever the storage type
    assert fp32.macs == int8.macs == fp16.macs
    assert fp32.params == int8.params == fp16.params
    assert {o.dtype for o in int8.ops if o.macs} == {"int8"}
    assert {o.dtype for o in fp16.ops if o.macs} == {"float32"}  # fp16 weights are dequantized at load
    # weights: int8 about 1/4 of float32 (int32 biases), float16 1/2
    assert 0.24 < int8.weights_bytes / fp32.weights_bytes < 0.32
    assert 0.49 < fp16.weights_bytes / fp32.weights_bytes < 0.51
    # DEQUANTIZE of fp16 weights runs once at load: not in the execution order, the liveness is fp32's
    assert len(fp16.ops) == len(fp32.ops)
    assert fp16.peak_activation_bytes == fp32.peak_activation_bytes == 4 * int8.peak_activation_bytes
    # int16x8: 16-bit activations, int8 weights; the same graph at two bytes per activation
    a16 = analyze(small_three_precisions["int16x8"])
    assert a16.precision == "int16x8" and a16.macs == int8.macs and a16.params == int8.params
    assert {o.dtype for o in a16.ops if o.macs} == {"int16"}
    assert a16.peak_activation_bytes == 2 * int8.peak_activation_bytes
    assert 0.9 < a16.weights_bytes / int8.weights_bytes < 1.4  # int8 kernels; int64 biases instead of int32


def test_onnx_runtime_quantized_graphs(converted, tmp_path):
    """ONNX Runtime's int8 quantizer in both layouts (QDQ: Q/DQ pairs around float ops; QOperator: QLinearConv,
    QLinearAdd, QGemm): the same MACs and parameters as the float graph, int8 precision, and the same activation
    peak in both layouts (the float tensors of a Q/DQ pair are fused away), a quarter of the float peak."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    cost, _, onx = converted("mobilenet_v2_0.35_96")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.random.default_rng(i).uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)}
                                 for i in range(2)])

        def get_next(self):
            return next(self.batches, None)

    fp32 = analyze(onx)
    peaks = []
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
        out = str(tmp_path / f"{fmt.name}.onnx")
        quantize_static(onx, out, Reader(), quant_format=fmt, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        q = analyze(out)
        assert (q.precision, q.macs, q.params) == ("int8", cost.macs, cost.params_deployed), fmt
        assert {o.dtype for o in q.ops if o.macs} == {"int8"}
        assert q.weights_bytes < 0.3 * fp32.weights_bytes
        peaks.append(q.peak_activation_bytes)
    assert peaks[0] == peaks[1] == fp32.peak_activation_bytes // 4


# ---- hand-written ONNX graphs: every figure computed on paper --------------------------------------

def _onnx_model(nodes, inputs, outputs, inits, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_hand_graph_counts_and_liveness(tmp_path):
    """x(1,8,16,16) -> Conv3x3(16) -> Relu -> DWConv3x3 -> Conv1x1(8) -> Add(x) -> GAP -> Gemm(10).

    Bytes (float32): x 8192, conv 16384, relu 16384, dw 16384, pw 8192, add 8192, gap 32, fc 40.
    Live at the pointwise conv: x (the residual) + dw in + pw out = 8192 + 16384 + 8192 = 32768;
    at the conv: x + conv = 24576; at relu: x + conv + relu = 40960 (peak); at dw: x + relu + dw = 40960.
    """
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=(16, 8, 3, 3)), "b1": rng.normal(size=16), "wd": rng.normal(size=(16, 1, 3, 3)),
             "bd": rng.normal(size=16), "wp": rng.normal(size=(8, 16, 1, 1)), "wf": rng.normal(size=(8, 10)),
             "bf": rng.normal(size=10), "s": rng.normal(size=(1, 8, 1, 1)), "t": rng.normal(size=(1, 8, 1, 1))}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["d1"], pads=[1, 1, 1, 1], group=16),
        helper.make_node("Conv", ["d1", "wp"], ["p0"]),  # bias-free: followed by a scale and a shift
        helper.make_node("Mul", ["p0", "s"], ["p1"]),
        helper.make_node("Add", ["p1", "t"], ["p2"]),
        helper.make_node("Add", ["p2", "x"], ["a1"]),
        helper.make_node("GlobalAveragePool", ["a1"], ["g1"]),
        helper.make_node("Flatten", ["g1"], ["f1"]),
        helper.make_node("Gemm", ["f1", "wf", "bf"], ["y"]),
    ]
    path = _onnx_model(nodes, [("x", [1, 8, 16, 16])], [("y", [1, 10])], inits, str(tmp_path / "hand.onnx"))
    sa = analyze(path)
    by = {o.name: o for o in sa.ops}
    assert by["c1"].op_class == "conv" and by["c1"].macs == 3 * 3 * 8 * 16 * 16 * 16
    assert by["d1"].op_class == "depthwise" and by["d1"].macs == 3 * 3 * 16 * 16 * 16
    assert by["p0"].op_class == "pointwise" and by["p0"].macs == 16 * 8 * 16 * 16
    assert by["y"].op_class == "fc" and by["y"].macs == 8 * 10
    assert by["p1"].op_class == by["a1"].op_class == "elementwise" and by["g1"].op_class == "pool"
    # the bias-free pointwise conv gains the folded shift's 8 biases; Mul/Add constants are not parameters
    assert by["p0"].params == 16 * 8 + 8
    assert sa.params == (16 * 8 * 9 + 16) + (16 * 9 + 16) + (16 * 8 + 8) + (8 * 10 + 10)
    assert sa.macs == 3 * 3 * 8 * 16 * 16 * 16 + 3 * 3 * 16 * 16 * 16 + 16 * 8 * 16 * 16 + 80
    assert sa.weights_bytes == 4 * sum(np.asarray(v).size for v in inits.values())
    assert by["c1"].activation_bytes == 16384 and by["c1"].input_bytes == 8192
    # peak: x (kept for the residual) + c1 + r1 at the Relu
    assert sa.peak_activation_bytes == 8192 + 16384 + 16384
    assert sa.ops[sa.peak_op_index].name == "r1"
    assert sa.precision == "float32" and sa.format == "onnx"


def test_liveness_counts_graph_input_and_outputs_to_the_end(tmp_path):
    """Two outputs: the first (big) stays live to the end; the input is live until its last consumer."""
    from onnx import helper

    nodes = [helper.make_node("Relu", ["x"], ["big"]),  # 4000 B, a graph output: live to the end
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),  # x last used here
             helper.make_node("Sigmoid", ["m"], ["small"])]
    path = _onnx_model(nodes, [("x", [1, 1000])], [("big", [1, 1000]), ("small", [1])], {},
                       str(tmp_path / "two.onnx"))
    sa = analyze(path)
    # step 0: x+big = 8000; step 1: x+big+m = 8004; step 2: big+m+small = 4008
    assert sa.peak_activation_bytes == 8004
    assert [o.activation_bytes for o in sa.ops] == [4000, 4, 4]


def test_analyze_in_process_matches_child(tmp_path):
    from onnx import helper

    path = _onnx_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 3])], [("y", [2, 3])], {},
                       str(tmp_path / "r.onnx"))
    assert analyze(path) == analyze_in_process(path)
    assert math.prod(analyze(path).ops[0].output_shape) == 6


# ---- ONNX Runtime's quantized layouts without optional helpers, control flow, unknown ops ---------------------

def _small_float_onnx(path):
    """x(1,3,16,16) -> Conv3x3(16) -> x*sigmoid(x) -> Conv1x1(16) -> Add -> Concat -> GAP -> Gemm(10) -> MatMul(7).

    MACs on paper: 3*3*3*16*256 + 16*16*256 + 32*10 + 10*7; parameters (deployed: one bias per output channel,
    the bias-free MatMul's zeros included): 3*3*3*16+16 + 16*16+16 + 32*10+10 + 70+7."""
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=(16, 3, 3, 3)), "b1": rng.normal(size=16), "w2": rng.normal(size=(16, 16, 1, 1)),
             "b2": rng.normal(size=16), "wf": rng.normal(size=(32, 10)), "bf": rng.normal(size=10),
             "wm": rng.normal(size=(10, 7))}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c1"], ["s1"]), helper.make_node("Mul", ["c1", "s1"], ["m1"]),
             helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"]), helper.make_node("Add", ["c2", "m1"], ["a1"]),
             helper.make_node("Concat", ["a1", "m1"], ["cc"], axis=1),
             helper.make_node("GlobalAveragePool", ["cc"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y0"]), helper.make_node("MatMul", ["y0", "wm"], ["y"])]
    _onnx_model(nodes, [("x", [1, 3, 16, 16])], [("y", [1, 7])], inits, path)
    macs = 3 * 3 * 3 * 16 * 256 + 16 * 16 * 256 + 32 * 10 + 10 * 7
    params = 3 * 3 * 3 * 16 + 16 + 16 * 16 + 16 + 32 * 10 + 10 + 70 + 7
    return macs, params


def test_onnx_contrib_ops_without_sympy(tmp_path, monkeypatch):
    """QOperator (QLinearConv, com.microsoft QLinearSigmoid/QLinearMul/QLinearAdd/QLinearConcat/
    QLinearGlobalAveragePool/QGemm, QLinearMatMul) and dynamic quantization (DynamicQuantizeLinear, ConvInteger,
    MatMulInteger): the float graph's MACs and parameters, counted on paper, with no sympy importable (ONNX Runtime's
    symbolic shape inference needs it and onnxruntime no longer depends on it)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    f32 = str(tmp_path / "f.onnx")
    macs, params = _small_float_onnx(f32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": np.random.default_rng(i).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)}
                            for i in range(2)])

        def get_next(self):
            return next(self.it, None)

    qop, qdq, dyn = (str(tmp_path / f"{k}.onnx") for k in ("qop", "qdq", "dyn"))
    quantize_static(f32, qop, Reader(), quant_format=QuantFormat.QOperator, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    quantize_static(f32, qdq, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    quantize_dynamic(f32, dyn, weight_type=QuantType.QInt8)
    monkeypatch.setitem(sys.modules, "sympy", None)  # import sympy -> ImportError
    got = {k: analyze_in_process(p) for k, p in (("f32", f32), ("qop", qop), ("qdq", qdq), ("dyn", dyn))}
    for k, sa in got.items():
        assert (sa.macs, sa.params) == (macs, params), k
        assert sa.unknown_ops == {} and not sa.macs_lower_bound, k
    assert [got[k].precision for k in ("f32", "qop", "qdq", "dyn")] == ["float32", "int8", "int8", "dynamic"]
    by = {o.type: o for o in got["qop"].ops}
    assert by["QLinearConcat"].output_shape == (1, 32, 16, 16) and by["QLinearConcat"].dtype == "int8"
    assert by["QLinearGlobalAveragePool"].output_shape == (1, 32, 1, 1)
    assert by["QGemm"].output_shape == (1, 10) and by["QLinearMatMul"].macs == 70
    # int8 activations: a quarter of the float peak in both layouts (16 x 16 x 16 x 4 B: x and m1 live together)
    assert got["qop"].peak_activation_bytes == got["qdq"].peak_activation_bytes == got["f32"].peak_activation_bytes // 4


def _loop_model(path, trips=None):
    """x(1,8,32,32) -> Loop(trips){ Conv3x3(8->8, weight from the outer graph) -> Relu }; trips=None: a graph input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 8, 3, 3)).astype(np.float32), "W")
    body = helper.make_graph(
        [helper.make_node("Conv", ["x_in", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["x_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None)])
    inits = [w, numpy_helper.from_array(np.array(True), "cond")]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])]
    if trips is None:
        ins.append(helper.make_tensor_value_info("M", TensorProto.INT64, []))
    else:
        inits.append(numpy_helper.from_array(np.array(trips, np.int64), "M"))
    graph = helper.make_graph([helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)], "g", ins,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_onnx_loop_counted_by_trip_count(tmp_path):
    """A 1000-iteration Conv loop: 1000 x the MACs of one 3x3 conv (3*3*8*8*32*32 = 589,824), its parameters
    (8*8*9 weights + 8 biases) once;
    the same loop with a run-time trip count is counted once and marked as a lower bound."""
    import onnxruntime as ort

    one = 3 * 3 * 8 * 8 * 32 * 32
    sa = analyze(_loop_model(str(tmp_path / "loop.onnx"), 1000))
    assert sa.macs == 1000 * one and sa.params == 8 * 8 * 9 + 8 and not sa.macs_lower_bound
    assert sa.ops[0].type == "Loop" and sa.ops[0].op_class == "conv" and sa.precision == "float32"
    # ONNX Runtime runs the body 1000 times: the loop of 1000 takes far longer than the loop of 1
    x = {"x": np.ones((1, 8, 32, 32), np.float32)}
    assert analyze(_loop_model(str(tmp_path / "one.onnx"), 1)).macs == one
    ort.InferenceSession(str(tmp_path / "loop.onnx")).run(None, x)  # the graph is valid and runs
    dyn = analyze(_loop_model(str(tmp_path / "dyn.onnx")))
    assert dyn.macs == one and dyn.macs_lower_bound
    assert any(line.startswith("lower bound: a Loop") for line in dyn.notes)


def test_onnx_if_takes_the_constant_branch(tmp_path):
    """If with a constant condition: the taken branch's MACs (a 1x1 conv), not the other (a 3x3 conv)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 4, k, k)).astype(np.float32), f"w{k}") for k in (1, 3)]

    def branch(k):
        return helper.make_graph([helper.make_node("Conv", ["x", f"w{k}"], [f"o{k}"], pads=[k // 2] * 4)], f"b{k}", [],
                                 [helper.make_tensor_value_info(f"o{k}", TensorProto.FLOAT, [1, 4, 8, 8])])

    for cond, k in ((True, 1), (False, 3)):
        c = numpy_helper.from_array(np.array(cond), "c")
        graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch(1), else_branch=branch(3))],
                                  "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits + [c])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        path = str(tmp_path / f"if{k}.onnx")
        onnx.save(model, path)
        assert analyze(path).macs == k * k * 4 * 4 * 64, cond


def test_unknown_op_is_listed_not_counted_as_zero(tmp_path):
    """An op type the analysis does not know (Einsum, which multiplies) is named in the result and in the
    CLI's output, and the MACs are marked as a lower bound."""
    from click.testing import CliRunner
    from onnx import helper

    from edgecv.cli import cli

    nodes = [helper.make_node("Einsum", ["x", "w"], ["y"], equation="ij,jk->ik"), helper.make_node("Relu", ["y"], ["z"])]
    path = _onnx_model(nodes, [("x", [2, 3])], [("z", [2, 4])], {"w": np.ones((3, 4))}, str(tmp_path / "e.onnx"))
    sa = analyze(path)
    assert sa.unknown_ops == {"Einsum": 1} and sa.macs_lower_bound
    assert any("Einsum x1" in line for line in sa.notes)
    out = CliRunner().invoke(cli, ["profile", path, "--static"])
    assert out.exit_code == 0, out.output
    assert "Einsum" in out.output


def test_tflite_at_a_path_that_is_not_utf8(converted, tmp_path):
    """LiteRT's Interpreter(model_path=...) refuses a path that is not UTF-8; the file is read as bytes."""
    import shutil

    src = converted("mobilenet_v2_0.35_96")[1]  # float32 TFLite
    dst = os.path.join(os.fsencode(tmp_path), b"m\xff\xfe.tflite")
    shutil.copyfile(src, dst)
    path = os.fsdecode(dst)
    assert analyze(path).macs == analyze(src).macs > 0
    # and measured: the runner reads the file as bytes too
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-m", "edgecv", "profile", dst, "--json", "--runs", "2", "--warmup-runs", "1",
                          "--min-time-s", "0.05"], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert json.loads(out.stdout)["macs"] == analyze(src).macs


# ---- one parameter rule for every format ------------------------------------------------------------------------

def _keras_deployed_params(model) -> int:
    """An independent walk over the Keras layers: conv/depthwise/dense kernels plus one bias per output channel
    (the layer's own, or the one a following BatchNormalization folds into)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "Dense"):
            k = layer.kernel.shape
            total += math.prod(k) + k[-1]
        elif kind == "DepthwiseConv2D":
            k = layer.kernel.shape
            total += math.prod(k) + k[2] * k[3]
    return total


@pytest.mark.parametrize("app,size", [("MobileNetV3Small", 96),
                                      pytest.param("EfficientNetV2B0", 64, marks=pytest.mark.slow)])
def test_params_agree_across_formats_and_keras(app, size, tmp_path):
    """keras.applications (weights=None: every bias zero, which tf2onnx drops and the TFLite converter keeps):
    TFLite float32, ONNX float32 and ONNX int8 (QDQ and QOperator) give the independent Keras count."""
    import tensorflow as tf
    import tf2onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from tensorflow import keras

    model = getattr(keras.applications, app)(weights=None, input_shape=(size, size, 3))
    want = _keras_deployed_params(model)
    tfl, onx = str(tmp_path / "m.tflite"), str(tmp_path / "m.onnx")
    with open(tfl, "wb") as fh:
        fh.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    spec = (tf.TensorSpec((1, size, size, 3), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=onx)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)}])

        def get_next(self):
            return next(self.it, None)

    got = {"tflite": analyze(tfl).params, "onnx": analyze(onx).params}
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
        out = str(tmp_path / f"{fmt.name}.onnx")
        quantize_static(onx, out, Reader(), quant_format=fmt, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        got[fmt.name] = analyze(out).params
    assert got == {k: want for k in got}, (want, got)
