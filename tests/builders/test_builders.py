"""Builders against independent references: keras.applications and the papers' tables."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from conftest import REPO, photos, recalibrate_bn

keras = pytest.importorskip("keras")
A = keras.applications

from edgecv.builders.cost import model_cost  # noqa: E402
from edgecv.builders.registry import create_model, get_config, list_models  # noqa: E402

MOBILENET_ALPHAS = [0.25, 0.5, 0.75, 1.0]
MOBILENET_V2_ALPHAS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]
EFFNETS = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"]


def keras_reference(name: str):
    """The keras.applications twin of a registry name (weights=None)."""
    cfg = get_config(name)
    if cfg.family == "mobilenet_v1":
        return A.MobileNet(input_shape=cfg.input_shape, alpha=cfg.width, weights=None)
    if cfg.family == "mobilenet_v2":
        return A.MobileNetV2(input_shape=cfg.input_shape, alpha=cfg.width, weights=None)
    return getattr(A, f"EfficientNet{cfg.variant.upper()}")(weights=None)


def weight_layout(model):
    """(layer name, weight shapes) of every layer with weights. keras.applications leaves its Normalization
    layer auto-named, so its name depends on how many were made before ("normalization_3")."""
    import re

    return [(re.sub(r"^normalization_\d+$", "normalization", layer.name), [tuple(w.shape) for w in layer.weights])
            for layer in model.layers if layer.weights]


CASES = ([f"mobilenet_v1_{a:.2f}_224" for a in MOBILENET_ALPHAS]
         + [f"mobilenet_v2_{a:.2f}_224" for a in MOBILENET_V2_ALPHAS]
         + [pytest.param(f"efficientnet_{v}", marks=pytest.mark.slow) if v in ("b5", "b6", "b7")
            else f"efficientnet_{v}" for v in EFFNETS])


@pytest.mark.parametrize("name", CASES)
def test_params_and_layout_equal_keras_applications(name):
    ours, ref = create_model(name), keras_reference(name)
    assert ours.count_params() == ref.count_params()
    assert weight_layout(ours) == weight_layout(ref)
    del ours, ref
    keras.backend.clear_session()


def paper_rows(family):
    with open(os.path.join(REPO, "models", "paper_figures.csv")) as fh:
        return [r for r in csv.DictReader(fh) if r["family"] == family]


def _mobilenet_rows():
    for r in paper_rows("mobilenet_v1") + paper_rows("mobilenet_v2"):
        if r["family"] == "mobilenet_v2" and r["variant"] == "0.35_96":
            # The slim README's 11M is inconsistent with its own 59M at 224 px: spatial scaling of that
            # gives (59 - 1.28) * (96/224)^2 + 1.28 = 11.9M (the 1.28M classifier does not scale).
            yield pytest.param(r, marks=pytest.mark.xfail(strict=True, reason="slim README rounds 11.9M to 11M"))
        else:
            yield r


@pytest.mark.parametrize("row", list(_mobilenet_rows()), ids=lambda r: f"{r['family']}_{r['variant']}")
def test_mobilenet_macs_match_paper_within_2_percent(row):
    name = f"{row['family']}_{float(row['width']):.2f}_{int(row['resolution'])}"
    macs = model_cost(create_model(name)).macs / 1e6
    assert abs(macs - float(row["macs_millions"])) / float(row["macs_millions"]) <= 0.02, macs


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.slow) if r["variant"] in ("b5", "b6", "b7")
                                 else r for r in paper_rows("efficientnet")], ids=lambda r: r["variant"])
def test_efficientnet_macs_match_paper_within_5_percent(row):
    macs = model_cost(create_model(f"efficientnet_{row['variant']}")).macs / 1e6
    paper = float(row["macs_millions"])
    assert abs(macs - paper) / paper <= 0.05, macs


def test_mobilenet_v1_macs_hand_count():
    """MobileNetV1 1.0-224 by hand from the paper's Table 1 (568.7M MACs, 4.22M conv/fc weights)."""
    layers = [(3, 3, 3, 32, 112)]  # (k, k, cin, cout, hout) dense layers; depthwise below
    dw = []
    cin, hw = 32, 112
    for cout, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
            (1024, 2), (1024, 1)]:
        hw //= stride
        dw.append(9 * cin * hw * hw)
        layers.append((1, 1, cin, cout, hw))
        cin = cout
    macs = sum(k1 * k2 * ci * co * h * h for k1, k2, ci, co, h in layers) + sum(dw) + 1024 * 1000
    cost = model_cost(create_model("mobilenet_v1_1.00_224"))
    assert cost.macs == macs


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2", "lite3", "lite4"])
def test_efficientnet_lite_structure(variant):
    """Published Lite structure: stem 32 and head 1280 fixed, first/last stage repeats unscaled, no SE, ReLU6."""
    model = create_model(f"efficientnet_{variant}")
    names = [layer.name for layer in model.layers]
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("top_conv").filters == 1280
    assert not any("se_" in n for n in names)
    acts = {type(layer).__name__ for layer in model.layers if "activation" in layer.name}
    assert acts == {"ReLU"} and all(layer.max_value == 6.0 for layer in model.layers
                                     if isinstance(layer, keras.layers.ReLU))
    blocks = {n.split("_")[0] for n in names if n.startswith("block") and n.endswith("project_conv")}
    per_stage = {s: sum(1 for b in blocks if b[5] == str(s)) for s in range(1, 8)}
    cfg = get_config(f"efficientnet_{variant}")
    import math
    base = [1, 2, 2, 3, 3, 4, 1]
    expected = {s: (base[s - 1] if s in (1, 7) else math.ceil(cfg.depth * base[s - 1])) for s in range(1, 8)}
    assert per_stage == expected


