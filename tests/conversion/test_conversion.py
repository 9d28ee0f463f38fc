"""Conversion pipeline at reduced resolution: calibration, TFLite/ONNX conversion, verification, gates.

Models are MobileNet 0.5 at 128 px (the properties tested here do not depend on the resolution) with
BatchNorm recalibrated on real photos, so the outputs compared are not the degenerate 1/classes of a
``weights=None`` model. References are independent: PIL for preprocessing, LiteRT/ONNX Runtime run
here directly, and a one-line numpy SQNR.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers.litert import run_tflite

from edgecv.conversion.onnx_export import int8_kernels_saturate
from edgecv.errors import EdgecvError, GateFailed

NAME = "mobilenet_v1_0.50_128"


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    """A BN-recalibrated MobileNet 0.5 @128, its preprocessed calibration array and held-out photos."""
    import keras
    from conftest import recalibrate_bn

    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.calibration import sample_images

    keras.utils.set_random_seed(0)  # random weights, but the same ones in every run (figures repeat)
    pre = get_config(NAME).spec.preprocessing
    # Logits (no softmax): a random-weight head's softmax is ~1/1000 everywhere, below one int8 step.
    model = create_model(NAME, classifier_activation=None)
    recalibrate_bn(model, pre.apply(sample_images(48, 128, seed=11)))
    x = pre.apply(sample_images(40, 128, seed=3))
    return model, x


@pytest.fixture(scope="module")
def calib_npy(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, small[1])
    return path


def _sqnr(ref, out):
    return 20 * math.log10(np.linalg.norm(ref) / np.linalg.norm(ref - out))


# --- metrics and calibration (no TensorFlow) --------------------------------------------------------

def test_sqnr_and_agreement_against_hand_computation():
    from edgecv.conversion.verify import compare, sqnr_db

    assert sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 4.5])) == pytest.approx(20.0)  # |x|=5, |x-y|=0.5
    assert sqnr_db(np.ones(4), np.ones(4)) == 300.0  # identical: capped, JSON-safe
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    out = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3]])
    m = compare(ref, out)
    assert m.top1_agreement == 0.75 and m.max_abs_error == pytest.approx(0.4) and m.samples == 4


def _write_images(folder: Path, n: int, size: int = 96) -> list[Path]:
    from PIL import Image

    from edgecv.conversion.calibration import sample_images

    folder.mkdir(parents=True, exist_ok=True)
    px = sample_images(n, size, seed=5).astype(np.uint8)
    paths = []
    for i, img in enumerate(px):
        sub = folder / ("a" if i % 2 else "b" / Path("deep"))
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / (f"img{i}.png" if i % 3 else f"img{i}.JPG")
        Image.fromarray(img[:, : size - 8 * (i % 3)]).save(p)  # some non-square: center crop matters
        paths.append(p)
    return paths


def test_calibration_folder_is_seeded_and_preprocessed_like_the_family(tmp_path):
    from PIL import Image

    from edgecv.builders.registry import get_config
    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.progress import Reporter

    paths = _write_images(tmp_path / "imgs", 9)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    pre = get_config("mobilenet_v2_1.00_224").spec.preprocessing
    rep = Reporter()
    a = load_calibration(tmp_path / "imgs", input_shape=(64, 64, 3), preprocessing=pre, samples=6, holdout=2,
                         seed=1, reporter=rep)
    b = load_calibration(tmp_path / "imgs", input_shape=(64, 64, 3), preprocessing=pre, samples=6, holdout=2,
                         seed=1)
    c = load_calibration(tmp_path / "imgs", input_shape=(64, 64, 3), preprocessing=pre, samples=6, holdout=2,
                         seed=2)
    assert a.calib.shape == (6, 64, 64, 3) and a.holdout.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(a.calib, b.calib)
    assert not np.array_equal(a.calib, c.calib)
    assert any("unreadable" in w and "broken.png" in w for w in rep.warnings)
    assert any("fewer than 100" in w for w in rep.warnings)
    assert a.summary.files_found == 10 and a.summary.samples == 6 and a.summary.holdout == 2
    # Independent reference: PIL center crop + bilinear resize, then MobileNet's (x - 127.5) / 127.5.
    refs = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((64, 64),
                                                                                            Image.BILINEAR)
        refs.append(np.asarray(im, np.float32) / 127.5 - 1.0)
    for row in np.concatenate([a.calib, a.holdout]):
        assert min(float(np.abs(row - r).max()) for r in refs) < 1e-5
    assert -1.0 <= a.calib.min() and a.calib.max() <= 1.0


@pytest.mark.parametrize("case", ["empty", "no_images", "all_unreadable", "wrong_shape", "wrong_dtype",
                                  "nan", "missing", "bad_suffix"])
def test_calibration_bad_input_is_a_one_line_error(tmp_path, case):
    from edgecv.builders.registry import get_config
    from edgecv.conversion.calibration import load_calibration

    pre = get_config("mobilenet_v2_1.00_224").spec.preprocessing
    d = tmp_path / "c"
    d.mkdir()
    spec = d
    if case == "no_images":
        (d / "a.txt").write_text("x")
    elif case == "all_unreadable":
        (d / "a.png").write_bytes(b"junk")
        (d / "b.jpg").write_bytes(b"")
    elif case == "wrong_shape":
        spec = d / "x.npy"
        np.save(spec, np.zeros((4, 32, 32, 3), np.float32))
    elif case == "wrong_dtype":
        spec = d / "x.npy"
        np.save(spec, np.zeros((4, 64, 64, 3), np.uint8))
    elif case == "nan":
        spec = d / "x.npz"
        np.savez(spec, x=np.full((4, 64, 64, 3), np.nan, np.float32))
    elif case == "missing":
        spec = d / "nope"
    elif case == "bad_suffix":
        spec = d / "x.csv"
        spec.write_text("1,2")
    with pytest.raises(EdgecvError) as ei:
        load_calibration(spec, input_shape=(64, 64, 3), preprocessing=pre, samples=4, holdout=1)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("--calib")
    expect = {"empty": "empty", "no_images": "no JPEG or PNG", "all_unreadable": "could be read",
              "wrong_shape": "(N, 64, 64, 3)", "wrong_dtype": "uint8", "nan": "NaN", "missing": "no such",
              "bad_suffix": "expected a folder"}[case]
    assert expect in msg
    with pytest.raises(EdgecvError, match="--samples"):
        load_calibration(None, input_shape=(64, 64, 3), preprocessing=pre, samples=0)


def test_int8_without_calib_is_refused_before_loading_anything(tmp_path):
    from edgecv.conversion.api import quantize

    with pytest.raises(EdgecvError, match="--calib: int8 needs calibration data"):
        quantize("mobilenet_v1_0.50_224", "int8", output=tmp_path)
    with pytest.raises(EdgecvError, match="not available with --format onnx"):
        quantize("mobilenet_v1_0.50_224", "float16", format="onnx", output=tmp_path)
    with pytest.raises(EdgecvError, match="--opset"):
        quantize("mobilenet_v1_0.50_224", "float32", format="onnx", opset=9, output=tmp_path)
    with pytest.raises(EdgecvError, match="must end in .onnx"):
        quantize("mobilenet_v1_0.50_224", "float32", format="onnx", output=tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_synthetic_calibration_warns():
    from edgecv.builders.registry import get_config
    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.progress import Reporter

    rep = Reporter()
    pre = get_config("efficientnet_b0").spec.preprocessing  # raw pixels
    d = load_calibration("synthetic", input_shape=(32, 32, 3), preprocessing=pre, samples=8, holdout=2, seed=0,
                         reporter=rep)
    assert d.calib.shape == (8, 32, 32, 3) and 0 <= d.calib.min() and d.calib.max() <= 255
    assert any("noise" in w for w in rep.warnings)


# --- TFLite -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("io", ["int8", "uint8", "float32"])
def test_tflite_int8_full_integer_per_channel_and_verified(small, calib_npy, tmp_path, io):
    from ai_edge_litert.interpreter import Interpreter

    from edgecv.conversion.api import quantize

    model, x = small
    res = quantize(model, "int8", calib=calib_npy, samples=24, verify_samples=16, io=io, output=tmp_path)
    path = Path(res.path)
    assert path.name == f"{NAME}_int8.tflite" and path.exists()
    assert res.inputs[0].dtype == io and res.outputs[0].dtype == io
    it = Interpreter(model_path=str(path))
    td = {t["index"]: t for t in it.get_tensor_details()}
    assert it.get_input_details()[0]["dtype"] == np.dtype(io)
    ops = it._get_ops_details()
    convs = [o for o in ops if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 28
    for o in convs:
        # Integer compute, and per-channel weights: one scale per output channel.
        assert td[o["inputs"][0]]["dtype"] == np.int8
        w = td[o["inputs"][1]]
        qp = w["quantization_parameters"]
        assert w["dtype"] == np.int8
        assert len(qp["scales"]) == w["shape"][qp["quantized_dimension"]] > 1
    # Verification figures against an independent run: the 16 held-out rows of the .npy (seed 0 draw).
    order = np.random.default_rng(0).permutation(len(x))[:40]
    held = x[np.sort(order)][24:40]
    ref = np.asarray(model(held, training=False))
    out = run_tflite(path, held)
    v = res.verification
    print(f"int8 io={io}: SQNR {v.sqnr_db} dB, top-1 {v.top1_agreement}")
    assert v.samples == 16 and v.runtime.startswith("litert")
    assert v.sqnr_db == pytest.approx(_sqnr(ref, out), abs=0.05)
    assert v.top1_agreement == pytest.approx(np.mean(ref.argmax(1) == out.argmax(1)))
    # A real signal, not the degenerate output of an uncalibrated model. A random network's top classes are
    # close together, so its int8 top-1 agreement is fragile (unseeded runs: 0.06-0.75 on 16 photos) while
    # SQNR is not (8.1-9.5 dB); the class signal is checked as Keras' top-1 inside the int8 top-5 (chance 0.5%).
    top5 = np.mean([r in o for r, o in zip(ref.argmax(1), np.argsort(-out, axis=1)[:, :5])])
    print(f"int8 io={io}: Keras top-1 in int8 top-5: {top5:.3f}")
    assert v.sqnr_db > 5 and top5 >= 0.25  # seeded: measured 0.44-0.69
    side = json.loads(Path(res.sidecar).read_text())
    assert side["status"] == "ok" and side["precision"] == "int8" and side["io"] == io
    assert side["calibration"]["samples"] == 24 and side["calibration"]["source"] == str(calib_npy)
    assert side["preprocessing"]["mean"] == [127.5] * 3 and side["preprocessing"]["input_size"] == [128, 128]
    assert side["verification"]["sqnr_db"] == v.sqnr_db
    assert {"tensorflow-cpu", "ai-edge-litert", "onnxruntime"} <= set(side["versions"]) or \
           {"tensorflow", "ai-edge-litert", "onnxruntime"} <= set(side["versions"])
    if io != "float32":
        assert side["inputs"][0]["scale"] > 0 and isinstance(side["inputs"][0]["zero_point"], int)


@pytest.mark.parametrize("io", ["int16", "float32"])
def test_tflite_int16x8_16_bit_activations_8_bit_weights(small, calib_npy, tmp_path, io):
    """int16x8: every convolution takes int16 activations and per-channel int8 weights, and the output is much
    closer to Keras than int8's on the same calibration (an independent LiteRT run gives the same figures)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecv.conversion.api import quantize

    model, x = small
    res = quantize(model, "int16x8", calib=calib_npy, samples=24, verify_samples=16, io=io, output=tmp_path)
    path = Path(res.path)
    assert path.name == f"{NAME}_int16x8.tflite"
    assert res.inputs[0].dtype == io and res.outputs[0].dtype == io
    it = Interpreter(model_path=str(path))
    td = {t["index"]: t for t in it.get_tensor_details()}
    convs = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 28
    for o in convs:
        assert td[o["inputs"][0]]["dtype"] == np.int16 and td[o["outputs"][0]]["dtype"] == np.int16
        w = td[o["inputs"][1]]
        qp = w["quantization_parameters"]
        assert w["dtype"] == np.int8 and len(qp["scales"]) == w["shape"][qp["quantized_dimension"]] > 1
        assert np.all(qp["zero_points"] == 0)
        assert td[o["outputs"][0]]["quantization_parameters"]["zero_points"][0] == 0  # symmetric int16
    order = np.random.default_rng(0).permutation(len(x))[:40]
    held = x[np.sort(order)][24:40]
    ref = np.asarray(model(held, training=False))
    out = run_tflite(path, held)
    v = res.verification
    assert v.sqnr_db == pytest.approx(_sqnr(ref, out), abs=0.05)
    int8 = quantize(model, "int8", calib=calib_npy, samples=24, verify_samples=16, output=tmp_path / "i8.tflite")
    print(f"int16x8 io={io}: SQNR {v.sqnr_db} dB, top-1 {v.top1_agreement}; int8 {int8.verification.sqnr_db} dB")
    # 256x finer activation steps; what is left is the int8 weights' error, large in a random-weight network
    assert v.sqnr_db >= int8.verification.sqnr_db + 3  # measured 12.9 vs 8.2 dB
    assert res.calibration.samples == 24
    assert json.loads(Path(res.sidecar).read_text())["io"] == io
    assert Path(res.path).stat().st_size < 0.35 * 4 * sum(int(np.prod(w.shape)) for w in model.weights)


