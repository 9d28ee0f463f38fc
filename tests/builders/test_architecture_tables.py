"""Architecture tables (models/*.toml): one name grammar both ways, validated fields, a family from a TOML alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecv.builders.arch import families, load_family_file
from edgecv.builders.names import NameTemplate, TemplateError
from edgecv.builders.registry import ModelConfig, config_for, get_config, list_models
from edgecv.errors import EdgecvError
from edgecv.fileio import data_dir

# Names as the papers and keras.applications write the models (an independent reference for the grammar).
EXPECTED = {
    "mobilenet_v1_0.50_224": ("mobilenet", dict(alpha=0.5, resolution=224)),
    "mobilenet_v1_0.25_128_dm2_ch1_notop": ("mobilenet", dict(alpha=0.25, resolution=128, depth_multiplier=2,
                                                              input_channels=1, include_top=False)),
    "mobilenet_v2_1.40_224": ("mobilenet_v2", dict(alpha=1.4)),
    "mobilenet_v2_0.35_96_c10": ("mobilenet_v2", dict(alpha=0.35, resolution=96, classes=10)),
    "efficientnet_b3": ("efficientnet", dict(variant="b3")),
    "efficientnet_b3_r320": ("efficientnet", dict(variant="b3", resolution=320)),
    "efficientnet_w1.15_d1.30_r256": ("efficientnet", dict(width=1.15, depth=1.3, resolution=256)),
    "efficientnet_lite2": ("efficientnet_lite", dict(variant="lite2")),
    "efficientnet_lite0_ch1_c5": ("efficientnet_lite", dict(variant="lite0", input_channels=1, classes=5)),
    "efficientnet_lite_w1.10_d1.20_r260": ("efficientnet_lite", dict(width=1.1, depth=1.2, resolution=260)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_names_written_and_read_as_published(name):
    family, knobs = EXPECTED[name]
    cfg = config_for(family, **knobs)
    assert cfg.name == name
    assert get_config(name) == cfg


def test_every_registered_name_round_trips():
    names = list_models()
    assert len(names) == len(set(names)) == 4 * 4 + 6 * 5 + 8 + 5  # papers' grids: V1, V2, B0-B7, Lite0-4
    for n in names:
        cfg = get_config(n)
        assert cfg.name == n and get_config(cfg.name) == cfg


def _custom_configs():
    for fam in ("mobilenet", "mobilenet_v2"):
        for alpha in (0.1, 0.33, 0.5, 0.85, 1.25, 2.5):
            for res in (32, 96, 160, 512):
                for head in ({}, {"classes": 7}, {"include_top": False}, {"input_channels": 1}):
                    yield fam, dict(alpha=alpha, resolution=res, **head)
    yield "mobilenet", dict(alpha=0.75, resolution=192, depth_multiplier=3, input_channels=4, classes=2)
    for fam, variants in (("efficientnet", ("b0", "b4", "b7")), ("efficientnet_lite", ("lite0", "lite3"))):
        for v in variants:
            for extra in ({}, {"resolution": 64}, {"classes": 10}, {"include_top": False}, {"input_channels": 1}):
                yield fam, dict(variant=v, **extra)
        for width, depth, res in ((1.15, 1.3, 256), (0.5, 0.75, 33), (3.0, 4.1, 999)):
            yield fam, dict(width=width, depth=depth, resolution=res)


def test_custom_configurations_round_trip():
    seen = set()
    for family, knobs in _custom_configs():
        cfg = config_for(family, **knobs)
        assert get_config(cfg.name) == cfg, (family, knobs, cfg.name)
        seen.add(cfg.name)
    assert len(seen) == len(list(_custom_configs()))  # no two configurations share a name


def test_template_compiles_both_ways():
    t = NameTemplate.compile("net_{alpha:.2f}_{resolution}[_ch{input_channels}][_{notop}|_c{classes}]")
    d = {"input_channels": 3, "classes": 1000, "notop": False}
    v = {"alpha": 0.5, "resolution": 128, "input_channels": 3, "classes": 10, "notop": False}
    assert t.format(v, d) == "net_0.50_128_c10"
    assert t.format({**v, "notop": True}, d) == "net_0.50_128_notop"  # the first non-default alternative
    assert t.parse("net_0.50_128_c10") == {"alpha": 0.5, "resolution": 128, "classes": 10}
    assert t.parse("net_0.50_128_ch1_notop") == {"alpha": 0.5, "resolution": 128, "input_channels": 1, "notop": True}
    assert t.parse("net_0.50_128_c10_ch1") is None and t.parse("net_x_128") is None
    v = NameTemplate.compile("e_{variant}[_r{resolution}]")
    assert v.parse("e_b10", ("b1", "b10")) == {"variant": "b10"} and v.parse("e_b2", ("b1",)) is None


@pytest.mark.parametrize("text,needle", [
    ("net_{beta}", "unknown field 'beta'"),
    ("net_{alpha:.2f", "unclosed '{'"),
    ("net_[_c{classes}", "unclosed '['"),
    ("net_[_c{classes}[_ch{input_channels}]]", "do not nest"),
    ("net_{alpha:e}", "not read back"),
    ("net_{alpha:.2f}_{alpha:.1f}", "more than once"),
    ("net_{alpha}_{width}", "same value"),
    ("net_[_v1]", "needs a field"),
    ("net_{variant:.2f}", "no format spec"),
])
def test_malformed_templates_are_refused(text, needle):
    with pytest.raises(TemplateError, match=re.escape(needle)):
        NameTemplate.compile(text)


MNV2 = data_dir("models") / "mobilenet_v2.toml"


def _table(tmp_path: Path, *edits: tuple[str, str], name: str = "mnv2x.toml") -> Path:
    text = MNV2.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


NEW_FAMILY = (('id = "mobilenet_v2"', 'id = "mnv2x"'), ('cli = "mobilenet_v2"', 'cli = "mnv2x"'),
              ('point = "mobilenet_v2_{alpha:.2f}_{resolution}"', 'point = "mnv2x_{alpha:.2f}_{resolution}"'))


@pytest.mark.parametrize("edit,needle", [
    (('point = "mobilenet_v2_{alpha:.2f}_{resolution}"', 'point = "mobilenet_v2_{alpha:.2f}"'),
     "family.names.point: needs {resolution}"),
    (('point = "mobilenet_v2_{alpha:.2f}_{resolution}"', 'point = "mobilenet_v2_{variant}_{resolution}"'),
     "family.names.point: field(s) ['variant'] do not belong here"),
    (('suffix = "[_ch{input_channels}]', 'suffix = "_ch{input_channels}['), "family.names.suffix"),
    (('[family.names]', '[family.names]\nnamed = "x_{variant}"'), "family.names.named: needs published_variants"),
    (('[family.names]', '[family.titles]'), "family.names: missing table"),
    (('inverted_residual = "truncate_divisible8"', 'inverted_residual = "floor"'),
     "family.block_width_rounding.inverted_residual: expected one of"),
    (('inverted_residual = "truncate_divisible8"', 'resblock = "divisible8"'), "family.block_width_rounding.resblock"),
    (('width_rounding = "divisible8"', 'width_rounding = "nearest"'), "family.width_rounding"),
    (('[family.names]', '[family.initializers]\nconv = { scale = 2.0, mode = "fan_up", '
                        'distribution = "uniform" }\n\n[family.names]'), "family.initializers.conv.mode"),
    (('[family.names]', '[family.initializers]\nconv = { scale = -1.0, mode = "fan_in", '
                        'distribution = "uniform" }\n\n[family.names]'), "family.initializers.conv.scale"),
    (('[family.names]', '[family.initializers]\nbias = { scale = 1.0, mode = "fan_in", '
                        'distribution = "uniform" }\n\n[family.names]'), "family.initializers: unknown field(s) ['bias']"),
    (('"0.35" = { alpha = 0.35 }', '"0.35" = { width = 0.35 }'), "variants.0.35: missing field 'alpha'"),
    (('"0.35" = { alpha = 0.35 }', '"0.35" = { alpha = -0.35 }'), "variants.0.35.alpha: expected a number > 0"),
    (('id = "mobilenet_v2"', 'id = "Mobile Net"'), "family.id: expected a lower-case identifier"),
])
def test_bad_tables_fail_in_one_line_naming_file_and_field(tmp_path, edit, needle):
    path = _table(tmp_path, edit, name="bad.toml")
    with pytest.raises(EdgecvError) as exc:
        load_family_file(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and needle in msg, msg


def test_a_family_id_defined_twice_is_refused(tmp_path, monkeypatch):
    _table(tmp_path, NEW_FAMILY[1], NEW_FAMILY[2])  # id mobilenet_v2 again, under another CLI name
    monkeypatch.setenv("EDGECV_MODELS_PATH", str(tmp_path))
    with pytest.raises(EdgecvError, match=r"mnv2x\.toml: family\.id: 'mobilenet_v2' is already defined in .*mobilenet_v2\.toml"):
        families()
    monkeypatch.setenv("EDGECV_MODELS_PATH", str(tmp_path / "missing"))
    with pytest.raises(EdgecvError, match="EDGECV_MODELS_PATH: not a folder"):
        families()


def test_a_new_family_is_a_toml_file(tmp_path, monkeypatch):
    """A copy of mobilenet_v2.toml under another id, in a folder of EDGECV_MODELS_PATH: registered, named,
    built and costed like keras.applications.MobileNetV2, through the registry and the CLI, with no code."""
    keras = pytest.importorskip("keras")
    _table(tmp_path, *NEW_FAMILY)
    assert "mnv2x" not in families()
    monkeypatch.setenv("EDGECV_MODELS_PATH", str(tmp_path))
    assert families()["mnv2x"].source == str(tmp_path / "mnv2x.toml")
    names = list_models("mnv2x_*")
    assert len(names) == 6 * 5 and "mnv2x_0.35_96" in names
    cfg = get_config("mnv2x_0.35_96_c10")
    assert (cfg.family, cfg.width, cfg.resolution, cfg.classes, cfg.name) == ("mnv2x", 0.35, 96, 10,
                                                                                "mnv2x_0.35_96_c10")
    from edgecv.builders.registry import create_model

    ours = create_model(cfg)
    ref = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None)
    assert ours.name == "mnv2x_0.35_96_c10"
    assert ours.count_params() == ref.count_params()
    assert [(la.name, [tuple(w.shape) for w in la.weights]) for la in ours.layers if la.weights] == \
        [(la.name, [tuple(w.shape) for w in la.weights]) for la in ref.layers if la.weights]

    out = tmp_path / "out"
    code = "import sys; from edgecv.cli import main; sys.argv[0] = 'edgecv'; main()"
    p = subprocess.run([sys.executable, "-c", code, "build", "mnv2x", "--alpha", "0.5", "--resolution", "128",
                        "-o", str(out), "--json"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "EDGECV_MODELS_PATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    ref = keras.applications.MobileNetV2(alpha=0.5, input_shape=(128, 128, 3), weights=None)
    assert res["name"] == "mnv2x_0.50_128" and res["params"] == ref.count_params()
    assert Path(res["path"]) == out / "mnv2x_0.50_128.keras" and Path(res["path"]).is_file()


def test_help_lists_the_families_of_the_tables(tmp_path, monkeypatch):
    """`edgecv build --help` and `edgecv sweep --help` list the families (and named variants) of the tables
    read when the help is shown: two TOML files in EDGECV_MODELS_PATH appear with no code."""
    from click.testing import CliRunner

    from edgecv.cli import cli

    _table(tmp_path, *NEW_FAMILY)
    lite = (data_dir("models") / "efficientnet_lite.toml").read_text()
    for old, new in (('id = "efficientnet_lite"', 'id = "elx"'), ('cli = "efficientnet_lite"', 'cli = "elx"'),
                     ('named = "efficientnet_{variant}', 'named = "elx_{variant}'),
                     ('point = "efficientnet_lite_w', 'point = "elx_w'), ('"lite4"]', '"lite4", "lite9"]'),
                     ('lite0 = {', 'lite9 = { width = 2.0, depth = 2.0, resolution = 300 }\nlite0 = {')):
        assert old in lite, old
        lite = lite.replace(old, new, 1)
    (tmp_path / "elx.toml").write_text(lite)

    def help_of(*args):
        res = CliRunner().invoke(cli, [*args, "--help"], terminal_width=400)
        assert res.exit_code == 0, res.output
        return " ".join(res.output.split())

    shipped = "efficientnet, efficientnet_lite, mobilenet or mobilenet_v2"
    monkeypatch.delenv("EDGECV_MODELS_PATH", raising=False)
    assert f"FAMILY is {shipped}." in help_of("build")
    assert "Named variant (efficientnet: b0..b7; efficientnet_lite: lite0..lite4)." in help_of("build")
    assert f"--family TEXT {shipped}. [default: mobilenet]" in help_of("sweep")
    monkeypatch.setenv("EDGECV_MODELS_PATH", str(tmp_path))
    added = "efficientnet, efficientnet_lite, mobilenet, mobilenet_v2, elx or mnv2x"
    assert f"FAMILY is {added}." in help_of("build")
    assert "efficientnet_lite: lite0..lite4; elx: lite0..lite9)." in help_of("build")
    assert f"--family TEXT {added}. [default: mobilenet]" in help_of("sweep")


@pytest.mark.parametrize("name,reference", [("efficientnet_b0", "EfficientNetB0"),
                                            ("mobilenet_v2_1.00_224", "MobileNetV2")])
def test_initializers_are_the_reference_ones(name, reference):
    """[family.initializers] (EfficientNet) or Keras' defaults (none declared) give keras.applications'
    kernel initializers, layer by layer."""
    keras = pytest.importorskip("keras")
    from edgecv.builders.registry import create_model

    def inits(model):
        out = {}
        for la in model.layers:
            c = la.get_config()
            for key in ("kernel_initializer", "depthwise_initializer"):
                if key in c:
                    out[re.sub(r"^normalization_\d+$", "normalization", la.name), key] = c[key]
        return out

    ours, ref = inits(create_model(name)), inits(getattr(keras.applications, reference)(weights=None))
    assert ours == ref and len(ours) > 40
    keras.backend.clear_session()


def test_values_a_family_cannot_name_are_refused():
    with pytest.raises(EdgecvError, match="--depth-multiplier: mobilenet_v2 has none. Received: 2"):
        config_for("mobilenet_v2", depth_multiplier=2)
    with pytest.raises(EdgecvError, match="--depth: mobilenet has none"):
        ModelConfig(family="mobilenet_v1", depth=1.5).validate()