# Published parameter counts of EfficientNet-Lite (tensorflow/tpu efficientnet/lite/README.md), millions.
LITE_PARAMS_M = {"lite0": 4.7, "lite1": 5.4, "lite2": 6.1, "lite3": 8.2, "lite4": 13.0}


@pytest.mark.parametrize("variant", sorted(LITE_PARAMS_M))
def test_efficientnet_lite_params_match_published(variant):
    params = model_cost(create_model(f"efficientnet_{variant}")).params / 1e6
    assert abs(params - LITE_PARAMS_M[variant]) / LITE_PARAMS_M[variant] <= 0.03, params


@pytest.mark.parametrize("name,ref", [
    ("mobilenet_v1_0.50_224", lambda: A.MobileNet(alpha=0.5, weights=None, classifier_activation=None)),
    ("mobilenet_v2_1.00_224", lambda: A.MobileNetV2(alpha=1.0, weights=None, classifier_activation=None)),
    ("efficientnet_b0", lambda: A.EfficientNetB0(weights=None, classifier_activation=None)),
])
def test_keras_applications_weights_load_by_name_and_give_same_outputs(tmp_path, name, ref):
    x_raw = photos(16, 224, seed=1)
    reference = ref()
    cfg = get_config(name, classifier_activation=None)
    pre = cfg.spec.preprocessing
    x = pre.apply(x_raw)
    if pre.in_model:  # EfficientNet: give its Normalization layer real statistics, as ImageNet weights do
        norm = reference.get_layer([layer.name for layer in reference.layers if "normalization" in layer.name][0])
        norm.set_weights([np.array([123.7, 116.3, 103.5]) / 255, (np.array([58.4, 57.1, 57.4]) / 255) ** 2,
                          np.array(0)])
        norm.finalize_state()  # Normalization reads its weights only when finalized (as load_weights does)
    recalibrate_bn(reference, x)
    path = tmp_path / "ref.weights.h5"
    reference.save_weights(path)
    ours = create_model(cfg, weights=str(path))
    want = reference.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert want.std() > 1e-2, "reference outputs are degenerate; the comparison would prove nothing"
    assert np.max(np.abs(got - want)) < 1e-4
    # and the classes agree, on real photos
    assert (got.argmax(1) == want.argmax(1)).all()


def test_legacy_h5_weights_load_by_name(tmp_path):
    """keras.applications' ImageNet files are legacy HDF5 (layer_names/weight_names), possibly in another order."""
    h5py = pytest.importorskip("h5py")
    ref = A.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights=None)
    rng = np.random.default_rng(0)
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        layers = [layer for layer in ref.layers if layer.weights][::-1]  # reversed: must load by name
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        values = {}
        for layer in layers:
            g = f.create_group(layer.name)
            wn = [f"{layer.name}/{w.name}:0".encode() for w in layer.weights]
            g.attrs["weight_names"] = wn
            for n, w in zip(wn, layer.weights):
                v = rng.normal(size=w.shape).astype("float32")
                if "variance" in n.decode():
                    v = np.abs(v) + 0.5
                g.create_dataset(n.decode(), data=v)
                values.setdefault(layer.name, []).append(v)
    ours = create_model("mobilenet_v1_0.25_128", weights=str(path))
    for name, arrays in values.items():
        for got, want in zip(ours.get_layer(name).get_weights(), arrays):
            np.testing.assert_array_equal(got, want)


