"""Published ImageNet top-1 of the reference architectures (``models/paper_figures.csv``).

These are the papers' figures for the *trained reference models* (MobileNets, MobileNetV2's slim README,
EfficientNet Table 2), not a measurement of anything edgecv built: a sweep's models have untrained
weights. They are matched only to exactly the same architecture (family, width, resolution).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

from edgecv.fileio import data_dir


@dataclass(frozen=True)
class Published:
    family: str
    variant: str
    width: float
    resolution: int
    top1: float  # percent
    macs_millions: float
    params_millions: float
    source: str


@lru_cache(maxsize=1)
def published_figures() -> tuple[Published, ...]:
    path = data_dir("models") / "paper_figures.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return tuple(Published(family=r["family"], variant=r["variant"], width=float(r["width"]),
                           resolution=int(r["resolution"]), top1=float(r["imagenet_top1"]),
                           macs_millions=float(r["macs_millions"]), params_millions=float(r["params_millions"]),
                           source=r["source"]) for r in rows if r.get("imagenet_top1"))


def lookup(family: str, width: float, resolution: int, variant: str | None = None) -> Published | None:
    """The published figure of exactly this architecture, or None."""
    for p in published_figures():
        if p.family != family or p.resolution != int(resolution):
            continue
        if family in ("efficientnet", "efficientnet_lite"):
            if variant is not None and p.variant == variant:
                return p
        elif abs(p.width - float(width)) < 1e-6:
            return p
    return None


def lookup_name(model_name: str) -> Published | None:
    """The published figure of the registry model ``model_name`` when it is exactly a paper's architecture: its
    ImageNet head (1000 classes, with top), depth multiplier 1 and RGB input; else None."""
    from edgecv.builders.registry import get_config
    from edgecv.errors import EdgecvError

    try:
        cfg = get_config(model_name)
    except EdgecvError:
        return None
    if cfg.classes != 1000 or not cfg.include_top or cfg.depth_multiplier != 1 or cfg.input_channels != 3:
        return None
    return lookup(cfg.family, cfg.width, cfg.resolution, cfg.variant)


def lookup_point(point: dict) -> Published | None:
    """The published figure of a sweep point (its ``point`` record), or None when the row is not the paper's
    ImageNet model: a user's ``.keras`` file (family ``keras``) or a registry model with its own head
    (``--classes``, named ``..._c10``). A 1000-class model with a ``--weights`` file keeps it: that is how the
    keras.applications ImageNet weights are loaded (docs/evaluate.md)."""
    if point.get("family") == "keras":
        return None
    return lookup_name(str(point.get("model", "")))
