"""Architecture tables: ``models/<family>.toml`` loaded into frozen dataclasses and validated.

One TOML per family holds its names, rounding and initialisation (``[family]``), one row per stage
(``[[stages]]``) and a ``[variants]`` table; the generic builder in :mod:`edgecv.builders.keras_builder`
reads nothing else. No per-family code: a new family is a TOML file (in ``models/`` or in a folder listed in
``EDGECV_MODELS_PATH``) plus, at most, a block type. The schema: ``docs/architecture-tables.md``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgecv.builders.names import NameTemplate, TemplateError
from edgecv.errors import EdgecvError, one_line
from edgecv.fileio import data_dir

BLOCKS = ("conv", "dwsep", "inverted_residual", "mbconv")
ACTIVATIONS = ("relu6", "relu", "swish")
WIDTH_MODES = ("scaled", "fixed", "wider_only")
DEPTH_MODES = ("scaled", "fixed")
# truncate: int(c * w) (MobileNetV1); divisible8: make_divisible(c * w, 8) (MobileNetV2 stem and head,
# EfficientNet); truncate_divisible8: make_divisible(int(c * w), 8) (keras MobileNetV2's inverted residuals).
ROUNDINGS = ("truncate", "divisible8", "truncate_divisible8")
CLASSIFIERS = ("conv1x1", "dense")
VS_MODES = ("fan_in", "fan_out", "fan_avg")
VS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
# Fields a family's names may hold: scaling fields in [family.names] point/named, head fields in suffix.
SCALING_FIELDS = ("alpha", "width", "depth", "resolution", "variant")
SUFFIX_FIELDS = ("depth_multiplier", "input_channels", "classes", "notop")
MODELS_PATH_ENV = "EDGECV_MODELS_PATH"


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
class FamilyNames:
    """``[family.names]``: the templates of the family's registry names (:mod:`edgecv.builders.names`)."""

    point: NameTemplate  # any point, by its scaling values: mobilenet_v1_{alpha:.2f}_{resolution}
    suffix: NameTemplate  # non-default heads, after either: [_dm{depth_multiplier}][_ch{input_channels}]...
    named: NameTemplate | None = None  # a named variant: efficientnet_{variant}[_r{resolution}]

    @functools.cached_property
    def grammar(self) -> tuple[tuple[str, NameTemplate], ...]:
        """(kind, full template) pairs: "named" first, then "point"."""
        out = [("named", self.named + self.suffix)] if self.named is not None else []
        return (*out, ("point", self.point + self.suffix))

    def fields(self) -> set[str]:
        return {f.name for _, t in self.grammar for f in t.fields()}


@dataclass(frozen=True)
class VarianceScaling:
    """A ``keras.initializers.VarianceScaling`` kernel initializer."""

    scale: float
    mode: str
    distribution: str

    def keras(self) -> dict[str, Any]:
        return {"class_name": "VarianceScaling",
                "config": {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}}


@dataclass(frozen=True)
class Initializers:
    """``[family.initializers]``: kernel initializers (None: Keras' default, glorot_uniform)."""

    conv: VarianceScaling | None = None  # every convolution kernel, depthwise included
    dense: VarianceScaling | None = None  # the Dense classifier


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
    names: FamilyNames
    drop_connect_rate: float = 0.0
    classifier_names: dict[str, str] = field(default_factory=dict)
    published_alphas: tuple[float, ...] = ()
    published_resolutions: tuple[int, ...] = ()
    published_variants: tuple[str, ...] = ()
    block_width_rounding: tuple[tuple[str, str], ...] = ()  # (block, rounding): overrides width_rounding
    initializers: Initializers = Initializers()
    keras_model_name: str = ""  # the keras.applications twin's model name (informative)
    source: str = ""

    @property
    def has_named_variants(self) -> bool:
        """EfficientNets are chosen by variant (b0..b7); MobileNets by alpha and resolution."""
        return bool(self.published_variants)

    def rounding(self, stage: Stage) -> str:
        """How ``stage``'s channels are rounded when scaled (one of :data:`ROUNDINGS`)."""
        return dict(self.block_width_rounding).get(stage.block, self.width_rounding)


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


