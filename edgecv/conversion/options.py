"""The options of :func:`edgecv.conversion.quantize`: one frozen record, :class:`QuantizeOptions`, checked
before anything slow runs (one line naming the option and the value received)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.conversion.preprocess import InputPreprocessing
from edgecv.conversion.preprocess import parse as parse_preprocess
from edgecv.errors import EdgecvError, suggest
from edgecv.fileio import check_output_dir
from edgecv.formats import CALIBRATED, FORMATS, IO_TYPES, PRECISIONS, accepts


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything :func:`edgecv.conversion.quantize` is told besides the model (the defaults are quantize's and
    ``edgecv quantize``'s). Build it freely; :meth:`check` refuses a bad value in one line."""

    precision: str = "int8"  # int8 | int16x8 | float16 | dynamic | float32
    format: str = "tflite"  # tflite | onnx
    calib: str | os.PathLike | None = None  # a folder of images, a .npy/.npz, or "synthetic" (int8, int16x8)
    samples: int = 100  # calibration samples
    output: str | os.PathLike = "edgecv_out"  # a folder, or the artifact's file path
    io: str | None = None  # input/output type; None: the precision's own (int8, int16 or float32)
    opset: int = 17  # ONNX opset
    allow_float_fallback: bool = False  # full-integer TFLite: keep ops without an integer kernel in float
    float_layers: tuple[str, ...] = ()  # int8 TFLite: Keras layers kept in float
    debug_layers: bool = False  # int8 TFLite: per-layer error and the diagnosis
    verify: bool = True  # run the artifact against Keras on held-out samples
    verify_samples: int = 16
    min_sqnr_db: float | None = None  # gate: GateFailed below it
    min_top1_agreement: float | None = None  # gate: GateFailed below it
    seed: int = 0
    reduce_range: bool = False  # ONNX int8: 7-bit weights (x86 targets without VNNI)
    isolate_load: bool = True  # a .keras file is first loaded in a child process
    preprocess: str | InputPreprocessing | None = None  # none | tf | torch | caffe | "mean=..;std=.."

    def __post_init__(self) -> None:
        if not isinstance(self.float_layers, tuple):  # a list is fine
            object.__setattr__(self, "float_layers", tuple(self.float_layers))

    def check(self) -> CheckedOptions:
        """Every check that needs no model, in the order a user reads the options; the resolved I/O type and
        output."""
        io_type = self._check_values()
        from edgecv.validate import seed as check_seed

        fmt, precision = self.format, self.precision
        check_seed("--seed", self.seed)
        if self.reduce_range and not accepts(fmt, precision, "reduce_range"):
            raise EdgecvError(f"--reduce-range: applies to --format onnx --precision int8 only "
                              f"(got --format {fmt} --precision {precision})")
        if precision in CALIBRATED and self.calib is None:
            raise EdgecvError(f"--calib: {precision} needs calibration data: a folder of JPEG/PNG images, a "
                              "preprocessed .npy/.npz array, or 'synthetic' (random noise, poor scales)")
        if self.preprocess is not None:
            parse_preprocess(self.preprocess)  # a bad value is refused before the slow model load
        folder, file_name = resolve_output(self.output, fmt)
        from edgecv.conversion.calibration import precheck

        precheck(self.calib)
        return CheckedOptions(io_type=io_type, folder=folder, file_name=file_name)

    def _check_values(self) -> str:
        """The values themselves and their combinations: the I/O type they resolve to."""
        from edgecv.conversion.onnx_export import MAX_OPSET, MIN_OPSET

        fmt, precision, io, opset = self.format, self.precision, self.io, self.opset
        min_sqnr_db, min_top1 = self.min_sqnr_db, self.min_top1_agreement
        if fmt not in FORMATS:
            raise EdgecvError(f"--format: expected one of {', '.join(FORMATS)}. Received: {fmt!r}"
                              f"{suggest(fmt, FORMATS)}")
        if precision not in PRECISIONS:
            raise EdgecvError(f"--precision: expected one of {', '.join(PRECISIONS)}. Received: {precision!r}"
                              f"{suggest(precision, PRECISIONS)}")
        spec = FORMATS[fmt]
        if precision not in spec.precisions:
            raise EdgecvError(f"--precision {precision} is not available with --format {fmt} "
                              f"(supported: {', '.join(spec.precisions)})")
        tfl_int8 = fmt == "tflite" and precision == "int8"
        if io is not None and io not in IO_TYPES:
            raise EdgecvError(f"--io: expected one of {', '.join(IO_TYPES)}. Received: {io!r}")
        if io == "int16" and precision != "int16x8":
            raise EdgecvError(f"--io int16 applies to --precision int16x8 only (got --precision {precision})")
        if io in ("int8", "uint8") and not tfl_int8:
            raise EdgecvError(f"--io {io} applies to --precision int8 --format tflite only"
                              + (" (int16x8: --io int16 or float32)" if precision == "int16x8" else ""))
        if accepts(fmt, precision, "opset") and (isinstance(opset, bool) or not isinstance(opset, int)
                                                 or not MIN_OPSET <= opset <= MAX_OPSET):
            raise EdgecvError(f"--opset: expected {MIN_OPSET}..{MAX_OPSET}. Received: {opset!r}")
        for opt, v in (("--samples", self.samples), ("--verify-samples", self.verify_samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise EdgecvError(f"{opt}: expected an integer >= 1. Received: {v!r}")
        if min_top1 is not None and not 0.0 <= min_top1 <= 1.0:
            raise EdgecvError(f"--min-top1-agreement: expected a fraction 0..1. Received: {min_top1!r}")
        if min_sqnr_db is not None and not np.isfinite(min_sqnr_db):
            raise EdgecvError(f"--min-sqnr: expected a number of dB. Received: {min_sqnr_db!r}")
        if (self.float_layers or self.debug_layers) and not accepts(fmt, precision, "float_layers"):
            which = "--float-layers" if self.float_layers else "--debug-layers"
            raise EdgecvError(f"{which} applies to --precision int8 --format tflite only")
        if self.allow_float_fallback and not accepts(fmt, precision, "allow_float_fallback"):
            raise EdgecvError("--allow-float-fallback applies to --precision int8 or int16x8 --format tflite only")
        return io or ("int8" if tfl_int8 else "int16" if precision == "int16x8" else "float32")

    @property
    def calibrated(self) -> bool:
        """Full integer (int8, int16x8): calibrated on ``calib``."""
        return self.precision in CALIBRATED


@dataclass(frozen=True)
class CheckedOptions:
    """What :meth:`QuantizeOptions.check` resolves: the artifact's input/output type and where it is written."""

    io_type: str  # int8 | uint8 | int16 | float32
    folder: Path  # checked; made when the artifact is written
    file_name: str | None  # None: <model>_<precision><suffix> in ``folder``

    def artifact(self, model_name: str, options: QuantizeOptions) -> Path:
        return self.folder / (self.file_name or f"{model_name}_{options.precision}{FORMATS[options.format].suffix}")


def resolve_output(output: str | os.PathLike, fmt: str) -> tuple[Path, str | None]:
    """``-o``: a file path with the format's suffix, or a folder (checked; made when the artifact is written).

    Returns (folder, file name|None)."""
    out = Path(output)
    suffixes = {f.suffix for f in FORMATS.values()}
    if out.suffix.lower() in suffixes:
        if out.suffix.lower() != FORMATS[fmt].suffix:
            raise EdgecvError(f"-o: a --format {fmt} artifact must end in {FORMATS[fmt].suffix}. "
                              f"Received: {str(out)!r}")
        if out.is_dir():
            raise EdgecvError(f"-o: is a folder. Received: {str(out)!r}")
        folder = check_output_dir(out.parent if str(out.parent) else Path("."), option="-o")
        return folder, out.name
    return check_output_dir(out, option="-o"), None


def check_float_layers(km: Any, model_name: str, float_layers: tuple[str, ...]) -> None:
    """``--float-layers`` must name layers of the model."""
    if float_layers:
        names = [layer.name for layer in km.layers]
        for fl in float_layers:
            if fl not in names:
                raise EdgecvError(f"--float-layers: no layer named {fl!r} in {model_name}.{suggest(fl, names)}")
