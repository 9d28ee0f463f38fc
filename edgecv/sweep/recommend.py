"""``recommend``: which variants meet a device's latency (and memory, accuracy) constraints.

Candidates are the registered variants (their deployed ops are cached, so no TensorFlow is needed) or the
points of a finished sweep; each is predicted on the device with ``edgecv.devices.predict.predict_profile``.
Accuracy is the ImageNet top-1 *published* for the reference architecture (``models/paper_figures.csv``; none
for a sweep's .keras file or own head, see :func:`edgecv.report.published.lookup_point`), or,
for a sweep run with ``--eval-data``, the top-1 *measured* on that data (then candidates are ranked by it).
The ones that meet every constraint come first, best accuracy first; when none does, the
result names the binding constraint: the one that, if relaxed, would let some variant through.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgecv.errors import EdgecvError
from edgecv.formats import PREDICTED
from edgecv.records import MeasuredTop1, ProfileResult
from edgecv.validate import positive_float

if TYPE_CHECKING:
    from edgecv.report.published import Published

MIB = 2**20
PRECISIONS = PREDICTED  # the precisions the device predictor models


@dataclass(frozen=True)
class Candidate:
    model: str
    precision: str
    latency_ms: float
    band_low_ms: float
    band_high_ms: float
    peak_memory_bytes: int
    fits_ram: bool
    macs: int
    published_top1: float | None  # percent, published for the reference architecture
    published_source: str = ""
    source: str = "registry"  # registry | sweep point file
    measured_top1: float | None = None  # percent, measured on the sweep's --eval-data (sweeps only)


@dataclass(frozen=True)
class Recommendation:
    device: str
    budget_ms: float
    max_memory_mb: float | None
    min_top1: float | None  # fraction 0..1
    precisions: tuple[str, ...]
    source: str
    fits: tuple[Candidate, ...]  # meet every constraint, best published accuracy first
    considered: int
    binding: tuple[str, ...] = ()  # constraint(s) that leave nothing when none fits
    explanation: str = ""
    warnings: tuple[str, ...] = field(default=())
    ranked_by: str = "published"  # published | measured (a sweep with --eval-data)


def _check(budget_ms, max_memory_mb, min_top1) -> None:
    positive_float("--budget-ms", budget_ms, unit="milliseconds")
    if max_memory_mb is not None:
        positive_float("--max-memory-mb", max_memory_mb, unit="MB")
    if min_top1 is not None and (isinstance(min_top1, bool) or not isinstance(min_top1, (int, float))
                                 or not 0.0 <= min_top1 <= 1.0):
        raise EdgecvError(f"--min-top1: expected a fraction from 0 to 1 (0.70 = 70%). Received: {min_top1!r}")


def registry_candidates(device: str, precisions: tuple[str, ...], threads: int | None = None) -> list[Candidate]:
    from edgecv.devices.predict import predict_profile
    from edgecv.report.published import lookup_name
    from edgecv.sweep.registry_features import available, registry_static

    out = []
    for name in available():
        pub = lookup_name(name)
        for prec in precisions:
            pred = predict_profile(registry_static(name, prec), device, threads=threads)
            out.append(_candidate(name, prec, pred, pub, "registry"))
    return out


def _candidate(name: str, prec: str, prof: ProfileResult, pub: Published | None, source: str) -> Candidate:
    p = prof.prediction
    assert p is not None and prof.macs is not None  # a prediction of a static profile
    return Candidate(model=name, precision=prec, latency_ms=p.latency_ms, band_low_ms=p.band_low_ms,
                     band_high_ms=p.band_high_ms, peak_memory_bytes=p.peak_memory_bytes, fits_ram=p.fits_ram,
                     macs=prof.macs, published_top1=pub.top1 if pub else None,
                     published_source=pub.source if pub else "", source=source)


def sweep_candidates(folder: str, device: str, precisions: tuple[str, ...], threads: int | None = None) -> list[Candidate]:
    """The finished TFLite points of a sweep (``DIR/points/*.json``), predicted on ``device``."""
    from edgecv.devices.predict import predict_profile
    from edgecv.report.published import lookup_point
    from edgecv.sweep.api import load_results

    results = load_results(folder)  # a clear error when the folder is not a sweep
    measured = results.get("measured") if isinstance(results.get("measured"), dict) else {}
    out = []
    for f in [Path(folder) / "points" / n for n in results.get("point_files", [])]:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        pt = rec.get("point", {})
        if rec.get("status") != "ok" or pt.get("format") != "tflite" or pt.get("precision") not in precisions:
            continue
        pred = predict_profile(ProfileResult.from_dict(rec["static"]), device, threads=threads)
        pub = lookup_point(pt)  # as the sweep's rows: not for a user's .keras file or head (--classes)
        cand = _candidate(pt["model"], pt["precision"], pred, pub, str(f))
        m = MeasuredTop1.from_dict(measured.get(f.name))
        if m is not None:
            cand = dataclasses.replace(cand, measured_top1=m.top1)
        out.append(cand)
    if not out:
        raise EdgecvError(f"--from-sweep: no finished TFLite points with precision {', '.join(precisions)} "
                          f"in {folder!r}")
    return out


def recommend(device: str, budget_ms: float, *, max_memory_mb: float | None = None, min_top1: float | None = None,
              precision: str | None = None, from_sweep: str | None = None,
              threads: int | None = None) -> Recommendation:
    """Variants that run within ``budget_ms`` on ``device`` (and the other constraints), best published
    accuracy first (then fastest). ``min_top1`` is a fraction (0.70 = 70 % published top-1)."""
    from edgecv.devices.profile import load_profile

    _check(budget_ms, max_memory_mb, min_top1)
    dev = load_profile(device)  # unknown device: one line with close names
    if precision is None:
        precisions = PRECISIONS
    else:
        if precision not in PRECISIONS:
            from edgecv.errors import suggest

            raise EdgecvError(f"--precision: expected one of {', '.join(PRECISIONS)}. Received: {precision!r}"
                              f"{suggest(precision, PRECISIONS)}")
        precisions = (precision,)
    cands = (sweep_candidates(from_sweep, device, precisions, threads) if from_sweep
             else registry_candidates(device, precisions, threads))

    ranked_by = "measured" if any(c.measured_top1 is not None for c in cands) else "published"

    def acc(c) -> float | None:
        return c.measured_top1 if ranked_by == "measured" else c.published_top1

    mem_limit = None if max_memory_mb is None else max_memory_mb * 1e6
    checks = {
        "--budget-ms": lambda c: c.latency_ms <= budget_ms,
        "--max-memory-mb": lambda c: mem_limit is None or c.peak_memory_bytes <= mem_limit,
        "--min-top1": lambda c: min_top1 is None or (acc(c) is not None and acc(c) / 100.0 >= min_top1),
        "RAM": lambda c: c.fits_ram,
    }

    def ok(c, skip=None):
        return all(fn(c) for name, fn in checks.items() if name != skip)

    fits = sorted((c for c in cands if ok(c)),
                  key=lambda c: (-(acc(c) if acc(c) is not None else -1.0), c.latency_ms))
    binding: list[str] = []
    explanation = ""
    if not fits:
        for name in checks:
            relaxed = [c for c in cands if ok(c, skip=name)]
            if relaxed:
                binding.append(name)
        explanation = _explain(binding, cands, checks, ok, budget_ms, max_memory_mb, min_top1, dev.id)
    return Recommendation(device=dev.id, budget_ms=float(budget_ms), max_memory_mb=max_memory_mb, min_top1=min_top1,
                          precisions=precisions, source=from_sweep or "registry", fits=tuple(fits),
                          considered=len(cands), binding=tuple(binding), explanation=explanation,
                          ranked_by=ranked_by)


def _explain(binding, cands, checks, ok, budget_ms, max_memory_mb, min_top1, device) -> str:
    if not binding:
        return (f"no variant meets the constraints on {device}, and relaxing any single one is not enough "
                f"(each of --budget-ms {budget_ms:g}"
                + (f", --max-memory-mb {max_memory_mb:g}" if max_memory_mb is not None else "")
                + (f", --min-top1 {min_top1:g}" if min_top1 is not None else "") + " rules out some)")
    parts = []
    for name in binding:
        relaxed = [c for c in cands if ok(c, skip=name)]
        if name == "--budget-ms":
            best = min(relaxed, key=lambda c: c.latency_ms)
            parts.append(f"--budget-ms {budget_ms:g} is binding: the fastest variant that meets the other "
                         f"constraints, {best.model} {best.precision}, is predicted at {best.latency_ms:.1f} ms")
        elif name == "--max-memory-mb":
            best = min(relaxed, key=lambda c: c.peak_memory_bytes)
            parts.append(f"--max-memory-mb {max_memory_mb:g} is binding: the smallest variant that meets the "
                         f"other constraints, {best.model} {best.precision}, needs "
                         f"{best.peak_memory_bytes / 1e6:.1f} MB")
        elif name == "--min-top1":
            best = max(relaxed, key=lambda c: c.published_top1 if c.published_top1 is not None else -1)
            acc = "no published top-1" if best.published_top1 is None else f"{best.published_top1:.1f}% published top-1"
            parts.append(f"--min-top1 {min_top1:g} is binding: within the other constraints the most accurate is "
                         f"{best.model} {best.precision} ({acc})")
        else:
            parts.append(f"the {device}'s RAM is binding: the variants that meet the other constraints do not fit")
    return f"no variant fits on {device}: " + "; ".join(parts)