def _template(path: Path, where: str, text: Any, allowed: tuple[str, ...]) -> NameTemplate:
    try:
        t = NameTemplate.compile(text)
    except TemplateError as exc:
        raise _fail(path, where, str(exc)) from None
    bad = sorted({f.name for f in t.fields()} - set(allowed))
    _check(not bad, path, where, f"field(s) {bad} do not belong here; allowed: {', '.join(allowed)}")
    return t


def _names(path: Path, raw: Any, named: bool) -> FamilyNames:
    where = "family.names"
    _check(isinstance(raw, dict), path, where, "missing table (point, named, suffix templates)")
    unknown = set(raw) - {"point", "named", "suffix"}
    _check(not unknown, path, where, f"unknown field(s) {sorted(unknown)}")
    _check("point" in raw, path, where, "missing field 'point'")
    point = _template(path, f"{where}.point", raw["point"], ("alpha", "width", "depth", "resolution"))
    req = {f.name for f in point.fields(optional=False)}
    _check("resolution" in req and bool(req & {"alpha", "width"}), path, f"{where}.point",
           f"needs {{resolution}} and {{alpha}} or {{width}} outside optional groups. Received: {raw['point']!r}")
    suffix = _template(path, f"{where}.suffix", raw.get("suffix", ""), SUFFIX_FIELDS) if raw.get("suffix") \
        else NameTemplate("", ())
    _check(not suffix.fields(optional=False), path, f"{where}.suffix",
           f"every field needs an optional group [...]: they have defaults. Received: {raw.get('suffix')!r}")
    tmpl = None
    if named:
        _check("named" in raw, path, where, "missing field 'named' (the family has published_variants)")
        tmpl = _template(path, f"{where}.named", raw["named"], ("variant", "resolution"))
        _check("variant" in {f.name for f in tmpl.fields(optional=False)}, path, f"{where}.named",
               f"needs {{variant}} outside optional groups. Received: {raw['named']!r}")
    else:
        _check("named" not in raw, path, f"{where}.named", "needs published_variants in [family]")
    return FamilyNames(point=point, suffix=suffix, named=tmpl)


def _variance_scaling(path: Path, where: str, raw: Any) -> VarianceScaling:
    _check(isinstance(raw, dict), path, where, f"expected a table {{scale, mode, distribution}}. Received: {raw!r}")
    unknown = set(raw) - {"scale", "mode", "distribution"}
    _check(not unknown, path, where, f"unknown field(s) {sorted(unknown)}")
    scale, mode, dist = raw.get("scale"), raw.get("mode"), raw.get("distribution")
    _check(isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0, path, f"{where}.scale",
           f"expected a number > 0, got {scale!r}")
    _check(mode in VS_MODES, path, f"{where}.mode", f"expected one of {VS_MODES}, got {mode!r}")
    _check(dist in VS_DISTRIBUTIONS, path, f"{where}.distribution",
           f"expected one of {VS_DISTRIBUTIONS}, got {dist!r}")
    return VarianceScaling(float(scale), mode, dist)


def _initializers(path: Path, raw: Any) -> Initializers:
    where = "family.initializers"
    _check(isinstance(raw, dict), path, where, f"expected a table {{conv, dense}}. Received: {raw!r}")
    unknown = set(raw) - {"conv", "dense"}
    _check(not unknown, path, where, f"unknown field(s) {sorted(unknown)}")
    return Initializers(**{k: _variance_scaling(path, f"{where}.{k}", v) for k, v in raw.items()})


def _variants(path: Path, variants: Any, named: bool) -> None:
    _check(isinstance(variants, dict) and variants, path, "[variants]", "missing or empty")
    need = ("width", "depth", "resolution") if named else ("alpha",)
    for key, v in variants.items():
        where = f"variants.{key}"
        _check(isinstance(v, dict), path, where, f"expected a table, got {v!r}")
        for k in need:
            _check(k in v, path, where, f"missing field {k!r}")
        for k, x in v.items():
            _check(k in need + ("dropout",), path, f"{where}.{k}", f"unknown field; expected {need + ('dropout',)}")
            ok = isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 or (k == "dropout" and x == 0)
            _check(ok and (k != "resolution" or isinstance(x, int)), path, f"{where}.{k}",
                   f"expected a {'whole ' if k == 'resolution' else ''}number > 0, got {x!r}")


