"""``evaluate()``: accuracy of trained artifacts on the user's labelled data, the API behind ``edgecv evaluate``.

Each artifact (``.keras``, ``.tflite``, ``.onnx``) is loaded and run in its own runtime in a child process
(:mod:`edgecv.evaluation._child`; a crash or hang is one line, never edgecv's end), on the images decoded once
per input size in this process and preprocessed the way its sidecar (``<artifact>.json``, written by
``edgecv quantize``) records; a ``.keras`` file gets the preprocessing edgecv infers when it loads it.

Per artifact: top-1, top-5 (more than 5 classes), and against the float reference (``reference``, else the
first ``.keras`` or float32 artifact given, else the first artifact): the drop in top-1 points with a 95%
paired bootstrap interval over the images, top-1 agreement, and the classes that lose most.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.builders.arch import Preprocessing
from edgecv.conversion.progress import Reporter
from edgecv.errors import EdgecvError, one_line
from edgecv.evaluation.data import DataSummary, Dataset, Source, load, open_source
from edgecv.evaluation.metrics import (BOOTSTRAP_RESAMPLES, CONFIDENCE, ClassLoss, class_losses, paired_drop,
                                       topk_correct)
from edgecv.records import jsonable

SUFFIXES = (".keras", ".tflite", ".onnx")
DEFAULT_PRE = Preprocessing(range=(-1.0, 1.0), mean=(127.5,) * 3, std=(127.5,) * 3, in_model=False)
SIDECAR_MAX_BYTES = 64 * 2**20
INSPECT_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 3600.0
INTERVAL = f"paired bootstrap over images ({BOOTSTRAP_RESAMPLES} resamples, seed 0), percentile"


@dataclass(frozen=True)
class ArtifactInfo:
    """What the child found in an artifact, and the preprocessing that feeds it."""

    path: str
    format: str  # keras | tflite | onnx
    precision: str  # from the sidecar; float32 for .keras; "unknown" without a sidecar
    runtime: str
    input_shape: tuple[int, int, int]  # H, W, C
    classes: int  # size of the output vector
    preprocessing: Any  # has .apply(pixels) and mean/std/in_model
    preprocessing_source: str  # "sidecar" | "keras model" | "default (no sidecar)"
    file_bytes: int


@dataclass(frozen=True)
class ArtifactAccuracy:
    """One artifact on the evaluation data (fractions 0..1; drops in percentage points)."""

    path: str
    format: str
    precision: str
    runtime: str
    samples: int
    top1: float
    top5: float | None  # None with 5 classes or fewer
    is_reference: bool
    drop_points: float  # reference top-1 minus this top-1, in points (0 for the reference)
    drop_ci95_points: tuple[float, float]  # paired bootstrap interval of the drop
    agreement: float  # top-1 agreement with the reference
    worst_classes: tuple[ClassLoss, ...]
    file_bytes: int
    preprocessing: str
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    data: DataSummary
    reference: str
    results: tuple[ArtifactAccuracy, ...]
    interval: str = INTERVAL
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)




# --- the child process --------------------------------------------------------------------------------

def _child_cmd(*args: str) -> list[str]:
    from edgecv.isolation import python_argv

    return python_argv(module="edgecv.evaluation._child", args=args)


def _run_child(cmd: list[str], outdir: Path, what: str, timeout_s: float) -> dict:
    """Run the child (:mod:`edgecv.isolation`: isolated from the working folder, killed on a timeout or when
    edgecv ends) and return its report, or raise a one-line EdgecvError."""
    from edgecv import isolation

    try:
        proc = isolation.run(cmd, timeout_s, env=isolation.child_env({"TF_CPP_MIN_LOG_LEVEL": "3"}))
    except subprocess.TimeoutExpired:
        raise EdgecvError(f"{what}: the runtime did not finish within {timeout_s:.0f} s (killed)") from None
    rc = proc.returncode
    report = outdir / "report.json"
    rep = json.loads(report.read_text()) if report.exists() else {}
    if rc == 0 and "error" not in rep:
        return rep
    # Without the report's error (the child died) its last stderr line is the reason (a traceback ends with the
    # exception, a runtime that aborts prints its failed check last), not one_line of the whole stderr.
    tail = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    msg = rep.get("error") or (tail[-1] if tail else "")
    how = f"crashed (signal {-rc})" if rc < 0 else f"failed (exit {rc})"
    raise EdgecvError(f"{what}: the runtime {how}: {msg}".rstrip(": "))


def _read_sidecar(path: Path) -> dict | None:
    side = Path(f"{path}.json")
    if not side.is_file():
        return None
    try:
        if side.stat().st_size > SIDECAR_MAX_BYTES:
            raise EdgecvError(f"{side.name}: sidecar larger than {SIDECAR_MAX_BYTES // 2**20} MiB")
        d = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EdgecvError(f"{side.name}: cannot read the sidecar as JSON: {one_line(exc)}") from None
    if not isinstance(d, dict):
        raise EdgecvError(f"{side.name}: the sidecar is not a JSON object")
    return d


def preprocessing_from_dict(d: Any, where: str) -> Preprocessing:
    """A sidecar's ``preprocessing`` object -> Preprocessing (checked: it is untrusted input)."""
    try:
        rng = tuple(float(v) for v in d["range"])
        mean = tuple(float(v) for v in d["mean"])
        std = tuple(float(v) for v in d["std"])
        in_model = bool(d["in_model"])
    except (KeyError, TypeError, ValueError):
        raise EdgecvError(f"{where}: the sidecar's preprocessing lacks range/mean/std/in_model") from None
    if len(rng) != 2 or not mean or len(mean) != len(std) or not all(np.isfinite(mean + std + rng)) \
            or any(s == 0 for s in std):
        raise EdgecvError(f"{where}: the sidecar's preprocessing is invalid (mean {mean}, std {std})")
    bgr = d.get("channel_order") == "BGR"
    try:
        from edgecv.conversion.preprocess import InputPreprocessing
    except ImportError:  # pragma: no cover - older trees: no channel order
        return Preprocessing(range=rng, mean=mean, std=std, in_model=in_model)
    return InputPreprocessing(str(d.get("preprocess") or "sidecar"), mean, std, in_model=in_model, bgr=bgr,
                              source="sidecar")


