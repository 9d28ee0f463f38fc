"""Models edgecv did not build: any input shape, explicit preprocessing, bounded decoders, and a corpus of
keras.applications architectures through every precision and format.

References are independent of edgecv: keras.applications' own ``preprocess_input`` for the named
preprocessing modes, Pillow for grayscale conversion, numpy for 16-bit scaling, and a Keras layer walk
written here (not edgecv's cost pass) for MACs and deployed parameters. Random-weight models have their
BatchNorm statistics set from real photos (scikit-image's) and logits as outputs, so verification compares
outputs that vary from sample to sample (checked: no "untrained weights?" warning).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import EdgecvError

# --- preprocessing: the named modes against keras.applications' preprocess_input ------------------------


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_named_preprocessing_matches_keras_applications(mode):
    from keras.applications import imagenet_utils

    from edgecv.conversion.preprocess import parse

    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    ref = imagenet_utils.preprocess_input(x.copy(), mode=mode, data_format="channels_last")
    got = parse(mode).for_channels(3).apply(x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_preprocess_values_channels_and_errors():
    from edgecv.conversion.preprocess import parse

    x = np.random.default_rng(1).uniform(0, 255, (3, 4, 4, 1)).astype(np.float32)
    # explicit values: (x - mean) / std in pixel units, one value for one channel
    np.testing.assert_allclose(parse("mean=10;std=2").for_channels(1).apply(x), (x - 10) / 2, rtol=1e-6)
    # torch on one channel: the average of the three ImageNet means and stds (documented rule)
    t1 = parse("torch").for_channels(1)
    assert t1.mean == pytest.approx((np.mean([0.485, 0.456, 0.406]) * 255,))
    assert t1.std == pytest.approx((np.mean([0.229, 0.224, 0.225]) * 255,))
    assert parse("none").for_channels(16).apply(x[..., :1]).max() == pytest.approx(x.max())
    x5 = np.ones((1, 2, 2, 5), np.float32) * 100
    got = parse("mean=0,10,20,30,40;std=1,2,4,5,10").for_channels(5).apply(x5)[0, 0, 0]
    np.testing.assert_allclose(got, [100, 45, 20, 14, 6])
    for bad, part in [("tourch", "torch"), ("mean=1,2;std=0", "> 0"), ("mean=;std=1", "expected"),
                      ("mean=1,2;std=1,2,3", "1 or C")]:
        with pytest.raises(EdgecvError, match="--preprocess") as ei:
            parse(bad)
        assert part in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(EdgecvError, match="16 channels"):
        parse("torch").for_channels(16)


# --- calibration sources for any channel count and size --------------------------------------------


def _photos_folder(folder: Path, n: int = 6) -> Path:
    from PIL import Image

    from edgecv.conversion.calibration import sample_images

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(sample_images(n, (90, 130), seed=5)):
        Image.fromarray(img.astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_folder_to_one_channel_non_square_is_pillow_grayscale(tmp_path):
    from PIL import Image

    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.preprocess import parse

    folder = _photos_folder(tmp_path / "imgs", 4)
    d = load_calibration(folder, input_shape=(45, 65, 1), preprocessing=parse("tf"), samples=3, holdout=1)
    assert d.calib.shape == (3, 45, 65, 1) and d.holdout.shape == (1, 45, 65, 1)
    # Independent reference: Pillow's own grayscale ("L"), same aspect (90x130 -> 45x65: no crop), bilinear.
    refs = []
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            refs.append(np.asarray(im.convert("L").resize((65, 45), Image.BILINEAR), np.float32) / 127.5 - 1)
    for row in np.concatenate([d.calib, d.holdout])[..., 0]:
        assert min(float(np.abs(row - r).max()) for r in refs) < 1e-5


def test_n_channel_models_take_arrays_and_synthetic_and_refuse_folders(tmp_path):
    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.preprocess import parse

    pre = parse("none")
    arr = np.random.default_rng(0).normal(size=(10, 6, 9, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    d = load_calibration(tmp_path / "x.npy", input_shape=(6, 9, 5), preprocessing=pre, samples=7, holdout=3)
    got = np.concatenate([d.calib, d.holdout])
    assert got.shape == (10, 6, 9, 5)
    assert sorted(map(float, got.sum(axis=(1, 2, 3)))) == pytest.approx(sorted(map(float, arr.sum(axis=(1, 2, 3)))))
    s = load_calibration("synthetic", input_shape=(6, 9, 5), preprocessing=parse("tf"), samples=4, holdout=1)
    assert s.calib.shape == (4, 6, 9, 5) and -1 <= s.calib.min() and s.calib.max() <= 1
    _photos_folder(tmp_path / "imgs", 2)
    with pytest.raises(EdgecvError) as ei:
        load_calibration(tmp_path / "imgs", input_shape=(6, 9, 5), preprocessing=pre, samples=2, holdout=0)
    msg = str(ei.value)
    assert msg.startswith("--calib") and ".npy/.npz" in msg and "(N, 6, 9, 5)" in msg and "\n" not in msg


# --- decoder bounds ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header declares w x h 8-bit grayscale pixels, with a tiny (not decodable) IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _png_chunk(b"IEND", b""))


def test_image_over_the_pixel_limit_is_refused_by_its_header(tmp_path, monkeypatch):
    from edgecv.conversion.calibration import ImageTooLarge, load_calibration, read_image
    from edgecv.conversion.preprocess import parse

    big = tmp_path / "imgs" / "bomb.png"
    big.parent.mkdir()
    _png_header_only(big, 12000, 12000)  # 144 megapixels declared
    t = time.perf_counter()
    with pytest.raises(ImageTooLarge) as ei:
        read_image(big, (32, 32), 3)
    assert time.perf_counter() - t < 2.0
    msg = str(ei.value)
    assert "bomb.png" in msg and "144,000,000" in msg and "64,000,000" in msg and "EDGECV_MAX_IMAGE_PIXELS" in msg
    # In a folder: skipped with one warning line (the file, the limit, how to raise it); the rest is used.
    _photos_folder(tmp_path / "imgs", 3)

    class Rep:
        warnings: list[str] = []

        def warn(self, m):
            self.warnings.append(m)

        def task(self, *a, **k):
            import contextlib

            return contextlib.nullcontext(lambda n=1: None)

    rep = Rep()
    d = load_calibration(big.parent, input_shape=(32, 32, 3), preprocessing=parse("tf"), samples=3, holdout=0,
                         reporter=rep, warn_few=False)
    assert len(d.calib) == 3
    w = [m for m in rep.warnings if "pixel limit" in m]
    assert len(w) == 1 and "bomb.png" in w[0] and "EDGECV_MAX_IMAGE_PIXELS" in w[0] and "\n" not in w[0]
    # The limit is the user's to set: 32x32 images under a 1000-pixel limit are refused, over it accepted.
    small = sorted(p for p in big.parent.iterdir() if p.name != "bomb.png")[0]
    monkeypatch.setenv("EDGECV_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLarge, match="1,000"):
        read_image(small, (8, 8), 3)
    monkeypatch.setenv("EDGECV_MAX_IMAGE_PIXELS", "100000")
    assert read_image(small, (8, 8), 3).shape == (8, 8, 3)
    monkeypatch.setenv("EDGECV_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(EdgecvError, match="EDGECV_MAX_IMAGE_PIXELS: expected a positive integer"):
        read_image(small, (8, 8), 3)


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    from PIL import Image

    from edgecv.conversion.calibration import read_image

    ramp = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    want = ramp.astype(np.float64) * 255.0 / 65535.0  # the 16-bit range mapped onto 0..255
    for c in (1, 3):
        got = read_image(p, (48, 64), c)  # same size: no resampling, an exact comparison
        assert got.shape == (48, 64, c)
        np.testing.assert_allclose(got[..., 0], want, atol=1e-3)
        assert float(got.max()) < 251 and float((got >= 254.5).mean()) == 0.0  # Pillow's "L" clips 99% to 255


def test_npy_header_claiming_a_billion_rows_is_refused_before_reading(tmp_path):
    from numpy.lib import format as npf

    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.preprocess import parse

    p = tmp_path / "liar.npy"
    with open(p, "wb") as f:
        npf.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 64, 64, 3)})
        f.write(np.zeros((2, 64, 64, 3), np.float32).tobytes())
    t = time.perf_counter()
    with pytest.raises(EdgecvError) as ei:
        load_calibration(p, input_shape=(64, 64, 3), preprocessing=parse("tf"), samples=4, holdout=1)
    assert time.perf_counter() - t < 2.0
    msg = str(ei.value)
    assert msg.startswith("--calib") and "liar.npy" in msg and "1000000000" in msg.replace(",", "") and "\n" not in msg


def test_npz_member_over_the_declared_size_limit_is_refused(tmp_path, monkeypatch):
    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.preprocess import parse

    p = tmp_path / "bomb.npz"
    np.savez_compressed(p, x=np.zeros((64, 64, 64, 3), np.float32))  # 3.1 MB of zeros, a few KB compressed
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("x.npy")
        assert info.file_size > 100 * info.compress_size
    monkeypatch.setenv("EDGECV_MAX_ARRAY_BYTES", "1000000")
    with pytest.raises(EdgecvError) as ei:
        load_calibration(p, input_shape=(64, 64, 3), preprocessing=parse("none"), samples=4, holdout=1)
    msg = str(ei.value)
    assert "bomb.npz" in msg and f"{info.file_size:,}" in msg and "EDGECV_MAX_ARRAY_BYTES" in msg
    monkeypatch.delenv("EDGECV_MAX_ARRAY_BYTES")
    d = load_calibration(p, input_shape=(64, 64, 3), preprocessing=parse("none"), samples=4, holdout=1,
                         warn_few=False)
    assert d.calib.shape == (4, 64, 64, 3)
    # A member whose .npy header claims more data than the member holds: refused from the header.
    liar = tmp_path / "liar.npz"
    buf = io.BytesIO()
    from numpy.lib import format as npf

    npf.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 64, 64, 3)})
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", buf.getvalue() + b"\0" * 4096)
    with pytest.raises(EdgecvError, match="false header"):
        load_calibration(liar, input_shape=(64, 64, 3), preprocessing=parse("none"), samples=4, holdout=1)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_unreadable_file_with_a_non_utf8_name_warns_printably(tmp_path, monkeypatch):
    from edgecv.conversion.calibration import load_calibration
    from edgecv.conversion.preprocess import parse
    from edgecv.conversion.progress import RichReporter

    folder = _photos_folder(tmp_path / "imgs", 2)
    os.close(os.open(os.path.join(os.fsencode(folder), b"bad\xff\xfe.png"), os.O_CREAT | os.O_WRONLY, 0o644))
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a stream that refuses surrogates
    monkeypatch.setattr(sys, "stderr", out)
    rep = RichReporter(show_progress=False)
    d = load_calibration(folder, input_shape=(16, 16, 3), preprocessing=parse("tf"), samples=3, holdout=0,
                         reporter=rep, warn_few=False)
    assert len(d.calib) == 2
    out.flush()
    text = out.buffer.getvalue().decode("utf-8")
    assert "skipped 1 unreadable image(s): bad\\xff\\xfe.png" in text


# --- the pipeline on foreign models --------------------------------------------------------------------

PRECISIONS = [("tflite", "int8"), ("tflite", "int16x8"), ("tflite", "float16"), ("tflite", "dynamic"),
              ("tflite", "float32"), ("onnx", "float32"), ("onnx", "int8")]


def keras_counts(model) -> tuple[int, int]:
    """MACs and deployed parameters by walking the Keras layers (independent of edgecv's cost pass).

    MACs: Conv2D ``kh*kw*cin/groups*cout*Hout*Wout``, DepthwiseConv2D ``kh*kw*cin*mult*Hout*Wout``,
    SeparableConv2D both, Dense ``in*out`` per output position. Parameters, the deployed rule of
    docs/guide.md and profiling/static.py: every convolution and fully connected kernel plus one bias per output
    channel, whether the Keras layer has one or not (the runtime's kernels always add a bias; BatchNorm folds into
    it; a SeparableConv2D deploys as a depthwise and a pointwise convolution, each with its bias).
    Other layers (BatchNorm, LayerNorm, Normalization, layer scales) add no parameters.
    """
    import keras

    def out_hw(layer):
        s = layer.output.shape
        return int(np.prod([d for d in s[1:-1]])) if len(s) > 2 else 1

    macs = params = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Layer) and type(layer).__name__ in ("Functional", "Sequential"):
            m, p = keras_counts(layer)
            macs, params = macs + m, params + p
            continue
        cls = type(layer).__name__
        if cls == "SeparableConv2D":
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1])
            cout = layer.filters
            macs += (kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * cout) * out_hw(layer)
            params += kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * cout
            params += cin * layer.depth_multiplier + cout
        elif cls == "DepthwiseConv2D":
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1])
            cout = cin * layer.depth_multiplier
            macs += kh * kw * cout * out_hw(layer)
            params += kh * kw * cout + cout
        elif cls == "Conv2D":
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1])
            cout = layer.filters
            k = kh * kw * cin // layer.groups * cout
            macs += k * out_hw(layer)
            params += k + cout
        elif cls == "Dense":
            cin, cout = int(layer.input.shape[-1]), layer.units
            macs += cin * cout * out_hw(layer)
            params += cin * cout + cout
    return macs, params


def _logits(model):
    """The same model with its final softmax removed (random-weight softmax is flat; logits vary)."""
    import keras

    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        last.activation = keras.activations.linear
    return model


def _ready(model, preprocess: str):
    """BatchNorm statistics from real photos (preprocessed as the model expects), logits out."""
    from edgecv.builders.batchnorm import recalibrate_batchnorm
    from edgecv.conversion.calibration import sample_images
    from edgecv.conversion.preprocess import parse

    h, w, c = model.input_shape[1:]
    px = sample_images(32, (h, w), seed=11)
    if c == 1:
        px = px @ np.array([0.299, 0.587, 0.114], np.float32)
        px = px[..., None]
    elif c != 3:  # no photos with these channels: noise pixels
        px = np.random.default_rng(11).uniform(0, 255, (32, h, w, c)).astype(np.float32)
    # Trained-looking biases: all-zero biases (Keras' initial value) are dropped by the int8 converter.
    rng = np.random.default_rng(2)
    for layer in model.layers:
        bias = getattr(layer, "bias", None)
        if bias is not None and getattr(layer, "use_bias", False):
            bias.assign(rng.normal(0.0, 0.05, tuple(bias.shape)).astype(np.float32))
    recalibrate_batchnorm(model, parse(preprocess).for_channels(c).apply(px))
    return _logits(model)


def _hand_cnn(name: str, shape: tuple[int, int, int], classes: int, seed: int, *, stem: int, stem_padding: str,
              stem_activation: str, depthwise_bias: bool, rescaling: bool = False):
    """A hand-made non-square CNN: [Rescaling to -1..1], a strided bias-free conv + BN + ``stem_activation``,
    depthwise + BN + ReLU, bias-free 1x1 conv + BN + ReLU, global average pooling, dense."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp) if rescaling else inp
    x = keras.layers.Conv2D(stem, 3, strides=2, padding=stem_padding, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x) if stem_activation == "relu6" else keras.layers.Activation(stem_activation)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=depthwise_bias)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 1, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes)(x), name=name)


