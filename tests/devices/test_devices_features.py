"""ops_from_keras and the anchor feature cache, against the Keras builder and the papers' counts."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pytest

from edgecv.devices.features import anchor_static, build_entry, cached_models, ops_from_keras

REPO = Path(__file__).resolve().parents[2]


def test_cache_covers_every_anchor_model():
    from edgecv.devices.fit import read_measurements

    need = {m.model for f in ("published_latency.csv", "spec_only_latency.csv")
            for m in read_measurements(REPO / "tests" / "data" / f)}
    assert need <= set(cached_models())


def test_cached_macs_match_the_papers():
    """paper_figures.csv (MobileNets Table 6/7, MobileNetV2 README, EfficientNet Table 2), in millions."""
    paper = REPO / "tests" / "data" / "paper_figures.csv"  # a copy of ../shared/reference's (test_devices_fit)
    names = {("mobilenet_v1", "1.0_224"): "mobilenet_v1_1.00_224", ("mobilenet_v1", "0.5_224"): "mobilenet_v1_0.50_224",
             ("mobilenet_v1", "0.25_224"): "mobilenet_v1_0.25_224", ("mobilenet_v1", "1.0_128"): "mobilenet_v1_1.00_128",
             ("mobilenet_v2", "1.0_224"): "mobilenet_v2_1.00_224", ("efficientnet", "b0"): "efficientnet_b0"}
    rows = {(r["family"], r["variant"]): float(r["macs_millions"]) for r in csv.DictReader(open(paper))}
    for key, name in names.items():
        assert anchor_static(name, "float32").macs / 1e6 == pytest.approx(rows[key], rel=0.02), name


def test_op_classes_match_the_architectures():
    """Hand counts: MobileNetV1 = stem conv + 13 depthwise-separable blocks + 1x1 classifier; MobileNetV2 =
    17 bottlenecks (17 depthwise), 10 residual adds, 1x1 expansions in 16 of them."""
    v1 = collections.Counter(o.op_class for o in anchor_static("mobilenet_v1_1.00_224", "float32").ops)
    assert (v1["conv"], v1["depthwise"], v1["pointwise"], v1["pool"]) == (1, 13, 14, 1)
    v2 = anchor_static("mobilenet_v2_1.00_224", "int8").ops
    c2 = collections.Counter(o.op_class for o in v2)
    assert (c2["conv"], c2["depthwise"], c2["fc"]) == (1, 17, 1)
    assert c2["pointwise"] == 17 + 16 + 1  # projections + expansions + final 1x1 conv
    assert sum(o.type == "ADD" for o in v2) == 10
    # int8 bytes: 1 per weight, int32 biases, 1 per activation
    fc = next(o for o in v2 if o.op_class == "fc")
    assert fc.weight_bytes == 1280 * 1000 + 4 * 1000 and fc.activation_bytes == 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v1_0.25_128", "mobilenet_v2_1.00_224", "efficientnet_b0"])
def test_cache_equals_a_fresh_keras_build(name):
    pytest.importorskip("tensorflow")
    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import create_model
    from edgecv.devices.features import _cache

    fresh = build_entry(name)
    cached = _cache()["models"][name]
    # Keras numbers unnamed layers per session (global_average_pooling2d_7): compare all but the name
    drop = fresh["columns"].index("name")
    strip = lambda rows: [r[:drop] + r[drop + 1:] for r in rows]  # noqa: E731
    assert strip(fresh["ops"]) == strip(cached["ops"])
    assert fresh["peak_activation_elems"] == cached["peak_activation_elems"]
    model = create_model(name)
    ops = ops_from_keras(model, "float32")
    cost = model_cost(model)
    assert sum(o.macs for o in ops) == cost.macs  # same MAC convention as edgecv.builders.cost
    assert sum(o.params for o in ops) == cost.params_deployed  # BatchNorm folded, biases counted
    assert all(o.weight_bytes == 4 * o.params for o in ops)


# ---- `edgecv models` answers from the cached costs --------------------------------------------------------------

SAMPLE = ["mobilenet_v1_0.25_128", "mobilenet_v2_0.35_96", "efficientnet_b0"]


def _fresh_cost(name: str) -> dict:
    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import create_model

    d = model_cost(create_model(name)).to_dict()
    d.pop("name")
    return d


@pytest.mark.parametrize("name", SAMPLE)
def test_cached_costs_equal_a_fresh_cost_pass(name):
    from edgecv.sweep.registry_features import cached_costs

    assert cached_costs()[name] == _fresh_cost(name)


@pytest.mark.slow
def test_every_cached_cost_equals_a_fresh_cost_pass():
    from edgecv.builders.registry import list_models
    from edgecv.sweep.registry_features import cached_costs

    costs = cached_costs()
    for name in list_models():
        assert costs[name] == _fresh_cost(name), name


def test_models_lists_the_cache_without_tensorflow():
    """`edgecv models --json` prints every registered model's cached cost and never imports TensorFlow."""
    import json
    import subprocess
    import sys

    code = ("import sys, json; from click.testing import CliRunner; from edgecv.cli import cli; "
            "r = CliRunner().invoke(cli, ['models', '--json']); "
            "print(json.dumps({'out': r.output, 'code': r.exit_code, 'tf': 'tensorflow' in sys.modules}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["code"] == 0 and got["tf"] is False
    from edgecv.builders.registry import list_models
    from edgecv.sweep.registry_features import cached_costs

    rows = json.loads(got["out"])
    assert [r["name"] for r in rows] == list(list_models())
    costs = cached_costs()
    for r in rows:
        c = costs[r["name"]]
        assert (r["macs"], r["params"], r["params_deployed"], r["input_shape"]) == (
            c["macs"], c["params"], c["params_deployed"], c["input_shape"])
