"""``quantize()``: the Python API behind ``edgecv quantize``.

One call converts one model to one precision and format, verifies the artifact in its own runtime
against the Keras model, writes the artifact and its sidecar JSON atomically, and returns a
:class:`ConversionResult`. A gate that is not met (``min_sqnr_db``, ``min_top1_agreement``) keeps the
artifact, marks the sidecar ``"status": "failed"`` and raises :class:`edgecv.errors.GateFailed`
(exit code 3) carrying the result as ``.result``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.builders.arch import Preprocessing
from edgecv.conversion.calibration import CalibrationData, CalibrationSummary, load_calibration
from edgecv.conversion.onnx_export import int8_kernels_saturate
from edgecv.conversion.preprocess import InputPreprocessing, from_family, named, normalizes_input
from edgecv.conversion.preprocess import parse as parse_preprocess
from edgecv.conversion.progress import Reporter
from edgecv.conversion.tflite import CALIBRATED  # full integer: the precisions that need calibration data
from edgecv.conversion.verify import (Metrics, TensorInfo, compare, float_ops, inspect_io, outputs_barely_vary,
                                      run_artifact, tflite_ops)
from edgecv.errors import EdgecvError, GateFailed, root_cause, suggest
from edgecv.fileio import atomic_path, check_output_dir, unsafe_zip_member, write_json_atomic, write_sidecar
from edgecv.native import import_tensorflow, native_output_silenced

from edgecv.formats import FORMATS, PRECISIONS, Format, accepts  # noqa: F401 - the export table, re-exported


@dataclass(frozen=True)
class Verification:
    """The artifact against the Keras model on held-out samples."""

    sqnr_db: float
    top1_agreement: float | None
    max_abs_error: float
    samples: int
    data: str  # where the samples came from (held-out --calib samples, builtin photos, ...)
    runtime: str  # "litert 2.3.0" | "onnxruntime 1.32.0"
    passed: bool
    failed_gates: tuple[str, ...] = ()
    min_sqnr_db: float | None = None
    min_top1_agreement: float | None = None
    # ONNX int8 verified as a QDQ reference on an x86 CPU without VNNI: the same samples through this CPU's
    # fused int8 kernels, which saturate on full-range weights (see edgecv.conversion.onnx_export).
    host_kernels_sqnr_db: float | None = None
    host_kernels_top1_agreement: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    """Where an int8 model's output error comes from (``--debug-layers``), on the verification samples.

    More conversions of the same model with the same calibration pin it down: the worst layers kept in float
    one at a time (the report's kept-in-float column), and 16-bit activations with the same int8 weights
    (int16x8): what is left at int16x8 is the weights' (and the int8 input/output's)."""

    int8_sqnr_db: float
    best_float_layer: str | None  # the report's layer whose float version gives the most back
    best_float_layer_gain_db: float | None  # its output SQNR minus int8's
    int16x8_sqnr_db: float | None  # None when the model has no int16x8 conversion
    culprit: str  # "layers" | "activations" | "weights" | "none"
    advice: str  # one sentence for the user


@dataclass(frozen=True)
class ConversionResult:
    model: str  # model name (registry name or the Keras model's name)
    source: str  # what MODEL was: a registry name or a .keras path
    format: str  # tflite | onnx
    precision: str  # int8 | int16x8 | float16 | dynamic | float32
    path: str  # the artifact
    sidecar: str  # <artifact>.json
    status: str  # "ok" | "failed" (a verification gate was not met; the artifact is kept)
    file_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    preprocessing: dict[str, Any]
    calibration: CalibrationSummary | None  # None for precisions that need no calibration
    verification: Verification | None  # None with verify=False
    convert_seconds: float
    total_seconds: float
    float_ops: tuple[str, ...] = ()  # int8 TFLite ops left in float ("TYPE (layer)")
    float_layers: tuple[str, ...] = ()
    debug_layers: tuple[Any, ...] = ()  # tflite.LayerError, worst first
    diagnosis: Diagnosis | None = None  # with --debug-layers: layers, activations or weights
    graph: dict[str, Any] = field(default_factory=dict)  # ONNX: opset and QDQ counts; TFLite: op counts
    versions: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return obj


# --- the model ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedModel:
    keras_model: Any
    name: str
    source: str
    preprocessing: InputPreprocessing
    family: str | None


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def check_keras_file(path: Path, option: str = "MODEL") -> None:
    """Cheap structural checks of a .keras file (before TensorFlow is imported): a zip archive with a
    config.json, intact, and no member an extractor could write outside its folder."""
    if not path.exists():
        raise EdgecvError(f"{option}: no such file. Received: {str(path)!r}")
    if path.is_dir():
        raise EdgecvError(f"{option}: is a folder, expected a .keras file. Received: {str(path)!r}")
    if path.suffix.lower() != ".keras":
        raise EdgecvError(f"{option}: expected a .keras file (Keras 3 format) or a registry name. "
                          f"Received: {str(path)!r}")
    try:
        if not zipfile.is_zipfile(path):
            raise EdgecvError(f"{option}: not a Keras model file (not a .keras zip archive): {str(path)!r}")
        with zipfile.ZipFile(path) as zf:
            unsafe = unsafe_zip_member(zf)
            if unsafe is not None:
                raise EdgecvError(f"{option}: unsafe .keras archive {str(path)!r}: member {unsafe[0]!r} {unsafe[1]} "
                                  f"(it could be written outside the folder it is extracted to)")
            from edgecv.validate import check_zip_sizes

            check_zip_sizes(zf, option, str(path))  # declared sizes and ratios, before anything is decompressed
            names = set(zf.namelist())
            if "config.json" not in names:
                raise EdgecvError(f"{option}: not a Keras model file (no config.json in the archive): "
                                  f"{str(path)!r}")
            bad = zf.testzip()
            if bad is not None:
                raise EdgecvError(f"{option}: corrupt .keras file ({bad!r} fails its checksum): {str(path)!r}")
    except EdgecvError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile, OSError, EOFError, zlib.error,
        # NotImplementedError (compression method), RuntimeError (encrypted member) ... on a damaged archive
        raise EdgecvError(f"{option}: cannot read {str(path)!r}: {' '.join(str(exc).split())[:300]}") from None


_PROBE = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from edgecv.errors import root_cause
try:
    import keras
    m = keras.saving.load_model(sys.argv[1], safe_mode=True, compile=False)
    ok = isinstance(m, keras.Model)
    print(json.dumps({"ok": ok, "cls": type(m).__name__, "name": getattr(m, "name", "")}))
except BaseException as exc:
    print(json.dumps({"ok": False, "error": root_cause(exc, 400)}))
"""


