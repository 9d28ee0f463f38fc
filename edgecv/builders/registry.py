"""The model registry: names that encode a configuration, and ``create_model(name, **overrides)``.

Names: ``mobilenet_v1_0.50_224``, ``mobilenet_v2_1.00_224``, ``efficientnet_b3``,
``efficientnet_lite2``; custom points ``efficientnet_w1.10_d1.20_r260``; suffixes for non-default
heads: ``_c10`` (10 classes), ``_notop``, ``_dm2`` (depth multiplier), ``_ch1`` (input channels).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from edgecv.builders.arch import Family, families
from edgecv.errors import EdgecvError, suggest

MAX_RESOLUTION = 2048
POOLINGS = (None, "avg", "max")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's architecture (not its weights)."""

    family: str
    width: float = 1.0  # alpha for the MobileNets
    depth: float = 1.0
    resolution: int = 224
    variant: str | None = None  # "b3", "lite2"; None for a custom point
    dropout: float | None = None  # None: the family's (or variant's) default
    depth_multiplier: int = 1  # MobileNetV1 depthwise multiplier
    classes: int = 1000
    include_top: bool = True
    pooling: str | None = None
    input_channels: int = 3
    classifier_activation: str | None = "softmax"

    @property
    def spec(self) -> Family:
        return families()[self.family]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.resolution, self.resolution, self.input_channels)

    @property
    def effective_dropout(self) -> float:
        if self.dropout is not None:
            return self.dropout
        if self.variant:
            return float(self.spec.variants[self.variant].get("dropout", self.spec.dropout))
        return self.spec.dropout

    @property
    def name(self) -> str:
        fam = self.spec
        if fam.has_named_variants:
            # named variants read as the papers write them: efficientnet_b3, efficientnet_lite2
            base = f"efficientnet_{self.variant}" if self.variant else (
                f"{fam.id}_w{self.width:.2f}_d{self.depth:.2f}_r{self.resolution}")
            if self.variant and self.resolution != fam.variants[self.variant]["resolution"]:
                base += f"_r{self.resolution}"
        else:
            base = f"{fam.id}_{_fmt_width(self.width)}_{self.resolution}"
        if self.depth_multiplier != 1:
            base += f"_dm{self.depth_multiplier}"
        if self.input_channels != 3:
            base += f"_ch{self.input_channels}"
        if not self.include_top:
            base += "_notop"
        elif self.classes != 1000:
            base += f"_c{self.classes}"
        return base

    def validate(self) -> "ModelConfig":
        fam = self.spec
        _positive_float("alpha" if not fam.has_named_variants else "width", self.width)
        _positive_float("depth", self.depth)
        res = self.resolution
        if not isinstance(res, int) or isinstance(res, bool) or res < 32 or res > MAX_RESOLUTION or (
            res % fam.resolution_multiple
        ):
            mult = f"a multiple of {fam.resolution_multiple} " if fam.resolution_multiple > 1 else ""
            raise EdgecvError(
                f"--resolution: expected {mult}from 32 to {MAX_RESOLUTION}. Received: resolution={res!r}"
            )
        if fam.width_rounding == "truncate":
            narrowest = min(s.out for s in fam.stages)
            if int(narrowest * self.width) < 1:
                raise EdgecvError(
                    f"--alpha: too small, the narrowest layer ({narrowest} channels) would have none. "
                    f"Received: alpha={self.width!r}"
                )
        if self.dropout is not None and not (0.0 <= self.dropout < 1.0):
            raise EdgecvError(f"--dropout: expected 0 <= dropout < 1. Received: dropout={self.dropout!r}")
        for opt, v in (("--classes", self.classes), ("--input-channels", self.input_channels),
                       ("--depth-multiplier", self.depth_multiplier)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise EdgecvError(f"{opt}: expected an integer >= 1. Received: {v!r}")
        if self.depth_multiplier != 1 and fam.id != "mobilenet_v1":
            raise EdgecvError(f"--depth-multiplier: only MobileNetV1 has one. Received: {self.depth_multiplier!r}")
        if self.pooling not in POOLINGS:
            raise EdgecvError(f"--pooling: expected avg, max or none. Received: {self.pooling!r}")
        return self


def _positive_float(opt: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise EdgecvError(f"--{opt}: expected a number > 0. Received: {opt}={v!r}")


def _fmt_width(w: float) -> str:
    return f"{w:.2f}"


def _family(fid: str) -> Family:
    return families()[fid]


def config_for(family: str, *, alpha: float | None = None, variant: str | None = None,
               width: float | None = None, depth: float | None = None,
               resolution: int | None = None, **overrides: Any) -> ModelConfig:
    """Build a validated config from family knobs (what the CLI's ``build`` command takes)."""
    from edgecv.builders.arch import family_by_cli_name

    fam = family_by_cli_name(family)
    if fam.has_named_variants:
        if alpha is not None:
            raise EdgecvError(f"--alpha: {fam.cli} is scaled with --variant or --width/--depth. Received: alpha={alpha!r}")
        if variant is None and width is None and depth is None and resolution is None:
            variant = fam.published_variants[0]
        if variant is not None:
            if variant not in fam.variants:
                raise EdgecvError(
                    f"--variant: unknown {fam.cli} variant {variant!r}; known: {', '.join(fam.variants)}."
                    f"{suggest(variant, fam.variants)}")
            v = fam.variants[variant]
            # explicit --width/--depth make a custom point (no variant name)
            if width is not None or depth is not None:
                variant_name = None
            else:
                variant_name = variant
            cfg = ModelConfig(family=fam.id, variant=variant_name,
                              width=width if width is not None else v["width"],
                              depth=depth if depth is not None else v["depth"],
                              resolution=resolution if resolution is not None else v["resolution"],
                              **overrides)
        else:
            cfg = ModelConfig(family=fam.id, width=1.0 if width is None else width,
                              depth=1.0 if depth is None else depth,
                              resolution=resolution if resolution is not None else fam.default_resolution, **overrides)
    else:
        if variant is not None or width is not None or depth is not None:
            raise EdgecvError(f"--variant/--width/--depth: {fam.cli} is scaled with --alpha. "
                              f"Received: variant={variant!r} width={width!r} depth={depth!r}")
        cfg = ModelConfig(family=fam.id, width=1.0 if alpha is None else alpha,
                          resolution=resolution if resolution is not None else fam.default_resolution, **overrides)
    return cfg.validate()


_NAME_RE = re.compile(
    r"^(?P<family>mobilenet_v1|mobilenet_v2|efficientnet_lite|efficientnet)_"
    r"(?:(?P<alpha>\d+(?:\.\d+)?)_(?P<res>\d+)|(?P<variant>b\d|lite\d)(?:_r(?P<vres>\d+))?"
    r"|w(?P<w>\d+(?:\.\d+)?)_d(?P<d>\d+(?:\.\d+)?)_r(?P<wres>\d+))"
    r"(?:_dm(?P<dm>\d+))?(?:_ch(?P<ch>\d+))?(?:_(?P<notop>notop)|_c(?P<classes>\d+))?$"
)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """Parse a registry name into a validated :class:`ModelConfig`; ``overrides`` replace fields."""
    m = _NAME_RE.match(name)
    fam = None
    if m:
        fid = m["family"]
        if fid == "efficientnet" and (m["variant"] or "").startswith("lite"):
            fid = "efficientnet_lite"
        fam = families().get(fid)
        if fam is not None and fam.has_named_variants != (m["alpha"] is None):
            fam = None
        if fam is not None and m["variant"] and m["variant"] not in fam.variants:
            fam = None
    if fam is None:
        names = list_models()
        raise EdgecvError(f"unknown model {name!r}.{suggest(name, names) or ' See `edgecv models`.'}")
    fields: dict[str, Any] = {"family": fam.id}
    if m["alpha"]:
        fields.update(width=float(m["alpha"]), resolution=int(m["res"]))
    elif m["variant"]:
        v = fam.variants[m["variant"]]
        fields.update(variant=m["variant"], width=v["width"], depth=v["depth"],
                      resolution=int(m["vres"] or v["resolution"]))
    else:
        fields.update(width=float(m["w"]), depth=float(m["d"]), resolution=int(m["wres"]))
    if m["dm"]:
        fields["depth_multiplier"] = int(m["dm"])
    if m["ch"]:
        fields["input_channels"] = int(m["ch"])
    if m["notop"]:
        fields["include_top"] = False
    if m["classes"]:
        fields["classes"] = int(m["classes"])
    cfg = ModelConfig(**fields)
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
        if unknown:
            raise EdgecvError(f"create_model: unknown option(s) {sorted(unknown)} for {name!r}")
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg.validate()


def registered_configs() -> list[ModelConfig]:
    """The registered variants: the published points of every family."""
    out: list[ModelConfig] = []
    for fam in families().values():
        if fam.has_named_variants:
            for v, vals in fam.variants.items():
                out.append(ModelConfig(family=fam.id, variant=v, width=vals["width"], depth=vals["depth"],
                                       resolution=vals["resolution"]))
        else:
            for vals in fam.variants.values():
                for res in fam.published_resolutions:
                    out.append(ModelConfig(family=fam.id, width=vals["alpha"], resolution=res))
    return out


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern (``"efficientnet_b*"``)."""
    import fnmatch

    names = [c.name for c in registered_configs()]
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name_or_config: str | ModelConfig, weights: str | None = None, **overrides: Any):
    """Build the Keras model for a registry name (or config). Imports TensorFlow/Keras."""
    from edgecv.builders.keras_builder import build_keras

    cfg = name_or_config if isinstance(name_or_config, ModelConfig) else get_config(name_or_config, **overrides)
    if isinstance(name_or_config, ModelConfig) and overrides:
        cfg = dataclasses.replace(cfg, **overrides).validate()
    return build_keras(cfg, weights=weights)
