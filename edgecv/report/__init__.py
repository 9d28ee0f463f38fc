"""Self-contained HTML reports of sweep results (plotly, inlined) and the published-accuracy table."""

from __future__ import annotations

__all__ = ["render_report", "write_report", "pareto_front"]


def __getattr__(name: str):
    if name in __all__:
        from edgecv.report import html

        return getattr(html, name)
    raise AttributeError(f"module 'edgecv.report' has no attribute {name!r}")
