"""``build()``: the Python API behind ``edgecv build`` (build, cost, save atomically)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgecv.builders.registry import ModelConfig
from edgecv.fileio import atomic_path, check_output_dir


@dataclass(frozen=True)
class BuildResult:
    name: str
    family: str
    path: str
    input_shape: tuple[int, ...]
    params: int
    params_deployed: int
    macs: int
    file_bytes: int
    preprocessing: dict


def build(cfg: ModelConfig, output_dir: str | os.PathLike = "edgecv_out", weights: str | None = None) -> BuildResult:
    """Build ``cfg``, save it as ``<output_dir>/<name>.keras`` (atomically) and return a summary."""
    out_dir = check_output_dir(output_dir)
    from edgecv.builders.cost import model_cost
    from edgecv.builders.keras_builder import build_keras

    model = build_keras(cfg, weights=weights)
    cost = model_cost(model)
    final = Path(out_dir) / f"{cfg.name}.keras"
    with atomic_path(final) as tmp:
        model.save(tmp)
        size = tmp.stat().st_size  # this writer's file (a concurrent build of the name may replace it after)
    pre = cfg.spec.preprocessing
    return BuildResult(
        name=cfg.name, family=cfg.family, path=str(final), input_shape=cfg.input_shape,
        params=cost.params, params_deployed=cost.params_deployed, macs=cost.macs,
        file_bytes=size,
        preprocessing={"range": list(pre.range), "mean": list(pre.mean), "std": list(pre.std),
                       "in_model": pre.in_model},
    )
