"""The model registry: names that encode a configuration, and ``create_model(name, **overrides)``.

Names: ``mobilenet_v1_0.50_224``, ``mobilenet_v2_1.00_224``, ``efficientnet_b3``,
``efficientnet_lite2``; custom points ``efficientnet_w1.10_d1.20_r260``; suffixes for non-default
heads: ``_c10`` (10 classes), ``_notop``, ``_dm2`` (depth multiplier), ``_ch1`` (input channels).
Each family's grammar is data: the templates of ``[family.names]`` in its ``models/*.toml``
(:mod:`edgecv.builders.names`), which both write (:attr:`ModelConfig.name`) and read (:func:`get_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgecv.builders.arch import Family, families
from edgecv.errors import EdgecvError, suggest
from edgecv.validate import positive_float

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
        """The registry name, written by the family's name grammar (``[family.names]``)."""
        kind, values, defaults = _name_values(self)
        return dict(self.spec.names.grammar)[kind].format(values, defaults)

    def validate(self) -> "ModelConfig":
        fam = self.spec
        knob = "alpha" if not fam.has_named_variants else "width"
        positive_float(f"--{knob}", self.width, keyword=knob)
        positive_float("--depth", self.depth, keyword="depth")
        res = self.resolution
        if not isinstance(res, int) or isinstance(res, bool) or res < 32 or res > MAX_RESOLUTION or (
            res % fam.resolution_multiple
        ):
            mult = f"a multiple of {fam.resolution_multiple} " if fam.resolution_multiple > 1 else ""
            raise EdgecvError(
                f"--resolution: expected {mult}from 32 to {MAX_RESOLUTION}. Received: resolution={res!r}"
            )
        truncated = [s.out for s in fam.stages if fam.rounding(s) == "truncate" and s.width != "fixed"]
        if truncated:
            narrowest = min(truncated)
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
        # a value the family's names cannot write is a value the family does not have
        has = fam.names.fields()
        for opt, key, v, default in (("--depth-multiplier", "depth_multiplier", self.depth_multiplier, 1),
                                     ("--input-channels", "input_channels", self.input_channels, 3),
                                     ("--classes", "classes", self.classes, 1000),
                                     ("--no-top", "notop", not self.include_top, False),
                                     ("--depth", "depth", self.depth, 1.0)):
            if v != default and key not in has:
                raise EdgecvError(f"{opt}: {fam.cli} has none. Received: {v!r}")
        if self.pooling not in POOLINGS:
            raise EdgecvError(f"--pooling: expected avg, max or none. Received: {self.pooling!r}")
        return self


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


def _name_values(cfg: ModelConfig) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(template kind, field values, field defaults) of ``cfg`` for its family's name grammar."""
    fam = cfg.spec
    v = fam.variants.get(cfg.variant) if cfg.variant else None
    named = (fam.names.named is not None and v is not None
             and (cfg.width, cfg.depth) == (v["width"], v["depth"]))  # else a custom point
    values = {"alpha": cfg.width, "width": cfg.width, "depth": cfg.depth, "resolution": cfg.resolution,
              "variant": cfg.variant, "depth_multiplier": cfg.depth_multiplier,
              "input_channels": cfg.input_channels, "classes": cfg.classes, "notop": not cfg.include_top}
    defaults = {"resolution": v["resolution"] if named else fam.default_resolution, "depth_multiplier": 1,
                "input_channels": 3, "classes": 1000, "notop": False, "depth": 1.0}
    return ("named" if named else "point"), values, defaults


def parse_name(name: str) -> ModelConfig | None:
    """The configuration a registry name writes (not validated), or None when no family's grammar reads it."""
    found = []
    for fam in families().values():
        for kind, tmpl in fam.names.grammar:
            got = tmpl.parse(name, tuple(fam.variants) if kind == "named" else ())
            if got is not None:
                found.append((fam, kind, got))
    if len(found) != 1:  # none, or (a family table clashing with another) ambiguous
        return None
    fam, kind, got = found[0]
    fields: dict[str, Any] = {"family": fam.id}
    if kind == "named":
        v = fam.variants[got["variant"]]
        fields.update(variant=got["variant"], width=v["width"], depth=v["depth"],
                      resolution=got.get("resolution", v["resolution"]))
    else:
        fields.update(width=got.get("alpha", got.get("width")), depth=got.get("depth", 1.0),
                      resolution=got.get("resolution", fam.default_resolution))
    for key in ("depth_multiplier", "input_channels", "classes"):
        if key in got:
            fields[key] = got[key]
    if got.get("notop"):
        fields["include_top"] = False
    return ModelConfig(**fields)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """Parse a registry name into a validated :class:`ModelConfig`; ``overrides`` replace fields."""
    cfg = parse_name(name)
    if cfg is None:
        names = list_models()
        raise EdgecvError(f"unknown model {name!r}.{suggest(name, names) or ' See `edgecv models`.'}")
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