def test_weights_with_wrong_shapes_are_refused(tmp_path, recwarn):
    """One error, and not Keras' warning per unmatched layer before it (110 lines of stderr on the CLI)."""
    from edgecv.errors import EdgecvError

    path = tmp_path / "w.weights.h5"
    create_model("mobilenet_v1_0.25_128").save_weights(path)
    recwarn.clear()
    with pytest.raises(EdgecvError, match="does not fit"):
        create_model("mobilenet_v1_0.50_128", weights=str(path))
    assert [str(w.message) for w in recwarn if "Skipping" in str(w.message)] == []


def test_registry_names_round_trip_and_suggest():
    from edgecv.errors import EdgecvError

    names = list_models()
    assert {"mobilenet_v1_0.50_224", "mobilenet_v2_1.00_224", "efficientnet_b3", "efficientnet_lite2"} <= set(names)
    assert all(get_config(n).name == n for n in names)
    assert list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(8)]
    with pytest.raises(EdgecvError, match="Did you mean: efficientnet_b3"):
        get_config("efficientnet_b33")


@pytest.mark.parametrize("alpha", [0.1, 0.33, 1.7, 2.5])
def test_any_alpha_builds_and_matches_keras(alpha):
    ours = create_model(f"mobilenet_v1_{alpha:.2f}_160")
    ref = A.MobileNet(alpha=alpha, input_shape=(160, 160, 3), weights=None)
    assert weight_layout(ours) == weight_layout(ref)
    ours2 = create_model(f"mobilenet_v2_{alpha:.2f}_96")
    ref2 = A.MobileNetV2(alpha=alpha, input_shape=(96, 96, 3), weights=None)
    assert weight_layout(ours2) == weight_layout(ref2)


def test_options_depth_multiplier_no_top_pooling_channels():
    cfg = get_config("mobilenet_v1_0.50_128", depth_multiplier=2, include_top=False, pooling="avg",
                     input_channels=1)
    ours = create_model(cfg)
    ref = A.MobileNet(alpha=0.5, depth_multiplier=2, input_shape=(128, 128, 1), include_top=False, pooling="avg",
                      weights=None)
    assert weight_layout(ours) == weight_layout(ref)
    assert ours.output.shape == ref.output.shape == (None, 512)
    assert cfg.name == "mobilenet_v1_0.50_128_dm2_ch1_notop"
    eff = create_model("efficientnet_b0", classes=10)
    assert eff.output.shape == (None, 10)
    assert weight_layout(eff) == weight_layout(A.EfficientNetB0(weights=None, classes=10))


def test_custom_efficientnet_point_scales_like_keras():
    from keras.src.applications.efficientnet import EfficientNet

    ours = create_model("efficientnet_w1.15_d1.30_r256")
    ref = EfficientNet(1.15, 1.3, 256, input_shape=(256, 256, 3), weights=None)
    assert weight_layout(ours) == weight_layout(ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_costs(name):
    cost = model_cost(create_model(name))
    assert cost.macs > 0 and 0 < cost.params_deployed < cost.params
    keras.backend.clear_session()


def test_warnings_caught_while_loading_weights_reach_the_caller_under_their_module(tmp_path, monkeypatch):
    """Keras' warnings during a load that succeeds are warned again under Keras' own module: a filter keyed on the
    module silences them, and without one they arrive with their category, file and line."""
    import sys
    import warnings

    (tmp_path / "fake_saving_lib.py").write_text(
        "import warnings\ndef load(model, path):\n    warnings.warn('Skipping variable loading', UserWarning)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_saving_lib

    model = create_model("mobilenet_v1_0.25_128")
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    monkeypatch.setattr(type(model), "load_weights", lambda self, p: fake_saving_lib.load(self, p))
    from edgecv.builders.keras_builder import load_weights_by_name

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_weights_by_name(model, path)
    assert [(str(w.message), w.category, w.filename, w.lineno) for w in seen] == [
        ("Skipping variable loading", UserWarning, fake_saving_lib.__file__, 3)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=UserWarning, module="fake_saving_lib")
        load_weights_by_name(model, path)
    assert seen == []
    sys.modules.pop("fake_saving_lib", None)
