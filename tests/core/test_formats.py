"""The export table (``edgecv.formats``) and the validators (``edgecv.validate``): one home each, read by the
converter, the sweep, ``recommend`` and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgecv import formats
from edgecv.errors import EdgecvError


def test_table_is_consistent():
    names = {e.format for e in formats.EXPORTS}
    assert names == set(formats.FORMATS)
    assert {e.precision for e in formats.EXPORTS} == set(formats.PRECISIONS)
    assert {t for e in formats.EXPORTS for t in e.io_types} == set(formats.IO_TYPES)
    assert len({(e.format, e.precision) for e in formats.EXPORTS}) == len(formats.EXPORTS)  # no duplicate rows
    for e in formats.EXPORTS:
        assert "io" in e.options or e.io_types == ("float32",)
    assert formats.CALIBRATED == ("int8", "int16x8")


def test_every_reader_uses_the_table():
    import click

    from edgecv.cli.quantize import quantize as quantize_cmd
    from edgecv.cli.recommend import recommend as recommend_cmd
    from edgecv.conversion import api, tflite
    from edgecv.sweep import grid, recommend

    assert api.FORMATS is formats.FORMATS and api.PRECISIONS is formats.PRECISIONS
    assert tflite.CALIBRATED is formats.CALIBRATED and tflite.IO_TYPES is formats.IO_TYPES
    assert grid.PRECISIONS == formats.PRECISIONS and "int16x8" in grid.SUPPORTED["tflite"]
    assert recommend.PRECISIONS == formats.PREDICTED
    opts = {p.name: p for p in quantize_cmd.params}
    assert isinstance(opts["precision"].type, click.Choice)
    assert tuple(opts["precision"].type.choices) == formats.PRECISIONS
    assert tuple(opts["fmt"].type.choices) == tuple(formats.FORMATS)
    assert tuple(opts["io_type"].type.choices) == formats.IO_TYPES
    rec = {p.name: p for p in recommend_cmd.params}
    assert tuple(rec["precision"].type.choices) == formats.PREDICTED


@pytest.mark.parametrize("row", formats.EXPORTS, ids=lambda e: f"{e.format}-{e.precision}")
@pytest.mark.parametrize("option", ["reduce_range", "float_layers", "allow_float_fallback"])
def test_converter_accepts_exactly_the_table_options(row, option):
    """quantize() refuses an option a row does not list in one line, before loading anything (the model name
    does not exist: an accepted option gets as far as the model lookup)."""
    from edgecv.conversion.api import quantize

    kw = {"reduce_range": {"reduce_range": True}, "float_layers": {"float_layers": ("conv1",)},
          "allow_float_fallback": {"allow_float_fallback": True}}[option]
    with pytest.raises(EdgecvError) as exc:
        quantize("no_such_model_xyz", row.precision, format=row.format, calib="synthetic", verify=False, **kw)
    refused_option = option.replace("_", "-") in str(exc.value) and "no_such_model_xyz" not in str(exc.value)
    assert refused_option != (option in row.options), str(exc.value)


def test_sweep_knows_int16x8():
    from edgecv.sweep.grid import build_spec, point_key

    spec = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int16x8,float32", fmt="tflite,onnx")
    assert sorted(p.id for p in spec.points) == ["mobilenet_v1_0.25_32_float32_onnx", "mobilenet_v1_0.25_32_float32_tflite",
                                                 "mobilenet_v1_0.25_32_int16x8_tflite"]
    v = {"edgecv": "x"}
    other = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int16x8,float32", fmt="tflite,onnx",
                       calib="synthetic")
    by_id = {p.id: p for p in spec.points}
    # calibrated precisions depend on --calib, float ones do not
    p16, p32 = by_id["mobilenet_v1_0.25_32_int16x8_tflite"], by_id["mobilenet_v1_0.25_32_float32_tflite"]
    assert point_key(p16, spec, v) != point_key(p16, other, v)
    assert point_key(p32, spec, v) == point_key(p32, other, v)


@pytest.mark.slow  # one real conversion (TensorFlow in a worker)
def test_sweep_int16x8_point_converts(tmp_path):
    """An int16x8 sweep point is calibrated (on the sample photos) and its artifact has 16-bit activations,
    read back by LiteRT (not by edgecv's own reader)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgecv.sweep.api import run_sweep
    from edgecv.sweep.grid import build_spec

    spec = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int16x8", samples=4, verify_samples=2)
    res = run_sweep(spec, tmp_path / "out", report=False)
    assert res.failed == 0 and res.computed == 1
    interp = Interpreter(model_path=res.rows[0]["artifact"])
    dtypes = {d["dtype"] for d in interp.get_tensor_details()}
    assert np.int16 in dtypes and np.int8 in dtypes  # 16-bit activations, 8-bit weights


# --- validators ----------------------------------------------------------------------------------------

def test_validators_name_the_option_and_echo_the_value():
    from edgecv import validate as v

    cases = [
        (lambda: v.int_at_least("--runs", 0, 1), "--runs: expected an integer >= 1. Received: 0"),
        (lambda: v.int_at_least("runs", True, 1, keyword=True), "runs: expected an integer >= 1. Received: runs=True"),
        (lambda: v.seed("--seed", -1), "--seed: expected an integer from 0 to 4294967295. Received: -1"),
        (lambda: v.seed("--seed", 2**32), "Received: 4294967296"),
        (lambda: v.positive_float("--alpha", float("nan"), keyword="alpha"), "Received: alpha=nan"),
        (lambda: v.positive_float("--budget-ms", 0, unit="milliseconds"),
         "--budget-ms: expected a number of milliseconds > 0. Received: 0"),
        (lambda: v.non_negative_float("min_time_s", float("inf"), keyword=True), "min_time_s=inf"),
        (lambda: v.fraction("--min-top1", 1.5), "--min-top1: expected a fraction from 0 to 1. Received: 1.5"),
        (lambda: v.choice("--precision", "int9", formats.PRECISIONS), "Did you mean: int8"),
    ]
    for fn, text in cases:
        with pytest.raises(EdgecvError) as exc:
            fn()
        assert text in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert v.int_at_least("--runs", 3, 1) == 3 and v.positive_float("--x", 2) == 2.0 and v.seed("--seed", 0) == 0


@dataclass
class Inner:
    a: int
    b: float | None = None


@dataclass
class Outer:
    name: str
    inner: Inner
    items: tuple[Inner, ...] = ()
    shape: tuple[int, int] = (0, 0)
    extra: dict[str, int] | None = None


def test_record_checks():
    from edgecv.validate import conforms, record_problem

    good = {"name": "x", "inner": {"a": 1, "b": 2}, "items": [{"a": 2}], "shape": [1, 2], "extra": {"k": 1}}
    assert record_problem(good, Outer) is None
    for bad, why in [({**good, "name": 3}, "'name'"), ({k: v for k, v in good.items() if k != "inner"}, "missing"),
                     ({**good, "inner": {"a": True}}, "'inner'"), ({**good, "shape": [1, 2, 3]}, "'shape'"),
                     ({**good, "items": [{"b": 1.0}]}, "'items'"), ({**good, "extra": {"k": "v"}}, "'extra'"),
                     ([good], "expected an object")]:
        assert why in (record_problem(bad, Outer) or ""), bad
    assert conforms(1, float) and not conforms(True, int) and conforms(None, int | None)