def test_int16x8_that_litert_cannot_prepare_is_one_error_and_no_file(tmp_path):
    """A ReLU6 layer whose output is always zero gets a symmetric 16-bit scale too small for its activation
    bounds; LiteRT refuses to prepare it. edgecv checks before writing, also with --no-verify (int8 prepares)."""
    import keras

    from edgecv.conversion.api import quantize

    inp = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(4, 3, activation="relu6", kernel_initializer="zeros", name="dead")(inp)
    y = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="c2")(y))
    m = keras.Model(inp, y, name="deadnet")
    for verify in (False, True):
        with pytest.raises(EdgecvError, match=r"deadnet_int16x8.tflite: LiteRT cannot prepare the converted int16x8 "
                                              r"model: .*CONV_2D.*calibrate on real images"):
            quantize(m, "int16x8", calib="synthetic", samples=4, verify_samples=2, verify=verify, output=tmp_path)
        assert not list(tmp_path.iterdir())
    assert Path(quantize(m, "int8", calib="synthetic", samples=4, verify=False, output=tmp_path).path).exists()


@pytest.mark.parametrize("precision", ["float32", "float16", "dynamic"])
def test_tflite_float_precisions(small, tmp_path, precision):
    from edgecv.conversion.api import quantize

    model, _ = small
    res = quantize(model, precision, output=tmp_path / f"m_{precision}.tflite")
    assert Path(res.path).name == f"m_{precision}.tflite"
    assert res.inputs[0].dtype == "float32" and res.outputs[0].dtype == "float32"
    assert res.calibration is None and res.verification.data.startswith("scikit-image")
    floor = {"float32": 60.0, "float16": 25.0, "dynamic": 5.0}[precision]
    print(f"{precision}: SQNR {res.verification.sqnr_db} dB")
    assert res.verification.sqnr_db >= floor
    counts = res.graph["op_counts"]
    assert counts.get("CONV_2D", 0) >= 14
    if precision == "float16":
        assert counts.get("DEQUANTIZE", 0) >= 14  # fp16 weights dequantized at load
    assert not any("untrained" in w for w in res.warnings)  # recalibrated: its outputs vary


