"""The options of :func:`edgecv.conversion.quantize`, checked before anything slow runs (one line naming the
option and the value received)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.conversion.preprocess import InputPreprocessing
from edgecv.conversion.preprocess import parse as parse_preprocess
from edgecv.conversion.tflite import CALIBRATED
from edgecv.errors import EdgecvError, suggest
from edgecv.fileio import check_output_dir
from edgecv.formats import FORMATS, PRECISIONS, accepts


def _check_options(precision: str, fmt: str, io: str | None, opset: int, samples: int, verify_samples: int,
                   min_sqnr_db: float | None, min_top1: float | None, float_layers: tuple[str, ...],
                   debug_layers: bool, allow_float_fallback: bool) -> str:
    from edgecv.conversion.onnx_export import MAX_OPSET, MIN_OPSET
    from edgecv.conversion.tflite import IO_TYPES

    if fmt not in FORMATS:
        raise EdgecvError(f"--format: expected one of {', '.join(FORMATS)}. Received: {fmt!r}{suggest(fmt, FORMATS)}")
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
    if accepts(fmt, precision, "opset") and (isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET):
        raise EdgecvError(f"--opset: expected {MIN_OPSET}..{MAX_OPSET}. Received: {opset!r}")
    for opt, v in (("--samples", samples), ("--verify-samples", verify_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise EdgecvError(f"{opt}: expected an integer >= 1. Received: {v!r}")
    if min_top1 is not None and not 0.0 <= min_top1 <= 1.0:
        raise EdgecvError(f"--min-top1-agreement: expected a fraction 0..1. Received: {min_top1!r}")
    if min_sqnr_db is not None and not np.isfinite(min_sqnr_db):
        raise EdgecvError(f"--min-sqnr: expected a number of dB. Received: {min_sqnr_db!r}")
    if (float_layers or debug_layers) and not accepts(fmt, precision, "float_layers"):
        which = "--float-layers" if float_layers else "--debug-layers"
        raise EdgecvError(f"{which} applies to --precision int8 --format tflite only")
    if allow_float_fallback and not accepts(fmt, precision, "allow_float_fallback"):
        raise EdgecvError("--allow-float-fallback applies to --precision int8 or int16x8 --format tflite only")
    return io or ("int8" if tfl_int8 else "int16" if precision == "int16x8" else "float32")


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


def check_request(precision: str, fmt: str, io: str | None, opset: int, samples: int, verify_samples: int,
                  min_sqnr_db: float | None, min_top1: float | None, float_layers: tuple[str, ...],
                  debug_layers: bool, allow_float_fallback: bool, seed: int, reduce_range: bool,
                  calib: str | os.PathLike | None, preprocess: str | InputPreprocessing | None,
                  output: str | os.PathLike) -> tuple[str, Path, str | None]:
    """Every check of a quantize request that needs no model: (io type, output folder, file name | None)."""
    io_type = _check_options(precision, fmt, io, opset, samples, verify_samples, min_sqnr_db, min_top1,
                             float_layers, debug_layers, allow_float_fallback)
    from edgecv.validate import seed as check_seed

    check_seed("--seed", seed)
    if reduce_range and not accepts(fmt, precision, "reduce_range"):
        raise EdgecvError(f"--reduce-range: applies to --format onnx --precision int8 only "
                          f"(got --format {fmt} --precision {precision})")
    if precision in CALIBRATED and calib is None:
        raise EdgecvError(f"--calib: {precision} needs calibration data: a folder of JPEG/PNG images, a preprocessed "
                          ".npy/.npz array, or 'synthetic' (random noise, poor scales)")
    if preprocess is not None:
        parse_preprocess(preprocess)  # a bad value is refused before the slow model load
    folder, file_name = resolve_output(output, fmt)
    from edgecv.conversion.calibration import precheck

    precheck(calib)
    return io_type, folder, file_name


def check_float_layers(km: Any, model_name: str, float_layers: tuple[str, ...]) -> None:
    """``--float-layers`` must name layers of the model."""
    if float_layers:
        names = [layer.name for layer in km.layers]
        for fl in float_layers:
            if fl not in names:
                raise EdgecvError(f"--float-layers: no layer named {fl!r} in {model_name}.{suggest(fl, names)}")
