"""int8 quality on a real task: a tiny edgecv model trained for a few seconds on scikit-learn's digits.

The small, fast version of ``tools/bench_quality.py``. The reference is the ground-truth labels of held-out
test images (not the code's own output): the float Keras model must have clearly learned the task, and
the int8 TFLite model that ``edgecv.conversion.quantize`` makes from it (calibrated on training images
only, run in LiteRT) must keep its accuracy within ``INT8_MARGIN_POINTS`` and stay far above chance; the
int16x8 file (16-bit activations) within 1 point.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tensorflow")

from helpers import digits as _digits  # noqa: E402

MODEL = "mobilenet_v1_0.25_224"  # built at 32 px, 10 classes: ~0.2 M parameters
EPOCHS = 8
CHANCE = 0.1
MIN_FLOAT_ACCURACY = 0.80  # clearly learned (chance is 0.10)
INT8_MARGIN_POINTS = 3.0  # int8 test accuracy within 3 points of float on 450 test images
MIN_AGREEMENT = 0.93

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    data = _digits.load_digits(32, seed=0)
    tr = _digits.train(MODEL, data, epochs=EPOCHS, learning_rate=1e-2, seed=0)
    return data, tr


def test_float_model_learned(trained):
    _, tr = trained
    assert tr.float_accuracy >= MIN_FLOAT_ACCURACY, f"float test accuracy {tr.float_accuracy:.3f}"


# int16x8 (16-bit activations) is held to a tighter margin: only its int8 weights are coarse
@pytest.mark.parametrize("precision,margin,min_agreement", [("int8", INT8_MARGIN_POINTS, MIN_AGREEMENT),
                                                            ("int16x8", 1.0, 0.98)])
def test_int8_tflite_keeps_accuracy(trained, tmp_path, precision, margin, min_agreement):
    from edgecv.conversion.api import quantize

    data, tr = trained
    calib = _digits.save_calibration(tmp_path / "calib.npy", tr.preprocessing, data.x_train)
    res = quantize(tr.model, precision, format="tflite", calib=str(calib), samples=100, output=str(tmp_path), seed=0)
    assert res.status == "ok"
    assert {t.dtype for t in res.inputs} == {{"int8": "int8", "int16x8": "int16"}[precision]}
    x_test = tr.preprocessing.apply(data.x_test)
    probs = _digits.run_on(res.path, x_test)
    ref = _digits.keras_predict(tr.model, x_test)
    acc = _digits.accuracy(probs, data.y_test)
    agreement = float(np.mean(probs.argmax(1) == ref.argmax(1)))
    print(f"{precision}: accuracy {acc:.4f} (float {tr.float_accuracy:.4f}), agreement {agreement:.4f}")
    assert acc > 5 * CHANCE, f"{precision} accuracy {acc:.3f} is near chance"
    assert 100 * (tr.float_accuracy - acc) <= margin, f"{precision} {acc:.3f} vs float {tr.float_accuracy:.3f}"
    assert agreement >= min_agreement, f"{precision}/float top-1 agreement {agreement:.3f}"


@pytest.mark.parametrize("reduce_range", [False, True])
def test_int8_onnx_keeps_accuracy(trained, tmp_path, reduce_range):
    """ONNX int8 (QDQ), as verified by edgecv: full-range weights (run as a QDQ reference on x86 without VNNI)
    and 7-bit weights (``reduce_range``, run in this CPU's fused kernels) both keep the float accuracy."""
    from edgecv.conversion.api import quantize
    from edgecv.conversion.onnx_export import int8_kernels_saturate

    data, tr = trained
    calib = _digits.save_calibration(tmp_path / "calib.npy", tr.preprocessing, data.x_train)
    res = quantize(tr.model, "int8", format="onnx", calib=str(calib), samples=100, output=str(tmp_path), seed=0,
                   reduce_range=reduce_range)
    assert res.status == "ok"
    reference = not reduce_range and int8_kernels_saturate()
    assert ("QDQ reference" in res.verification.runtime) is reference
    x_test = tr.preprocessing.apply(data.x_test)
    probs = _digits.run_on(res.path, x_test, qdq_reference=reference)
    ref = _digits.keras_predict(tr.model, x_test)
    acc = _digits.accuracy(probs, data.y_test)
    agreement = float(np.mean(probs.argmax(1) == ref.argmax(1)))
    assert 100 * (tr.float_accuracy - acc) <= INT8_MARGIN_POINTS, (
        f"ONNX int8 {acc:.3f} vs float {tr.float_accuracy:.3f}")
    assert agreement >= MIN_AGREEMENT, f"ONNX int8/float top-1 agreement {agreement:.3f}"
