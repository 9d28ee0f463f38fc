"""Accuracy metrics on labelled samples (pure numpy): top-k, the paired drop from a reference with a
bootstrap interval, top-1 agreement, and the classes that lose most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ClassLoss:
    """One class: its reference and artifact top-1 (fractions) and the drop in points."""

    name: str
    samples: int
    reference_top1: float
    top1: float
    drop_points: float


def topk_correct(probs: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Per sample, whether the label is among the ``k`` best outputs.

    k = 1: the argmax (first index on a tie) is the label (bool). k > 1: the chance that it is when ties are
    broken at random (float 0..1): int8 outputs take few distinct values, and a flat output would otherwise count
    as top-5 correct for every label (ties won) or for none (ties lost). With ``g`` classes scoring strictly
    higher and ``e`` others scoring the same, the tied group holds ranks g..g+e, of which ``k - g`` are in the
    top k."""
    probs = np.asarray(probs)
    if k == 1:
        return np.argmax(probs, axis=1) == y
    label_score = probs[np.arange(len(y)), y][:, None]
    higher = (probs > label_score).sum(axis=1)
    tied = (probs == label_score).sum(axis=1)  # includes the label itself
    return np.clip((k - higher) / tied, 0.0, 1.0)


def paired_drop(ref_correct: np.ndarray, correct: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Drop in top-1 points (reference minus artifact) and its 95% interval, by a paired bootstrap over
    images: the same resampled images score both models, so the interval reflects only the images on which
    they disagree (seeded: the same inputs give the same interval)."""
    d = ref_correct.astype(np.float64) - correct.astype(np.float64)
    n = len(d)
    drop = 100.0 * float(d.mean())
    if n == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory: 250 x n indices at a time
        k = min(250, resamples - start)
        means[start:start + k] = d[rng.integers(0, n, (k, n))].mean(axis=1)
    alpha = (1.0 - CONFIDENCE) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return drop, 100.0 * float(lo), 100.0 * float(hi)


def class_losses(ref_correct: np.ndarray, correct: np.ndarray, y: np.ndarray, names: tuple[str, ...],
                 worst: int = 3) -> tuple[ClassLoss, ...]:
    """The ``worst`` classes by drop in points (only classes that lose something)."""
    rows = []
    for c, name in enumerate(names):
        m = y == c
        k = int(m.sum())
        if k == 0:
            continue
        r, a = float(ref_correct[m].mean()), float(correct[m].mean())
        if r > a:
            rows.append(ClassLoss(name, k, round(r, 4), round(a, 4), round(100.0 * (r - a), 2)))
    rows.sort(key=lambda c: (-c.drop_points, c.name))
    return tuple(rows[:worst])