def test_verification_warns_that_an_untrained_model_proves_little(tmp_path):
    """A ``weights=None`` model gives the same softmax for every photo: the float32 file matches it at the
    300 dB cap, and edgecv says that this proves little instead of passing it silently."""
    from edgecv.builders.registry import create_model
    from edgecv.conversion.api import quantize
    from edgecv.conversion.verify import outputs_barely_vary

    res = quantize(create_model("mobilenet_v1_0.25_128"), "float32", output=tmp_path / "m.tflite")
    assert res.verification.sqnr_db >= 100
    assert any("untrained" in w and "16 samples" in w for w in res.warnings), res.warnings
    # the rule by hand: constant rows barely vary, photos through a real function do
    rng = np.random.default_rng(0)
    assert outputs_barely_vary(np.full((4, 10), 0.1) + rng.normal(0, 1e-9, (4, 10)))
    assert not outputs_barely_vary(rng.normal(0, 1, (4, 10)))
    assert not outputs_barely_vary(np.ones((1, 10)))  # one sample: nothing to compare


def test_unquantizable_op_is_named_unless_fallback(tmp_path):
    import keras

    from edgecv.conversion.api import quantize

    inp = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(8, 3, name="c1")(inp)
    y = keras.layers.Lambda(lambda t: keras.ops.sin(t), name="sine")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(4, activation="softmax", name="head")(y)
    m = keras.Model(inp, y, name="sinenet")
    with pytest.raises(EdgecvError) as ei:
        quantize(m, "int8", calib="synthetic", samples=4, verify_samples=2, output=tmp_path)
    assert "SIN (sine)" in str(ei.value) and "--allow-float-fallback" in str(ei.value)
    assert not list(tmp_path.glob("*.tflite"))  # nothing left behind
    res = quantize(m, "int8", calib="synthetic", samples=4, verify_samples=2, allow_float_fallback=True,
                   output=tmp_path)
    assert res.float_ops == ("SIN (sine)",) and Path(res.path).exists()
    assert res.verification is not None and res.verification.samples == 2
    # --no-verify: nothing is run, the I/O is still read from the artifact.
    res = quantize(m, "int8", calib="synthetic", samples=4, allow_float_fallback=True, verify=False, io="uint8",
                   output=tmp_path / "nv.tflite")
    assert res.verification is None and res.inputs[0].dtype == "uint8" and res.inputs[0].scale > 0
    assert json.loads(Path(res.sidecar).read_text())["verification"] is None


