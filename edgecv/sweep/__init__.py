"""Sweeps: a grid of models x precisions built, converted, verified and profiled, cached per point.

``from edgecv.sweep import build_spec, run_sweep`` imports nothing heavy.
"""

from __future__ import annotations

from edgecv.sweep.api import SweepFailed, SweepResult, load_results, run_sweep
from edgecv.sweep.grid import Point, SweepSpec, build_spec, check_size

__all__ = ["Point", "SweepFailed", "SweepResult", "SweepSpec", "build_spec", "check_size", "load_results",
           "run_sweep"]
