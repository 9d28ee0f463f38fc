"""Shared test fixtures: real photos that ship with scikit-image, and BatchNorm recalibration.

A ``weights=None`` Keras model gives degenerate outputs (softmax = 1/classes), so comparisons of
outputs are only meaningful after its BatchNorm statistics are recalibrated on real images.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's primitive cache keeps about 1 GB per large model alive in the pytest process (measured: three
# keras.applications comparisons left it at 2,553 MB with oneDNN, 1,061 MB without); the sweep workers turn it
# off for the same reason (edgecv/sweep/work.py). Children inherit it, so both sides of a comparison match.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ``photos(n, size, seed)``: seeded crops of the photos that ship with scikit-image (float32 0..255), the same
# images the demo and float verification use.
from edgecv.conversion.calibration import sample_images as photos  # noqa: E402,F401
from edgecv.builders.batchnorm import recalibrate_batchnorm as recalibrate_bn  # noqa: E402,F401


# ``tools/bench_tests.py`` sets EDGECV_TEST_CPU_LOG: each test's CPU time (this process and the children it waited
# for, setup + call + teardown) is appended there as one JSON line. On a shared machine CPU time says more about
# a test's cost than wall time.
_CPU_LOG = os.environ.get("EDGECV_TEST_CPU_LOG")
if _CPU_LOG:
    import json
    import resource
    import time

    def _cpu_seconds() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def _rss_mb() -> int:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        cpu, wall = _cpu_seconds(), time.monotonic()
        yield
        with open(_CPU_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": item.nodeid, "cpu_s": round(_cpu_seconds() - cpu, 2),
                                 "wall_s": round(time.monotonic() - wall, 2),
                                 "slow": item.get_closest_marker("slow") is not None,
                                 "pytest_rss_mb": _rss_mb(),
                                 "children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024})
                     + "\n")
