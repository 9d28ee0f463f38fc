"""Self-contained HTML reports of sweep results (plotly, inlined) and the published-accuracy table."""

from __future__ import annotations

from edgecv.lazy import lazy_attributes

__all__ = ["render_report", "write_report", "pareto_front"]

__getattr__ = lazy_attributes(__name__, {name: "edgecv.report.html" for name in __all__})