def probe_keras_file(path: Path, timeout_s: float = 300.0) -> None:
    """Load ``path`` in a child process first: a file that crashes the loader cannot take edgecv down."""
    from edgecv.isolation import child_env, python_argv
    from edgecv.isolation import run as run_isolated

    try:
        proc = run_isolated(python_argv(code=_PROBE, args=[str(path)]), timeout_s,
                            env=child_env({"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}))
    except OSError as exc:
        raise EdgecvError(f"MODEL: cannot start a process to load {str(path)!r}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise EdgecvError(f"MODEL: loading {str(path)!r} did not finish within {timeout_s:.0f} s") from None
    if proc.returncode < 0:
        raise EdgecvError(f"MODEL: the Keras loader crashed on {str(path)!r} (signal {-proc.returncode})")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise EdgecvError(f"MODEL: cannot load {str(path)!r} (loader exit code {proc.returncode})")
    rep = json.loads(lines[-1])
    if rep.get("error"):
        raise EdgecvError(f"MODEL: cannot load {str(path)!r} as a Keras model: {rep['error']}")
    if not rep.get("ok"):
        raise EdgecvError(f"MODEL: {str(path)!r} holds a Keras {rep.get('cls')}, not a model")


def load_model(model: Any, isolate: bool = True) -> LoadedModel:
    """A registry name, a .keras path or a keras.Model -> the model, its name and its preprocessing."""
    from edgecv.builders.registry import create_model, get_config

    if hasattr(model, "layers") and hasattr(model, "input_shape"):
        check_model_io(model)
        name = _SAFE_NAME.sub("_", str(model.name)) or "model"
        pre, fam = _preprocessing_for(model, name)
        return LoadedModel(model, name, f"keras.Model {model.name!r}", pre, fam)
    text = os.fspath(model)
    path = Path(text)
    if path.suffix.lower() in (".keras", ".h5", ".hdf5", ".tflite", ".onnx") or os.sep in text or path.exists():
        check_keras_file(path)
        if isolate:
            probe_keras_file(path)
        import_tensorflow()
        import keras

        try:
            with native_output_silenced():
                km = keras.saving.load_model(str(path), safe_mode=True, compile=False)
        except Exception as exc:  # noqa: BLE001 - anything the loader raises is a bad file
            raise EdgecvError(f"MODEL: cannot load {str(path)!r} as a Keras model: {root_cause(exc)}") from None
        if not isinstance(km, keras.Model):
            raise EdgecvError(f"MODEL: {str(path)!r} holds a Keras {type(km).__name__}, not a model")
        check_model_io(km, str(path))
        name = str(km.name)
        if not name or re.fullmatch(r"(functional|sequential|model)(_\d+)?", name):
            name = path.stem
        name = _SAFE_NAME.sub("_", name)
        pre, fam = _preprocessing_for(km, name)
        return LoadedModel(km, name, str(path), pre, fam)
    cfg = get_config(text)  # EdgecvError with suggestions for an unknown name
    with native_output_silenced():
        km = create_model(cfg)
    return LoadedModel(km, cfg.name, text, from_family(cfg.spec.preprocessing, cfg.family), cfg.family)


def check_model_io(km: Any, where: str = "MODEL") -> None:
    """One input (H, W, C) image and one output: what quantize calibrates and verifies; else one line."""
    where = where if where == "MODEL" else f"MODEL {where!r}"
    n_in, n_out = len(getattr(km, "inputs", None) or [None]), len(getattr(km, "outputs", None) or [None])
    if n_in != 1:
        raise EdgecvError(f"{where}: the model has {n_in} inputs; quantize supports single-input image models "
                          f"(one (H, W, C) input)")
    if n_out != 1:
        raise EdgecvError(f"{where}: the model has {n_out} outputs; quantize supports single-output models "
                          f"(verification compares one output tensor)")
    shape = tuple(km.input_shape)
    if len(shape) != 4:
        raise EdgecvError(f"{where}: the model's input has shape {shape}; quantize supports image models with one "
                          f"(batch, H, W, C) input")
    if any(d is None for d in shape[1:]):
        raise EdgecvError(f"{where}: the model's input size is not fixed {shape}; build it with a fixed "
                          f"input_shape (H, W, C)")


def _preprocessing_for(km: Any, name: str) -> tuple[InputPreprocessing, str | None]:
    from edgecv.builders.registry import get_config

    try:
        cfg = get_config(name)
        if tuple(cfg.input_shape) == tuple(km.input_shape[1:]):
            return from_family(cfg.spec.preprocessing, cfg.family), cfg.family
    except EdgecvError:
        pass
    if normalizes_input(km):
        return named("none", source="detected"), None
    return named("tf", source="default"), None


def resolve_preprocessing(loaded: LoadedModel, preprocess: str | InputPreprocessing | None,
                          reporter: Reporter) -> InputPreprocessing:
    """The model's input preprocessing, for its channel count: ``--preprocess`` when given, else the family's
    (edgecv models), the model's own (a Rescaling/Normalization input layer: raw pixels) or ``tf`` with a
    warning."""
    c = int(loaded.keras_model.input_shape[-1])
    if preprocess is not None:
        from edgecv.conversion.preprocess import check_length

        pre = parse_preprocess(preprocess)
        check_length(pre, c)
        if loaded.preprocessing.source == "detected" and not pre.in_model:
            reporter.warn(f"--preprocess {pre.name}: {loaded.name} normalizes its input itself (a Rescaling/"
                          f"Normalization layer at its input) and usually expects raw pixels (--preprocess none)")
    else:
        pre = loaded.preprocessing
        if pre.source == "default":
            reporter.warn(f"{loaded.name}: no preprocessing known for this model (not an edgecv model, no "
                          f"Rescaling/Normalization input layer): assuming --preprocess tf (pixels to [-1, 1]); "
                          f"pass --preprocess none|tf|torch|caffe|mean=..;std=.. to say what it was trained on")
    return pre.for_channels(c)


def preprocessing_dict(pre: InputPreprocessing | Preprocessing, input_shape: tuple) -> dict[str, Any]:
    h, w, c = (list(input_shape) + [None, None, None])[:3]
    if not isinstance(pre, InputPreprocessing):
        pre = from_family(pre, None)
    d = pre.to_dict()
    color = "grayscale" if c == 1 else "BGR" if pre.bgr else "RGB" if c == 3 else f"{c}-channel"
    return {"input_size": [h, w], "channels": c, "range": d["range"], "mean": d["mean"], "std": d["std"],
            "in_model": pre.in_model, "preprocess": d["preprocess"], "source": d["source"],
            "channel_order": d["channel_order"],
            "formula": f"raw {color} pixels 0..255 (the model normalizes)" if pre.in_model
            else f"({color} pixels_0_255 - mean) / std"}


# --- options ----------------------------------------------------------------------------------------

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


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import edgecv

    out = {"edgecv": edgecv.__version__}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "onnxruntime", "onnx", "tf2onnx",
                 "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


# --- the pipeline -----------------------------------------------------------------------------------

def quantize(model: Any, precision: str = "int8", *, format: str = "tflite", calib: str | os.PathLike | None = None,
             samples: int = 100, output: str | os.PathLike = "edgecv_out", io: str | None = None, opset: int = 17,
             allow_float_fallback: bool = False, float_layers: tuple[str, ...] | list[str] = (),
             debug_layers: bool = False, verify: bool = True, verify_samples: int = 16,
             min_sqnr_db: float | None = None, min_top1_agreement: float | None = None, seed: int = 0,
             reduce_range: bool = False, reporter: Reporter | None = None,
             isolate_load: bool = True, preprocess: str | InputPreprocessing | None = None) -> ConversionResult:
    """Convert ``model`` (registry name, .keras path or keras.Model) to ``precision`` in ``format``.

    Writes ``<output>/<model>_<precision>.<tflite|onnx>`` (or the file ``output``) and ``<artifact>.json``.
    int8 and int16x8 need ``calib`` (a folder of images, a .npy/.npz array, or ``"synthetic"``). ``reduce_range``
    (ONNX int8 only) quantizes weights to 7 bits, for x86 targets without VNNI. ``preprocess`` (``none``,
    ``tf``, ``torch``, ``caffe`` or ``"mean=..;std=.."``, see :mod:`edgecv.conversion.preprocess`) says how
    pixels become the model's input; default: the family's for edgecv models, ``none`` for a model that
    normalizes its own input, else ``tf`` with a warning. It is recorded in the sidecar.
    """
    t_start = time.perf_counter()
    reporter = reporter or Reporter()
    float_layers = tuple(float_layers)
    io_type = _check_options(precision, format, io, opset, samples, verify_samples, min_sqnr_db,
                             min_top1_agreement, float_layers, debug_layers, allow_float_fallback)
    from edgecv.validate import check_sample_memory
    from edgecv.validate import seed as check_seed

    check_seed("--seed", seed)
    if reduce_range and not accepts(format, precision, "reduce_range"):
        raise EdgecvError(f"--reduce-range: applies to --format onnx --precision int8 only "
                          f"(got --format {format} --precision {precision})")
    if precision in CALIBRATED and calib is None:
        raise EdgecvError(f"--calib: {precision} needs calibration data: a folder of JPEG/PNG images, a preprocessed "
                          ".npy/.npz array, or 'synthetic' (random noise, poor scales)")
    if preprocess is not None:
        parse_preprocess(preprocess)  # a bad value is refused before the slow model load
    folder, file_name = resolve_output(output, format)
    from edgecv.conversion.calibration import precheck

    precheck(calib)

    with reporter.task("loading model"):
        loaded = load_model(model, isolate=isolate_load)
    loaded = dataclasses.replace(loaded, preprocessing=resolve_preprocessing(loaded, preprocess, reporter))
    km = loaded.keras_model
    input_shape = tuple(km.input_shape[1:])
    if float_layers:
        names = [layer.name for layer in km.layers]
        for fl in float_layers:
            if fl not in names:
                raise EdgecvError(f"--float-layers: no layer named {fl!r} in {loaded.name}.{suggest(fl, names)}")
    final = folder / (file_name or f"{loaded.name}_{precision}{FORMATS[format].suffix}")

    data: CalibrationData | None = None
    data_note = ""
    if precision in CALIBRATED or verify:
        cal_samples = samples if precision in CALIBRATED else 1
        spec = calib
        if spec is None:
            try:
                import skimage  # noqa: F401
            except ImportError:
                spec = "synthetic-verify"
        if spec == "synthetic-verify":
            check_sample_memory(verify_samples, input_shape, f"--verify-samples {verify_samples}")
            rng = np.random.default_rng(seed)
            px = rng.uniform(0, 255, (verify_samples, *input_shape)).astype(np.float32)
            x = loaded.preprocessing.apply(px)
            data = CalibrationData(x[:0], x, CalibrationSummary("synthetic", "synthetic", 0, len(x), seed,
                                                                  input_shape, "uniform noise pixels"))
        else:
            data = load_calibration(spec, input_shape=input_shape, preprocessing=loaded.preprocessing,
                                    samples=cal_samples, holdout=verify_samples if verify else 0, seed=seed,
                                    reporter=reporter, warn_few=precision in CALIBRATED)
        s = data.summary
        data_note = {"dir": "held-out images from --calib", "npy": "held-out rows of --calib",
                     "npz": "held-out rows of --calib", "synthetic": "random noise pixels",
                     "builtin": "scikit-image sample photos (crops/flips)"}.get(s.kind, s.kind)

    t_conv = time.perf_counter()
    graph: dict[str, Any] = {}
    fops: list[str] = []
    with reporter.task(f"converting to {format} {precision}" + (f" (calibrating on {len(data.calib)})"
                                                                  if precision in CALIBRATED else ""),
                       total=len(data.calib) if precision in CALIBRATED else None) as advance:
        with native_output_silenced():
            content = _convert(km, format, precision, data, io_type, allow_float_fallback, float_layers, opset,
                               advance, reduce_range)
    convert_s = time.perf_counter() - t_conv
    if format == "tflite":
        _check_prepares(content, precision, final)
        ops = tflite_ops(content)
        counts: dict[str, int] = {}
        for op in ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        graph = {"ops": len(ops), "op_counts": counts}
        if precision in CALIBRATED:
            from edgecv.conversion.tflite import layers_in_name

            names = [layer.name for layer in km.layers]
            for op in float_ops(ops):
                lays = layers_in_name(op.output_name, names)
                if set(lays) & set(float_layers):
                    continue
                fops.append(f"{op.type} ({', '.join(lays) or op.output_name})")
            if fops and not allow_float_fallback:
                raise EdgecvError(
                    f"{precision}: op {fops[0]} cannot be quantized to {precision} (no {precision} kernel)"
                    + (f"; {len(fops) - 1} more" if len(fops) > 1 else "")
                    + ". Use --allow-float-fallback to keep it in float, or --precision dynamic")
            if fops:
                reporter.warn(f"{precision}: {len(fops)} op(s) left in float: {', '.join(fops[:5])}")
    else:
        from edgecv.conversion.onnx_export import qdq_summary

        graph = qdq_summary(content)

    verification = None
    ref = None  # Keras outputs on the held-out samples (when verifying)
    status = "ok"
    with atomic_path(final) as tmp:
        tmp.write_bytes(content)
        _chmod_like_umask(tmp)
        if verify:
            assert data is not None
            with reporter.task(f"verifying in {FORMATS[format].runtime} ({len(data.holdout)} samples)"):
                host_run = None
                if (format, precision) == ("onnx", "int8") and not reduce_range and int8_kernels_saturate():
                    host_run = run_artifact(tmp, data.holdout)
                    run = run_artifact(tmp, data.holdout, qdq_reference=True)
                else:
                    run = run_artifact(tmp, data.holdout)
                with native_output_silenced():
                    ref = _keras_predict(km, data.holdout)
            if outputs_barely_vary(ref):
                reporter.warn(f"verification: the Keras model gives (nearly) the same output for all "
                              f"{len(ref)} samples (untrained weights?), so matching it proves little; "
                              f"verify a trained model or one with BatchNorm statistics from real images")
            m = compare(ref, run.output)
            verification = _gate(m, data_note, run.runtime, min_sqnr_db, min_top1_agreement)
            if host_run is not None:
                h = compare(ref, host_run.output)
                verification = dataclasses.replace(verification, host_kernels_sqnr_db=h.sqnr_db,
                                                   host_kernels_top1_agreement=h.top1_agreement)
                reporter.warn(f"onnx int8: verified as a QDQ reference ({m.sqnr_db:.1f} dB), the arithmetic of Arm "
                              f"and VNNI CPUs; this x86 CPU has no VNNI and ONNX Runtime's int8 kernels here "
                              f"saturate ({h.sqnr_db:.1f} dB): for x86 targets without VNNI use --reduce-range")
            status = "ok" if verification.passed else "failed"
            inputs, outputs = run.inputs, run.outputs
        else:  # no run: read the I/O in-process (no child process start-up cost)
            inputs, outputs = inspect_io(content, format)
        _check_io(inputs, outputs, format, precision, io_type, final)
        # The old sidecar describes the old artifact: remove it before the new artifact takes its place, so a
        # run killed between the two writes leaves the new artifact without a sidecar, never with a wrong one.
        Path(f"{final}.json").unlink(missing_ok=True)

    layer_report: tuple = ()
    diagnosis = None
    if debug_layers:
        from edgecv.conversion.tflite import debug_layers as run_debugger
        from edgecv.conversion.tflite import freeze

        assert data is not None
        with reporter.task("per-layer quantization error (TensorFlow QuantizationDebugger)"):
            with native_output_silenced():
                dbg_x = data.holdout if len(data.holdout) else data.calib[:8]
                frozen = freeze(km)
                layer_report = run_debugger(frozen, data.calib, dbg_x, io_type,
                                            [layer.name for layer in km.layers],
                                            weighted=[layer.name for layer in km.layers if layer.weights])
        if ref is not None and len(data.holdout):
            with reporter.task(f"output SQNR with each of the {DEBUG_SENSITIVITY_TOP} worst layers in float",
                               total=DEBUG_SENSITIVITY_TOP) as advance:
                layer_report = _float_one_sensitivity(frozen, [layer.name for layer in km.layers], layer_report,
                                                      data, ref, io_type, allow_float_fallback, float_layers,
                                                      advance)
            assert verification is not None
            with reporter.task("output SQNR with 16-bit activations (int16x8)", total=1) as adv:
                diagnosis = _diagnose(frozen, layer_report, verification.sqnr_db, data, ref, allow_float_fallback,
                                      adv)

    result = ConversionResult(
        model=loaded.name, source=loaded.source, format=format, precision=precision, path=str(final),
        sidecar=str(final) + ".json", status=status, file_bytes=final.stat().st_size,
        inputs=inputs, outputs=outputs,
        preprocessing=preprocessing_dict(loaded.preprocessing, input_shape),
        calibration=data.summary if (precision in CALIBRATED and data is not None) else None,
        verification=verification, convert_seconds=round(convert_s, 3),
        total_seconds=round(time.perf_counter() - t_start, 3), float_ops=tuple(fops), float_layers=float_layers,
        debug_layers=layer_report, diagnosis=diagnosis, graph=graph, versions=versions(),
        warnings=tuple(reporter.warnings),
    )
    side = result.to_dict()
    side["io"] = io_type
    if write_sidecar(final, content, result.sidecar, side):  # else a concurrent writer's artifact took its place
        _chmod_like_umask(Path(result.sidecar))
    if status != "ok":
        assert verification is not None
        err = GateFailed(f"verification gate failed for {final.name}: {'; '.join(verification.failed_gates)} "
                         f"(artifact kept, marked failed in {Path(result.sidecar).name})")
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def _holdout_sqnr(content: bytes, path: Path, data: CalibrationData, ref: np.ndarray) -> float:
    """Output SQNR against Keras (``ref``) of one more conversion, run on the held-out samples."""
    path.write_bytes(content)
    return compare(ref, run_artifact(path, data.holdout).output).sqnr_db


DEBUG_SENSITIVITY_TOP = 3  # how many of the debug report's worst layers are converted again with that layer float


def _float_one_sensitivity(frozen, names: list[str], report: tuple, data: CalibrationData, ref: np.ndarray,
                           io_type: str, allow_float: bool, float_layers: tuple[str, ...], advance) -> tuple:
    """The debug report with, for its worst ``DEBUG_SENSITIVITY_TOP`` layers, the output SQNR of the int8
    conversion with that layer (and ``float_layers``) kept in float.

    A layer's own error in quantization steps says how coarse its tensor is, not how much the output moves:
    a squeeze-excite vector with a tiny scale ranks first and may not matter. This measures what keeping it in
    float gives back, the way a user would try it (one more conversion and run per layer)."""
    import tempfile

    from edgecv.conversion import tflite

    measured: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="edgecv-sensitivity-") as tmp:
        for e in report:
            if e.layer in measured or e.layer in float_layers or len(measured) >= DEBUG_SENSITIVITY_TOP:
                continue
            try:
                with native_output_silenced():
                    content = tflite.convert(frozen, "int8", data.calib, io_type, allow_float,
                                             (*float_layers, e.layer), names)
            except EdgecvError:  # the layer has no op of its own to keep in float
                measured[e.layer] = None
                advance()
                continue
            measured[e.layer] = _holdout_sqnr(content, Path(tmp) / f"{len(measured)}.tflite", data, ref)
            advance()
    return tuple(dataclasses.replace(e, output_sqnr_db_if_float=measured.get(e.layer)) for e in report)


DEBUG_MIN_GAIN_DB = 1.0  # a layer whose float version gives back less than this is not a culprit
DEBUG_ACTIVATION_GAIN_DB = 3.0  # 16-bit activations giving back this much: the activations are the culprit


def _diagnose(frozen, report: tuple, int8_db: float, data: CalibrationData, ref: np.ndarray, allow_float: bool,
              advance) -> Diagnosis:
    """Layers, activations or weights: which part of int8 quantization costs the output SQNR."""
    import tempfile

    from edgecv.conversion import tflite

    gains = [(e.output_sqnr_db_if_float - int8_db, e.layer) for e in report
             if e.output_sqnr_db_if_float is not None]
    best_gain, best_layer = max(gains) if gains else (None, None)
    a16 = None
    with tempfile.TemporaryDirectory(prefix="edgecv-diagnosis-") as tmp:
        try:
            with native_output_silenced():
                content = tflite.convert(frozen, "int16x8", data.calib, "int16", allow_float)
            a16 = _holdout_sqnr(content, Path(tmp) / "int16x8.tflite", data, ref)
        except Exception:  # noqa: BLE001 - no int16 kernel for an op, or LiteRT cannot prepare it: said below
            pass
        advance()
    best = "" if best_gain is None else f" (best: {best_layer}, {round(best_gain, 1) + 0.0:+.1f} dB)"
    if best_gain is not None and best_gain >= DEBUG_MIN_GAIN_DB:
        culprit = "layers"
        advice = (f"{best_layer} in float gives back {best_gain:.1f} dB of output SQNR "
                  f"({int8_db:.1f} -> {int8_db + best_gain:.1f} dB): try --float-layers {best_layer}")
    elif a16 is None:
        culprit = "none"
        advice = (f"no single layer accounts for the error{best}; this model has no int16x8 conversion to "
                  f"tell activations from weights")
    elif a16 - int8_db >= DEBUG_ACTIVATION_GAIN_DB:
        culprit = "activations"
        advice = (f"no single layer accounts for the error: keeping the worst ones in float gives back less than "
                  f"{DEBUG_MIN_GAIN_DB:g} dB{best}, so --float-layers will not recover it; the loss is spread over "
                  f"the int8 activations: with the same int8 weights, 16-bit activations (--precision int16x8) "
                  f"give {a16:.1f} dB against int8's {int8_db:.1f} dB. int16x8 has no XNNPACK kernels (LiteRT "
                  f"runs it many times slower than int8: measure it); otherwise keep the activations in float "
                  f"(float16/float32) or use an architecture built for int8 (EfficientNet-Lite)")
    else:
        culprit = "weights"
        advice = (f"no single layer accounts for the error{best}, and 16-bit activations give {a16:.1f} dB against "
                  f"int8's {int8_db:.1f} dB: the int8 weights (and int8 input/output) carry it")
    r = lambda v: None if v is None else round(float(v), 2)  # noqa: E731
    return Diagnosis(int8_sqnr_db=r(int8_db), best_float_layer=best_layer, best_float_layer_gain_db=r(best_gain),
                     int16x8_sqnr_db=r(a16), culprit=culprit, advice=advice)


def _convert(km, fmt, precision, data, io_type, allow_float, float_layers, opset, advance,
             reduce_range=False) -> bytes:
    calib = data.calib if (precision in CALIBRATED and data is not None) else None
    if fmt == "tflite":
        from edgecv.conversion import tflite

        try:
            frozen = tflite.freeze(km)  # tracing fails on names TensorFlow refuses (e.g. a model named "a\\b")
            return tflite.convert(frozen, precision, calib, io_type, allow_float, float_layers,
                                  [layer.name for layer in km.layers], advance)
        except EdgecvError:
            raise
        except Exception as exc:  # noqa: BLE001 - converter errors: one line naming what failed
            op = re.search(r"not (?:yet )?supported for op:? '?([A-Za-z0-9_]+)", str(exc))
            if op and precision in CALIBRATED:
                hint = ("" if allow_float else "Use --allow-float-fallback to keep it in float, or ") + \
                    ("--precision int8 or float16" if precision == "int16x8" else "--precision dynamic")
                raise EdgecvError(f"{precision}: op {op.group(1)} cannot be quantized to {precision} (no "
                                  f"{precision} kernel). {hint[0].upper()}{hint[1:]}") from None
            raise EdgecvError(f"TFLite {precision} conversion failed: {_first_line(exc)}") from None
    from edgecv.conversion import onnx_export

    try:
        f32 = onnx_export.export_float(km, opset)
        return f32 if precision == "float32" else onnx_export.quantize_int8(f32, calib, advance, reduce_range)
    except Exception as exc:  # noqa: BLE001
        raise EdgecvError(f"ONNX {precision} conversion failed: {_first_line(exc)}") from None


def _check_prepares(content: bytes, precision: str, final: Path) -> None:
    """LiteRT must be able to allocate the converted model (checked in this process: the converter's own output,
    before anything is written), else one line naming the op. int16x8 fails here when calibration leaves a layer's
    output range at zero: its symmetric 16-bit scale is then too small for the fused activation's bounds."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_output_silenced():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            Interpreter(model_content=content).allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - the kernel's check, one line
        msg = _first_line(exc).rstrip(".")
        hint = ("; a layer's calibrated output range is zero (an untrained model, or calibration data that never "
                "activates it): calibrate on real images" if "no_integer_overflow_from_quantization" in msg else "")
        raise EdgecvError(f"{final.name}: LiteRT cannot prepare the converted {precision} model: {msg}{hint}") from None


def _chmod_like_umask(path: Path) -> None:
    """mkstemp files are 0600; give the artifact the permissions a plain open() would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for marker in ("error: ", "Error: "):
        if marker in text:
            text = text[text.index(marker) + len(marker):]
            break
    return f"{type(exc).__name__}: {text[:300]}"


def _keras_predict(km, x: np.ndarray, batch: int = 16) -> np.ndarray:
    outs = [np.asarray(km(x[i:i + batch], training=False)) for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def _gate(m: Metrics, data_note: str, runtime: str, min_sqnr_db: float | None,
          min_top1: float | None) -> Verification:
    failed = []
    if min_sqnr_db is not None and m.sqnr_db < min_sqnr_db:
        failed.append(f"SQNR {m.sqnr_db:.2f} dB < --min-sqnr {min_sqnr_db:g}")
    if min_top1 is not None:
        if m.top1_agreement is None:
            failed.append("top-1 agreement is undefined for this output (not a class vector)")
        elif m.top1_agreement < min_top1:
            failed.append(f"top-1 agreement {m.top1_agreement:.3f} < --min-top1-agreement {min_top1:g}")
    return Verification(sqnr_db=m.sqnr_db, top1_agreement=m.top1_agreement, max_abs_error=m.max_abs_error,
                        samples=m.samples, data=data_note, runtime=runtime, passed=not failed,
                        failed_gates=tuple(failed), min_sqnr_db=min_sqnr_db, min_top1_agreement=min_top1)


def _check_io(inputs, outputs, fmt, precision, io_type, final: Path) -> None:
    want = io_type if (fmt == "tflite" and precision in CALIBRATED) else "float32"
    got = {t.dtype for t in (*inputs, *outputs)}
    if got != {want}:
        raise EdgecvError(f"{final.name}: expected {want} inputs and outputs, the converter produced "
                          f"{sorted(got)}")