def test_float_layers_and_debug_layers(small, calib_npy, tmp_path):
    from edgecv.conversion.api import quantize
    from edgecv.conversion.verify import tflite_ops

    model, _ = small
    names = [layer.name for layer in model.layers]
    res = quantize(model, "int8", calib=calib_npy, samples=16, verify_samples=8, float_layers=["conv_pw_13"],
                   debug_layers=True, output=tmp_path)
    ops = tflite_ops(Path(res.path).read_bytes())
    pw13 = [op for op in ops if op.type == "CONV_2D" and "conv_pw_13_1/" in op.output_name]
    assert pw13 and pw13[0].input_dtypes == ("float32",)
    others = [op for op in ops if op.type == "CONV_2D" and op not in pw13]
    assert others and all(op.input_dtypes == ("int8",) for op in others)
    assert res.inputs[0].dtype == "int8"
    # The debugger's report names Keras layers, worst first.
    rep = res.debug_layers
    assert len(rep) == 10 and all(e.layer in names for e in rep)
    assert [e.rmse_over_scale for e in rep] == sorted((e.rmse_over_scale for e in rep), reverse=True)
    assert "conv_pad_2" not in [e.layer for e in rep]  # a fused op is named by its conv, not its padding
    # The worst three layers (other than the one already float) carry the output SQNR with that layer also kept
    # in float; the same conversion through the public path gives the same figure.
    measured = [e for e in rep if e.output_sqnr_db_if_float is not None]
    assert len({e.layer for e in measured}) == 3 and "conv_pw_13" not in {e.layer for e in measured}
    assert all(e.output_sqnr_db_if_float is None for e in rep if e.layer == "conv_pw_13")
    first = measured[0]
    again = quantize(model, "int8", calib=calib_npy, samples=16, verify_samples=8,
                     float_layers=["conv_pw_13", first.layer], output=tmp_path / "again.tflite")
    print(f"as converted {res.verification.sqnr_db} dB; {first.layer} float: {first.output_sqnr_db_if_float} dB "
          f"(public path {again.verification.sqnr_db} dB)")
    assert first.output_sqnr_db_if_float == pytest.approx(again.verification.sqnr_db, abs=0.01)
    side = json.loads(Path(res.sidecar).read_text())
    assert side["debug_layers"][0]["output_sqnr_db_if_float"] == rep[0].output_sqnr_db_if_float
    # The diagnosis: 16-bit activations with the same calibration and held-out samples, checked against the
    # public int16x8 path.
    dg = res.diagnosis
    print(f"diagnosis: {dg}")
    assert dg.int8_sqnr_db == pytest.approx(res.verification.sqnr_db, abs=0.01)
    a16 = quantize(model, "int16x8", calib=calib_npy, samples=16, verify_samples=8, output=tmp_path / "a16.tflite")
    assert dg.int16x8_sqnr_db == pytest.approx(a16.verification.sqnr_db, abs=0.01)
    best = max(e.output_sqnr_db_if_float - res.verification.sqnr_db for e in measured)
    assert dg.best_float_layer_gain_db == pytest.approx(best, abs=0.01)
    # the rule: a layer giving back >= 1 dB is the culprit, else 16-bit activations giving back >= 3 dB
    want = ("layers" if best >= 1.0 else "activations" if dg.int16x8_sqnr_db - dg.int8_sqnr_db >= 3.0
            else "weights")
    assert dg.culprit == want and side["diagnosis"]["culprit"] == want
    with pytest.raises(EdgecvError, match="no layer named .conv_pw_31.*Did you mean: .*conv_pw_13"):
        quantize(model, "int8", calib=calib_npy, samples=4, float_layers=["conv_pw_31"], output=tmp_path)
    with pytest.raises(EdgecvError, match="no op of its own"):
        quantize(model, "int8", calib=calib_npy, samples=4, float_layers=["dropout"], output=tmp_path)


