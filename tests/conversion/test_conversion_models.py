"""Every precision x format for MobileNet 0.5, MobileNetV2 1.0, EfficientNet-B0 and Lite0 (full size).

Models are built as registered (224 px, softmax head), BatchNorm recalibrated on real photos, then
converted with calibration on other photos; verification uses held-out photos. What must hold:
every combination converts and loads in its own runtime (LiteRT without TensorFlow; ONNX Runtime),
has the expected I/O dtypes, int8 files are at most a third of float32, float16 TFLite and float32
ONNX match Keras to >= 40 dB SQNR.

The softmax of a random-weight 1000-class head is almost flat (max ~0.003), below one int8 output step
(1/256), so int8 SQNR on probabilities is ~0 dB by construction (measured 0.0-0.9 dB). int8 is therefore
converted and checked on the same network with a logits head (``classifier_activation=None``, same
weights); docs/benchmarks.md (Conversion fidelity) lists the measured figures. ONNX int8 on an x86 CPU
without VNNI is verified as a QDQ reference (see edgecv.conversion.onnx_export); the figures of this CPU's
saturating kernels are printed too.
Weights are seeded (``keras.utils.set_random_seed``), so the figures repeat from run to run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

MODELS = ["mobilenet_v1_0.50_224", "mobilenet_v2_1.00_224", "efficientnet_b0", "efficientnet_lite0"]
COMBOS = [("tflite", "float32"), ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8"),
          ("onnx", "float32"), ("onnx", "int8")]
CALIB, HELD = 32, 16
# int8 floors (logits head, 32 calibration photos, 16 held-out): below the measured 10.3 / 8.4 dB minimums.
INT8_FLOOR_DB = {"tflite": 6.0, "onnx": 5.0}


def _prepared(name: str, head: str | None):
    import keras
    from conftest import recalibrate_bn

    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.calibration import sample_images

    keras.utils.set_random_seed(0)
    cfg = get_config(name)
    model = create_model(cfg, classifier_activation=head)
    recalibrate_bn(model, cfg.spec.preprocessing.apply(sample_images(32, cfg.resolution, seed=100)))
    return model, cfg


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_precision_and_format(name, tmp_path):
    from edgecv.builders.registry import create_model
    from edgecv.conversion.api import quantize
    from edgecv.conversion.calibration import sample_images
    from edgecv.conversion.verify import run_artifact

    # One recalibrated network, two heads sharing its weights: softmax (as registered) for the float
    # precisions, logits for int8 (see the module docstring).
    logits_model, cfg = _prepared(name, None)
    model = create_model(cfg, classifier_activation="softmax")
    model.set_weights(logits_model.get_weights())
    x = cfg.spec.preprocessing.apply(sample_images(CALIB + HELD, cfg.resolution, seed=7))
    npy = tmp_path / "calib.npy"
    np.save(npy, x)
    res = {}
    for fmt, precision in COMBOS:
        m = logits_model if precision == "int8" else model
        r = quantize(m, precision, format=fmt, calib=npy, samples=CALIB, verify_samples=HELD,
                     output=tmp_path / "out")
        res[fmt, precision] = r
        assert Path(r.path).name == f"{name}_{precision}.{fmt}"
        want = "int8" if (fmt, precision) == ("tflite", "int8") else "float32"
        assert [t.dtype for t in r.inputs] == [want] and [t.dtype for t in r.outputs] == [want]
        assert r.outputs[0].shape[-1] == 1000
        v = r.verification
        assert v.samples == HELD and v.runtime.split()[0] == ("litert" if fmt == "tflite" else "onnxruntime")
        print(f"{name} {fmt} {precision}: SQNR {v.sqnr_db:.2f} dB top-1 {v.top1_agreement:.3f} "
              f"size {r.file_bytes} ({v.runtime}; this CPU's kernels: {v.host_kernels_sqnr_db} dB, "
              f"{v.host_kernels_top1_agreement})")
    for fmt in ("tflite", "onnx"):
        ratio = res[fmt, "int8"].file_bytes / res[fmt, "float32"].file_bytes
        assert ratio <= 1 / 3, f"{fmt} int8 is {ratio:.1%} of float32"
        v = res[fmt, "int8"].verification
        assert v.sqnr_db >= INT8_FLOOR_DB[fmt]
        assert v.top1_agreement >= 0.1  # chance is 0.001; seeded runs measured 0.25-0.81 (16 photos)
    assert res["tflite", "float16"].verification.sqnr_db >= 40
    assert res["onnx", "float32"].verification.sqnr_db >= 40
    assert res["tflite", "float32"].verification.sqnr_db >= 60
    # LiteRT loads and runs the int8 file in a process that never imports TensorFlow.
    run = run_artifact(res["tflite", "int8"].path, x[:2])
    assert not run.tensorflow_imported and run.output.shape == (2, 1000)
