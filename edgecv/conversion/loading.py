"""The model to convert: a registry name, a ``.keras`` file (checked, then loaded in a child process first) or
a ``keras.Model``; its input preprocessing; and the one image input and one output that quantize works on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecv.builders.arch import Preprocessing
from edgecv.conversion.preprocess import InputPreprocessing, from_family, named, normalizes_input
from edgecv.conversion.preprocess import parse as parse_preprocess
from edgecv.conversion.progress import Reporter
from edgecv.errors import EdgecvError, one_line, root_cause
from edgecv.fileio import unsafe_zip_member
from edgecv.native import import_tensorflow, native_output_silenced


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
        raise EdgecvError(f"{option}: cannot read {str(path)!r}: {one_line(exc)[:300]}") from None


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
        pre, fam = preprocessing_for(model, name)
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
        pre, fam = preprocessing_for(km, name)
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


def preprocessing_for(km: Any, name: str) -> tuple[InputPreprocessing, str | None]:
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
                          reporter: Reporter | None = None) -> InputPreprocessing:
    """The model's input preprocessing, for its channel count: ``--preprocess`` when given, else the family's
    (edgecv models), the model's own (a Rescaling/Normalization input layer: raw pixels) or ``tf``
    (:func:`preprocessing_warning` says so)."""
    c = int(loaded.keras_model.input_shape[-1])
    if preprocess is not None:
        from edgecv.conversion.preprocess import check_length

        pre = parse_preprocess(preprocess)
        check_length(pre, c)
    else:
        pre = loaded.preprocessing
    return pre.for_channels(c)


def preprocessing_warning(loaded: LoadedModel, preprocess: str | InputPreprocessing | None) -> str | None:
    """A warning when the preprocessing is a guess (``tf`` by default) or contradicts the model (given after the
    artifact is written, so that an error stays the only line on stderr)."""
    if preprocess is not None:
        pre = parse_preprocess(preprocess)
        if loaded.preprocessing.source == "detected" and not pre.in_model:
            return (f"--preprocess {pre.name}: {loaded.name} normalizes its input itself (a Rescaling/"
                    f"Normalization layer at its input) and usually expects raw pixels (--preprocess none)")
        return None
    if loaded.preprocessing.source == "default":
        return (f"{loaded.name}: no preprocessing known for this model (not an edgecv model, no "
                f"Rescaling/Normalization input layer): assumed --preprocess tf (pixels to [-1, 1]); "
                f"pass --preprocess none|tf|torch|caffe|mean=..;std=.. to say what it was trained on")
    return None


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
