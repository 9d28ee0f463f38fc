"""Architecture tables: ``models/<family>.toml`` loaded into frozen dataclasses and validated.

One TOML per family holds one row per stage and a ``[variants]`` table; the generic builder in
:mod:`edgecv.builders.keras_builder` reads nothing else. No per-variant code.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgecv.errors import EdgecvError
from edgecv.fileio import data_dir

BLOCKS = ("conv", "dwsep", "inverted_residual", "mbconv")
ACTIVATIONS = ("relu6", "relu", "swish")
WIDTH_MODES = ("scaled", "fixed", "wider_only")
DEPTH_MODES = ("scaled", "fixed")
ROUNDINGS = ("truncate", "divisible8")
CLASSIFIERS = ("conv1x1", "dense")


@dataclass(frozen=True)
class Stage:
    """One row of an architecture table: ``repeats`` blocks of one type; stride on the first."""

    block: str
    kernel: int
    repeats: int
    out: int
    stride: int
    activation: str
    expansion: int = 1
    se_ratio: float = 0.0
    width: str = "scaled"
    depth: str = "scaled"
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB pixels (0..255) become the model input: ``(x - mean) / std``, giving ``range``."""

    range: tuple[float, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_model: bool  # True: the model does it itself (Keras EfficientNet) and takes raw pixels

    def apply(self, pixels):
        import numpy as np

        x = np.asarray(pixels, dtype=np.float32)
        if self.in_model:
            return x
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


@dataclass(frozen=True)
class Family:
    id: str
    cli: str
    paper: str
    keras_application: str
    width_rounding: str
    default_resolution: int
    resolution_multiple: int
    dropout: float
    classifier: str
    bn_epsilon: float
    bn_momentum: float
    preprocessing: Preprocessing
    stages: tuple[Stage, ...]
    variants: dict[str, dict[str, Any]]
    drop_connect_rate: float = 0.0
    classifier_names: dict[str, str] = field(default_factory=dict)
    published_alphas: tuple[float, ...] = ()
    published_resolutions: tuple[int, ...] = ()
    published_variants: tuple[str, ...] = ()
    source: str = ""

    @property
    def has_named_variants(self) -> bool:
        """EfficientNets are chosen by variant (b0..b7); MobileNets by alpha and resolution."""
        return bool(self.published_variants)


def _fail(path: Path, where: str, msg: str) -> EdgecvError:
    return EdgecvError(f"{path}: {where}: {msg}")


def _check(cond: bool, path: Path, where: str, msg: str) -> None:
    if not cond:
        raise _fail(path, where, msg)


def _stage(path: Path, i: int, row: dict[str, Any]) -> Stage:
    where = f"stages[{i}]"
    known = set(Stage.__dataclass_fields__)
    unknown = set(row) - known
    _check(not unknown, path, where, f"unknown field(s) {sorted(unknown)}")
    for key in ("block", "kernel", "repeats", "out", "stride", "activation"):
        _check(key in row, path, where, f"missing field {key!r}")
    s = Stage(**{**row, "names": dict(row.get("names", {}))})
    _check(s.block in BLOCKS, path, f"{where}.block", f"expected one of {BLOCKS}, got {s.block!r}")
    _check(s.activation in ACTIVATIONS, path, f"{where}.activation",
           f"expected one of {ACTIVATIONS}, got {s.activation!r}")
    for key in ("kernel", "repeats", "out", "expansion"):
        v = getattr(s, key)
        _check(isinstance(v, int) and v >= 1, path, f"{where}.{key}", f"expected an integer >= 1, got {v!r}")
    _check(s.stride in (1, 2), path, f"{where}.stride", f"expected 1 or 2, got {s.stride!r}")
    _check(0.0 <= s.se_ratio <= 1.0, path, f"{where}.se_ratio", f"expected 0..1, got {s.se_ratio!r}")
    _check(s.width in WIDTH_MODES, path, f"{where}.width", f"expected one of {WIDTH_MODES}, got {s.width!r}")
    _check(s.depth in DEPTH_MODES, path, f"{where}.depth", f"expected one of {DEPTH_MODES}, got {s.depth!r}")
    return s


def load_family_file(path: Path) -> Family:
    """Parse and validate one architecture table. Errors name the file and the field."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise EdgecvError(f"{path}: malformed TOML: {exc}") from None
    _check(isinstance(doc.get("family"), dict), path, "[family]", "missing table")
    fam = dict(doc["family"])
    rows = doc.get("stages")
    _check(isinstance(rows, list) and rows, path, "[[stages]]", "missing or empty")
    stages = tuple(_stage(path, i, r) for i, r in enumerate(rows))
    pre = fam.pop("preprocessing", None)
    _check(isinstance(pre, dict), path, "family.preprocessing", "missing table")
    preprocessing = Preprocessing(
        range=tuple(pre["range"]), mean=tuple(pre["mean"]), std=tuple(pre["std"]), in_model=bool(pre["in_model"])
    )
    fam.pop("keras_model_name", None)
    for key in ("published_alphas", "published_resolutions", "published_variants"):
        if key in fam:
            fam[key] = tuple(fam[key])
    variants = doc.get("variants", {})
    _check(isinstance(variants, dict) and variants, path, "[variants]", "missing or empty")
    try:
        family = Family(**fam, preprocessing=preprocessing, stages=stages, variants=variants, source=str(path))
    except TypeError as exc:
        raise _fail(path, "[family]", str(exc)) from None
    _check(family.width_rounding in ROUNDINGS, path, "family.width_rounding",
           f"expected one of {ROUNDINGS}, got {family.width_rounding!r}")
    _check(family.classifier in CLASSIFIERS, path, "family.classifier",
           f"expected one of {CLASSIFIERS}, got {family.classifier!r}")
    return family


@functools.cache
def families() -> dict[str, Family]:
    """All families in the packaged ``models/`` folder, by id."""
    out: dict[str, Family] = {}
    for path in sorted(data_dir("models").glob("*.toml")):
        fam = load_family_file(path)
        out[fam.id] = fam
    return out


def family_by_cli_name(name: str) -> Family:
    """Look a family up by its CLI name (``mobilenet``) or id (``mobilenet_v1``)."""
    from edgecv.errors import suggest

    fams = families()
    for fam in fams.values():
        if name in (fam.cli, fam.id):
            return fam
    names = sorted({f.cli for f in fams.values()})
    raise EdgecvError(f"unknown model family {name!r}; known: {', '.join(names)}.{suggest(name, names)}")


# --- channel and repeat rounding, as the reference implementations do it ---------------------------

def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` without going more than 10% down (MobileNetV2, EfficientNet)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def scale_channels(family: Family, stage: Stage, width: float) -> int:
    """Output channels of ``stage`` at width multiplier ``width``."""
    if stage.width == "fixed" or (stage.width == "wider_only" and width <= 1.0):
        return stage.out
    if family.width_rounding == "truncate":
        return max(1, int(stage.out * width))
    if stage.block == "inverted_residual":
        # keras.applications.MobileNetV2 truncates before rounding: _make_divisible(int(f * alpha), 8).
        return make_divisible(int(stage.out * width))
    return make_divisible(stage.out * width)


def scale_repeats(stage: Stage, depth: float) -> int:
    import math

    if stage.depth == "fixed":
        return stage.repeats
    return int(math.ceil(depth * stage.repeats))