def describe(pre) -> str:
    if pre.in_model:
        return "raw pixels 0..255"
    if getattr(pre, "bgr", False):
        return "BGR, " + describe(dataclasses.replace(pre, bgr=False))
    m = pre.mean[0] if len(set(pre.mean)) == 1 else list(pre.mean)
    s = pre.std[0] if len(set(pre.std)) == 1 else list(pre.std)
    return f"(x - {m:g}) / {s:g}" if isinstance(m, float) and isinstance(s, float) else f"(x - {m}) / {s}"


def check_artifact(path: str | os.PathLike, option: str = "ARTIFACT") -> Path:
    p = Path(path)
    if not p.exists():
        raise EdgecvError(f"{option}: no such file. Received: {str(path)!r}")
    if not p.is_file():
        raise EdgecvError(f"{option}: not a regular file. Received: {str(path)!r}")
    if p.suffix.lower() not in SUFFIXES:
        raise EdgecvError(f"{option}: expected a .keras, .tflite or .onnx file. Received: {str(path)!r}")
    if p.stat().st_size == 0:
        raise EdgecvError(f"{option}: the file is empty. Received: {str(path)!r}")
    if p.suffix.lower() == ".keras":
        from edgecv.conversion.loading import check_keras_file

        check_keras_file(p, option)
    return p