def test_gate_failure_keeps_artifact_marked_failed(small, calib_npy, tmp_path):
    from edgecv.conversion.api import quantize

    model, _ = small
    with pytest.raises(GateFailed) as ei:
        quantize(model, "int8", calib=calib_npy, samples=8, verify_samples=8, min_sqnr_db=200.0,
                 min_top1_agreement=0.5, output=tmp_path)
    assert ei.value.exit_code == 3 and "SQNR" in str(ei.value) and "< --min-sqnr 200" in str(ei.value)
    res = ei.value.result
    assert Path(res.path).exists() and res.status == "failed"
    side = json.loads(Path(res.sidecar).read_text())
    assert side["status"] == "failed" and side["verification"]["passed"] is False
    assert any("--min-sqnr" in g for g in side["verification"]["failed_gates"])


# --- ONNX -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_float32_and_int8_qdq(small, calib_npy, tmp_path, opset):
    import onnx
    import onnxruntime as ort

    from edgecv.conversion.api import quantize

    model, x = small
    f32 = quantize(model, "float32", format="onnx", opset=opset, calib=calib_npy, output=tmp_path)
    assert Path(f32.path).name == f"{NAME}_float32.onnx" and f32.graph["opset"] == opset
    assert f32.verification.sqnr_db >= 40 and f32.verification.runtime.startswith("onnxruntime")
    if opset == 13:
        return
    q = quantize(model, "int8", format="onnx", opset=opset, calib=calib_npy, samples=24, output=tmp_path)
    assert Path(q.path).name == f"{NAME}_int8.onnx"
    proto = onnx.load(q.path)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # Per-channel, signed: conv weight zero points are int8 vectors (one per output channel).
    inits = {t.name: t for t in proto.graph.initializer}
    axis_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
               and any(a.name == "axis" for a in n.attribute) and n.input[0] in inits]
    weights = [n for n in axis_dq if len(inits[n.input[0]].dims) == 4]  # conv kernels (biases are int32)
    assert len(weights) == 28 and all(inits[n.input[0]].data_type == onnx.TensorProto.INT8 for n in weights)
    assert all(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1 for n in weights)
    assert q.inputs[0].dtype == "float32" and q.outputs[0].dtype == "float32"
    # Independent check: run it in ONNX Runtime here and compare with Keras. On x86 without VNNI edgecv
    # verifies the QDQ graph as written (graph optimizations off) and reports the fused kernels beside it.
    order = np.random.default_rng(0).permutation(len(x))[:40]
    held = x[np.sort(order)][24:40]
    ref = np.asarray(model(held, training=False))

    def ort_run(optimize: bool) -> np.ndarray:
        so = ort.SessionOptions()
        if not optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(q.path, so, providers=["CPUExecutionProvider"]).run(None, {"input": held})[0]

    v = q.verification
    if int8_kernels_saturate():
        assert "QDQ reference" in v.runtime
        assert v.sqnr_db == pytest.approx(_sqnr(ref, ort_run(False)), abs=0.05)
        assert v.host_kernels_sqnr_db == pytest.approx(_sqnr(ref, ort_run(True)), abs=0.05)
    else:
        assert v.host_kernels_sqnr_db is None
        assert v.sqnr_db == pytest.approx(_sqnr(ref, ort_run(True)), abs=0.05)
    assert v.sqnr_db > 5
    assert q.file_bytes <= Path(f32.path).stat().st_size / 3