def _gray_cnn():
    """1 channel, non-square, a depthwise conv with its bias."""
    return _hand_cnn("gray_cnn_48x80", (48, 80, 1), 6, seed=3, stem=8, stem_padding="same", stem_activation="relu6",
                     depthwise_bias=True)


def _rescaling_cnn():
    """3 channels, non-square, normalizes its own input (a Rescaling layer), hard-swish stem."""
    return _hand_cnn("rescaling_cnn_40x56", (40, 56, 3), 7, seed=4, stem=12, stem_padding="valid",
                     stem_activation="hard_swish", depthwise_bias=False, rescaling=True)


def _separable_cnn():
    """SeparableConv2D (Xception, NASNet): its depthwise half has no bias in Keras."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(12, 3, strides=2)(inp)
    x = keras.layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(5)(x), name="separable_cnn")


def _app(name: str, shape, **kw):
    import keras

    keras.utils.set_random_seed(0)
    return getattr(keras.applications, name)(weights=None, input_shape=shape, classes=10, **kw)


# name -> (builder, --preprocess to pass (None: the default must be right), the default expected)
CHEAP = {
    "gray_cnn": (_gray_cnn, "tf", "default"),
    "rescaling_cnn": (_rescaling_cnn, None, "detected"),
}
CORPUS = {
    "MobileNetV3Small": (lambda: _app("MobileNetV3Small", (96, 96, 3)), None, "detected"),
    "MobileNetV3Large": (lambda: _app("MobileNetV3Large", (96, 96, 3)), None, "detected"),
    "EfficientNetV2B0": (lambda: _app("EfficientNetV2B0", (64, 64, 3)), None, "detected"),
    "ResNet50": (lambda: _app("ResNet50", (64, 64, 3)), "caffe", "default"),
    "NASNetMobile": (lambda: _app("NASNetMobile", (64, 64, 3)), "tf", "default"),
    "ConvNeXtTiny": (lambda: _app("ConvNeXtTiny", (64, 64, 3)), None, "detected"),
    "Xception": (lambda: _app("Xception", (72, 72, 3)), "tf", "default"),
    "DenseNet121": (lambda: _app("DenseNet121", (64, 64, 3)), "torch", "default"),
}


def _through_everything(name, build, preprocess, default_source, tmp_path, calib_dir):
    """Every precision and format: written and verified, or refused in one line naming the op and option."""
    from edgecv.conversion.api import quantize
    from edgecv.profiling.static import analyze_in_process

    model = build()
    pre_name = preprocess or ("none" if default_source == "detected" else "tf")
    model = _ready(model, pre_name)
    macs, params = keras_counts(model)
    assert macs > 0 and params > 0
    results, off = {}, []
    for fmt, precision in PRECISIONS:
        try:
            r = quantize(model, precision, format=fmt, calib=calib_dir, samples=24, verify_samples=8,
                         output=tmp_path / name, preprocess=preprocess)
        except EdgecvError as exc:
            msg = str(exc)
            assert "\n" not in msg and ("--allow-float-fallback" in msg or "cannot prepare" in msg), msg
            results[(fmt, precision)] = msg
            continue
        assert Path(r.path).stat().st_size > 0 and Path(r.sidecar).exists()
        v = r.verification
        assert v is not None and v.samples == 8 and v.passed
        assert not any("untrained" in w for w in r.warnings), r.warnings  # outputs vary: not vacuous
        assert r.preprocessing["source"] == ("--preprocess" if preprocess else default_source)
        assert r.preprocessing["channels"] == model.input_shape[-1]
        # Float conversions must match Keras closely. Quantized ones of random-weight networks are recorded,
        # not gated: their SQNR says little about a trained model (measured here: -1 to 40 dB).
        floor = {"float32": 60.0, "float16": 20.0}.get(precision)
        assert floor is None or v.sqnr_db > floor, (fmt, precision, v.sqnr_db)
        assert np.isfinite(v.sqnr_db)
        sa = analyze_in_process(r.path)
        results[(fmt, precision)] = (v.sqnr_db, sa.macs, sa.params)
        if abs(sa.macs - macs) > 0.01 * macs or abs(sa.params - params) > 0.01 * params:
            off.append(f"{fmt} {precision}: MACs {sa.macs:,} params {sa.params:,}")
    assert not off, f"{name}: Keras walk MACs {macs:,} params {params:,}; " + "; ".join(off)
    return results


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return _photos_folder(tmp_path_factory.mktemp("photos") / "imgs", 40)


@pytest.mark.parametrize("name", list(CHEAP))
def test_hand_made_models_through_every_precision_and_format(name, tmp_path, calib_dir):
    build, preprocess, default_source = CHEAP[name]
    res = _through_everything(name, build, preprocess, default_source, tmp_path, calib_dir)
    refused = {k: v for k, v in res.items() if not isinstance(v, tuple)}
    if name == "rescaling_cnn":  # TFLite has no int16x8 HARD_SWISH kernel: refused, naming the op and the option
        assert list(refused) == [("tflite", "int16x8")], res
        assert "HARD_SWISH" in refused[("tflite", "int16x8")]
    else:
        assert not refused, res


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CORPUS))
def test_keras_applications_corpus(name, tmp_path, calib_dir):
    build, preprocess, default_source = CORPUS[name]
    res = _through_everything(name, build, preprocess, default_source, tmp_path, calib_dir)
    assert isinstance(res[("tflite", "float32")], tuple) and isinstance(res[("onnx", "float32")], tuple)


def test_several_inputs_or_outputs_are_refused_in_one_line(tmp_path):
    import keras

    from edgecv.conversion.api import quantize

    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two_in = keras.Model([a, b], keras.layers.Add()([a, b]))
    x = keras.layers.Conv2D(2, 1)(a)
    two_out = keras.Model(a, [x, keras.layers.GlobalAveragePooling2D()(x)])
    v = keras.Input((10,))
    vector = keras.Model(v, keras.layers.Dense(2)(v))
    for m, part in [(two_in, "2 inputs"), (two_out, "2 outputs"), (vector, "(None, 10)")]:
        with pytest.raises(EdgecvError) as ei:
            quantize(m, "float32", output=tmp_path)
        msg = str(ei.value)
        assert msg.startswith("MODEL") and part in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_separable_conv_parameters_agree_in_tflite_and_onnx(tmp_path):
    from edgecv.conversion.api import quantize
    from edgecv.profiling.static import analyze_in_process

    model = _ready(_separable_cnn(), "tf")
    _, params = keras_counts(model)
    got = {fmt: analyze_in_process(quantize(model, "float32", format=fmt, output=tmp_path, preprocess="tf",
                                            verify=False).path).params for fmt in ("tflite", "onnx")}
    assert got == {"tflite": params, "onnx": params}


def test_grouped_convolution_and_gelu_export_to_onnx(tmp_path):
    """Conv2D(groups>1) (ConvNeXt's depthwise layers) runs in an XLA function in Keras' TensorFlow backend,
    and exact GELU becomes TensorFlow's Erfc: the ONNX file must hold a grouped Conv and Erf, ops ONNX has."""
    import keras
    import onnx

    from edgecv.conversion.api import quantize

    keras.utils.set_random_seed(6)
    inp = keras.Input((24, 20, 8))
    x = keras.layers.Conv2D(8, 3, groups=8, padding="same")(inp)
    x = keras.layers.Conv2D(16, 3, groups=2)(x)
    x = keras.layers.Activation("gelu")(x)  # exact GELU: TensorFlow's Erfc, which ONNX lacks
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = _ready(keras.Model(inp, out, name="grouped"), "none")
    r = quantize(model, "float32", format="onnx", output=tmp_path, preprocess="none", calib="synthetic",
                 verify_samples=4)
    assert r.verification.sqnr_db > 60
    graph = onnx.load(r.path).graph
    groups = sorted(a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert groups == [2, 8]
    assert "Erf" in {n.op_type for n in graph.node} and "Erfc" not in {n.op_type for n in graph.node}
