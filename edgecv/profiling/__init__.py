"""Profiling: static counts from a deployed graph, and latency/memory measured on the host in a child process.

``profile(path, ...)`` and ``static_profile(path)`` return ``edgecv.records.ProfileResult``;
``static.analyze(path)`` returns the per-op ``OpStat`` list with totals. ``runner.py`` is a self-contained
script (no edgecv import) that measures one model and prints one JSON object; it is also run on targets.
"""

from edgecv.profiling.api import profile, static_profile

__all__ = ["profile", "static_profile"]