def inspect(path: str | os.PathLike, option: str = "ARTIFACT") -> ArtifactInfo:
    """Load ``path`` in a child process: its input size, output size and runtime, and its preprocessing."""
    p = check_artifact(path, option)
    fmt = p.suffix.lower()[1:]
    with tempfile.TemporaryDirectory(prefix="edgecv-eval-") as tmp:
        rep = _run_child(_child_cmd("inspect", str(p.resolve()), tmp), Path(tmp), f"{p.name}",
                         INSPECT_TIMEOUT_S)
    shape = rep["input_shape"]
    if len(shape) != 4 or any(int(s) < 1 for s in shape[1:]):
        raise EdgecvError(f"{option}: {p.name} takes input of shape {shape}; evaluation needs an image model with "
                          "a fixed (batch, H, W, C) input")
    out = rep["output_shape"]
    if len(out) < 2 or int(out[-1]) < 2:
        raise EdgecvError(f"{option}: {p.name} gives output of shape {out}; evaluation needs a class vector")
    side = _read_sidecar(p) if fmt != "keras" else None
    if fmt == "keras":
        pre, src, precision = preprocessing_from_dict(rep["preprocessing"], p.name), "keras model", "float32"
    elif side is not None and isinstance(side.get("preprocessing"), dict):
        pre, src = preprocessing_from_dict(side["preprocessing"], f"{p.name}.json"), "sidecar"
        precision = str(side.get("precision") or "unknown")
    else:
        pre, src, precision = DEFAULT_PRE, "default (no sidecar)", "unknown"
    return ArtifactInfo(str(p), fmt, precision, rep["runtime"], tuple(int(s) for s in shape[1:]), int(out[-1]),
                        pre, src, p.stat().st_size)


def run_outputs(path: str | os.PathLike, x: np.ndarray, batch: int = 32, threads: int = 2) -> np.ndarray:
    """The artifact's float32 outputs (N, classes) on model-ready ``x``, computed in a child process."""
    p = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgecv-eval-") as tmp:
        xin = Path(tmp) / "x.npy"
        np.save(xin, np.ascontiguousarray(x, np.float32))
        _run_child(_child_cmd("run", str(p.resolve()), str(xin), tmp, str(batch), str(threads)), Path(tmp),
                   p.name, RUN_TIMEOUT_S)
        y = np.load(Path(tmp) / "y.npy", allow_pickle=False)
    if y.shape[0] != len(x):
        raise EdgecvError(f"{p.name}: the runtime returned {y.shape[0]} outputs for {len(x)} images")
    return y


# --- metrics over outputs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scored:
    """One artifact's outputs on the data, before they are compared with the reference."""

    info: ArtifactInfo
    outputs: np.ndarray
    seconds: float


def score(runs: list[Scored], reference: int, data: Dataset) -> tuple[ArtifactAccuracy, ...]:
    """Metrics of every run against ``runs[reference]`` (pure: the chooser and ``evaluate`` share it)."""
    y = data.y
    names = data.summary.classes
    ref = runs[reference]
    ref_correct = topk_correct(ref.outputs, y, 1)
    ref_pred = np.argmax(ref.outputs, axis=1)
    out = []
    for i, r in enumerate(runs):
        correct = topk_correct(r.outputs, y, 1)
        top5 = float(topk_correct(r.outputs, y, 5).mean()) if r.outputs.shape[1] > 5 else None
        drop, lo, hi = paired_drop(ref_correct, correct)
        out.append(ArtifactAccuracy(
            path=r.info.path, format=r.info.format, precision=r.info.precision, runtime=r.info.runtime,
            samples=len(y), top1=round(float(correct.mean()), 6), top5=None if top5 is None else round(top5, 6),
            is_reference=i == reference, drop_points=round(drop, 4), drop_ci95_points=(round(lo, 4), round(hi, 4)),
            agreement=round(float(np.mean(np.argmax(r.outputs, axis=1) == ref_pred)), 6),
            worst_classes=class_losses(ref_correct, correct, y, names), file_bytes=r.info.file_bytes,
            preprocessing=f"{describe(r.info.preprocessing)} ({r.info.preprocessing_source})",
            seconds=round(r.seconds, 3)))
    return tuple(out)


