"""On-target numerics: held-out samples run through the artifact on the target, compared with the host.

``prepare`` makes the samples (scikit-image's sample photos, cropped and resized to the model's input, then
preprocessed the way the artifact's sidecar says; seeded noise images if scikit-image is not installed) and
writes them as a float32 ``.npy`` for the runner. ``compare`` decodes the runner's outputs and compares them
with the same file run on the host's runtime (does the target's runtime compute what the host's does?) and,
when there is one, with the reference model on the host (the sidecar's source model, or ``reference``):
SQNR, top-1 agreement and the largest absolute error, with a warning when the target diverges from the host.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.errors import EdgecvError
from edgecv.records import NumericsMetrics, VerifyReport

# Same file, two runtimes: float32 kernels agree to ~1e-5 (>= 80 dB); below this the runtimes compute differently.
DIVERGENCE_SQNR_DB = 40.0
SIDECAR_MAX_BYTES = 16 * 2**20
SEED = 2024  # the samples' seed (crops and flips of the photos)


@dataclass(frozen=True)
class VerifyPlan:
    artifact: Path  # the file that runs on the target (a .keras is converted first)
    inputs_file: Path
    x: np.ndarray
    images: str  # where the samples came from
    preprocessing: str  # sidecar | keras model | default (no sidecar)
    host_runtime: str
    reference: Path | None  # a second reference on the host (the source model)


def _sidecar_source(artifact: Path) -> Path | None:
    side = Path(str(artifact) + ".json")
    try:
        if not side.is_file() or side.stat().st_size > SIDECAR_MAX_BYTES:
            return None
        d = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    src = d.get("source") if isinstance(d, dict) else None
    if not isinstance(src, str) or not src:
        return None
    for cand in (Path(src), side.parent / src, side.parent / Path(src).name):
        if cand.suffix.lower() in (".keras", ".tflite", ".onnx") and cand.is_file():
            return cand
    return None


def _images(n: int, h: int, w: int) -> tuple[np.ndarray, str]:
    try:
        from edgecv.conversion.calibration import sample_images

        return sample_images(n, (h, w), seed=SEED), f"{n} sample photos (scikit-image, seed {SEED})"
    except (EdgecvError, ImportError):
        rng = np.random.default_rng(SEED)
        base = rng.uniform(0, 255, size=(n, max(2, h // 8), max(2, w // 8), 3))
        img = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)[:, :h, :w]
        return img.astype(np.float32), f"{n} seeded noise images (scikit-image is not installed)"


def prepare(run_path: Path, n: int, tmpdir: Path, reference=None, artifact: Path | None = None) -> VerifyPlan:
    """Samples for ``run_path`` (model-ready, float32), saved in ``tmpdir``."""
    from edgecv.evaluation.api import inspect

    artifact = Path(artifact or run_path)
    info = inspect(run_path, "MODEL")
    h, w, c = info.input_shape
    pixels, what = _images(n, h, w)
    if c == 1:
        pixels = pixels.mean(axis=-1, keepdims=True)
    pre = info.preprocessing
    preprocessing = info.preprocessing_source
    is_keras = artifact.suffix.lower() == ".keras"
    if is_keras:  # profiled as the .keras it was converted from: the Keras model says how it preprocesses
        pre, preprocessing = inspect(artifact, "MODEL").preprocessing, "keras model"
    elif preprocessing.startswith("default"):
        side_pre = _sidecar_preprocessing(artifact)
        if side_pre is not None:
            pre, preprocessing = side_pre, "sidecar"
    x = np.ascontiguousarray(pre.apply(pixels), dtype=np.float32)
    inputs = Path(tmpdir) / "verify_inputs.npy"
    np.save(inputs, x)
    ref = None
    if reference is not None:
        ref = Path(reference)
        if not ref.is_file() or ref.suffix.lower() not in (".keras", ".tflite", ".onnx"):
            raise EdgecvError(f"--verify-reference: expected a .keras, .tflite or .onnx file. Received: {str(ref)!r}")
    elif is_keras:
        ref = artifact  # the converted file on the target against the Keras model on the host
    else:
        ref = _sidecar_source(artifact)
    if ref is not None and ref.resolve() == Path(run_path).resolve():
        ref = None
    return VerifyPlan(Path(run_path), inputs, x, what, preprocessing, info.runtime, ref)


def _sidecar_preprocessing(artifact: Path):
    try:
        from edgecv.evaluation.api import preprocessing_from_dict

        side = Path(str(artifact) + ".json")
        if not side.is_file() or side.stat().st_size > SIDECAR_MAX_BYTES:
            return None
        d = json.loads(side.read_text(encoding="utf-8"))
        return preprocessing_from_dict(d["preprocessing"], side.name) if isinstance(d, dict) else None
    except (OSError, ValueError, KeyError, TypeError, EdgecvError, ImportError):
        return None


def metrics(ref: np.ndarray, out: np.ndarray) -> NumericsMetrics:
    """SQNR of ``out`` against ``ref`` (dB; None when identical), top-1 agreement, largest absolute error."""
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    out = np.asarray(out, np.float64).reshape(len(out), -1)
    err = out - ref
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref * ref))
    sqnr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return NumericsMetrics(
        sqnr_db=None if sqnr is None else round(sqnr, 2) if math.isfinite(sqnr) else -999.0,
        bit_exact=noise == 0,
        top1_agreement=float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1))),
        max_abs_error=float(np.max(np.abs(err))) if err.size else 0.0,
        samples=int(len(ref)),
    )


def decode(block: dict | None) -> np.ndarray:
    if not isinstance(block, dict) or "outputs_b64" not in block:
        raise EdgecvError("--verify: the target's runner returned no outputs")
    raw = base64.b64decode(block["outputs_b64"])
    shape = tuple(int(s) for s in block["shape"])
    if len(raw) != 4 * math.prod(shape):
        raise EdgecvError("--verify: the target's outputs have the wrong size")
    return np.frombuffer(raw, dtype="<f4").reshape(shape)


def compare(plan: VerifyPlan, block: dict | None, res) -> VerifyReport:
    """The ``verify`` part of a target result (``ProfileResult.target.verify``)."""
    from edgecv.evaluation.api import run_outputs

    y_t = decode(block)
    y_h = run_outputs(plan.artifact, plan.x, batch=1, threads=1).reshape(len(y_t), -1)
    rt = res.runtime
    target_rt = f"{rt.name or '?'} {rt.version or ''}".strip()
    same = metrics(y_h, y_t)
    diverges = same.top1_agreement < 1.0 or (same.sqnr_db is not None and same.sqnr_db < DIVERGENCE_SQNR_DB)
    warnings = []
    if diverges:
        sq = "bit-exact" if same.sqnr_db is None else f"SQNR {same.sqnr_db:.1f} dB"
        warnings.append(f"the target's runtime ({target_rt}) computes this file differently from the host's "
                        f"({plan.host_runtime}): top-1 agreement {same.top1_agreement:.0%} over {len(y_t)} "
                        f"samples, {sq}, max error {same.max_abs_error:.3g}; judge accuracy on the target, "
                        "not on the host")
    ref = {}
    if plan.reference is not None:
        y_r = run_outputs(plan.reference, plan.x, batch=1, threads=1).reshape(len(y_t), -1)
        ref = {"reference": os.fspath(plan.reference), "vs_reference": metrics(y_r, y_t),
               "host_vs_reference": metrics(y_r, y_h)}
    return VerifyReport(samples=len(y_t), images=plan.images, preprocessing=plan.preprocessing,
                        host_runtime=plan.host_runtime, target_runtime=target_rt, vs_host=same,
                        diverges=bool(diverges), warnings=tuple(warnings), **ref)


def format_verify(v: VerifyReport) -> list[tuple[str, str]]:
    """Rows for the text output."""
    def one(m: NumericsMetrics) -> str:
        sq = "bit-exact" if m.bit_exact else f"SQNR {m.sqnr_db:.1f} dB"
        return f"{sq}, top-1 agreement {m.top1_agreement:.0%}, max error {m.max_abs_error:.3g}"

    rows = [("verify", f"{v.samples} samples ({v.images}; preprocessing: {v.preprocessing})"),
            ("  target vs host", f"{one(v.vs_host)} ({v.target_runtime} vs {v.host_runtime})")]
    if v.vs_reference is not None:
        rows.append(("  target vs reference", f"{one(v.vs_reference)} ({Path(v.reference).name} on the host)"))
        if v.host_vs_reference is not None:
            rows.append(("  host vs reference", one(v.host_vs_reference)))
    for w in v.warnings:
        rows.append(("  WARNING", w))
    return rows