def load_family_file(path: Path) -> Family:
    """Parse and validate one architecture table. Errors name the file and the field."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise EdgecvError(f"{path}: malformed TOML: {one_line(exc)}") from None
    except OSError as exc:
        raise EdgecvError(f"{path}: cannot read: {exc.strerror or exc}") from None
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
    for key in ("published_alphas", "published_resolutions", "published_variants"):
        if key in fam:
            fam[key] = tuple(fam[key])
    named = bool(fam.get("published_variants"))
    names = _names(path, fam.pop("names", None), named)
    inits = _initializers(path, fam.pop("initializers")) if "initializers" in fam else Initializers()
    by_block = fam.pop("block_width_rounding", {})
    _check(isinstance(by_block, dict), path, "family.block_width_rounding",
           f"expected a table {{block = rounding}}. Received: {by_block!r}")
    for block, rounding in by_block.items():
        _check(block in BLOCKS, path, f"family.block_width_rounding.{block}", f"expected a block of {BLOCKS}")
        _check(rounding in ROUNDINGS, path, f"family.block_width_rounding.{block}",
               f"expected one of {ROUNDINGS}, got {rounding!r}")
    variants = doc.get("variants", {})
    _variants(path, variants, named)
    try:
        family = Family(**fam, preprocessing=preprocessing, stages=stages, variants=variants, names=names,
                        initializers=inits, block_width_rounding=tuple(by_block.items()), source=str(path))
    except TypeError as exc:
        raise _fail(path, "[family]", str(exc)) from None
    _check(family.width_rounding in ROUNDINGS, path, "family.width_rounding",
           f"expected one of {ROUNDINGS}, got {family.width_rounding!r}")
    _check(family.classifier in CLASSIFIERS, path, "family.classifier",
           f"expected one of {CLASSIFIERS}, got {family.classifier!r}")
    for key in ("id", "cli"):
        v = getattr(family, key)
        _check(isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9_]*", v) is not None, path, f"family.{key}",
               f"expected a lower-case identifier, got {v!r}")
    missing = [v for v in family.published_variants if v not in variants]
    _check(not missing, path, "family.published_variants", f"not in [variants]: {missing}")
    for key in ("default_resolution", "resolution_multiple"):
        v = getattr(family, key)
        _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, path, f"family.{key}",
               f"expected an integer >= 1, got {v!r}")
    return family


def model_dirs() -> tuple[Path, ...]:
    """Folders of architecture tables: the packaged ``models/``, then those listed in ``EDGECV_MODELS_PATH``
    (separated by ``os.pathsep``)."""
    extra = tuple(Path(p) for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p)
    return (data_dir("models"), *extra)


def families() -> dict[str, Family]:
    """All families of :func:`model_dirs`, by id. A family id or CLI name defined twice is an error."""
    return _load_families(model_dirs())


@functools.cache
def _load_families(dirs: tuple[Path, ...]) -> dict[str, Family]:
    out: dict[str, Family] = {}
    by_cli: dict[str, Family] = {}
    for d in dirs:
        if d != dirs[0] and not d.is_dir():
            raise EdgecvError(f"{MODELS_PATH_ENV}: not a folder. Received: {str(d)!r}")
        for path in sorted(d.glob("*.toml")):
            fam = load_family_file(path)
            for key, seen in (("id", out), ("cli", by_cli)):
                other = seen.get(getattr(fam, key))
                _check(other is None, path, f"family.{key}",
                       f"{getattr(fam, key)!r} is already defined in {other.source if other else ''}")
            out[fam.id] = by_cli[fam.cli] = fam
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
    """Output channels of ``stage`` at width multiplier ``width`` (rounded as :meth:`Family.rounding` says)."""
    if stage.width == "fixed" or (stage.width == "wider_only" and width <= 1.0):
        return stage.out
    rounding = family.rounding(stage)
    if rounding == "truncate":
        return max(1, int(stage.out * width))
    if rounding == "truncate_divisible8":
        return make_divisible(int(stage.out * width))
    return make_divisible(stage.out * width)


def scale_repeats(stage: Stage, depth: float) -> int:
    import math

    if stage.depth == "fixed":
        return stage.repeats
    return int(math.ceil(depth * stage.repeats))