def _is_float(info: ArtifactInfo) -> bool:
    return info.format == "keras" or info.precision == "float32"


def evaluate(artifacts: list[str | os.PathLike] | tuple, data: str | os.PathLike, *,
             labels: str | os.PathLike | None = None, reference: str | os.PathLike | None = None, batch: int = 32,
             threads: int = 2, reporter: Reporter | None = None) -> Evaluation:
    """Measure ``artifacts`` on the labelled ``data`` (folder of class folders, or .npz with x/y)."""
    reporter = reporter or Reporter()
    if not artifacts:
        raise EdgecvError("ARTIFACT: give at least one .keras, .tflite or .onnx file")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise EdgecvError(f"--batch: expected an integer >= 1. Received: {batch!r}")
    paths = [check_artifact(a) for a in artifacts]
    ref_path = check_artifact(reference, "--reference") if reference is not None else None
    src = open_source(data, labels)
    todo = list(paths)
    if ref_path is not None and all(p.resolve() != ref_path.resolve() for p in paths):
        todo.insert(0, ref_path)
    with reporter.task(f"inspecting {len(todo)} model(s)", total=len(todo)) as advance:
        infos = []
        for p in todo:
            infos.append(inspect(p, "--reference" if p is ref_path else "ARTIFACT"))
            advance(1)
    for info in infos:
        _check_classes(info, src)
    cache: dict[tuple[int, int, int], Dataset] = {}
    runs: list[Scored] = []
    for info in infos:
        if info.input_shape not in cache:
            cache[info.input_shape] = load(src, info.input_shape, reporter)
        ds = cache[info.input_shape] = _check_labels(info, cache[info.input_shape])
        x = ds.x if ds.summary.ready else info.preprocessing.apply(ds.x)
        t0 = time.perf_counter()
        with reporter.task(f"running {Path(info.path).name} on {len(x)} images ({info.runtime.split()[0]})"):
            outputs = run_outputs(info.path, x, batch, threads)
        runs.append(Scored(info, outputs, time.perf_counter() - t0))
    if ref_path is not None:
        ref_i = next(i for i, r in enumerate(runs) if Path(r.info.path).resolve() == ref_path.resolve())
    else:
        ref_i = next((i for i, r in enumerate(runs) if _is_float(r.info)), 0)
    sizes = {r.info.input_shape for r in runs}
    ds = cache[runs[ref_i].info.input_shape]
    if len(sizes) > 1:
        reporter.warn(f"the models take different input sizes ({', '.join('x'.join(map(str, s)) for s in sizes)}): "
                      "each ran on the images resized to its own")
    results = score(runs, ref_i, ds)
    return Evaluation(data=ds.summary, reference=runs[ref_i].info.path, results=results)


def _check_classes(info: ArtifactInfo, src: Source) -> None:
    if src.kind == "dir" and info.classes != len(src.classes):
        raise EdgecvError(f"--data: {len(src.classes)} classes in {str(src.path)!r} but {Path(info.path).name} has "
                          f"{info.classes} outputs (pass --labels FILE naming the model's classes in order)")
    if src.kind == "npz" and src.classes and info.classes != len(src.classes):
        raise EdgecvError(f"--labels: {len(src.classes)} class names but {Path(info.path).name} has "
                          f"{info.classes} outputs")


def _check_labels(info: ArtifactInfo, ds: Dataset) -> Dataset:
    if int(ds.y.max()) >= info.classes:
        raise EdgecvError(f"--data: label {int(ds.y.max())} in {ds.summary.source!r} is out of range for "
                          f"{Path(info.path).name}, which has {info.classes} outputs")
    if ds.summary.kind == "npz" and len(ds.summary.classes) != info.classes:
        names = tuple(str(i) for i in range(info.classes))
        counts = tuple(int(k) for k in np.bincount(ds.y, minlength=info.classes))
        return dataclasses.replace(ds, summary=dataclasses.replace(ds.summary, classes=names, per_class=counts))
    return ds