def _conv_weight_ints(path) -> np.ndarray:
    """All int8 values of the per-channel conv kernels (4-D initializers behind a DequantizeLinear)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    inits = {t.name: t for t in proto.graph.initializer}
    names = {n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return np.concatenate([numpy_helper.to_array(inits[k]).ravel() for k in names if len(inits[k].dims) == 4])


def test_onnx_int8_reduce_range_uses_7_bit_weights_and_host_kernels(small, calib_npy, tmp_path):
    from edgecv.conversion.api import quantize

    model, _ = small
    full = quantize(model, "int8", format="onnx", calib=calib_npy, samples=24, output=tmp_path / "full")
    red = quantize(model, "int8", format="onnx", calib=calib_npy, samples=24, output=tmp_path / "red",
                   reduce_range=True)
    w_full, w_red = _conv_weight_ints(full.path), _conv_weight_ints(red.path)
    assert w_full.min() == -127 or w_full.max() == 127  # symmetric full range: +-127 is reached
    assert w_red.min() >= -64 and w_red.max() <= 64 and np.abs(w_red).max() >= 63  # 7 bits
    # 7-bit weights run in this CPU's fused kernels (nothing to saturate): no QDQ reference needed.
    assert "QDQ reference" not in red.verification.runtime and red.verification.host_kernels_sqnr_db is None
    assert red.verification.sqnr_db > 5


@pytest.mark.parametrize("machine, flags, want", [
    ("x86_64", "fpu sse2 avx2 fma", True),
    ("x86_64", "fpu sse2 avx2 avx512f avx512_vnni", False),
    ("x86_64", "fpu sse2 avx2 avx_vnni", False),
    ("aarch64", "fp asimd asimddp", False),
])
def test_int8_kernels_saturate_reads_the_cpu_flags(tmp_path, monkeypatch, machine, flags, want):
    import platform

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert int8_kernels_saturate(cpuinfo) is want
    if machine == "x86_64":  # flags that cannot be read: assume the common case (no VNNI)
        assert int8_kernels_saturate(tmp_path / "missing") is True
