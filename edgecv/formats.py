"""The export table: formats, precisions and the options each (format, precision) accepts.

One home, read by the converter (``edgecv.conversion``), the sweep, ``recommend`` and the CLI; it imports
nothing, so the CLI can build its choices from it without loading the converter. Rows are frozen records with
named fields (ultralytics' ``export_formats()`` idea, without its positional rows)::

    >>> from edgecv.formats import export
    >>> export("tflite", "int8").io_types
    ('int8', 'uint8', 'float32')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    name: str
    description: str
    calibrated: bool  # full integer: needs calibration data (--calib)
    predicted: bool  # the device predictor (``recommend``, sweep predictions) has a model of it


@dataclass(frozen=True)
class Format:
    """One export format: its file suffix, the precisions it supports and the runtime that verifies it."""

    name: str
    title: str
    suffix: str
    runtime: str  # the runtime that verifies and profiles it
    precisions: tuple[str, ...]


@dataclass(frozen=True)
class Export:
    """One format at one precision: the options it accepts (API argument names) and its input/output types
    (the first is the default)."""

    format: str
    precision: str
    options: tuple[str, ...] = ()
    io_types: tuple[str, ...] = ("float32",)


PRECISION_TABLE: tuple[Precision, ...] = (
    Precision("int8", "8-bit weights and activations (full integer)", calibrated=True, predicted=True),
    Precision("int16x8", "16-bit activations, 8-bit weights (TFLite)", calibrated=True, predicted=False),
    Precision("float16", "16-bit float weights", calibrated=False, predicted=True),
    Precision("dynamic", "8-bit weights, float activations (dynamic range)", calibrated=False, predicted=False),
    Precision("float32", "no quantization", calibrated=False, predicted=True),
)

EXPORTS: tuple[Export, ...] = (
    Export("tflite", "int8", ("io", "allow_float_fallback", "float_layers", "debug_layers"),
           ("int8", "uint8", "float32")),
    Export("tflite", "int16x8", ("io", "allow_float_fallback"), ("int16", "float32")),
    Export("tflite", "float16"),
    Export("tflite", "dynamic"),
    Export("tflite", "float32"),
    Export("onnx", "float32", ("opset",)),
    Export("onnx", "int8", ("opset", "reduce_range")),
)

_TITLES = {"tflite": ("TensorFlow Lite", ".tflite", "LiteRT"), "onnx": ("ONNX", ".onnx", "ONNX Runtime")}

PRECISIONS: tuple[str, ...] = tuple(p.name for p in PRECISION_TABLE)
FORMATS: dict[str, Format] = {
    name: Format(name, title, suffix, runtime,
                 tuple(e.precision for e in EXPORTS if e.format == name))
    for name, (title, suffix, runtime) in _TITLES.items()
}
CALIBRATED: tuple[str, ...] = tuple(p.name for p in PRECISION_TABLE if p.calibrated)
PREDICTED: tuple[str, ...] = tuple(p.name for p in PRECISION_TABLE if p.predicted)
IO_TYPES: tuple[str, ...] = ("int8", "uint8", "int16", "float32")  # every row's io_types, in this order


def export(fmt: str, precision: str) -> Export | None:
    """The row of ``fmt`` at ``precision``, or None when the format does not support it."""
    for e in EXPORTS:
        if e.format == fmt and e.precision == precision:
            return e
    return None


def accepts(fmt: str, precision: str, option: str) -> bool:
    e = export(fmt, precision)
    return e is not None and option in e.options


def supporting(option: str) -> list[str]:
    """``"--precision int8 --format tflite"``-style phrases for the rows that accept ``option``."""
    return [f"--precision {e.precision} --format {e.format}" for e in EXPORTS if option in e.options]
