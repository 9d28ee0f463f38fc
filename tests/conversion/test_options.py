"""``QuantizeOptions``: the one record of quantize()'s options (no TensorFlow except the last test)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from edgecv.conversion.options import CheckedOptions, QuantizeOptions
from edgecv.errors import EdgecvError, exception_line, one_line


def test_quantize_keywords_are_the_record_fields_with_the_same_defaults():
    from edgecv.conversion.api import quantize

    params = inspect.signature(quantize).parameters
    kw = {n: p.default for n, p in params.items() if n not in ("model", "reporter", "options")}
    fields = {f.name: f.default for f in dataclasses.fields(QuantizeOptions)}
    assert kw == fields


def test_check_resolves_io_type_and_output(tmp_path):
    cases = [
        (QuantizeOptions(calib="synthetic", output=tmp_path), "int8"),
        (QuantizeOptions(calib="synthetic", io="uint8", output=tmp_path), "uint8"),
        (QuantizeOptions(precision="int16x8", calib="synthetic", output=tmp_path), "int16"),
        (QuantizeOptions(precision="int8", format="onnx", calib="synthetic", output=tmp_path), "float32"),
        (QuantizeOptions(precision="float16", output=tmp_path), "float32"),
    ]
    for opts, io_type in cases:
        assert opts.check() == CheckedOptions(io_type=io_type, folder=tmp_path, file_name=None)
    checked = QuantizeOptions(precision="float32", output=tmp_path / "m.tflite").check()
    assert (checked.folder, checked.file_name) == (tmp_path, "m.tflite")
    assert checked.artifact("net", QuantizeOptions(precision="float32")) == tmp_path / "m.tflite"
    assert CheckedOptions("float32", tmp_path, None).artifact("net", QuantizeOptions(precision="int8", format="onnx")) \
        == tmp_path / "net_int8.onnx"


def test_record_is_frozen_and_takes_a_list_of_float_layers():
    opts = QuantizeOptions(float_layers=["conv1", "conv2"])
    assert opts.float_layers == ("conv1", "conv2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.samples = 5  # type: ignore[misc]
    assert dataclasses.replace(opts, samples=5).samples == 5


@pytest.mark.parametrize("bad, needle", [
    ({"precision": "int9"}, "--precision: expected one of"),
    ({"format": "onx"}, "Did you mean: onnx?"),
    ({"samples": 0}, "--samples: expected an integer >= 1. Received: 0"),
    ({"io": "int16"}, "--io int16 applies to --precision int16x8 only"),
    ({"reduce_range": True}, "--reduce-range: applies to --format onnx --precision int8 only"),
])
def test_the_record_and_the_keywords_refuse_alike(tmp_path, bad, needle):
    from edgecv.conversion.api import quantize

    kw = {"calib": "synthetic", "output": tmp_path, **bad}
    with pytest.raises(EdgecvError) as by_keywords:
        quantize("no_such_model_xyz", **kw)
    with pytest.raises(EdgecvError) as by_record:
        quantize("no_such_model_xyz", options=QuantizeOptions(**kw))
    assert needle in str(by_keywords.value) and str(by_keywords.value) == str(by_record.value)
    assert list(tmp_path.iterdir()) == []


def test_options_and_keywords_together_is_a_type_error(tmp_path):
    from edgecv.conversion.api import quantize

    with pytest.raises(TypeError, match="not both"):
        quantize("no_such_model_xyz", options=QuantizeOptions(output=tmp_path), samples=5)
    with pytest.raises(TypeError, match="not both"):
        quantize("no_such_model_xyz", "float32", options=QuantizeOptions(output=tmp_path))


def test_one_line_and_exception_line():
    assert one_line("a\n  b\tc ") == "a b c"
    exc = RuntimeError("loc(\"conv\"):\n error: 'tfl.conv_2d' op\n is not supported")
    assert exception_line(exc) == "RuntimeError: 'tfl.conv_2d' op is not supported"
    assert exception_line(ValueError("x" * 400)) == "ValueError: " + "x" * 300


def test_quantize_with_a_record_writes_what_the_keywords_write(tmp_path):
    """The same float32 conversion through the keywords and through options= (same artifact bytes, same sidecar
    apart from timings and paths)."""
    import keras

    from edgecv.conversion.api import quantize

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x), name="tiny")
    a = quantize(model, "float32", output=tmp_path / "a.tflite", verify=False)
    b = quantize(model, options=QuantizeOptions(precision="float32", output=tmp_path / "b.tflite", verify=False))
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    drop = ("path", "sidecar", "convert_seconds", "total_seconds")
    da, db = ({k: v for k, v in r.to_dict().items() if k not in drop} for r in (a, b))
    assert da == db and da["precision"] == "float32"


def test_cli_defaults_are_the_record_defaults_in_every_command():
    """``edgecv quantize`` and every command sharing its options (sweep, choose, ...) default to QuantizeOptions'
    values: the CLI does not import the record (it stays light), so this is where a drift shows."""
    import click

    from edgecv.cli import cli

    fields = {f.name: f.default for f in dataclasses.fields(QuantizeOptions)}
    cli_name = {"fmt": "format", "output_dir": "output", "io_type": "io", "min_sqnr": "min_sqnr_db"}
    ctx = click.Context(cli)
    q = cli.get_command(ctx, "quantize")
    parsed = q.make_context("quantize", ["model.keras"], resilient_parsing=True).params  # the values run() gets
    seen = {cli_name.get(k, k): v for k, v in parsed.items() if cli_name.get(k, k) in fields}
    for name, value in seen.items():
        want = fields[name]
        assert value == want or (name == "float_layers" and not value), (name, value, want)
    assert {"precision", "format", "samples", "verify_samples", "output", "seed", "opset"} <= set(seen)
    for cmd_name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, cmd_name)
        for p in getattr(cmd, "params", []):
            if p.name in ("samples", "verify_samples"):
                assert p.get_default(click.Context(cmd)) == fields[p.name], (cmd_name, p.opts)
