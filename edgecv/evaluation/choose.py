"""``choose_precision()``: the fastest TFLite precision whose accuracy drop on the user's data holds a budget.

The API behind ``edgecv quantize MODEL --max-drop POINTS --eval-data DIR [--device ID]``. Candidates, in order:

1. full int8;
2. int8 with the layers ``--debug-layers`` names kept in float (only when int8 misses the budget and the
   diagnosis blames single layers; when it blames the activations or the weights, this step is skipped);
3. int16x8 (16-bit activations, 8-bit weights); 4. float16; 5. dynamic range (int8 weights, float
   activations); 6. float32.

Each is converted by :func:`edgecv.conversion.api.quantize` (calibrated on ``--calib``), run in its own runtime in
a child process on the evaluation images (:func:`edgecv.evaluation.api.run_outputs`), compared with the Keras
model on the same images (drop in top-1 points with a 95% paired bootstrap interval), and priced: predicted on
``device`` (:func:`edgecv.devices.predict.predict_profile`) or measured on this host without one. The winner is
the fastest candidate whose drop (point estimate) is at most ``max_drop``; on a tie (3 significant digits) int16x8
comes last (its predicted price is a lower bound) and then the smaller file wins. The
evaluation images must not be calibration images: both are hashed sample by sample (model-ready float32 bytes)
and any overlap is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.conversion.progress import Reporter
from edgecv.errors import EdgecvError
from edgecv.evaluation.api import ArtifactAccuracy, ArtifactInfo, Scored, run_outputs, score
from edgecv.evaluation.data import DataSummary, load, open_source, sample_hashes
from edgecv.records import jsonable

PRECISIONS = ("int8", "int8+float", "int16x8", "float16", "dynamic", "float32")
HOST_RUNS = 30
HOST_MIN_TIME_S = 0.5


@dataclass(frozen=True)
class Candidate:
    """One precision tried: its accuracy on the evaluation data and its price."""

    label: str  # int8 | int8+float | int16x8 | float16 | dynamic | float32
    precision: str  # the quantize() precision
    float_layers: tuple[str, ...]
    path: str | None  # None when the conversion failed
    file_bytes: int | None
    top1: float | None
    drop_points: float | None
    drop_ci95_points: tuple[float, float] | None
    agreement: float | None
    latency_ms: float | None
    latency_source: str  # "predicted on rpi4" | "measured on host (p50)"
    holds_budget: bool
    note: str = ""  # why it was skipped or failed


@dataclass(frozen=True)
class Choice:
    model: str
    max_drop_points: float
    device: str | None
    data: DataSummary
    calibration_samples: int
    overlap: str  # one line: the content-hash check of evaluation against calibration samples
    reference_top1: float
    candidates: tuple[Candidate, ...]
    winner: Candidate | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


def _price(path: str, device: str | None) -> tuple[float, str]:
    if device is not None:
        from edgecv.devices.predict import predict_profile
        from edgecv.profiling.api import static_profile

        pred = predict_profile(static_profile(path), device)
        return float(pred.prediction.latency_ms), f"predicted on {pred.device}"
    from edgecv.profiling.api import profile

    res = profile(path, runs=HOST_RUNS, min_time_s=HOST_MIN_TIME_S, warmup_runs=3)
    return float(res.latency_ms.p50), "measured on host (p50)"


def check_overlap(calib_x: np.ndarray, eval_x: np.ndarray) -> int:
    """How many evaluation samples are also calibration samples (same float32 content)."""
    cal = set(sample_hashes(calib_x))
    return sum(1 for h in sample_hashes(eval_x) if h in cal)


def choose_precision(model: Any, *, max_drop: float, eval_data: str | os.PathLike, calib: str | os.PathLike,
                     labels: str | os.PathLike | None = None, device: str | None = None, samples: int = 100,
                     verify_samples: int = 16, output: str | os.PathLike = "edgecv_out", seed: int = 0,
                     preprocess: Any = None, batch: int = 32, reporter: Reporter | None = None) -> Choice:
    """Try the precisions in order, measure and price each, keep the fastest whose drop is <= ``max_drop``."""
    from edgecv.conversion.api import quantize
    from edgecv.conversion.loading import load_model, resolve_preprocessing
    from edgecv.conversion.calibration import load_calibration, precheck
    from edgecv.fileio import atomic_path, check_output_dir, write_sidecar
    from edgecv.native import native_output_silenced

    reporter = reporter or Reporter()
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not np.isfinite(max_drop) \
            or max_drop < 0:
        raise EdgecvError(f"--max-drop: expected a number of points >= 0. Received: {max_drop!r}")
    if calib is None or str(calib) == "synthetic":
        raise EdgecvError("--calib: choosing a precision needs real calibration images (a folder or .npy/.npz), "
                          f"disjoint from --eval-data. Received: {calib!r}")
    if device is not None:
        from edgecv.devices.profile import load_profile

        load_profile(device)  # an unknown id fails before the slow work
    src = open_source(eval_data, labels, option="--eval-data")
    precheck(calib)
    folder = check_output_dir(output, option="--output-dir")

    with reporter.task("loading model"):
        loaded = load_model(model)
    km = loaded.keras_model
    shape = tuple(km.input_shape[1:])
    if len(shape) != 3 or None in shape:
        raise EdgecvError(f"MODEL: choosing a precision needs an image model with a fixed (H, W, C) input. "
                          f"Received input shape {shape}")
    classes = int(km.output_shape[-1])
    if src.kind == "dir" and classes != len(src.classes):
        raise EdgecvError(f"--eval-data: {len(src.classes)} classes in {str(src.path)!r} but {loaded.name} has "
                          f"{classes} outputs (pass --labels FILE naming the model's classes in order)")
    pre = resolve_preprocessing(loaded, preprocess, reporter)
    extra = {} if preprocess is None else {"preprocess": preprocess}
    ds = load(src, shape, reporter)
    if int(ds.y.max()) >= classes:
        raise EdgecvError(f"--eval-data: label {int(ds.y.max())} is out of range for {loaded.name} ({classes} "
                          "outputs)")
    x = ds.x if ds.summary.ready else pre.apply(ds.x)

    cal = load_calibration(calib, input_shape=shape, preprocessing=pre, samples=samples, holdout=verify_samples,
                           seed=seed, reporter=Reporter())
    cal_x = np.concatenate([cal.calib, cal.holdout])
    shared = check_overlap(cal_x, x)
    if shared:
        raise EdgecvError(f"--eval-data: {shared} of the {len(x)} evaluation images are also calibration samples "
                          f"(--calib, same content): evaluate on images held out from calibration")
    overlap = (f"evaluation split: {len(x)} images, none among the {len(cal_x)} calibration/verification samples "
               "(checked by content hash)")
    reporter.info(overlap)

    with reporter.task(f"reference: {loaded.name} in Keras on {len(x)} images"), native_output_silenced():
        ref_out = np.concatenate([np.asarray(km(x[i:i + batch], training=False), np.float32).reshape(
            len(x[i:i + batch]), -1) for i in range(0, len(x), batch)])
    ref_info = ArtifactInfo(loaded.source, "keras", "float32", "keras (in process)", shape, classes, pre,
                            "model", 0)
    ref_top1 = float(np.mean(np.argmax(ref_out, axis=1) == ds.y))

    cands: list[Candidate] = []
    kept = folder / "candidates"
    with tempfile.TemporaryDirectory(prefix="edgecv-choose-") as tmp:
        work = Path(tmp)
        todo = [("int8", "int8", ()), ("int8+float", "int8", None), ("int16x8", "int16x8", ()),
                ("float16", "float16", ()), ("dynamic", "dynamic", ()), ("float32", "float32", ())]
        int8_debug = None
        for label, precision, float_layers in todo:
            if label == "int8+float":
                first = cands[0]
                if first.holds_budget:
                    cands.append(_skipped(label, "int8 already holds the budget"))
                    continue
                with reporter.task("int8 --debug-layers diagnosis"):
                    try:
                        int8_debug = quantize(km, "int8", calib=calib, samples=samples, verify_samples=verify_samples,
                                              output=str(work / "debug_int8.tflite"), debug_layers=True, seed=seed,
                                              isolate_load=False, **extra)
                    except EdgecvError as exc:
                        cands.append(_skipped(label, f"diagnosis failed: {exc}"))
                        continue
                diag = int8_debug.diagnosis
                if diag is None or diag.culprit != "layers" or not diag.best_float_layer:
                    why = "no diagnosis" if diag is None else f"the diagnosis blames the {diag.culprit}"
                    cands.append(_skipped(label, f"{why}, not single layers"))
                    continue
                float_layers = (diag.best_float_layer,)
            name = f"{loaded.name}_{label.replace('+', '_')}.tflite"
            t0 = time.perf_counter()
            with reporter.task(f"candidate {label}: converting, evaluating on {len(x)} images, pricing"):
                try:
                    res = quantize(km, precision, calib=calib, samples=samples, verify_samples=verify_samples,
                                   output=str(work / name), float_layers=float_layers, seed=seed,
                                   isolate_load=False, **extra)
                    out = run_outputs(res.path, x, batch)
                    info = ArtifactInfo(res.path, "tflite", label, "litert", shape, classes, pre, "model",
                                        res.file_bytes)
                    acc: ArtifactAccuracy = score([Scored(ref_info, ref_out, 0.0),
                                                   Scored(info, out, time.perf_counter() - t0)], 0, ds)[1]
                    latency, how = _price(res.path, device)
                except EdgecvError as exc:
                    cands.append(_skipped(label, f"failed: {exc}", precision, float_layers))
                    continue
            cands.append(Candidate(label, precision, tuple(float_layers), name, res.file_bytes, acc.top1,
                                   acc.drop_points, acc.drop_ci95_points, acc.agreement, round(latency, 4), how,
                                   acc.drop_points <= max_drop))
        ok = [c for c in cands if c.holds_budget and c.latency_ms is not None]
        winner = min(ok, key=_rank) if ok else None
        # keep every candidate's artifact (and sidecar) beside the winner, which takes the usual name
        kept.mkdir(parents=True, exist_ok=True)
        for c in cands:
            if c.path is None:
                continue
            for suffix in ("", ".json"):
                src_f = work / f"{c.path}{suffix}"
                if src_f.exists():  # copied under a temporary name: a kill mid-copy leaves no truncated file
                    with atomic_path(kept / f"{c.path}{suffix}") as tmp_kept:
                        shutil.copyfile(src_f, tmp_kept)
    cands = [dataclasses.replace(c, path=str(kept / c.path)) if c.path else c for c in cands]
    winner = next((c for c in cands if winner is not None and c.label == winner.label), None)
    reason = _reason(winner, cands, max_drop, device)
    choice = Choice(loaded.name, float(max_drop), device, ds.summary, len(cal_x), overlap, round(ref_top1, 6),
                    tuple(cands), winner, reason)
    if winner is not None:
        final = folder / f"{loaded.name}_{winner.label.replace('+', '_')}.tflite"
        content = Path(winner.path).read_bytes()
        with atomic_path(final) as tmp_final:  # never a partial artifact under the final name
            tmp_final.write_bytes(content)
            # the old sidecar describes the old artifact: gone before the new one takes its place (as quantize)
            Path(f"{final}.json").unlink(missing_ok=True)
        side = json.loads(Path(f"{winner.path}.json").read_text())
        side["path"], side["sidecar"] = str(final), f"{final}.json"
        side["precision_choice"] = choice.to_dict()
        side["precision_choice"].pop("data", None)
        side["precision_choice"]["data"] = {"source": ds.summary.source, "samples": ds.summary.samples,
                                            "classes": len(ds.summary.classes)}
        write_sidecar(final, content, f"{final}.json", side)  # unless a concurrent writer's artifact took its place
        choice = dataclasses.replace(choice, winner=dataclasses.replace(winner, path=str(final)))
    return choice


def _rank(c: Candidate) -> tuple:
    """Fastest first (latencies equal to 3 significant digits tie); int16x8 loses ties (its price is a lower
    bound: no XNNPACK kernels, priced as float32 when predicted); then the smaller file."""
    return (float(f"{c.latency_ms:.3g}"), c.label == "int16x8", c.file_bytes)


def _skipped(label: str, note: str, precision: str | None = None, float_layers=()) -> Candidate:
    return Candidate(label, precision or label.split("+")[0], tuple(float_layers or ()), None, None, None, None,
                     None, None, None, "", False, note)


def _reason(winner: Candidate | None, cands: list[Candidate], max_drop: float, device: str | None) -> str:
    where = f"on {device} (predicted)" if device else "on this host (measured)"
    if winner is None:
        return (f"no precision holds a drop of at most {max_drop:g} points on this data; float32 is the model as "
                "trained: check the evaluation data and the preprocessing")
    faster_out = [c for c in cands if c.latency_ms is not None and not c.holds_budget
                  and c.latency_ms < winner.latency_ms]
    text = (f"{winner.label}: the fastest {where} of the precisions that hold the budget "
            f"({winner.latency_ms:.3g} ms, drop {winner.drop_points:+.2f} <= {max_drop:g} points)")
    if faster_out:
        text += "; faster but over budget: " + ", ".join(f"{c.label} ({c.latency_ms:.3g} ms, drop "
                                                         f"{c.drop_points:+.2f})" for c in faster_out)
    return text
